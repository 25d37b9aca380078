"""Lifecycle events: each verb of a workflow and each run's start and end writes one event in the
transaction that made it (none when it rolls back or is refused); the API lists them with a cursor
to the organization's members only."""

import pytest
from django.db import transaction

from crm_automation.automation.models import LifecycleEvent, RunStatus, WorkflowRun
from crm_automation.automation.services.runs import run_cancel
from crm_automation.automation.services.workflows import (
    workflow_delete,
    workflow_publish,
    workflow_transition,
    workflow_update,
)
from crm_automation.crm.models import Deal
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.refusals import Refused
from tests.conftest import drain, make_workflow, stage
from tests.test_error_policies import flow, provider
from tests.test_graph_engine import win

WAIT = [{"id": "wait", "type": "wait", "label": "Wait a day", "config": {"delayAmount": 1, "delayUnit": "days"}}]


def types(**filters) -> list[str]:
    return list(LifecycleEvent.objects.filter(**filters).order_by("id").values_list("type", flat=True))


def won(org, deal) -> None:
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()


def test_each_verb_of_a_workflow_writes_its_event(org, owner):
    workflow = make_workflow(org, activate=False, name="Kickoff")
    workflow_update(workflow_id=workflow.pk, by=owner, changes={"description": "Start the project"})
    workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)
    workflow_update(workflow_id=workflow.pk, by=owner, changes={"description": "Start it well"})
    workflow_publish(workflow_id=workflow.pk, by=owner)
    workflow_transition(workflow_id=workflow.pk, name="pause", by=owner)
    workflow_transition(workflow_id=workflow.pk, name="archive", by=owner)
    assert types(workflow_id=workflow.pk) == [
        "workflow.created", "workflow.updated", "workflow.activated", "workflow.updated", "workflow.published",
        "workflow.paused", "workflow.archived"]
    activated = LifecycleEvent.objects.get(workflow_id=workflow.pk, type="workflow.activated")
    assert activated.organization_id == org.pk
    assert activated.data["workflow"] == {"id": workflow.pk, "key": "kickoff", "name": "Kickoff",
                                          "status": "activated", "version": 1,
                                          "trigger_type": "deal_stage_change"}
    assert activated.data["by"] == owner.username
    published = LifecycleEvent.objects.get(workflow_id=workflow.pk, type="workflow.published")
    assert published.data["workflow"]["version"] == workflow.versions.order_by("-number").first().number


def test_a_deleted_draft_keeps_its_events_and_says_it_was_deleted(org, owner):
    workflow = make_workflow(org, activate=False)
    workflow_delete(workflow_id=workflow.pk, by=owner)
    assert types(workflow_id=workflow.pk) == ["workflow.created", "workflow.deleted"]


def test_a_refused_or_rolled_back_change_writes_no_event(org, owner, viewer):
    workflow = make_workflow(org)
    before = LifecycleEvent.objects.count()
    with pytest.raises(Refused):
        workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)  # already activated
    with pytest.raises(Exception, match="admins"):
        workflow_transition(workflow_id=workflow.pk, name="pause", by=viewer)
    with pytest.raises(RuntimeError), transaction.atomic():
        workflow_transition(workflow_id=workflow.pk, name="pause", by=owner)
        raise RuntimeError("the caller's transaction fails after the pause")
    assert LifecycleEvent.objects.count() == before


def test_a_run_writes_started_then_completed(org, deal):
    workflow = make_workflow(org)
    won(org, deal)
    run = WorkflowRun.objects.get(workflow=workflow)
    assert run.status == RunStatus.COMPLETED
    assert types(run_id=run.pk) == ["run.started", "run.completed"]
    completed = LifecycleEvent.objects.get(run_id=run.pk, type="run.completed")
    assert completed.workflow_id == workflow.pk and completed.organization_id == org.pk
    assert completed.data["run"]["status"] == "completed"
    assert completed.data["run"]["record"] == {"type": "deal", "id": str(deal.pk)}


def test_a_failed_run_and_a_cancelled_run_say_so(org, deal, owner, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"))
    failed = win(org, deal, *flow())
    assert failed.status == RunStatus.FAILED
    assert types(run_id=failed.pk) == ["run.started", "run.failed"]
    assert "refused" in LifecycleEvent.objects.get(run_id=failed.pk, type="run.failed").data["run"]["error"]
    waiting = make_workflow(org, actions=WAIT, name="Later")
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "proposal"))
    won(org, deal)
    parked = WorkflowRun.objects.get(workflow=waiting)
    assert types(run_id=parked.pk) == ["run.started"]  # waiting is not an ending
    run_cancel(run_id=parked.pk, by=owner)
    assert types(run_id=parked.pk) == ["run.started", "run.cancelled"]


def test_a_run_paused_by_its_error_policy_says_so(org, deal, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"))
    run = win(org, deal, *flow({"policy": "pause"}))
    assert run.status == RunStatus.PAUSED
    assert types(run_id=run.pk) == ["run.started", "run.paused"]


# --- The API --------------------------------------------------------------------------------------
def test_members_list_their_organizations_events_newest_first_with_a_cursor(org, other_org, viewer, outsider,
                                                                           client):
    for number in range(5):
        make_workflow(org, activate=False, name=f"Flow {number}")
    make_workflow(other_org, activate=False, name="Theirs")
    client.force_login(viewer)
    first = client.get("/api/v1/lifecycle-events/?page_size=3").json()
    assert [e["data"]["workflow"]["name"] for e in first["results"]] == ["Flow 4", "Flow 3", "Flow 2"]
    second = client.get(first["next"]).json()
    assert [e["data"]["workflow"]["name"] for e in second["results"]] == ["Flow 1", "Flow 0"]
    assert second["next"] is None
    oldest = first["results"][-1]["id"]
    after = client.get(f"/api/v1/lifecycle-events/?after={oldest}").json()
    assert [e["data"]["workflow"]["name"] for e in after["results"]] == ["Flow 3", "Flow 4"]  # oldest first
    theirs = LifecycleEvent.objects.get(organization=other_org)
    assert client.get(f"/api/v1/lifecycle-events/{theirs.pk}/").status_code == 404
    client.force_login(outsider)
    listed = client.get("/api/v1/lifecycle-events/").json()["results"]
    assert [e["id"] for e in listed] == [theirs.pk]


def test_the_list_filters_by_type_workflow_and_run_and_refuses_nonsense(org, deal, viewer, client):
    workflow = make_workflow(org)
    won(org, deal)
    run = WorkflowRun.objects.get()
    client.force_login(viewer)
    listed = client.get("/api/v1/lifecycle-events/?type=run.started,run.completed").json()["results"]
    assert [e["type"] for e in listed] == ["run.completed", "run.started"]
    assert [e["type"] for e in client.get(f"/api/v1/lifecycle-events/?run={run.pk}").json()["results"]] == [
        "run.completed", "run.started"]
    assert {e["workflow_id"] for e in client.get(
        f"/api/v1/lifecycle-events/?workflow={workflow.pk}").json()["results"]} == {workflow.pk}
    bad_type = client.get("/api/v1/lifecycle-events/?type=run.exploded")
    assert bad_type.status_code == 400 and "run.exploded" in bad_type.json()["type"][0]
    bad_after = client.get("/api/v1/lifecycle-events/?after=1;DROP")
    assert bad_after.status_code == 400 and "after" in bad_after.json()
    for odd in ("²", "٣", "-1"):  # digits to str.isdigit(), not to int(): a 400, not a 500
        assert client.get(f"/api/v1/lifecycle-events/?after={odd}").status_code == 400


def test_no_one_outside_reads_events_without_signing_in(client):
    assert client.get("/api/v1/lifecycle-events/").status_code in (401, 403)


def test_the_breaker_opening_and_closing_and_a_high_failure_rate_are_events(org):
    from datetime import timedelta

    from django.utils import timezone

    from crm_automation.automation.ops import alerts, breaker
    from tests.test_breaker import runs

    workflow = make_workflow(org, name="Kickoff")
    runs(workflow, failed=3, completed=17)  # 85 %: an alert, not yet the breaker (15 % < 20 %)
    alerts.check()
    alerts.check()  # told once per incident
    (high,) = LifecycleEvent.objects.filter(type="workflow.high_failure_rate")
    assert high.workflow_id == workflow.pk
    assert {k: high.data[k] for k in ("level", "runs", "failed", "failure_rate")} == {
        "level": "warning", "runs": 20, "failed": 3, "failure_rate": 0.15}
    runs(workflow, failed=5, completed=0)
    assert breaker.check() == 1
    assert types(workflow_id=workflow.pk)[-2:] == ["workflow.paused", "workflow.breaker_opened"]
    opened = LifecycleEvent.objects.get(type="workflow.breaker_opened")
    assert "8 of the 25 runs" in opened.data["reason"] and opened.data["workflow"]["status"] == "paused"
    breaker.check(now=timezone.now() + timedelta(minutes=16))
    assert types(workflow_id=workflow.pk)[-2:] == ["workflow.activated", "workflow.breaker_closed"]
    closed = LifecycleEvent.objects.get(type="workflow.breaker_closed")
    assert closed.data["outcome"] == "activated again on trial" and closed.data["workflow"]["status"] == "activated"


def test_a_run_whose_worker_died_has_one_start_and_one_end(org, deal, monkeypatch):
    """Delivered twice (the first worker killed mid-run, the lease expired, the sweep resumed it):
    still one run.started (written with the run) and one run.completed (with the run's end)."""
    from crm_automation.automation.nodes import REGISTRY
    from crm_automation.automation.runtime.tasks import sweep
    from tests.test_engine import EMAIL_FIRST, die, dispatched_run, execute_run, expire_leases

    make_workflow(org, actions=EMAIL_FIRST)
    run_id = dispatched_run(org, deal)
    monkeypatch.setattr(REGISTRY["create_task"], "apply", die)
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id)
    monkeypatch.undo()
    assert types(run_id=run_id) == ["run.started"]
    expire_leases()
    assert sweep(fan_out=False)["resumed"] == 1
    assert types(run_id=run_id) == ["run.started", "run.completed"]
