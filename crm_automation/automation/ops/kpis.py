"""A workflow's health in figures (docs/product.md#kpis-and-alerts), for its Health tab and the
API.

Every figure reads a bounded slice of history (the last 1,000 runs through the workflow's
(workflow, -started_at) index) or a counter, so a workflow with a million runs costs what one
with a thousand does:
- success rate: the workflow's counters (all time) and its last 1,000 finished runs;
- median and p95 duration of the last 1,000 finished runs;
- runs per day over the last 7 days (estimated from the last 1,000 when there are more);
- failures by kind: the last 1,000 failed runs grouped by the step and the first words of the
  reason ("Send email: the email provider did not take it");
- retries: of the steps of those runs tried more than once, how many succeeded in the end;
- the organization's backlog: changes waiting to be processed, and the oldest one's age.
"""

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Count, Min
from django.utils import timezone

from crm_automation.automation.models import (
    AutomationEvent,
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.ops.metrics import duration_percentiles

RECENT = 1000
FAILED = (RunStatus.FAILED, RunStatus.PARTIAL)
STEP_ERROR = re.compile(r"^Step \d+ \((?P<step>[^)]*)\) failed: (?P<reason>.*)$", re.S)


@dataclass
class Health:
    runs: int
    success_rate_all_time: float | None
    success_rate_recent: float | None
    recent_runs: int
    median_seconds: float | None
    p95_seconds: float | None
    runs_per_day: float
    failures: list[tuple[str, int]] = field(default_factory=list)
    retried_steps: int = 0
    retries_succeeded: int = 0
    backlog: int = 0
    oldest_waiting_seconds: float | None = None

    @property
    def retry_success_rate(self) -> float | None:
        return self.retries_succeeded / self.retried_steps if self.retried_steps else None


def failure_kind(error: str) -> str:
    """“Send email: the email provider did not take it” from a run's error."""
    found = STEP_ERROR.match(error or "")
    step, reason = (found["step"], found["reason"]) if found else ("", error or "unknown")
    reason = re.split(r"[:;(]", reason.strip(), maxsplit=1)[0].strip() or "unknown"
    return f"{step}: {reason}" if step else reason


def workflow_health(workflow: Workflow) -> Health:
    now = timezone.now()
    runs = WorkflowRun.objects.filter(workflow=workflow, simulated=False).order_by("-started_at", "-id")
    recent = list(runs.filter(finished_at__isnull=False).values_list("status", flat=True)[:RECENT])
    counted = [s for s in recent if s != RunStatus.CANCELLED]
    durations = duration_percentiles([workflow.pk]).get(workflow.pk)
    starts = list(runs.values_list("started_at", flat=True)[:RECENT])
    week = now - timedelta(days=7)
    if len(starts) == RECENT and starts[-1] > week:  # more than 1,000 this week: the rate of the last 1,000
        per_day = RECENT / max((now - starts[-1]).total_seconds() / 86400, 1 / 1440)
    else:
        per_day = sum(1 for s in starts if s > week) / 7
    failed = runs.filter(status__in=FAILED)[:RECENT]
    kinds = Counter(failure_kind(error) for error in failed.values_list("error", flat=True))
    retried = list(WorkflowRunAction.objects.filter(run__in=list(runs.values_list("pk", flat=True)[:RECENT]),
                                                    attempts__gt=1).values_list("status", flat=True))
    waiting = (AutomationEvent.objects.filter(organization_id=workflow.organization_id, processed_at__isnull=True)
               .aggregate(n=Count("id"), first=Min("created_at")))
    return Health(
        runs=workflow.run_count,
        success_rate_all_time=workflow.success_count / workflow.run_count if workflow.run_count else None,
        success_rate_recent=(sum(1 for s in counted if s == RunStatus.COMPLETED) / len(counted)) if counted else None,
        recent_runs=len(counted),
        median_seconds=durations[0] if durations else None,
        p95_seconds=durations[1] if durations else None,
        runs_per_day=round(per_day, 1),
        failures=kinds.most_common(5),
        retried_steps=len(retried),
        retries_succeeded=sum(1 for s in retried if s == StepStatus.COMPLETED),
        backlog=waiting["n"],
        oldest_waiting_seconds=(now - waiting["first"]).total_seconds() if waiting["first"] else None,
    )
