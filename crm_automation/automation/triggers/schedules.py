"""Schedule triggers (docs/product.md#schedules): a workflow that starts on its own at set times.

The trigger's config is one of:
    {"frequency": "daily", "time": "09:00"}
    {"frequency": "weekly", "dayOfWeek": "monday", "time": "09:00"}
    {"frequency": "monthly", "dayOfMonth": 1, "time": "09:00"}      (dayOfMonth 1–31 or "last")
    {"frequency": "hourly", "minute": 15}
    {"frequency": "every-n-minutes", "intervalMinutes": 15}          (a divisor of 60)
    {"frequency": "cron", "cron": "0 9 * * 1-5"}                      (five fields, croniter)
Times are the organization's (Organization.time_zone).

How a due time becomes a run, exactly once however many clusters run the minute sweep:
1. `fire_due` (called by tasks.sweep every minute) keeps one WorkflowSchedule row per activated
   schedule workflow, with its next due time (indexed); a new or changed schedule starts from the
   next due time after now, a paused one has no row (it does not catch up when reactivated).
2. A due row is locked (SKIP LOCKED: another cluster takes the next one), a ScheduleTick
   (unique per workflow × due time) and an outbox event are written in one transaction, and the
   row moves to the next due time after now. The event is dispatched like any other, to that
   workflow only (dispatch.py).
3. Catch-up policy: after downtime, ticks missed in between are not run one by one: the workflow
   runs once, for the latest missed due time, and {{trigger.missed}} says how many were skipped.

Daylight saving time: a due time inside the hour that does not exist (spring forward) runs at
the first minute after it; a wall-clock time that happens twice (fall back) runs once for
schedules at set hours (daily, weekly, monthly, a cron with fixed hours), while hourly and
every-N-minutes schedules keep their rhythm in real time.
"""

import logging
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm_automation.automation.models import (
    AutomationEvent,
    ScheduleTick,
    Workflow,
    WorkflowSchedule,
    WorkflowStatus,
)

logger = logging.getLogger(__name__)

SCHEDULE = "schedule"
FREQUENCIES = ("daily", "weekly", "monthly", "hourly", "every-n-minutes", "cron")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MINUTE_STEPS = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)
KEYS = {"daily": {"time"}, "weekly": {"dayOfWeek", "time"}, "monthly": {"dayOfMonth", "time"},
        "hourly": {"minute"}, "every-n-minutes": {"intervalMinutes"}, "cron": {"cron"}}
MAX_CATCH_UP = 100_000  # due times skipped over after downtime are counted up to this many
NAMESPACE = uuid.UUID("4f9a7c1e-6a2b-4d8e-9c3f-5b1a2e7d0c11")


def parse_time(value) -> tuple[int, int] | None:
    """(hours, minutes) of an HH:MM time of day, or None."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        return None
    hours, minutes = value[:2], value[3:]
    digits = hours + minutes
    if not (digits.isascii() and hours.isdigit() and minutes.isdigit()) or int(hours) > 23 or int(minutes) > 59:
        return None
    return int(hours), int(minutes)


def time_of(value: str) -> tuple[int, int]:
    """(hours, minutes) of a time of day a valid config holds."""
    parsed = parse_time(value)
    if parsed is None:
        raise ValueError(f"{value!r} is not a time of day (HH:MM)")
    return parsed


def _normal(config: dict) -> dict:
    """`{cron: "0 9 * * 1"}` alone (the document format's short form) is a cron schedule."""
    return {**config, "frequency": "cron"} if "frequency" not in config and "cron" in config else config


def validate(config) -> list[tuple[str, str]]:
    """What is wrong with a schedule config, by place (`config.time`)."""
    if not isinstance(config, dict):
        return [("config", "must be a mapping such as {\"frequency\": \"daily\", \"time\": \"09:00\"}")]
    config = _normal(config)
    frequency = config.get("frequency")
    if frequency not in FREQUENCIES:
        return [("config.frequency", f"must be one of {', '.join(FREQUENCIES)}")]
    errors = []
    unknown = sorted(set(config) - KEYS[frequency] - {"frequency", "conditions"})
    if unknown:
        errors.append((f"config.{unknown[0]}", f"is not a setting of a {frequency} schedule "
                                               f"({', '.join(sorted(KEYS[frequency]))})"))
    if "time" in KEYS[frequency] and parse_time(config.get("time")) is None:
        errors.append(("config.time", "must be a time of day as HH:MM, e.g. 09:00"))
    if frequency == "weekly" and config.get("dayOfWeek") not in DAYS:
        errors.append(("config.dayOfWeek", f"must be one of {', '.join(DAYS)}"))
    if frequency == "monthly":
        day = config.get("dayOfMonth")
        if day != "last" and (not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 31):
            errors.append(("config.dayOfMonth", "must be a day of the month, 1 to 31, or \"last\""))
    if frequency == "hourly":
        minute = config.get("minute", 0)
        if not isinstance(minute, int) or isinstance(minute, bool) or not 0 <= minute <= 59:
            errors.append(("config.minute", "must be a minute past the hour, 0 to 59"))
    if frequency == "every-n-minutes" and config.get("intervalMinutes") not in MINUTE_STEPS:
        errors.append(("config.intervalMinutes", f"must be one of {', '.join(map(str, MINUTE_STEPS))} (minutes that "
                                                 "divide an hour); for other rhythms use a cron expression"))
    if frequency == "cron":
        expression = config.get("cron")
        if not isinstance(expression, str) or len(expression.split()) != 5 or not croniter.is_valid(expression):
            errors.append(("config.cron", "must be a cron expression of five fields (minute hour day month "
                                          "weekday), e.g. \"0 9 * * 1-5\""))
    return errors


def expression(config: dict) -> str:
    """The cron expression of a valid config."""
    config = _normal(config)
    frequency = config["frequency"]
    if frequency == "cron":
        return " ".join(config["cron"].split())
    if frequency == "hourly":
        return f"{config.get('minute', 0)} * * * *"
    if frequency == "every-n-minutes":
        return f"*/{config['intervalMinutes']} * * * *"
    hours, minutes = time_of(config["time"])
    if frequency == "daily":
        return f"{minutes} {hours} * * *"
    if frequency == "weekly":
        return f"{minutes} {hours} * * {config['dayOfWeek'][:3]}"
    day = "L" if config["dayOfMonth"] == "last" else config["dayOfMonth"]
    return f"{minutes} {hours} {day} * *"


def describe(config: dict, time_zone: str = "") -> str:
    """“Every Monday at 09:00 (Europe/Berlin)”, for pages and messages."""
    if validate(config):
        return "On a schedule (not set up yet)"
    config = _normal(config)
    where = f" ({time_zone})" if time_zone else ""
    frequency = config["frequency"]
    if frequency == "daily":
        return f"Every day at {config['time']}{where}"
    if frequency == "weekly":
        return f"Every {config['dayOfWeek'].capitalize()} at {config['time']}{where}"
    if frequency == "monthly":
        day = "the last day" if config["dayOfMonth"] == "last" else f"day {config['dayOfMonth']}"
        return f"Every month on {day} at {config['time']}{where}"
    if frequency == "hourly":
        return f"Every hour at {config.get('minute', 0):02d} minutes past"
    if frequency == "every-n-minutes":
        return f"Every {config['intervalMinutes']} minutes"
    return f"On the cron schedule “{expression(config)}”{where}"


def _fixed_hours(cron: str) -> bool:
    hour = cron.split()[1]
    return "*" not in hour and "/" not in hour


def next_due(cron: str, time_zone: str, after: datetime) -> datetime:
    """The first due time strictly after `after` (UTC out), see the module's note on DST."""
    zone = ZoneInfo(time_zone)
    start = after.astimezone(zone)
    times = croniter(cron, start)
    due = times.get_next(datetime)
    if _fixed_hours(cron):
        # A wall-clock time seen twice (the hour repeated at the end of summer time) is one
        # due time: skip the second instant of the same local time.
        previous = croniter(cron, start).get_prev(datetime)
        while due.replace(tzinfo=None) == previous.replace(tzinfo=None) or (
                due.replace(tzinfo=None) == start.replace(tzinfo=None, second=0, microsecond=0)):
            due = times.get_next(datetime)
    return due.astimezone(UTC)


def record_id(workflow_id: int) -> uuid.UUID:
    """The schedule's stand-in for a record: stable per workflow, so re-enrollment rules apply
    ("not while running": a tick is skipped while the last tick's run is unfinished)."""
    return uuid.uuid5(NAMESPACE, f"workflow:{workflow_id}")


def _sync(now: datetime) -> None:
    """One row per activated schedule workflow, with its next due time; none for the others."""
    live = {w.pk: w for w in Workflow.objects.filter(trigger_type=SCHEDULE, status=WorkflowStatus.ACTIVATED)
            .select_related("current_version", "organization")}
    WorkflowSchedule.objects.exclude(workflow_id__in=list(live)).delete()
    rows = {row.workflow_id: row for row in WorkflowSchedule.objects.filter(workflow_id__in=list(live))}
    for workflow_id, workflow in live.items():
        config = (workflow.current_version.definition.get("trigger_config") or {}) if workflow.current_version else {}
        if validate(config):
            continue  # activation refuses these; a version from before validation just does not fire
        cron, zone = expression(config), workflow.organization.time_zone
        row = rows.get(workflow_id)
        if row is not None and (row.expression, row.time_zone, row.version_id) == (
                cron, zone, workflow.current_version_id):
            continue
        defaults = {"organization_id": workflow.organization_id, "expression": cron, "time_zone": zone,
                    "version_id": workflow.current_version_id, "next_due_at": next_due(cron, zone, now)}
        WorkflowSchedule.objects.update_or_create(workflow_id=workflow_id, defaults=defaults)


def _fire(row: WorkflowSchedule, now: datetime) -> bool:
    """Start the row's workflow for its latest due time up to now (one run however many were
    missed); move the row to the next due time. In the caller's transaction, the row locked."""
    due, missed, upcoming = row.next_due_at, 0, next_due(row.expression, row.time_zone, row.next_due_at)
    while upcoming <= now and missed < MAX_CATCH_UP:
        due, missed, upcoming = upcoming, missed + 1, next_due(row.expression, row.time_zone, upcoming)
    if upcoming <= now:  # more than MAX_CATCH_UP behind: start again from now
        upcoming = next_due(row.expression, row.time_zone, now)
    row.last_due_at, row.next_due_at = due, upcoming
    row.save(update_fields=["last_due_at", "next_due_at"])
    try:
        with transaction.atomic():
            ScheduleTick.objects.create(workflow_id=row.workflow_id, due_at=due)
    except IntegrityError:
        return False  # this due time has been fired already (by another cluster)
    AutomationEvent.objects.create(
        organization_id=row.organization_id, kind=SCHEDULE, entity_type=SCHEDULE,
        entity_id=record_id(row.workflow_id), processed_at=None,
        payload={"workflow_id": row.workflow_id, "scheduled_for": due.isoformat(), "missed": missed,
                 "fired_at": now.isoformat()})
    return True


def fire_due(now: datetime | None = None, limit: int = 500) -> int:
    """Fire every due schedule (called every minute by the sweep). Returns how many fired."""
    now = now or timezone.now()
    _sync(now)
    fired = 0
    with transaction.atomic():
        rows = list(WorkflowSchedule.objects.select_for_update(skip_locked=True, no_key=True)
                    .filter(next_due_at__lte=now).order_by("next_due_at")[:limit])
        for row in rows:
            fired += _fire(row, now)
    ScheduleTick.objects.filter(due_at__lt=now - timedelta(days=2)).delete()  # dedupe needs only recent ones
    if fired:
        logger.info("Fired %s scheduled workflows", fired)
    return fired
