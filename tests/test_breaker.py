"""The circuit breaker: more than 20 % of at least 10 runs failing in 5 minutes pauses the
workflow, tells its admins and says why on its page; after the cool-down it is activated again
on trial (and paused again if it still fails), unless someone changed it meanwhile."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, CircuitBreak, Workflow, WorkflowRun
from crm_automation.automation.ops import breaker
from crm_automation.automation.services.workflows import workflow_update
from crm_automation.crm.models import Notification
from tests.conftest import make_workflow


def runs(workflow, *, failed: int, completed: int, ago: timedelta = timedelta(minutes=1)) -> None:
    """Finished runs of the workflow, as the engine leaves them."""
    started = timezone.now() - ago
    for i in range(failed + completed):
        event = AutomationEvent.objects.create(organization_id=workflow.organization_id, kind="deal_stage_change",
                                               entity_type="deal", entity_id=f"00000000-0000-0000-0000-{i:012d}",
                                               payload={}, processed_at=started)
        run = WorkflowRun.objects.create(organization_id=workflow.organization_id, workflow=workflow,
                                         version=workflow.current_version, event=event,
                                         trigger_type="deal_stage_change", trigger_entity_type="deal",
                                         trigger_entity_id=event.entity_id,
                                         status="failed" if i < failed else "completed")
        WorkflowRun.objects.filter(pk=run.pk).update(started_at=started, finished_at=started + timedelta(seconds=1))


@pytest.fixture
def workflow(org, owner):
    return make_workflow(org, name="Kickoff")


def test_too_many_failures_pause_the_workflow_and_tell_the_admins(workflow, owner, client):
    runs(workflow, failed=3, completed=7)  # 30 % of 10
    assert breaker.check() == 1
    workflow.refresh_from_db()
    assert workflow.status == "paused"
    brk = CircuitBreak.objects.get()
    assert brk.reason == "3 of the 10 runs that finished in the last 5 minutes failed (30 %, more than 20 %)"
    note = Notification.objects.get(user=owner)
    assert note.title == "“Kickoff” was paused: too many runs failed"
    assert note.link == f"/crm/automation/runs/?workflow={workflow.pk}&status=failed"
    client.force_login(owner)
    page = client.get(f"/crm/automation/workflows/{workflow.pk}/edit/").content.decode()
    assert "Circuit breaker" in page and "3 of the 10 runs" in page
    assert "Paused by the circuit breaker" in client.get("/crm/automation/").content.decode()


def test_few_runs_or_a_low_failure_rate_or_old_failures_do_not_trip(workflow):
    runs(workflow, failed=5, completed=4)  # 9 runs: below the minimum
    assert breaker.check() == 0
    runs(workflow, failed=0, completed=20)  # 5 of 29: 17 %
    assert breaker.check() == 0
    other = make_workflow(workflow.organization, name="Old failures")
    runs(other, failed=10, completed=0, ago=timedelta(minutes=10))
    assert breaker.check() == 0
    assert Workflow.objects.filter(status="paused").count() == 0


def test_after_the_cool_down_it_is_tried_again_and_paused_again_if_it_still_fails(workflow):
    runs(workflow, failed=5, completed=5)
    breaker.check()
    later = timezone.now() + timedelta(minutes=16)
    breaker.check(now=later)
    workflow.refresh_from_db()
    assert workflow.status == "activated"
    assert CircuitBreak.objects.get().outcome == "activated again on trial"
    # The failures from before the trial do not count again; new ones do.
    assert breaker.check(now=later + timedelta(seconds=30)) == 0
    runs(workflow, failed=10, completed=0, ago=timedelta(seconds=-(16 * 60 + 40)))
    assert breaker.check(now=later + timedelta(minutes=1)) == 1
    assert CircuitBreak.objects.count() == 2


def test_a_workflow_someone_changed_during_the_cool_down_is_left_to_them(workflow, owner):
    runs(workflow, failed=5, completed=5)
    breaker.check()
    workflow_update(workflow_id=workflow.pk, by=owner, changes={"description": "Fixed the email address"})
    breaker.check(now=timezone.now() + timedelta(minutes=16))
    workflow.refresh_from_db()
    assert workflow.status == "paused"
    assert CircuitBreak.objects.get().outcome.startswith("left as it is: someone changed")


def test_the_breaker_runs_every_minute_on_its_own_schedule(workflow):
    from django_q.models import Schedule

    from crm_automation.automation.runtime.tasks import watch

    assert Schedule.objects.get(name="automation-watch").func == "crm_automation.automation.runtime.tasks.watch"
    runs(workflow, failed=4, completed=6)
    watch()
    assert Workflow.objects.get(pk=workflow.pk).status == "paused"


def test_viewers_see_the_breaker_too(workflow, viewer):
    runs(workflow, failed=4, completed=6)
    breaker.check()
    client = Client()
    client.force_login(viewer)
    assert "Circuit breaker" in client.get(f"/crm/automation/workflows/{workflow.pk}/edit/").content.decode()
