"""Retention: finished runs, decisions and events older than the plan keeps are deleted in
batches; unfinished runs (and the events they need) stay however old; other organizations and
newer history are untouched; the daily schedule exists."""

from datetime import timedelta
from io import StringIO

from django.core.management import call_command
from django.utils import timezone
from django_q.models import Schedule

from crm_automation.automation.models import (
    AutomationEvent,
    LifecycleEvent,
    WorkflowDecision,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.ops import retention
from crm_automation.crm.models import Deal, Organization
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage


def age(days: int) -> None:
    """Everything recorded so far happened `days` ago."""
    then = timezone.now() - timedelta(days=days)
    WorkflowRun.objects.update(started_at=then, finished_at=then)
    WorkflowDecision.objects.update(created_at=then)
    AutomationEvent.objects.update(created_at=then)
    LifecycleEvent.objects.update(occurred_at=then)


def won(org, deal) -> None:
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()


def test_history_past_the_plans_days_goes_and_newer_history_stays(org, deal, settings):
    settings.RUN_HISTORY_DAYS = {**settings.RUN_HISTORY_DAYS, "pro": 90}
    make_workflow(org)
    won(org, deal)
    age(100)
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "proposal"))
    won(org, deal)  # a second run, today
    assert WorkflowRun.objects.count() == 2
    removed = retention.prune_history()
    assert removed["runs"] == 1 and removed["decisions"] >= 1 and removed["events"] >= 1
    assert removed["lifecycle_events"] >= 2  # the old run's started and completed; today's stay
    assert LifecycleEvent.objects.filter(run_id=WorkflowRun.objects.get().pk).count() == 2
    (kept,) = WorkflowRun.objects.all()
    assert kept.started_at > timezone.now() - timedelta(days=1)
    assert WorkflowRunAction.objects.filter(run=kept).exists()
    assert not WorkflowRunAction.objects.exclude(run=kept).exists()
    assert retention.prune_history() == {"runs": 0, "decisions": 0, "events": 0, "lifecycle_events": 0}


def test_unfinished_runs_and_their_events_stay_however_old(org, deal):
    make_workflow(org)
    won(org, deal)
    run = WorkflowRun.objects.get()
    age(400)
    WorkflowRun.objects.filter(pk=run.pk).update(status="waiting", finished_at=None)
    retention.prune_history()
    assert WorkflowRun.objects.filter(pk=run.pk).exists()
    assert AutomationEvent.objects.filter(pk=run.event_id).exists()


def test_enterprise_keeps_longer_and_other_organizations_are_untouched(org, other_org, deal):
    Organization.objects.filter(pk=org.pk).update(plan="enterprise")
    make_workflow(org)
    won(org, deal)
    age(200)  # within Enterprise's 365 days
    assert retention.prune_history()["runs"] == 0
    assert WorkflowRun.objects.count() == 1


def test_the_daily_schedule_and_the_command(org):
    schedule = Schedule.objects.get(name="automation-prune-history")
    assert (schedule.func, schedule.schedule_type) == (retention.PRUNE_TASK, Schedule.DAILY)
    out = StringIO()
    call_command("prune_history", stdout=out)
    assert out.getvalue().startswith("Deleted 0 runs")
