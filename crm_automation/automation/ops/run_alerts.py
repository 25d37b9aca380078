"""The rest of the alert thresholds of docs/product.md#kpis-and-alerts (a run longer than 30 s, a
day above 150 % of the normal volume, an error rate over 50 % in 10 minutes), raised and told as
alerts.py's are (an AlertIncident, an in-app notification and an email to each admin), on the same
minute's schedule (tasks.watch), from recent runs only:

- slow_run (critical): runs started in the last hour that took more than SLOW_RUN_SECONDS
  (30 s) from start to finish, leaving out runs that parked by design (a wait, a question to a
  person, a sub-workflow, an SMS waiting for its reply): their time is waiting, not work. A
  step's retries after failures do count: whoever waits on the run waited for them;
- volume (warning): today's runs (the organization's day) above VOLUME_FACTOR (150 %) of the
  median of the previous 14 days' daily counts. Only workflows that ran on at least
  VOLUME_MIN_DAYS (7) of those days have a "normal" to compare with, and a day of fewer than
  VOLUME_MIN_RUNS (20) runs is no spike. Today's runs are counted only up to the threshold (a
  capped count on the (workflow, -started_at) index) and the median once a day per workflow;
- error_rate (critical): more than ERROR_RATE (50 %) of the runs started in the last
  ERROR_WINDOW_SECONDS (10 minutes) failed, once at least ERROR_MIN_RUNS (10) of them finished.

Once per window, no storms: an incident stays open while its condition holds (alerts.py), and
after it closes the same alert about the same workflow is not raised again within its window: an
hour since it was last opened (slow runs), ten minutes (the error rate), the same day of the
organization (volume).
"""

import statistics
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.core.cache import cache
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.functions import TruncDate
from django.urls import reverse

from crm_automation.automation.models import (
    AlertIncident,
    RunStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
    WorkflowStatus,
)
from crm_automation.automation.nodes.approval import USER_INPUT
from crm_automation.automation.ops.alerts import CRITICAL, WARNING, alert_conf, close_incident, open_incident

SLOW_RUN, VOLUME, ERROR_RATE = "slow_run", "volume", "error_rate"
SLOW_WINDOW = timedelta(hours=1)
VOLUME_WINDOW = timedelta(days=1)
HISTORY_DAYS = 14
PARKING_TYPES = ("wait", USER_INPUT, "sub_workflow")  # steps that park their run by design
FAILED = (RunStatus.FAILED, RunStatus.PARTIAL)


def _raise(workflow: Workflow, kind: str, level: str, window_start: datetime, detail: str, title: str,
           link: str, now: datetime, figures: dict | None = None) -> None:
    """Open the incident unless one about the same workflow and kind was opened in this window
    (closed since, or still open: then alerts.open_incident leaves it as it is)."""
    recent = AlertIncident.objects.filter(organization_id=workflow.organization_id, workflow=workflow, kind=kind,
                                          opened_at__gt=window_start, closed_at__isnull=False)
    if not recent.exists():
        open_incident(workflow.organization_id, workflow, kind, level, detail, title, link, now, figures=figures)


def _runs_link(workflow: Workflow, status: str = "") -> str:
    return reverse("web:runs") + f"?workflow={workflow.pk}" + (f"&status={status}" if status else "")


def _open_about(kind: str) -> set[int]:
    return set(AlertIncident.objects.filter(kind=kind, closed_at__isnull=True, workflow__isnull=False)
               .values_list("workflow_id", flat=True))


# --- Slow runs ----------------------------------------------------------------------------------
def _watch_slow_runs(now: datetime) -> None:
    limit = timedelta(seconds=alert_conf()["SLOW_RUN_SECONDS"])
    parked = WorkflowRunAction.objects.filter(run=OuterRef("pk")).filter(
        Q(action_type__in=PARKING_TYPES) | Q(action_type="send_sms", result__has_key="reply_by"))
    slow = (WorkflowRun.objects.filter(started_at__gte=now - SLOW_WINDOW, finished_at__isnull=False, simulated=False,
                                       finished_at__gt=F("started_at") + limit,
                                       workflow__status=WorkflowStatus.ACTIVATED)
            .exclude(status=RunStatus.CANCELLED).exclude(Exists(parked)))
    counts = dict(slow.values("workflow_id").annotate(n=Count("id")).values_list("workflow_id", "n"))
    for workflow in Workflow.objects.filter(pk__in=set(counts) | _open_about(SLOW_RUN)):
        count = counts.get(workflow.pk, 0)
        if not count:
            close_incident(workflow.organization_id, workflow.pk, SLOW_RUN, now)
            continue
        slowest = max((finished - started).total_seconds() for started, finished in
                      slow.filter(workflow=workflow).values_list("started_at", "finished_at")[:1000] if finished)
        detail = (f"{count} run(s) of “{workflow.name}” in the last hour took longer than {limit.seconds} s "
                  f"(the slowest {slowest:.0f} s).")
        _raise(workflow, SLOW_RUN, CRITICAL, now - SLOW_WINDOW, detail,
               f"Critical: runs of “{workflow.name}” take longer than {limit.seconds} s", _runs_link(workflow), now)


# --- Volume -------------------------------------------------------------------------------------
def _day_start(now: datetime, zone_name: str) -> datetime:
    try:
        zone = ZoneInfo(zone_name)
    except (KeyError, ValueError):  # (validated on save; an old row may still hold a bad name)
        zone = ZoneInfo("UTC")
    return datetime.combine(now.astimezone(zone).date(), time.min, tzinfo=zone)


def normal_daily_runs(workflow: Workflow, today: datetime) -> float | None:
    """The median of the daily run counts of the 14 days before `today` (the start of the
    organization's day), days without runs counted as 0; None when it ran on fewer than
    VOLUME_MIN_DAYS of them. Worked out once a day per workflow (cached until the day ends)."""
    key = f"automation:normal-runs:{workflow.pk}:{today.isoformat()}"
    found = cache.get(key)
    if found is None:
        rows = (WorkflowRun.objects.filter(workflow=workflow, simulated=False,
                                           started_at__gte=today - timedelta(days=HISTORY_DAYS), started_at__lt=today)
                .annotate(day=TruncDate("started_at", tzinfo=today.tzinfo)).values("day").annotate(n=Count("id")))
        per_day = [row["n"] for row in rows]
        found = {"days": len(per_day), "median": statistics.median(per_day + [0] * (HISTORY_DAYS - len(per_day)))}
        cache.set(key, found, timeout=int(VOLUME_WINDOW.total_seconds()))
    return found["median"] if found["days"] >= alert_conf()["VOLUME_MIN_DAYS"] else None


def _watch_volume(now: datetime) -> None:
    conf = alert_conf()
    candidates = (Workflow.objects.filter(status=WorkflowStatus.ACTIVATED, last_run_at__gte=now - VOLUME_WINDOW)
                  .select_related("organization"))
    watched = {w.pk: w for w in candidates}
    watched.update({w.pk: w for w in Workflow.objects.filter(pk__in=_open_about(VOLUME) - set(watched))
                    .select_related("organization")})
    for workflow in watched.values():
        today = _day_start(now, workflow.organization.time_zone)
        normal = normal_daily_runs(workflow, today)
        above = max(conf["VOLUME_MIN_RUNS"], int(conf["VOLUME_FACTOR"] * normal) + 1) if normal else None
        if above is None:
            close_incident(workflow.organization_id, workflow.pk, VOLUME, now)
            continue
        # Counted up to the threshold only: a day of a million runs costs what one at the threshold does.
        count = (WorkflowRun.objects.filter(workflow=workflow, simulated=False, started_at__gte=today)
                 .values("pk")[:above].count())
        if count < above:
            close_incident(workflow.organization_id, workflow.pk, VOLUME, now)
            continue
        detail = (f"“{workflow.name}” has run {count:,} times or more today, above "
                  f"{100 * conf['VOLUME_FACTOR']:.0f} % of its normal {normal:g} runs a day (the median of the "
                  f"previous {HISTORY_DAYS} days).")
        _raise(workflow, VOLUME, WARNING, today, detail,
               f"Warning: “{workflow.name}” runs far more often than usual today", _runs_link(workflow), now)


# --- Error rate ---------------------------------------------------------------------------------
def _watch_error_rate(now: datetime) -> None:
    conf = alert_conf()
    window = timedelta(seconds=conf["ERROR_WINDOW_SECONDS"])
    finished = (WorkflowRun.objects.filter(started_at__gte=now - window, finished_at__isnull=False, simulated=False,
                                           workflow__status=WorkflowStatus.ACTIVATED)
                .exclude(status=RunStatus.CANCELLED))
    stats = {row["workflow_id"]: row for row in finished.values("workflow_id").annotate(
        runs=Count("id"), failed=Count("id", filter=Q(status__in=FAILED)))}
    minutes = conf["ERROR_WINDOW_SECONDS"] // 60
    for workflow in Workflow.objects.filter(pk__in=set(stats) | _open_about(ERROR_RATE)):
        row = stats.get(workflow.pk, {"runs": 0, "failed": 0})
        if row["runs"] < conf["ERROR_MIN_RUNS"] or row["failed"] / row["runs"] <= conf["ERROR_RATE"]:
            close_incident(workflow.organization_id, workflow.pk, ERROR_RATE, now)
            continue
        rate = row["failed"] / row["runs"]
        detail = (f"{row['failed']} of the {row['runs']} runs of “{workflow.name}” in the last {minutes} minutes "
                  f"failed ({100 * rate:.0f} %, more than {100 * conf['ERROR_RATE']:.0f} %).")
        _raise(workflow, ERROR_RATE, CRITICAL, now - window, detail,
               f"Critical: {100 * rate:.0f} % of the runs of “{workflow.name}” fail", _runs_link(workflow, "failed"),
               now, figures={"runs": row["runs"], "failed": row["failed"], "failure_rate": round(rate, 3),
                             "window_minutes": minutes})


def check(now: datetime) -> None:
    """One pass (alerts.check's)."""
    _watch_slow_runs(now)
    _watch_volume(now)
    _watch_error_rate(now)
