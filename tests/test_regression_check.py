"""Regression check at publish: the last runs of a live workflow replayed through the live version
and through the saved edits; the runs whose start, path or effects would differ are listed, each
with its reason, and nothing is sent or written but the check's own row."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from crm_automation.automation.models import (
    AutomationEvent,
    FieldChange,
    ImpactPreview,
    WorkflowRun,
    WorkflowVersion,
)
from crm_automation.automation.runtime.tasks import regression_check
from crm_automation.automation.services import impact, regression
from crm_automation.automation.services.workflows import workflow_publish, workflow_update
from crm_automation.crm.models import Deal, EmailMessage, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage
from tests.test_graph_engine import edge, task

AMOUNTS = [1000, 8000, 15000, 30000]


def big(over: int) -> dict:
    return {"id": "big", "type": "condition", "label": "Big deal?", "config": {"rules": [
        {"field": "deal.amount", "operator": "gt", "value": over}]}}


def welcome(subject: str) -> dict:
    return {"id": "welcome", "type": "send_email", "label": "Send welcome",
            "config": {"to": "{{deal.contact.email}}", "subject": subject, "body": "Hi {{deal.contact.first_name}}"}}


def steps(over: int = 5000, subject: str = "Welcome {{deal.title}}") -> list[dict]:
    return [big(over), welcome(subject), task("small", "Call about {{deal.title}}"),
            {"id": "stamp", "type": "update_field", "config": {"field": "probability", "value": 90}}]


EDGES = [edge("trigger", "big"), edge("big", "welcome", "condition-true"), edge("big", "small", "condition-false"),
         edge("welcome", "stamp")]


@pytest.fixture
def live(org, contact):
    """A live workflow with a run on each of four deals won: the big ones were welcomed, the
    small one got a call task."""
    workflow = make_workflow(org, name="Welcome", actions=steps(), graph={"edges": EDGES})
    for amount in AMOUNTS:
        deal = Deal.objects.create(organization=org, title=f"D{amount}", amount=amount,
                                   stage=stage(org, "proposal"), contact=contact)
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert WorkflowRun.objects.filter(workflow=workflow, status="completed").count() == 4
    return workflow


def runs_of(workflow, *amounts) -> set[int]:
    return set(WorkflowRun.objects.filter(workflow=workflow, event__entity_id__in=Deal.objects.filter(
        amount__in=amounts).values("pk")).values_list("pk", flat=True))


def edited(workflow, owner, **change):
    return workflow_update(workflow_id=workflow.pk, by=owner, actions=steps(**change))


def counts() -> tuple[int, ...]:
    return (EmailMessage.objects.count(), Task.objects.count(), WorkflowRun.objects.count(),
            FieldChange.objects.count(), AutomationEvent.objects.count(), WorkflowVersion.objects.count())


def test_a_stricter_condition_lists_exactly_the_runs_it_diverts(live, owner):
    before = counts()
    result = regression.check(edited(live, owner, over=20000))
    assert (result["checked"], result["same"], result["differ"]) == (4, 2, 2)
    listed = {d["run"]: d for d in result["differences"]}
    assert set(listed) == runs_of(live, 8000, 15000)  # not the small one, nor the one still over 20,000
    for difference in listed.values():
        assert difference["reasons"] == ["condition `Deal › Amount is greater than 20000` now false: goes to "
                                         "Create task instead of Send welcome"]
        assert difference["live_path"] == "Big deal? (yes) → Send welcome → Update field"
        assert difference["draft_path"] == "Big deal? (no) → Create task"
        assert difference["record"] == "as it is now"
    assert counts() == before  # nothing sent, made, changed or run


def test_a_new_email_subject_lists_every_run_that_sent_it_with_before_and_after(live, owner):
    before = counts()
    result = regression.check(edited(live, owner, subject="Hello {{deal.title}}"))
    listed = {d["run"]: d["reasons"] for d in result["differences"]}
    assert set(listed) == runs_of(live, 8000, 15000, 30000) and result["same"] == 1
    for amount in (8000, 15000, 30000):
        (run,) = runs_of(live, amount)
        assert listed[run] == [f"email subject changed: ‘Welcome D{amount}’ → ‘Hello D{amount}’"]
    assert counts() == before
    assert Deal.objects.filter(probability=90).count() == 3  # the real runs' stamps only, none of the replays'


def test_edits_that_change_nothing_for_these_runs_list_none(live, owner):
    result = regression.check(edited(live, owner, over=6000))  # no deal between 5,000 and 6,000
    assert (result["checked"], result["same"], result["differ"], result["differences"]) == (4, 4, 0, [])


def test_a_trigger_that_now_needs_another_stage_would_not_start(live, owner):
    workflow_update(workflow_id=live.pk, by=owner, changes={"trigger_config": {"to_stage": "negotiation"}})
    result = regression.check(type(live).objects.get(pk=live.pk))
    assert result["differ"] == 4
    assert {tuple(d["reasons"]) for d in result["differences"]} == {
        ("would not start: the deal moved to “Won”; the workflow listens for “Negotiation”",)}
    assert {d["draft_path"] for d in result["differences"]} == {"does not start"}


def test_the_latest_runs_only(live, owner, settings):
    settings.AUTOMATION = {**settings.AUTOMATION, "REGRESSION_RUNS": 2}
    result = regression.check(edited(live, owner, over=20000))
    assert (result["runs"], result["checked"]) == (2, 2)
    newest = set(WorkflowRun.objects.order_by("-started_at", "-id").values_list("pk", flat=True)[:2])
    assert {d["run"] for d in result["differences"]} == newest & runs_of(live, 8000, 15000)


# --- Worked out by a worker, asked for by the Publish page and the API ---------------------------
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def ask(user, workflow):
    return api(user).get(f"/api/v1/workflows/{workflow.pk}/regression/")


def publish_page(user, workflow) -> str:
    page = Client()
    page.force_login(user)
    return page.get(f"/crm/automation/workflows/{workflow.pk}/publish/").content.decode()


def test_the_publish_page_asks_for_it_and_lists_the_runs(live, owner, django_capture_on_commit_callbacks):
    edited(live, owner, over=20000)
    before = counts()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        waiting = publish_page(owner, live)
    assert "Replaying the last runs through version 1" in waiting and 'http-equiv="refresh"' in waiting
    made = ImpactPreview.objects.get()
    assert (made.kind, made.status, made.requested_by, len(queued)) == ("regression", "queued", owner, 1)
    regression_check(made.pk)  # the worker
    text = publish_page(owner, live)
    assert "<strong>2</strong> of the last 4 runs would go differently" in text
    assert "now false: goes to Create task instead of Send welcome" in text
    assert "Big deal? (yes) → Send welcome → Update field" in text and "Big deal? (no) → Create task" in text
    for run in runs_of(live, 8000, 15000):
        assert f'href="/crm/automation/runs/{run}/"' in text
    assert text.index("would go differently") < text.index("Publish version 2")
    assert 'http-equiv="refresh"' not in text and ImpactPreview.objects.count() == 1  # reused, not redone
    body = ask(owner, live).json()
    assert (body["checked"], body["same"], body["differ"], body["current"]) == (4, 2, 2, True)
    assert {d["run"] for d in body["differences"]} == runs_of(live, 8000, 15000)
    assert counts() == before and ImpactPreview.objects.count() == 1


def test_saved_again_it_checks_again_and_says_when_nothing_differs(live, owner, django_capture_on_commit_callbacks):
    edited(live, owner, over=20000)
    with django_capture_on_commit_callbacks(execute=False):
        assert ask(owner, live).status_code == 202
        assert ask(owner, live).status_code == 202  # joins the one under way
    regression_check(ImpactPreview.objects.get().pk)
    edited(live, owner, over=6000)
    with django_capture_on_commit_callbacks(execute=False):
        assert ask(owner, live).status_code == 202
    assert ImpactPreview.objects.filter(status="queued").count() == 1
    regression_check(ImpactPreview.objects.get(status="queued").pk)
    assert "No differences in the last 4 runs" in publish_page(owner, live)


def test_no_runs_yet(org, owner, django_capture_on_commit_callbacks):
    workflow = make_workflow(org, name="Quiet", actions=steps(), graph={"edges": EDGES})
    edited(workflow, owner, over=20000)
    with django_capture_on_commit_callbacks(execute=True):
        publish_page(owner, workflow)
    regression_check(ImpactPreview.objects.get().pk)
    assert "No runs yet" in publish_page(owner, workflow)


def test_nothing_to_check_without_saved_edits(live, owner):
    answer = ask(owner, live)
    assert answer.status_code == 409 and "no saved edits" in answer.json()["detail"]
    assert "What the edits would change" not in publish_page(owner, live)
    assert not ImpactPreview.objects.exists()


def test_an_outsider_gets_404_and_a_viewer_cannot_start_one(live, owner, viewer, outsider,
                                                            django_capture_on_commit_callbacks):
    edited(live, owner, over=20000)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert ask(outsider, live).status_code == 404
        refused = ask(viewer, live)
        text = publish_page(viewer, live)
    assert refused.status_code == 403 and "needs the ops role" in refused.json()["detail"]
    assert "someone with the ops or admin role starts it" in text and 'http-equiv="refresh"' not in text
    assert not ImpactPreview.objects.exists() and queued == []
    with django_capture_on_commit_callbacks(execute=False):
        ask(owner, live)
    regression_check(ImpactPreview.objects.get().pk)
    assert ask(viewer, live).json()["differ"] == 2  # a viewer reads what ops or an admin started
    assert ask(outsider, live).status_code == 404


def test_removed_steps_and_a_dead_end_are_named(live, owner):
    workflow_update(workflow_id=live.pk, by=owner, actions=steps(over=20000)[:2],
                    changes={"graph": {"edges": EDGES[:2]}})  # only Big deal? → Send welcome is left
    result = regression.check(type(live).objects.get(pk=live.pk))
    reasons = {d["about"]: d["reasons"] for d in result["differences"]}
    assert reasons == {
        "D1000": ["no longer reaches Create task"],
        "D8000": ["condition `Deal › Amount is greater than 20000` now false: stops before Send welcome"],
        "D15000": ["condition `Deal › Amount is greater than 20000` now false: stops before Send welcome"],
        "D30000": ["no longer reaches Update field"]}


def test_the_demo_shows_it(db, monkeypatch):
    from django.core.management import call_command

    from crm_automation.automation.models import Workflow

    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")
    drain()  # the worker runs the demo's history
    kickoff = Workflow.objects.get(name="Won deal kickoff")
    check = regression.check_request(kickoff)
    assert check is not None
    regression_check(check.pk)
    check.refresh_from_db()
    # (the demo runs it more than once; the run listed first is the won deal's, whose email changes)
    assert check.result is not None and check.result["differ"] >= 1 and check.result["checked"] >= 1
    assert check.result["differences"][0]["reasons"] == [
        "email subject changed: ‘Welcome aboard: Compiler Co brand refresh’ → ‘Welcome to the team: Compiler Co "
        "brand refresh’"]


def test_a_new_run_or_a_publish_makes_it_stale(live, owner, viewer, contact, org, django_capture_on_commit_callbacks):
    edited(live, owner, over=20000)
    with django_capture_on_commit_callbacks(execute=False):
        ask(owner, live)
    regression_check(ImpactPreview.objects.get().pk)
    assert ask(owner, live).status_code == 200  # kept: nothing changed
    deal = Deal.objects.create(organization=org, title="D9000", amount=9000, stage=stage(org, "proposal"),
                               contact=contact)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()  # a new run of the live version
    stale = ask(viewer, live)  # a viewer reads the latest, marked as not current
    assert stale.status_code == 200 and stale.json()["current"] is False and stale.json()["checked"] == 4
    with django_capture_on_commit_callbacks(execute=False):
        assert ask(owner, live).status_code == 202
    regression_check(ImpactPreview.objects.get(status="queued").pk)
    fresh = ask(owner, live).json()
    assert (fresh["checked"], fresh["differ"], fresh["current"]) == (5, 3, True)
    workflow_publish(workflow_id=live.pk, by=owner)
    assert ask(owner, live).status_code == 409  # published: nothing left to check


def test_a_check_that_fails_says_why_and_the_next_ask_after_a_while_tries_again(live, owner, monkeypatch,
                                                                             django_capture_on_commit_callbacks):
    edited(live, owner, over=20000)
    with django_capture_on_commit_callbacks(execute=False):
        ask(owner, live)

    def broken(workflow, **kwargs):
        raise RuntimeError("the sandbox broke")

    monkeypatch.setattr(regression, "check", broken)
    regression_check(ImpactPreview.objects.get().pk)
    failed = ask(owner, live)
    assert failed.status_code == 409 and "RuntimeError: the sandbox broke" in failed.json()["detail"]
    assert "could not be worked out: RuntimeError: the sandbox broke" in publish_page(owner, live)
    ImpactPreview.objects.update(finished_at=ImpactPreview.objects.get().finished_at - impact.FAILED_FOR)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert ask(owner, live).status_code == 202
    assert len(queued) == 1 and ImpactPreview.objects.filter(status="queued").count() == 1
