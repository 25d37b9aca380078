"""django-q2 tasks: thin wrappers that call the worker steps. Arguments are ids, never objects.

django-q2 delivers at least once (the ORM broker hands a task out again after `retry`
seconds; Redis loses a task whose worker dies). Nothing here relies on a delivery: events are
claimed with leases, runs are claimed with leases, and the sweep picks up whatever a lost or
dead task left behind.
"""

import logging
import time
import traceback
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from crm_automation.automation.dispatch import claim_events, dispatch_events
from crm_automation.automation.engine import execute_runs
from crm_automation.automation.models import AutomationEvent, RunStatus, WorkflowRun

logger = logging.getLogger(__name__)
DRAIN_TASK = "crm_automation.automation.tasks.drain_events"


def enqueue_drain() -> None:
    async_task(DRAIN_TASK, save=False, group="automation-drain")


def drain_events(fan_out: bool = True) -> int:
    """Claim and process event batches until none is left or the time budget is spent.

    With `fan_out` (in a worker), a full batch means more may be waiting: one more drain task
    is queued first, so every worker of the cluster helps with a burst; and a drain that runs
    out of time queues its own continuation. Returns the number of runs executed.
    """
    batch_size = settings.AUTOMATION["EVENT_BATCH_SIZE"]
    stop_at = time.monotonic() + settings.AUTOMATION["DRAIN_TIME_BUDGET"]
    helper_queued = not fan_out
    executed = 0
    while True:
        events = claim_events(batch_size)
        if not events:
            return executed
        if not helper_queued and len(events) == batch_size:
            enqueue_drain()
            helper_queued = True  # one helper per drain is enough; each helper fans out again
        run_ids = dispatch_safely(events)
        if run_ids:
            executed += len(execute_runs(run_ids))
        if time.monotonic() > stop_at:
            if fan_out:
                enqueue_drain()
            return executed


def dispatch_safely(events: list[AutomationEvent]) -> list[int]:
    """Dispatch a batch; if it fails, dispatch its events one by one so that a single event
    that cannot be dispatched (a bug, bad data) is marked with its error instead of blocking
    the batch or being retried forever."""
    try:
        return dispatch_events(events)
    except Exception:
        if len(events) == 1:
            event = events[0]
            logger.exception("Event %s cannot be dispatched; it is set aside", event.pk)
            AutomationEvent.objects.filter(pk=event.pk).update(
                processed_at=timezone.now(), error=traceback.format_exc(limit=5)[-4000:])
            return []
        return [run_id for event in events for run_id in dispatch_safely([event])]


def sweep(fan_out: bool = True) -> dict:
    """Periodic safety net: events nobody was told about, runs whose worker vanished."""
    now = timezone.now()
    lease = timedelta(seconds=settings.AUTOMATION["LEASE_SECONDS"])
    abandoned = list(
        WorkflowRun.objects.filter(status=RunStatus.STARTED)
        .filter(Q(lease_until__lt=now) | Q(lease_until__isnull=True, started_at__lt=now - lease))
        .order_by("pk").values_list("pk", flat=True)[:500]
    )
    resumed = len(execute_runs(abandoned)) if abandoned else 0
    pending = AutomationEvent.objects.filter(processed_at__isnull=True).exists()
    executed = drain_events(fan_out=fan_out) if pending else 0
    if resumed or executed:
        logger.info("Sweep resumed %s runs and executed %s new ones", resumed, executed)
    return {"resumed": resumed, "executed": executed}
