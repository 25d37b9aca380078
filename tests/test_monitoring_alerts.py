"""The ops guide's other thresholds (run_alerts.py): a run at work longer than 30 s, a day's runs
above 150 % of the workflow's normal (the median of 14 days), more than 50 % of the last ten
minutes' runs failed. Each fires when its threshold is crossed and not at it, is told to the
organization's admins (in the app and by email) once, and is not raised again within its window."""

from datetime import datetime, timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.utils import timezone

from crm_automation.automation.models import (
    AlertIncident,
    AutomationEvent,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.ops import alerts as alerting
from crm_automation.automation.ops import run_alerts
from crm_automation.crm.models import Notification
from tests.conftest import make_workflow


@pytest.fixture(autouse=True)
def _fresh_cache(db):
    cache.clear()  # the day's normal volume is cached per workflow id, and ids come back between tests
    yield
    cache.clear()


@pytest.fixture
def workflow(org, owner):
    return make_workflow(org, name="Kickoff")


def make_runs(workflow, count: int, *, started: datetime, seconds: float = 1, status: str = "completed") -> list[int]:
    """Finished runs as the engine leaves them, started at `started`, each taking `seconds`."""
    events = AutomationEvent.objects.bulk_create([
        AutomationEvent(organization_id=workflow.organization_id, kind="deal_stage_change", entity_type="deal",
                        entity_id=f"00000000-0000-0000-0000-{i:012d}", payload={}, processed_at=started)
        for i in range(count)])
    made = WorkflowRun.objects.bulk_create([
        WorkflowRun(organization_id=workflow.organization_id, workflow=workflow, version=workflow.current_version,
                    event=event, trigger_type="deal_stage_change", trigger_entity_type="deal",
                    trigger_entity_id=event.entity_id, status=status) for event in events])
    ids = [run.pk for run in made]
    finished = started + timedelta(seconds=seconds)
    WorkflowRun.objects.filter(pk__in=ids).update(started_at=started, finished_at=finished)
    # As the engine's finish does (runs.finish): the volume alert looks at workflows that ran lately.
    Workflow.objects.filter(pk=workflow.pk, last_run_at__lt=finished).update(last_run_at=finished)
    Workflow.objects.filter(pk=workflow.pk, last_run_at__isnull=True).update(last_run_at=finished)
    return ids


def told(user) -> int:
    return Notification.objects.filter(user=user).count()


def alert_settings(settings, **changes):
    settings.AUTOMATION = {**settings.AUTOMATION, "ALERTS": {**settings.AUTOMATION["ALERTS"], **changes}}


# --- Slow runs ----------------------------------------------------------------------------------
def test_a_run_of_exactly_30_s_is_no_alert(workflow):
    make_runs(workflow, 1, started=timezone.now() - timedelta(minutes=5), seconds=30)
    alerting.check()
    assert not AlertIncident.objects.exists()


def test_a_run_over_30_s_is_critical_and_told_once(workflow, owner, teammate, outsider):
    make_runs(workflow, 2, started=timezone.now() - timedelta(minutes=5), seconds=31)
    alerting.check()
    alerting.check()
    incident = AlertIncident.objects.get(kind="slow_run")
    assert incident.level == "critical" and incident.workflow == workflow
    assert incident.detail == "2 run(s) of “Kickoff” in the last hour took longer than 30 s (the slowest 31 s)."
    assert told(owner) == 1 and told(teammate) == 0 and told(outsider) == 0  # admins of the organization only
    assert [m.subject for m in mail.outbox] == ["Critical: runs of “Kickoff” take longer than 30 s"]


def test_the_limit_is_a_setting(workflow, settings):
    alert_settings(settings, SLOW_RUN_SECONDS=5)
    make_runs(workflow, 1, started=timezone.now() - timedelta(minutes=5), seconds=6)
    alerting.check()
    assert AlertIncident.objects.get().kind == "slow_run"


def test_a_run_that_waited_is_not_slow(workflow):
    [run] = make_runs(workflow, 1, started=timezone.now() - timedelta(minutes=30), seconds=600)
    WorkflowRunAction.objects.create(run_id=run, node_id="wait-a-bit", position=1, action_type="wait",
                                     status="completed")
    alerting.check()
    assert not AlertIncident.objects.exists()


def test_a_slow_run_alert_closes_and_is_not_raised_again_within_the_hour(workflow, owner):
    [first] = make_runs(workflow, 1, started=timezone.now() - timedelta(minutes=5), seconds=45)
    alerting.check()
    WorkflowRun.objects.filter(pk=first).update(started_at=timezone.now() - timedelta(hours=2))  # out of the hour
    alerting.check()
    assert AlertIncident.objects.get().closed_at is not None
    make_runs(workflow, 1, started=timezone.now() - timedelta(minutes=1), seconds=45)
    alerting.check()
    assert AlertIncident.objects.count() == 1 and told(owner) == 1  # no storm
    AlertIncident.objects.update(opened_at=timezone.now() - timedelta(hours=1, minutes=1))
    alerting.check()
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 1 and told(owner) == 2


# --- A day's volume -----------------------------------------------------------------------------
def _history(workflow, per_day: int, days: int = 14) -> datetime:
    """`per_day` runs on each of the `days` days before today (UTC, the organization's zone)."""
    today = run_alerts._day_start(timezone.now(), "UTC")
    for back in range(1, days + 1):
        make_runs(workflow, per_day, started=today - timedelta(days=back) + timedelta(hours=12))
    return today


def test_a_day_above_150_percent_of_the_normal_warns_once(workflow, owner, settings):
    alert_settings(settings, VOLUME_MIN_RUNS=1)
    _history(workflow, per_day=10)  # normal: 10 a day, so more than 15 is a spike
    make_runs(workflow, 15, started=timezone.now())
    alerting.check()
    assert not AlertIncident.objects.exists()
    make_runs(workflow, 1, started=timezone.now())
    alerting.check()
    alerting.check()
    incident = AlertIncident.objects.get()
    assert (incident.kind, incident.level) == ("volume", "warning")
    assert "above 150 % of its normal 10 runs a day" in incident.detail
    assert told(owner) == 1


def test_a_volume_alert_is_raised_once_a_day(workflow, owner, settings):
    alert_settings(settings, VOLUME_MIN_RUNS=1)
    _history(workflow, per_day=10)
    make_runs(workflow, 16, started=timezone.now())
    alerting.check()
    alert_settings(settings, VOLUME_MIN_RUNS=1, VOLUME_FACTOR=2.0)  # 16 is no longer a spike: it closes
    alerting.check()
    assert AlertIncident.objects.get().closed_at is not None
    alert_settings(settings, VOLUME_FACTOR=1.5)  # and is one again, the same day
    alerting.check()
    assert AlertIncident.objects.count() == 1 and told(owner) == 1
    yesterday = run_alerts._day_start(timezone.now(), "UTC") - timedelta(seconds=1)
    AlertIncident.objects.update(opened_at=yesterday)  # as if it had been yesterday's
    alerting.check()
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 1 and told(owner) == 2


def test_too_little_history_is_no_normal(workflow, settings):
    alert_settings(settings, VOLUME_MIN_RUNS=1)
    _history(workflow, per_day=10, days=6)  # ran on 6 of the 14 days: fewer than VOLUME_MIN_DAYS (7)
    make_runs(workflow, 100, started=timezone.now())
    alerting.check()
    assert not AlertIncident.objects.exists()


def test_a_quiet_workflow_needs_a_busy_day_to_spike(workflow):
    _history(workflow, per_day=2)  # 3 × 150 % … but fewer than VOLUME_MIN_RUNS (20) today is no spike
    make_runs(workflow, 19, started=timezone.now())
    alerting.check()
    assert not AlertIncident.objects.exists()
    make_runs(workflow, 1, started=timezone.now())
    alerting.check()
    assert AlertIncident.objects.get().kind == "volume"


# --- Error rate ---------------------------------------------------------------------------------
def test_half_failed_is_not_above_half(workflow):
    now = timezone.now() - timedelta(minutes=2)
    make_runs(workflow, 5, started=now, status="failed")
    make_runs(workflow, 5, started=now)
    alerting.check()
    assert not AlertIncident.objects.exists()


def test_more_than_half_failed_in_ten_minutes_is_critical_once(workflow, owner):
    now = timezone.now() - timedelta(minutes=2)
    make_runs(workflow, 6, started=now, status="failed")
    make_runs(workflow, 4, started=now)
    make_runs(workflow, 20, started=timezone.now() - timedelta(minutes=11))  # before the window: not counted
    alerting.check()
    alerting.check()
    incident = AlertIncident.objects.get(kind="error_rate")
    assert incident.level == "critical"
    assert incident.detail == ("6 of the 10 runs of “Kickoff” in the last 10 minutes failed (60 %, more than 50 %).")
    # (the hour's success rate, 24 of 30, is an alert of its own: alerts.py)
    assert Notification.objects.filter(user=owner, title__startswith="Critical: 60 %").count() == 1


def test_one_failure_of_few_runs_is_no_alert(workflow):
    make_runs(workflow, 9, started=timezone.now() - timedelta(minutes=1), status="failed")
    alerting.check()
    assert not AlertIncident.objects.exists()


def test_an_error_rate_that_flaps_is_told_once_per_ten_minutes(workflow, owner):
    failed = make_runs(workflow, 10, started=timezone.now() - timedelta(minutes=1), status="failed")
    alerting.check()
    WorkflowRun.objects.filter(pk__in=failed[:6]).update(status="completed")  # 4 of 10: it recovers
    alerting.check()
    assert AlertIncident.objects.get().closed_at is not None
    WorkflowRun.objects.filter(pk__in=failed[:6]).update(status="failed")  # and fails again
    alerting.check()
    assert AlertIncident.objects.count() == 1 and told(owner) == 1
    AlertIncident.objects.update(opened_at=timezone.now() - timedelta(minutes=11))
    alerting.check()
    assert AlertIncident.objects.filter(closed_at__isnull=True).count() == 1 and told(owner) == 2
