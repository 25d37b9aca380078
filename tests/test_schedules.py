"""Schedule triggers: the configs and their words, due times in the organization's time zone
across daylight-saving changes, exactly one run per due time however many sweeps race, one run
for a missed window after downtime, and nothing while the workflow is paused."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from crm_automation.automation.models import (
    AutomationEvent,
    ScheduleTick,
    WorkflowDecision,
    WorkflowRun,
    WorkflowSchedule,
)
from crm_automation.automation.services.workflows import workflow_transition, workflow_update
from crm_automation.automation.triggers import schedules
from crm_automation.crm.models import Organization, Task
from tests.conftest import drain, make_workflow
from tests.racing import race

BERLIN = ZoneInfo("Europe/Berlin")
EVERY_15 = {"frequency": "every-n-minutes", "intervalMinutes": 15}


REVIEW = [{"type": "create_task", "config": {
    "title": "Review for {{trigger.scheduled_for}} (missed {{trigger.missed}})"}}]


def scheduled(org, config=None, name="Review", **kwargs):
    return make_workflow(org, name=name, trigger_type="schedule", actions=REVIEW,
                         trigger_config=EVERY_15 if config is None else config, **kwargs)


def local(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


@pytest.mark.parametrize("config, cron, words", [
    ({"frequency": "daily", "time": "09:00"}, "0 9 * * *", "Every day at 09:00"),
    ({"frequency": "weekly", "dayOfWeek": "monday", "time": "08:30"}, "30 8 * * mon", "Every Monday at 08:30"),
    ({"frequency": "monthly", "dayOfMonth": "last", "time": "17:00"}, "0 17 L * *", "on the last day at 17:00"),
    ({"frequency": "monthly", "dayOfMonth": 15, "time": "07:05"}, "5 7 15 * *", "on day 15 at 07:05"),
    ({"frequency": "hourly", "minute": 20}, "20 * * * *", "Every hour at 20 minutes past"),
    (EVERY_15, "*/15 * * * *", "Every 15 minutes"),
    ({"cron": "0 9 * * 1-5"}, "0 9 * * 1-5", "cron schedule “0 9 * * 1-5”"),
])
def test_each_kind_of_schedule_has_its_cron_and_its_words(config, cron, words):
    assert schedules.validate(config) == []
    assert schedules.expression(config) == cron
    assert words in schedules.describe(config)


@pytest.mark.parametrize("config, place", [
    ({}, "config.frequency"), ({"frequency": "daily"}, "config.time"),
    ({"frequency": "daily", "time": "25:00"}, "config.time"),
    ({"frequency": "weekly", "dayOfWeek": "funday", "time": "09:00"}, "config.dayOfWeek"),
    ({"frequency": "monthly", "dayOfMonth": 32, "time": "09:00"}, "config.dayOfMonth"),
    ({"frequency": "every-n-minutes", "intervalMinutes": 7}, "config.intervalMinutes"),
    ({"frequency": "cron", "cron": "0 9 * * * *"}, "config.cron"),
    ({"frequency": "cron", "cron": "61 * * * *"}, "config.cron"),
    ({"frequency": "daily", "time": "09:00", "day": 3}, "config.day"),
])
def test_a_bad_schedule_is_refused_at_its_place(org, config, place):
    assert schedules.validate(config)[0][0] == place
    with pytest.raises(Exception, match=place.split(".")[-1]):
        scheduled(org, config)


def test_due_times_follow_the_organizations_clock_across_daylight_saving():
    daily = schedules.expression({"frequency": "daily", "time": "02:30"})
    # Spring forward (28 March 2027: 02:00 → 03:00): 02:30 does not exist; it runs at 03:00, once.
    spring = schedules.next_due(daily, "Europe/Berlin", local(2027, 3, 27, 12, 0))
    assert spring == local(2027, 3, 28, 3, 0).astimezone(UTC)
    assert schedules.next_due(daily, "Europe/Berlin", spring) == local(2027, 3, 29, 2, 30).astimezone(UTC)
    # Fall back (31 October 2027: 03:00 → 02:00): 02:30 happens twice; a daily schedule runs once.
    first = schedules.next_due(daily, "Europe/Berlin", local(2027, 10, 30, 12, 0))
    assert first == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)  # 02:30 summer time
    assert schedules.next_due(daily, "Europe/Berlin", first) == local(2027, 11, 1, 2, 30).astimezone(UTC)
    # An hourly schedule keeps its rhythm in real time: both 02:00s, an hour apart.
    hourly = schedules.expression({"frequency": "hourly", "minute": 0})
    two = schedules.next_due(hourly, "Europe/Berlin", datetime(2027, 10, 30, 23, 30, tzinfo=UTC))
    again = schedules.next_due(hourly, "Europe/Berlin", two)
    assert (again - two) == timedelta(hours=1)


def test_a_due_schedule_starts_one_run_with_the_due_time(org):
    workflow = scheduled(org)
    schedules.fire_due()
    row = WorkflowSchedule.objects.get(workflow=workflow)
    assert row.expression == "*/15 * * * *" and row.time_zone == "UTC"
    due = row.next_due_at
    assert schedules.fire_due(now=due - timedelta(seconds=1)) == 0
    assert schedules.fire_due(now=due + timedelta(seconds=5)) == 1
    assert schedules.fire_due(now=due + timedelta(seconds=30)) == 0  # the same due time: nothing more
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "completed" and run.trigger_type == "schedule"
    assert Task.objects.get().title == f"Review for {due.isoformat()} (missed 0)"
    assert WorkflowSchedule.objects.get(workflow=workflow).next_due_at == due + timedelta(minutes=15)


def test_after_downtime_a_missed_window_runs_once_for_its_latest_due_time(org):
    workflow = scheduled(org)
    schedules.fire_due()
    due = WorkflowSchedule.objects.get(workflow=workflow).next_due_at
    later = due + timedelta(hours=3, minutes=5)  # 13 due times passed while nothing ran
    assert schedules.fire_due(now=later) == 1
    event = AutomationEvent.objects.get(kind="schedule")
    assert event.payload["missed"] == 12
    assert event.payload["scheduled_for"] == (due + timedelta(hours=3)).isoformat()
    assert WorkflowSchedule.objects.get(workflow=workflow).next_due_at == due + timedelta(hours=3, minutes=15)


def test_a_paused_workflow_does_not_fire_and_does_not_catch_up_when_activated_again(org):
    workflow = scheduled(org)
    schedules.fire_due()
    due = WorkflowSchedule.objects.get(workflow=workflow).next_due_at
    workflow_transition(workflow_id=workflow.pk, name="pause", by=None)
    assert schedules.fire_due(now=due + timedelta(hours=1)) == 0
    assert not WorkflowSchedule.objects.exists()
    workflow_transition(workflow_id=workflow.pk, name="activate", by=None)
    now = due + timedelta(hours=1, minutes=1)
    assert schedules.fire_due(now=now) == 0
    assert WorkflowSchedule.objects.get(workflow=workflow).next_due_at > now


def test_a_published_change_of_the_schedule_takes_effect(org):
    workflow = scheduled(org, {"frequency": "daily", "time": "09:00"})
    Organization.objects.filter(pk=org.pk).update(time_zone="Europe/Berlin")
    schedules.fire_due()
    assert WorkflowSchedule.objects.get(workflow=workflow).time_zone == "Europe/Berlin"
    workflow_update(workflow_id=workflow.pk, changes={"trigger_config": {"frequency": "daily", "time": "18:00"}})
    from crm_automation.automation.services.workflows import workflow_publish

    workflow_publish(workflow_id=workflow.pk, by=None)
    schedules.fire_due()
    row = WorkflowSchedule.objects.get(workflow=workflow)
    assert row.expression == "0 18 * * *"
    assert row.next_due_at.astimezone(BERLIN).hour == 18


def test_a_due_time_belongs_to_its_own_workflow_only(org):
    mine, other = scheduled(org, name="Mine"), scheduled(org, name="Other", config={"frequency": "hourly"})
    schedules.fire_due()
    # The other one is due later (its hour could fall on Mine's quarter and fire too).
    WorkflowSchedule.objects.filter(workflow=other).update(next_due_at=timezone.now() + timedelta(days=1))
    row = WorkflowSchedule.objects.get(workflow=mine)
    schedules.fire_due(now=row.next_due_at)
    drain()
    assert list(WorkflowRun.objects.values_list("workflow_id", flat=True)) == [mine.pk]
    assert not WorkflowDecision.objects.filter(workflow=other).exists()


@pytest.mark.django_db(transaction=True)
def test_racing_sweeps_fire_a_due_time_exactly_once(org):
    workflow = scheduled(org)
    schedules.fire_due()
    due = WorkflowSchedule.objects.get(workflow=workflow).next_due_at
    fired = race(lambda: schedules.fire_due(now=due + timedelta(seconds=1)))
    assert sum(fired) == 1, fired
    assert AutomationEvent.objects.filter(kind="schedule").count() == 1
    assert ScheduleTick.objects.filter(workflow=workflow, due_at=due).count() == 1
