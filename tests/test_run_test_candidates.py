"""run-test answers, beside the simulated run, which records would start the workflow now and why
each other one would not (the one matching rule), a page at a time with totals; without a record
it simulates the first candidate; viewers and outsiders get nothing."""

import pytest
from rest_framework.test import APIClient

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.services.workflows import workflow_update
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.crm.models import Deal
from tests.conftest import make_workflow, stage

BIG = {"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt", "value": 5000}]}
TASK = [{"type": "create_task", "label": "T", "config": {"title": "Kick off {{deal.title}}"}}]


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def deals(org, **amounts_by_stage) -> dict[str, Deal]:
    """{title: deal}: titles like won-10000, one deal per amount, in the stage named."""
    made = {}
    for slug, amounts in amounts_by_stage.items():
        for amount in amounts:
            title = f"{slug}-{amount}"
            made[title] = Deal.objects.create(organization=org, title=title, amount=amount, stage=stage(org, slug))
    return made


def run_test(user, workflow, **body):
    return api(user).post(f"/api/v1/workflows/{workflow.pk}/run-test/", body, format="json")


def by_title(answer: dict) -> dict[str, dict]:
    return {entry["record"]["title"]: entry for entry in answer["candidates"]}


def test_a_changed_condition_changes_exactly_which_deals_are_candidates(org, owner):
    workflow = make_workflow(org, activate=False, conditions=BIG, actions=TASK)  # to Won, amount > 5000
    deals(org, won=[10000, 2000, 8000], proposal=[9000])
    answer = run_test(owner, workflow).json()
    found = by_title(answer)
    assert {t for t, e in found.items() if e["would_start"]} == {"won-10000", "won-8000"}
    assert found["won-2000"]["reason"] == ("condition “Deal › Amount is greater than 5000” was false: "
                                           "Deal › Amount is 2000.00")
    assert found["proposal-9000"]["reason"] == "the deal is in “Proposal”; the workflow listens for a move to “Won”"
    assert answer["candidates_totals"] == {"records": 4, "scanned": 4, "would_start": 2, "complete": True}
    assert found["won-10000"]["record"]["kind"] == "deal"

    workflow_update(workflow_id=workflow.pk, changes={"conditions": {"combinator": "and", "rules": [
        {"field": "deal.amount", "operator": "lt", "value": 9000}]}})
    found = by_title(run_test(owner, workflow).json())
    assert {t for t, e in found.items() if e["would_start"]} == {"won-2000", "won-8000"}
    assert found["won-10000"]["reason"].endswith("was false: Deal › Amount is 10000.00")


def test_without_a_record_the_first_candidate_is_simulated_and_with_one_the_run_is_as_before(org, owner, deal):
    workflow = make_workflow(org, activate=False, conditions=BIG, actions=TASK)
    won = deals(org, won=[7000])["won-7000"]
    answer = run_test(owner, workflow).json()
    assert answer["simulation"] == "run on the first candidate that would start it: deal “won-7000”"
    assert answer["status"] == "completed" and answer["steps"][0]["result"]["would_create_task"]["title"] == \
        "Kick off won-7000"
    given = run_test(owner, workflow, entity_type="deal", entity_id=str(deal.pk)).json()
    assert given["simulation"] == "run on the record given" and given["steps"]  # the deal's own simulation
    assert by_title(given)["won-7000"]["would_start"] and not by_title(given)["Website"]["would_start"]
    won.delete()
    none = run_test(owner, workflow)
    assert none.status_code == 200 and none.json()["simulation"].startswith("not run: no record was given")
    assert "steps" not in none.json()


def test_candidates_come_a_page_at_a_time_and_the_page_is_capped(org, owner):
    workflow = make_workflow(org, activate=False, actions=TASK)
    deals(org, won=list(range(1000, 1007)))
    seen, cursor, pages = [], None, 0
    while True:
        body = {"candidates_limit": 3, **({"candidates_cursor": cursor} if cursor else {})}
        answer = run_test(owner, workflow, **body).json()
        seen += [entry["record"]["id"] for entry in answer["candidates"]]
        pages += 1
        cursor = answer["candidates_page"]["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 7
    assert run_test(owner, workflow, candidates_limit=51).status_code == 400
    Deal.objects.bulk_create([Deal(organization=org, title=f"bulk-{i}", amount=1, stage=stage(org, "won"))
                              for i in range(50)])
    answer = run_test(owner, workflow).json()
    assert len(answer["candidates"]) == 50 and answer["candidates_page"]["next_cursor"] is not None
    assert answer["candidates_totals"]["records"] == 57 and answer["candidates_totals"]["would_start"] == 57
    bad = run_test(owner, workflow, candidates_cursor="not-a-cursor")
    assert bad.status_code == 400 and "candidates_cursor" in bad.json()


def test_a_deal_enrolled_once_is_not_a_candidate_again(org, owner):
    workflow = make_workflow(org, conditions=BIG, actions=TASK, reenrollment="once")
    deal = deals(org, won=[9000])["won-9000"]
    workflow_start(workflow_id=workflow.pk, by=owner, record=deal, reason="once")
    entry = by_title(run_test(owner, workflow, entity_type="deal", entity_id=str(deal.pk)).json())["won-9000"]
    assert not entry["would_start"] and "enrolls a record only once" in entry["reason"]


def test_a_schedule_has_no_candidates_and_says_so(org, owner):
    weekly = make_workflow(org, name="Weekly", trigger_type="schedule",
                           trigger_config={"frequency": "daily", "time": "09:00"}, actions=[
                               {"type": "create_task", "label": "T", "config": {"title": "Review"}}])
    answer = run_test(owner, weekly).json()
    assert answer["candidates"] == [] and "starts on no record" in answer["candidates_note"]
    assert answer["simulation"].startswith("not run")


@pytest.mark.parametrize("who", ["viewer", "outsider"])
def test_a_viewer_is_refused_and_an_outsider_finds_nothing(org, who, request):
    workflow = make_workflow(org, activate=False, actions=TASK)
    deals(org, won=[9000])
    answer = run_test(request.getfixturevalue(who), workflow)
    assert answer.status_code == (403 if who == "viewer" else 404)
    assert "candidates" not in str(answer.content) and not WorkflowRun.objects.exists()


def test_the_candidates_cost_no_query_per_record(org, owner, django_assert_max_num_queries):
    from crm_automation.automation.services.candidates import workflow_candidates

    workflow = make_workflow(org, activate=False, trigger_config={"from_stage": "proposal", "to_stage": "won"},
                             conditions={"combinator": "and", "rules": [
                                 {"field": "deal.contact.email", "operator": "is_not_empty"}]}, actions=TASK)
    Deal.objects.bulk_create([Deal(organization=org, title=f"d{i}", amount=i, stage=stage(org, "won"))
                              for i in range(120)])
    with django_assert_max_num_queries(12):  # a page and the totals: a few queries per 500 records
        found = workflow_candidates(workflow_id=workflow.pk, by=owner)
    assert len(found.entries) == 50 and found.records == found.scanned == 120 and found.would_start == 0
    assert found.entries[0]["reason"] == ("condition “Deal › Contact › Email is not empty” was false: "
                                          "Deal › Contact › Email is empty")


def test_a_business_events_candidates_are_the_contacts_it_would_start_for(org, owner, contact):
    from crm_automation.crm.models import Contact

    Contact.objects.create(organization=org, first_name="Nomail")
    workflow = make_workflow(org, activate=False, trigger_type="event:invoice.overdue", trigger_config={},
                             conditions={"combinator": "and", "rules": [
                                 {"field": "contact.email", "operator": "is_not_empty"}]}, actions=TASK)
    answer = run_test(owner, workflow).json()
    found = by_title(answer)
    assert found["Ada Lovelace"]["would_start"] and not found["Nomail"]["would_start"]
    assert "sample data" in answer["candidates_note"]
    assert answer["simulation"] == "run on the first candidate that would start it: contact “Ada Lovelace”"
