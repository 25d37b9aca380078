"""Relative-time triggers (docs/product.md#relative-time): a deal's date comes up, or a deal
stays in a stage.

    deal_date_reached: {"field": "close_date", "offsetDays": -3, "time": "09:00"}
        at 09:00 (the organization's clock) three days before each deal's close date; the field
        is close_date or created_at, offsetDays from -365 to 365 (negative: before).
    deal_in_stage:     {"stage": "proposal", "days": 14}
        when a deal has been in Proposal for 14 days and is still there (Deal.stage_entered_at).

Deals are found by indexed range queries, never by looking at each deal: every minute the sweep
asks, per activated workflow, for the deals whose occasion fell between the last pass and now
(`deal_close_date_idx`, `deal_created_idx`, `deal_stage_since_idx`). Each workflow keeps that
watermark in a RelativeTrigger row; a pass locks the row (SKIP LOCKED: one cluster per workflow
at a time), writes the events and moves the watermark in one transaction, so every occasion
fires exactly once. A new, changed or re-activated workflow starts from now: it does not fire
for occasions that passed before it was live. A deal whose date moves into the future fires
again at the new occasion.
"""

import logging
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.db import transaction
from django.utils import timezone

from crm_automation.automation import wording
from crm_automation.automation.models import AutomationEvent, RelativeTrigger, Workflow, WorkflowStatus
from crm_automation.automation.triggers.schedules import parse_time, time_of
from crm_automation.crm.models import Deal, Stage

logger = logging.getLogger(__name__)

DATE_REACHED, IN_STAGE = "deal_date_reached", "deal_in_stage"
TRIGGERS = (DATE_REACHED, IN_STAGE)
DATE_FIELDS = {"close_date": "close date", "created_at": "creation date"}
MAX_OFFSET, MAX_DAYS = 365, 365
BATCH = 1000  # events written per INSERT


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def validate(trigger_type: str, config, organization_id: int) -> list[tuple[str, str]]:
    if not isinstance(config, dict):
        return [("config", "must be a mapping")]
    errors = []
    if trigger_type == DATE_REACHED:
        allowed = {"field", "offsetDays", "time", "conditions"}
        if config.get("field") not in DATE_FIELDS:
            errors.append(("config.field", f"must be one of {', '.join(DATE_FIELDS)}"))
        if not _whole(config.get("offsetDays", 0), -MAX_OFFSET, MAX_OFFSET):
            errors.append(("config.offsetDays", f"must be a whole number of days from -{MAX_OFFSET} (before) "
                                                f"to {MAX_OFFSET} (after)"))
        if parse_time(config.get("time", "09:00")) is None:
            errors.append(("config.time", "must be a time of day as HH:MM, e.g. 09:00"))
    else:
        allowed = {"stage", "days", "conditions"}
        slugs = list(Stage.objects.filter(organization_id=organization_id).order_by("order")
                     .values_list("slug", flat=True))
        if config.get("stage") not in slugs:
            errors.append(("config.stage", f"must be a stage of this organization: {', '.join(slugs)}"))
        if not _whole(config.get("days"), 1, MAX_DAYS):
            errors.append(("config.days", f"must be a whole number of days from 1 to {MAX_DAYS}"))
    for key in sorted(set(config) - allowed):
        settings = ", ".join(sorted(allowed - {"conditions"}))
        errors.append((f"config.{key}", f"is not a setting of this trigger ({settings})"))
    return errors


def describe(trigger_type: str, config: dict, stage_names: dict[str, str] | None = None) -> str:
    """“3 days before a deal's close date, at 09:00”, “A deal in Proposal for 14 days”."""
    if trigger_type == IN_STAGE:
        slug: Any = config.get("stage")  # (any JSON value: a draft's config is not checked yet)
        stage = (stage_names or {}).get(slug, slug)
        return f"A deal in {stage} for {wording.counted(config.get('days'), 'days')}"
    offset = config.get("offsetDays", 0)
    chosen: Any = config.get("field")
    field = DATE_FIELDS.get(chosen, "date")
    when = "on" if offset == 0 else f"{wording.counted(abs(offset), 'days')} {'before' if offset < 0 else 'after'}"
    return f"{when.capitalize()} a deal's {field}, at {config.get('time', '09:00')}"


def _dates_due(config: dict, zone: ZoneInfo, after: datetime, until: datetime) -> list[date]:
    """The local days whose `time` falls in (after, until]."""
    hours, minutes = time_of(config.get("time", "09:00"))
    day, last, found = after.astimezone(zone).date(), until.astimezone(zone).date(), []
    while day <= last:
        moment = datetime.combine(day, time(hours, minutes), tzinfo=zone)
        if after < moment <= until:
            found.append(day)
        day += timedelta(days=1)
    return found


def _due_deals(trigger: RelativeTrigger, config: dict, now: datetime):
    """(deal id, occasion) of the deals whose occasion is in (checked_until, now], by index."""
    deals = Deal.objects.filter(organization_id=trigger.organization_id)
    if trigger.trigger_type == IN_STAGE:
        length = timedelta(days=config["days"])
        stage = Stage.objects.filter(organization_id=trigger.organization_id, slug=config["stage"]).first()
        if stage is None:
            return []
        rows = (deals.filter(stage=stage, stage_entered_at__gt=trigger.checked_until - length,
                             stage_entered_at__lte=now - length)
                .order_by("stage_entered_at", "pk").values_list("pk", "stage_entered_at"))
        return [(pk, entered + length) for pk, entered in rows]
    zone = ZoneInfo(trigger.time_zone)
    offset = timedelta(days=config.get("offsetDays", 0))
    days = _dates_due(config, zone, trigger.checked_until, now)
    if not days:
        return []
    hours, minutes = time_of(config.get("time", "09:00"))
    occasion = {day - offset: datetime.combine(day, time(hours, minutes), tzinfo=zone) for day in days}
    if config["field"] == "close_date":
        closing = deals.filter(close_date__in=list(occasion)).order_by("pk").values_list("pk", "close_date")
        return [(pk, occasion[value]) for pk, value in closing if value is not None]  # (none is: filtered on)
    start = datetime.combine(min(occasion), time.min, tzinfo=zone)
    end = datetime.combine(max(occasion) + timedelta(days=1), time.min, tzinfo=zone)
    created = deals.filter(created_at__gte=start, created_at__lt=end).order_by("pk").values_list("pk", "created_at")
    return [(pk, occasion[value.astimezone(zone).date()]) for pk, value in created
            if value.astimezone(zone).date() in occasion]


def _sync(now: datetime) -> None:
    """One row per activated relative-time workflow (its watermark); none for the others."""
    live = {w.pk: w for w in Workflow.objects.filter(trigger_type__in=TRIGGERS, status=WorkflowStatus.ACTIVATED)
            .select_related("organization")}
    RelativeTrigger.objects.exclude(workflow_id__in=list(live)).delete()
    known = {row.workflow_id: row for row in RelativeTrigger.objects.filter(workflow_id__in=list(live))}
    for workflow_id, workflow in live.items():
        row = known.get(workflow_id)
        if row is not None and (row.version_id, row.time_zone) == (workflow.current_version_id,
                                                                    workflow.organization.time_zone):
            continue
        RelativeTrigger.objects.update_or_create(workflow_id=workflow_id, defaults={
            "organization_id": workflow.organization_id, "trigger_type": workflow.trigger_type,
            "version_id": workflow.current_version_id, "time_zone": workflow.organization.time_zone,
            "checked_until": now})


def fire_due(now: datetime | None = None) -> int:
    """One pass (called every minute by the sweep): events for every occasion since the last
    pass. Returns how many deals' workflows were started."""
    now = now or timezone.now()
    _sync(now)
    fired = 0
    with transaction.atomic():
        # (of=self: the version rows, shared by every trigger of a workflow, stay unlocked)
        for row in (RelativeTrigger.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
                    .select_related("version").filter(checked_until__lt=now).order_by("workflow_id")):
            config = row.version.definition.get("trigger_config") or {}
            if validate(row.trigger_type, config, row.organization_id):
                continue
            due = _due_deals(row, config, now)
            AutomationEvent.objects.bulk_create([AutomationEvent(
                organization_id=row.organization_id, kind=row.trigger_type, entity_type="deal", entity_id=deal_id,
                payload={"workflow_id": row.workflow_id, "occasion": occasion.isoformat()})
                for deal_id, occasion in due], batch_size=BATCH)
            fired += len(due)
            row.checked_until = now
            row.save(update_fields=["checked_until"])
    if fired:
        logger.info("Relative-time triggers started %s workflows", fired)
    return fired
