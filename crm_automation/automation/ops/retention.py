"""Retention (docs/product.md#retention): run history older than the plan keeps it is deleted by
a daily django-q2 schedule (and `manage.py prune_history`), in small batches that each commit on
their own, so no table is locked for long and the workers go on meanwhile.

Kept per plan (settings.RUN_HISTORY_DAYS): Pro 90 days, Enterprise 365 (Free has no history).
What goes, per organization, oldest first:
1. finished runs that started before the cut-off, with their steps (an unfinished run stays,
   however old: a wait of a year is still work to do);
2. the decisions ("why it did or did not run") made before the cut-off;
3. the processed events before the cut-off that no remaining run needs;
4. the lifecycle events (lifecycle.py) before the cut-off.
Workflow counters, versions, effects (tasks, emails) and their audit rows are not history and stay.
"""

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, LifecycleEvent, WorkflowDecision, WorkflowRun
from crm_automation.crm.models import Organization

logger = logging.getLogger(__name__)

PRUNE_TASK = "crm_automation.automation.ops.retention.prune_history"
BATCH = 1000


def _batches(queryset, budget_end: float) -> int:
    """Delete the queryset's rows BATCH at a time (by primary key), each batch its own
    transaction, until none is left or the time is up. Returns how many rows went."""
    removed = 0
    while time.monotonic() < budget_end:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:BATCH])
        if not ids:
            break
        with transaction.atomic():
            removed += queryset.model.objects.filter(pk__in=ids).delete()[1].get(queryset.model._meta.label, 0)
    return removed


def first_event_after(cutoff: datetime, model: type[AutomationEvent] | type[LifecycleEvent] = AutomationEvent,
                      field: str = "created_at") -> int | None:
    """The id of the first event created at or after `cutoff`, by binary search on the primary
    key (ids grow with time; the outbox and the lifecycle events have no index on their time, on
    purpose: every run writes them)."""
    objects = model.objects
    bounds = objects.aggregate(low=Min("pk"), high=Max("pk"))
    low, high = bounds["low"], bounds["high"]
    if low is None:
        return None
    high += 1
    while low < high:
        mid = (low + high) // 2
        row = objects.filter(pk__gte=mid).order_by("pk").values("pk", field).first()
        if row is None or row[field] >= cutoff:
            high = mid
        else:
            low = row["pk"] + 1
    return low


def prune_organization(organization: Organization, now: datetime, budget_end: float) -> dict[str, int]:
    days = settings.RUN_HISTORY_DAYS.get(organization.plan)
    if days is None:
        return {}
    cutoff = now - timedelta(days=days)
    runs = _batches(WorkflowRun.objects.filter(organization=organization, started_at__lt=cutoff,
                                               finished_at__isnull=False), budget_end)
    decisions = _batches(WorkflowDecision.objects.filter(workflow__organization=organization, created_at__lt=cutoff),
                         budget_end)
    events = 0
    boundary = first_event_after(cutoff)
    if boundary is not None:
        old = (AutomationEvent.objects.filter(organization=organization, pk__lt=boundary, processed_at__isnull=False)
               .exclude(pk__in=WorkflowRun.objects.filter(event_id__lt=boundary).values("event_id")))
        events = _batches(old, budget_end)
    lifecycle = 0
    boundary = first_event_after(cutoff, LifecycleEvent, "occurred_at")
    if boundary is not None:
        lifecycle = _batches(LifecycleEvent.objects.filter(organization=organization, pk__lt=boundary), budget_end)
    return {"runs": runs, "decisions": decisions, "events": events, "lifecycle_events": lifecycle}


def prune_history(now: datetime | None = None, budget_seconds: float = 600) -> dict[str, int]:
    """Every organization's history past its plan's days (the daily task). The budget bounds
    one call; what is left goes the next day."""
    now = now or timezone.now()
    budget_end = time.monotonic() + budget_seconds
    total = {"runs": 0, "decisions": 0, "events": 0, "lifecycle_events": 0}
    for organization in Organization.objects.order_by("pk"):
        for key, count in prune_organization(organization, now, budget_end).items():
            total[key] += count
    if any(total.values()):
        logger.info("Pruned run history: %s", total)
    return total


def ensure_prune_schedule(**kwargs) -> None:
    """Once a day on any cluster (created once, idempotently, like the sweep)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(name="automation-prune-history",
                                      defaults={"func": PRUNE_TASK, "schedule_type": Schedule.DAILY, "repeats": -1})
