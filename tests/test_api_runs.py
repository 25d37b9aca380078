"""/api/v1/runs/ and /api/v1/approvals/: the run history as a cursor over its index, one run with
its steps, retry / resume / cancel / bulk retry, and the questions a caller may answer; an
owner / teammate / viewer / outsider on each."""

from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.db.models import Case, Value, When
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.automation.selectors import runs_of_organization
from crm_automation.crm.models import Deal, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage
from tests.test_api_workflows import ROLES, api
from tests.test_approvals import ASK, SIDES
from tests.test_error_policies import flow, provider
from tests.test_graph_engine import win
from tests.test_waits_and_gates import proposal_sent

RUNS, APPROVALS = "/api/v1/runs/", "/api/v1/approvals/"


@pytest.fixture
def people(owner, teammate, viewer, outsider):
    return {"owner": owner, "teammate": teammate, "viewer": viewer, "outsider": outsider}


def bulk_runs(workflow, specs: list[dict]) -> list[WorkflowRun]:
    """One run per spec (minutes_ago, and any run field), inserted in bulk: two INSERTs and one
    UPDATE (started_at is set on insert, so the times come after)."""
    now = timezone.now()
    events = AutomationEvent.objects.bulk_create([AutomationEvent(
        organization_id=workflow.organization_id, kind=workflow.trigger_type, entity_type="deal",
        entity_id=spec["trigger_entity_id"], processed_at=now) for spec in specs])
    runs = WorkflowRun.objects.bulk_create([WorkflowRun(
        organization_id=workflow.organization_id, workflow=workflow, version=workflow.current_version, event=event,
        trigger_type=workflow.trigger_type, trigger_entity_type="deal",
        **{k: v for k, v in spec.items() if k != "minutes_ago"}) for event, spec in zip(events, specs, strict=True)])
    WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).update(started_at=Case(
        *[When(pk=run.pk, then=Value(now - timedelta(minutes=spec["minutes_ago"])))
          for run, spec in zip(runs, specs, strict=True)]))
    return runs


@pytest.fixture
def history(org, other_org, deal, contact):
    """120 runs over two workflows and two deals (every third failed, one a minute), one run kept
    without history, and a run of another organization."""
    other_deal = Deal.objects.create(organization=org, title="Other", stage=stage(org, "new"), contact=contact)
    won, manual = make_workflow(org, name="Won"), make_workflow(org, name="By hand", trigger_type="manual_deal",
                                                                trigger_config={})
    for workflow, minutes in ((won, range(0, 120, 2)), (manual, range(1, 120, 2))):
        bulk_runs(workflow, [{"minutes_ago": m, "status": "failed" if m % 3 == 0 else "completed",
                              "trigger_entity_id": deal.pk if m < 60 else other_deal.pk} for m in minutes])
    bulk_runs(won, [{"minutes_ago": 0, "history_suppressed": True, "trigger_entity_id": deal.pk}])
    theirs = make_workflow(other_org, name="Theirs")
    bulk_runs(theirs, [{"minutes_ago": 0, "trigger_entity_id": deal.pk}])
    return {"won": won, "manual": manual, "deal": deal, "other_deal": other_deal}


def pages(client, url: str) -> list[list[dict]]:
    found = []
    while url:
        body = client.get(url).json()
        found.append(body["results"])
        url = body["next"]
    return found


def test_the_run_history_is_a_cursor_newest_first(history, owner):
    client = api(owner)
    found = pages(client, f"{RUNS}?page_size=50")
    assert [len(p) for p in found] == [50, 50, 20]
    runs = [r for p in found for r in p]
    expected = list(runs_of_organization(organization_id=history["won"].organization_id).values_list("pk", flat=True))
    assert [r["id"] for r in runs] == expected and len(set(expected)) == 120  # not the suppressed, not theirs
    assert [r["started_at"] for r in runs] == sorted((r["started_at"] for r in runs), reverse=True)
    second = client.get(client.get(f"{RUNS}?page_size=50").json()["next"]).json()
    assert [r["id"] for r in client.get(second["previous"]).json()["results"]] == [r["id"] for r in found[0]]
    assert runs[0]["workflow_name"] == "Won" and runs[0]["version"] == 1 and runs[0]["entity_type"] == "deal"


def test_the_run_history_filters(history, owner):
    client = api(owner)

    def ids(query):
        return {r["id"] for p in pages(client, f"{RUNS}?page_size=200&{query}") for r in p}

    won = WorkflowRun.objects.filter(history_suppressed=False, workflow=history["won"])
    assert ids(f"workflow={history['won'].pk}") == set(won.values_list("pk", flat=True))
    assert len(ids(f"workflow={history['won'].pk}")) == 60
    assert len(ids("status=failed")) == 40 and len(ids("trigger_type=manual_deal")) == 60
    assert len(ids(f"entity_id={history['other_deal'].pk}")) == 60
    assert len(ids(f"status=failed&workflow={history['manual'].pk}")) == 20
    since = (timezone.now() - timedelta(minutes=29, seconds=30)).isoformat()
    assert len(ids(f"since={since.replace('+', '%2B')}")) == 30
    assert ids("simulated=true") == set()
    for bad in ("status=running", "workflow=abc", "entity_id=nope", "since=yesterday", f"workflow={'9' * 30}",
                "cursor=cD1nYXJiYWdlJm89MQ%3D%3D"):  # a cursor whose position is no time
        assert client.get(f"{RUNS}?{bad}").status_code == 400, bad
    assert client.get(f"{RUNS}?cursor=garbage").status_code == 404  # DRF: "Invalid cursor"
    old_times = client.get(f"{RUNS}?cursor=cD0yMDI0LTAxLTAxVDAwOjAwOjAwJTJCMDA6MDAmbz05OTk5OTk%3D")
    assert old_times.status_code == 200 and old_times.json()["results"] == []  # before every run
    assert len(client.get(f"{RUNS}?page_size=-1").json()["results"]) == 50  # the default size


@pytest.mark.skipif(connection.vendor != "sqlite", reason="EXPLAIN QUERY PLAN is SQLite's")
def test_the_run_history_reads_its_index_without_sorting(history, owner):
    with CaptureQueriesContext(connection) as queries:
        api(owner).get(f"{RUNS}?page_size=50&status=completed")
    (sql,) = [q["sql"] for q in queries if 'FROM "workflow_runs"' in q["sql"] and "ORDER BY" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "workflow_ru_organiz_cb5644_idx" in plan and "TEMP B-TREE" not in plan, plan


def test_a_run_with_its_steps(org, deal, owner, outsider):
    make_workflow(org)  # task, probability, email
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get()
    body = api(owner).get(f"{RUNS}{run.pk}/").json()
    assert body["status"] == "completed" and body["version"] == 1 and body["entity_id"] == str(deal.pk)
    steps = body["steps"]
    assert [(s["node_id"], s["label"], s["status"]) for s in steps] == [
        ("create-task", "Create task", "completed"), ("update-field", "Update probability", "completed"),
        ("send-email", "Send email", "completed")]
    assert steps[1]["result"]["new"] == 100 and steps[0]["attempts"] == 1 and steps[0]["token"] == ""
    assert steps[0]["started_at"] and steps[0]["finished_at"] and steps[0]["duration_ms"] >= 0
    assert api(outsider).get(f"{RUNS}{run.pk}/").status_code == 404
    assert api(outsider).get(RUNS).json()["results"] == []
    assert api(owner).get(f"{RUNS}{'9' * 30}/").status_code == 404


# --- What a person can do to a run --------------------------------------------------------------
@pytest.fixture
def failed(org, deal, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"))
    run = win(org, deal, *flow())  # the workflow's policy: stop
    monkeypatch.undo()
    assert run.status == "failed"
    return run


@pytest.fixture
def paused(org, deal, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"))
    run = win(org, deal, *flow({"policy": "pause"}))
    assert run.status == "paused"
    return run


@pytest.fixture
def waiting(org, deal):
    return proposal_sent(org, deal)


CONTROLS = [("retry", "failed", None), ("resume", "paused", {"how": "skip"}), ("cancel", "waiting", None)]


@pytest.mark.parametrize(("verb", "state", "body"), CONTROLS, ids=[c[0] for c in CONTROLS])
@pytest.mark.parametrize("role", ROLES)
def test_who_may_retry_resume_or_cancel(request, people, role, verb, state, body):
    run = request.getfixturevalue(state)
    response = api(people[role]).post(f"{RUNS}{run.pk}/{verb}/", body, format="json")
    assert response.status_code == {"owner": 200, "teammate": 200, "viewer": 403, "outsider": 404}[role]
    run.refresh_from_db()
    if response.status_code == 200:
        assert response.json()["status"] == run.status == ("cancelled" if verb == "cancel" else "started")
    else:
        assert run.status == state


def test_a_retried_run_completes_and_what_the_state_forbids_is_a_409(failed, teammate):
    client = api(teammate)
    assert client.post(f"{RUNS}{failed.pk}/retry/").status_code == 200
    refused = client.post(f"{RUNS}{failed.pk}/retry/")
    assert refused.status_code == 409 and "did not fail" in refused.json()["detail"]
    continue_runs([failed.pk])
    assert WorkflowRun.objects.get().status == "completed" and Task.objects.get().title == "After"
    for verb, body in (("resume", {"how": "retry"}), ("cancel", None)):
        assert client.post(f"{RUNS}{failed.pk}/{verb}/", body, format="json").status_code == 409


def test_resume_says_how_and_goes_on(paused, owner):
    client = api(owner)
    assert client.post(f"{RUNS}{paused.pk}/resume/", {"how": "sideways"}, format="json").status_code == 400
    assert client.post(f"{RUNS}{paused.pk}/resume/", {}, format="json").status_code == 400
    assert client.post(f"{RUNS}{paused.pk}/resume/", {"how": "retry"}, format="json").status_code == 200
    continue_runs([paused.pk])
    assert WorkflowRun.objects.get().status == "completed" and len(mail.outbox) == 1


def test_a_cancelled_run_stays_cancelled(waiting, owner):
    assert api(owner).post(f"{RUNS}{waiting.pk}/cancel/").json()["status"] == "cancelled"
    assert api(owner).post(f"{RUNS}{waiting.pk}/cancel/").status_code == 409
    steps = api(owner).get(f"{RUNS}{waiting.pk}/").json()["steps"]
    assert {s["status"] for s in steps} == {"skipped"} and not Task.objects.exists()


@pytest.mark.parametrize("role", ROLES)
def test_bulk_retry_of_failures_since_a_time(failed, people, role):
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    response = api(people[role]).post(f"{RUNS}retry/", {"workflow": failed.workflow_id, "since": since},
                                      format="json")
    expected = {"owner": 200, "teammate": 200, "viewer": 403, "outsider": 400}[role]  # not a workflow of theirs
    assert response.status_code == expected, response.content
    if expected == 200:
        assert response.json() == {"retried": 1, "problems": []}
        assert api(people[role]).post(f"{RUNS}retry/", {"workflow": failed.workflow_id, "since": since},
                                      format="json").json() == {"retried": 0, "problems": []}
    no_since = api(people["owner"]).post(f"{RUNS}retry/", {"workflow": failed.workflow_id}, format="json")
    assert no_since.status_code == 400 and "since" in no_since.json()


# --- Approvals ----------------------------------------------------------------------------------
@pytest.fixture
def asked(org, deal):
    run = win(org, deal, *SIDES)  # a question for admins
    assert run.status == "waiting"
    return run


@pytest.mark.parametrize("role", ROLES)
def test_who_sees_and_answers_a_question_for_admins(asked, people, role):
    client = api(people[role])
    listed = client.get(APPROVALS).json()["results"]
    step = asked.actions.get(node_id="ask")
    answer = client.post(f"{APPROVALS}{step.pk}/answer/", {"decision": "approved", "comment": "OK"}, format="json")
    if role == "owner":
        assert [(q["id"], q["run"], q["label"], q["prompt"], q["role"]) for q in listed] == [
            (step.pk, asked.pk, "Approval", "Approve the terms of Website?", "admin")]
        assert answer.status_code == 200 and answer.json()["status"] == "started"
        continue_runs([asked.pk])
        assert Task.objects.get().title == "Send Website terms (OK)"
        assert client.get(APPROVALS).json()["results"] == []
    else:
        assert listed == [] and answer.status_code == (404 if role == "outsider" else 403)
        assert WorkflowRun.objects.get().status == "waiting" and not Task.objects.exists()


def test_a_question_for_ops_is_theirs_and_an_answer_counts_once(org, deal, teammate, viewer):
    run = win(org, deal, [{**ASK, "config": {**ASK["config"], "role": "ops"}}, *SIDES[0][1:]], SIDES[1])
    step = run.actions.get(node_id="ask")
    assert [q["id"] for q in api(teammate).get(APPROVALS).json()["results"]] == [step.pk]
    assert api(viewer).get(APPROVALS).json()["results"] == []
    url = f"{APPROVALS}{step.pk}/answer/"
    assert api(teammate).post(url, {"decision": "maybe"}, format="json").status_code == 400
    assert api(teammate).post(url, {"decision": "approved", "comment": "x" * 2001}, format="json").status_code == 400
    assert api(teammate).post(url, {"decision": "rejected"}, format="json").status_code == 200
    again = api(teammate).post(url, {"decision": "approved"}, format="json")
    assert again.status_code == 409 and "no open question" in again.json()["detail"]
    not_a_question = run.actions.exclude(node_id="ask").first() or step
    assert api(teammate).post(f"{APPROVALS}{not_a_question.pk + 1000}/answer/", {"decision": "approved"},
                              format="json").status_code == 404


@pytest.mark.slow
def test_ten_thousand_runs_page_by_cursor_without_a_gap_or_a_repeat(org, deal, owner):
    """Many runs share a start time (a burst): the cursor still walks them all, newest first."""
    workflow = make_workflow(org, name="Busy")
    events = AutomationEvent.objects.bulk_create([AutomationEvent(
        organization_id=org.pk, kind=workflow.trigger_type, entity_type="deal", entity_id=deal.pk,
        processed_at=timezone.now()) for _ in range(10_000)], batch_size=2000)
    WorkflowRun.objects.bulk_create([WorkflowRun(  # a burst: their start times are (nearly) all the same
        organization_id=org.pk, workflow=workflow, version=workflow.current_version, event=event,
        trigger_type=workflow.trigger_type, trigger_entity_type="deal", trigger_entity_id=deal.pk)
        for event in events], batch_size=2000)
    found = [r["id"] for page in pages(api(owner), f"{RUNS}?page_size=200") for r in page]
    assert len(found) == 10_000 and len(set(found)) == 10_000
    assert found == list(WorkflowRun.objects.order_by("-started_at", "-id").values_list("pk", flat=True))
