"""The circuit breaker (docs/product.md#circuit-breaker): a workflow that keeps failing is paused
before it does more harm, its admins are told, and it is tried again after a cool-down.

Every minute (tasks.watch, on its own schedule) the runs finished in the last
BREAKER_WINDOW_SECONDS (5 minutes) are counted per activated workflow, from the recent-runs
index. When more than BREAKER_FAILURE_RATE (20 %) of at least BREAKER_MIN_RUNS (10) failed:

1. the workflow is paused (the same transition as a person's pause), a CircuitBreak row records
   why, and the organization's admins get a notification linking to the failed runs;
2. after BREAKER_COOLDOWN_SECONDS (15 minutes) it is activated again on trial, counting only
   runs from then on; if it fails again it is paused again. It is left paused if someone
   changed it during the cool-down (they decide when it goes live) or it cannot be activated
   (the plan's limit, a definition that no longer validates): the row says why.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q
from django.urls import reverse
from django.utils import timezone

from crm_automation.automation import lifecycle
from crm_automation.automation.models import (
    CircuitBreak,
    LifecycleType,
    RunStatus,
    Workflow,
    WorkflowRun,
    WorkflowStatus,
)
from crm_automation.automation.ops.paused_run_alerts import notify_admins
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.refusals import Refused

logger = logging.getLogger(__name__)

FAILED = (RunStatus.FAILED, RunStatus.PARTIAL)


def _settings() -> tuple[float, timedelta, int, timedelta]:
    conf = settings.AUTOMATION
    return (conf["BREAKER_FAILURE_RATE"], timedelta(seconds=conf["BREAKER_WINDOW_SECONDS"]),
            conf["BREAKER_MIN_RUNS"], timedelta(seconds=conf["BREAKER_COOLDOWN_SECONDS"]))


def _notify(workflow: Workflow, brk: CircuitBreak) -> None:
    notify_admins(workflow.organization_id, title=f"“{workflow.name}” was paused: too many runs failed",
                  body=f"{brk.reason}. It will be activated again, on trial, at "
                       f"{timezone.localtime(brk.closes_at):%H:%M}.",
                  link=reverse("web:runs") + f"?workflow={workflow.pk}&status=failed", key=f"breaker:{brk.pk}")


def _trip(workflow_id: int, runs: int, failures: int, now: datetime) -> CircuitBreak | None:
    rate, window, _, cooldown = _settings()
    with transaction.atomic():
        workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow_id)
        if workflow.status != WorkflowStatus.ACTIVATED:
            return None  # paused meanwhile (by a person or another sweep)
        workflow.pause()
        workflow.save(update_fields=["status", "updated_at"])
        reason = (f"{failures} of the {runs} runs that finished in the last {int(window.total_seconds() // 60)} "
                  f"minutes failed ({100 * failures / runs:.0f} %, more than {100 * rate:.0f} %)")
        brk = CircuitBreak.objects.create(workflow=workflow, organization_id=workflow.organization_id,
                                          opened_at=workflow.updated_at, reason=reason, runs=runs, failures=failures,
                                          closes_at=now + cooldown)
        _notify(workflow, brk)
        lifecycle.workflow_event(LifecycleType.WORKFLOW_PAUSED, workflow, reason=f"circuit breaker: {reason}")
        lifecycle.workflow_event(LifecycleType.BREAKER_OPENED, workflow, reason=reason, runs=runs, failures=failures,
                                 closes_at=brk.closes_at.isoformat())
    logger.warning("Circuit breaker paused workflow %s: %s", workflow_id, reason)
    return brk


def trip_failing(now: datetime | None = None) -> list[CircuitBreak]:
    """Pause the activated workflows failing too much in the window."""
    now = now or timezone.now()
    rate, window, minimum, _ = _settings()
    since = now - window
    # A workflow tried again counts only its runs since then.
    reopened = dict(CircuitBreak.objects.filter(closed_at__gte=since).values("workflow_id")
                    .annotate(last=Max("closed_at")).values_list("workflow_id", "last"))
    counts = (WorkflowRun.objects.filter(started_at__gte=since, finished_at__isnull=False, simulated=False,
                                         workflow__status=WorkflowStatus.ACTIVATED)
              .values("workflow_id").annotate(runs=Count("id"), failures=Count("id", filter=Q(status__in=FAILED))))
    tripped = []
    for row in counts:
        workflow_id, runs, failures = row["workflow_id"], row["runs"], row["failures"]
        if workflow_id in reopened:
            recent = WorkflowRun.objects.filter(workflow_id=workflow_id, started_at__gte=reopened[workflow_id],
                                                finished_at__isnull=False, simulated=False)
            runs, failures = recent.count(), recent.filter(status__in=FAILED).count()
        if runs >= minimum and failures / runs > rate:
            brk = _trip(workflow_id, runs, failures, now)
            if brk is not None:
                tripped.append(brk)
    return tripped


def try_again(now: datetime | None = None) -> list[CircuitBreak]:
    """Activate again, on trial, the workflows whose cool-down is over."""
    now = now or timezone.now()
    closed = []
    for brk in CircuitBreak.objects.filter(closed_at__isnull=True, closes_at__lte=now).select_related("workflow"):
        workflow = brk.workflow
        if workflow.status != WorkflowStatus.PAUSED or workflow.updated_at > brk.opened_at:
            brk.outcome = "left as it is: someone changed the workflow during the cool-down"
        else:
            try:
                workflow_transition(workflow_id=workflow.pk, name="activate", by=None)
                brk.outcome = "activated again on trial"
            except Refused as exc:  # the plan's limit, the definition, a circle: it stays paused
                brk.outcome = "left paused: " + exc.message
        with transaction.atomic():
            brk.closed_at = now
            brk.save(update_fields=["closed_at", "outcome"])
            workflow.refresh_from_db()
            lifecycle.workflow_event(LifecycleType.BREAKER_CLOSED, workflow, outcome=brk.outcome)
        closed.append(brk)
    return closed


def check(now: datetime | None = None) -> int:
    """One pass (the sweep's): try again what cooled down, then trip what fails. Returns trips."""
    now = now or timezone.now()
    try_again(now)
    return len(trip_failing(now))
