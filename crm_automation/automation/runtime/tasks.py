"""django-q2 tasks: thin wrappers that call the worker steps. Arguments are ids, never objects.

django-q2 delivers at least once (the ORM broker hands a task out again after `retry`
seconds; Redis loses a task whose worker dies). Nothing here relies on a delivery: events are
claimed with leases, runs are claimed with leases, and the watchdog (watchdog.py) and the
periodic sweep pick up whatever a lost or dead task left behind.
"""

import logging
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, RunStatus, WorkflowRun
from crm_automation.automation.ops import alerts as alerting
from crm_automation.automation.ops import breaker
from crm_automation.automation.runtime.dispatch import Dispatched, claim_fairly, dispatch, unclaimed_events
from crm_automation.automation.runtime.engine import execute_leased, execute_runs
from crm_automation.automation.runtime.leases import lease_length
from crm_automation.automation.runtime.queue import enqueue_continue, enqueue_drain, enqueue_sweep
from crm_automation.automation.runtime.replies import wake_replied_runs
from crm_automation.automation.services import impact, regression, rollouts
from crm_automation.automation.triggers import relative_time, schedules
from crm_automation.crm.email_delivery import emails_mark_stale_unknown
from crm_automation.workers import shutdown

logger = logging.getLogger(__name__)


def _execute(runs: list[int] | Dispatched, *, budget: float, fan_out: bool) -> int:
    """Execute runs (ids, or what a dispatch just made, leased); what the budget did not allow is
    continued by another task (in a worker) or right here (when called directly, as tests and
    commands do)."""
    report = execute_runs(runs, budget=budget) if isinstance(runs, list) else execute_leased(runs, budget=budget)
    finished = len(report.finished)
    while report.handed_back:
        if fan_out:
            enqueue_continue(report.handed_back)
            break
        report = execute_runs(report.handed_back)
        finished += len(report.finished)
    return finished


def drain_events(fan_out: bool = True, *, stop_at: float | None = None) -> int:
    """Claim and process event batches until none is left or the time budget is spent.

    Each batch is one organization's events (dispatch.claim_events). With `fan_out` (in a
    worker), a full batch or another organization's waiting events mean more is waiting: one
    more drain task is queued first, so every worker of the cluster helps with a burst; and a
    drain that runs out of time queues its own continuation. A worker's drain whose batch took
    everything that was waiting ends without looking again: a change made since then was
    nudged on its own (a single change's drain saves two round trips). Called directly (as
    tests and commands do), it drains until nothing is left. Returns the number of runs finished.
    """
    batch_size = settings.AUTOMATION["EVENT_BATCH_SIZE"]
    if stop_at is None:
        stop_at = time.monotonic() + settings.AUTOMATION["DRAIN_TIME_BUDGET"]
    helper_queued = not fan_out
    executed = 0
    while True:
        if shutdown.requested():  # the cluster is stopping: the next cluster takes the rest
            if fan_out:
                enqueue_drain()
            return executed
        # One organization's (dispatch.claim_events), and whether others wait (until a helper is queued).
        events, others = claim_fairly(batch_size, ask_others=not helper_queued)
        if not events:
            return executed
        if not helper_queued and (len(events) == batch_size or others):
            enqueue_drain()
            helper_queued = True  # one helper per drain is enough; each helper fans out again
        dispatched = dispatch_safely(events, token=uuid.uuid4().hex)
        if dispatched.runs:
            executed += _execute(dispatched, budget=max(0.0, stop_at - time.monotonic()), fan_out=fan_out)
        if time.monotonic() > stop_at:
            if fan_out:
                enqueue_drain()
            return executed
        if others is False and len(events) < batch_size:
            return executed  # all that waited was this batch


def continue_runs(run_ids: list[int]) -> int:
    """Continue runs a task handed back when its time was up or its turn was over. A turn ends
    when other work waits (fairness.py): the changes nobody has claimed are then taken here at
    once, as a drain does after a hand-back, rather than from the end of the queue, behind the
    continuations of the runs that gave way."""
    stop_at = time.monotonic() + settings.AUTOMATION["RUN_TIME_BUDGET"]
    report = execute_runs(run_ids, budget=stop_at - time.monotonic())
    finished = len(report.finished)
    if report.handed_back:
        enqueue_continue(report.handed_back)
        if not shutdown.past(stop_at) and unclaimed_events().exists():
            finished += drain_events(stop_at=stop_at)
    return finished


def dispatch_safely(events: list[AutomationEvent], *, token: str = "") -> Dispatched:
    """Dispatch a batch (its runs leased to `token`, if given); if it fails, dispatch its events
    one by one so that a single event that cannot be dispatched (a bug, bad data) is marked with
    its error instead of blocking the batch or being retried forever."""
    try:
        return dispatch(events, token=token)
    except Exception as exc:
        if len(events) == 1:
            event = events[0]
            logger.exception("Event %s cannot be dispatched; it is set aside", event.pk)  # traceback: logs only
            AutomationEvent.objects.filter(pk=event.pk).update(
                processed_at=timezone.now(),
                error=f"This change could not be matched to workflows ({type(exc).__name__}: {exc}); it was set "
                      "aside so the others go on. The worker log has the details."[:2000])
            return Dispatched(token=token)
        made = Dispatched(token=token)
        for event in events:
            made.merge(dispatch_safely([event], token=token))
        return made


def abandoned_runs() -> QuerySet[WorkflowRun]:
    """Unfinished runs nobody holds: a lease that expired (its worker died or was killed), or
    never leased although dispatched a lease ago (its dispatcher died before executing it)."""
    now = timezone.now()
    return WorkflowRun.objects.filter(status=RunStatus.STARTED).filter(
        Q(lease_until__lt=now) | Q(lease_until__isnull=True, started_at__lt=now - lease_length()))


def forgotten_events(age: timedelta = timedelta(seconds=2)) -> QuerySet[AutomationEvent]:
    """Events waiting longer than `age` that no worker holds: their nudge was lost."""
    now = timezone.now()
    return unclaimed_events(now).filter(created_at__lt=now - age)


WAKE_BATCH = 200


def wake_due_runs(limit: int = WAKE_BATCH) -> list[int]:
    """Waiting runs whose time has come: back to `started` (free for any worker to claim).
    One indexed query however many runs wait; precision: the watchdog's look (≈ 5 s)."""
    due = list(WorkflowRun.objects.filter(status=RunStatus.WAITING, wake_at__lte=timezone.now())
               .order_by("wake_at").values_list("pk", flat=True)[:limit])
    if due:
        WorkflowRun.objects.filter(pk__in=due, status=RunStatus.WAITING).update(
            status=RunStatus.STARTED, lease_until=None, lease_owner="")  # wake_at stays: it is the time
    return due


def sweep(fan_out: bool = True) -> dict[str, Any]:
    """Safety net, run by the watchdog when it sees work nobody does, and every minute: resume
    abandoned runs, process events nobody was told about, settle emails nobody is sending.
    One time budget for all of it, like any task."""
    stop_at = time.monotonic() + settings.AUTOMATION["DRAIN_TIME_BUDGET"]
    # Due schedules and relative-time occasions: their events are drained below with any others.
    scheduled = schedules.fire_due() + relative_time.fire_due()
    woken = wake_due_runs(WAKE_BATCH) + wake_replied_runs()
    if fan_out and len(woken) >= WAKE_BATCH:
        enqueue_sweep()  # more are due: another worker helps, as a full event batch does for drains
    stuck = abandoned_runs().exclude(pk__in=woken).order_by("pk").values_list("pk", flat=True)[:500]
    abandoned = [*woken, *stuck]
    resumed = _execute(abandoned, budget=stop_at - time.monotonic(), fan_out=fan_out) if abandoned else 0
    pending = AutomationEvent.objects.filter(processed_at__isnull=True).exists()
    executed = drain_events(fan_out=fan_out, stop_at=stop_at) if pending else 0
    stale = emails_mark_stale_unknown(older_than=lease_length() + timedelta(seconds=4 * settings.EMAIL_TIMEOUT))
    if resumed or executed or stale:
        logger.info("Sweep resumed %s runs, executed %s new ones, marked %s stalled emails unknown",
                    resumed, executed, stale)
    return {"resumed": resumed, "executed": executed, "stale_emails": stale, "scheduled": scheduled}


def watch() -> None:
    """The automation watching itself, once a minute on its own django-q2 schedule (not in the
    sweep, which the watchdogs also start whenever work waits: these read the last hour's runs
    and would slow every sweep): the circuit breaker, then the alerts."""
    breaker.check()  # pause workflows failing too much, try cooled-down ones again
    alerting.check()  # tell admins about success rates, slowness, slow runs, volume, errors, a backlog
    rollouts.check()  # hold rollouts whose new version fails more, raise those whose next step is due
    impact.requeue_lost()  # impact previews whose task the broker lost
    regression.requeue_lost()  # and regression checks


def impact_preview(preview_id: int) -> None:
    """Work out one impact preview (impact.preview_run)."""
    impact.preview_run(preview_id)


def regression_check(check_id: int) -> None:
    """Work out one regression check (regression.check_run)."""
    regression.check_run(check_id)
