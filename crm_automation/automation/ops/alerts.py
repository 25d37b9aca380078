"""Alerts (docs/product.md#kpis-and-alerts): the automation watches itself and tells the
organization's admins — in the app and by email — once per incident.

Checked every minute (tasks.watch, its own schedule), from recent runs only (the recent-runs index):
- success rate of a workflow's runs finished in the last hour (at least ALERT_MIN_RUNS): below
  95 % a warning, below 80 % critical (a warning that turns critical is told again);
- slowness: the median duration of that hour more than twice the workflow's baseline (the
  median of up to 1,000 runs before the hour);
- backlog: more than 1,000 events of an organization waiting to be processed;
- slow runs, a day's volume, the error rate of the last ten minutes: run_alerts.py.

An incident stays open while its condition holds (one AlertIncident row, unique while open) and
closes by itself when it no longer does; the list page shows the open ones.
"""

import logging
import statistics
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone

from crm_automation.automation import lifecycle
from crm_automation.automation.models import (
    AlertIncident,
    AutomationEvent,
    LifecycleType,
    RunStatus,
    Workflow,
    WorkflowRun,
    WorkflowStatus,
)
from crm_automation.automation.ops.paused_run_alerts import notify_admins

if TYPE_CHECKING:
    from config.settings import AlertSettings

logger = logging.getLogger(__name__)

WARNING, CRITICAL = "warning", "critical"
SUCCESS, SLOW, BACKLOG = "success_rate", "slow", "backlog"
# Incidents about a workflow failing too much: each opening is also a workflow.high_failure_rate event.
FAILURE_KINDS = frozenset({SUCCESS, "error_rate"})
BASELINE_RUNS = 1000


def alert_conf() -> "AlertSettings":
    return settings.AUTOMATION["ALERTS"]


def _tell(incident: AlertIncident, title: str, link: str) -> None:
    """An in-app notification and an email to each admin of the organization."""
    admins = notify_admins(incident.organization_id, title=title, body=incident.detail, link=link,
                           key=f"alert:{incident.pk}:{incident.level}")
    recipients = [user.email for user in admins if user.email]
    if recipients:
        try:
            send_mail(subject=title, message=f"{incident.detail}\n\n{settings.SITE_URL}{link}",
                      from_email=None, recipient_list=recipients)
        except Exception:  # noqa: BLE001 (an alert's email must never stop the sweep; the in-app one is there)
            logger.exception("Could not email the alert %s", incident.pk)


def _announce(workflow: Workflow | None, kind: str, level: str, detail: str, figures: dict | None) -> None:
    """A failure-rate incident opened or turned critical is also a lifecycle event (in its transaction)."""
    if kind in FAILURE_KINDS and workflow is not None:
        lifecycle.workflow_event(LifecycleType.HIGH_FAILURE_RATE, workflow, level=level, detail=detail,
                                 **(figures or {}))


def open_incident(organization_id: int, workflow: Workflow | None, kind: str, level: str, detail: str,
                  title: str, link: str, now: datetime, figures: dict | None = None) -> None:
    """Open the incident, or raise its level; tell the admins when either happens."""
    found = AlertIncident.objects.filter(organization_id=organization_id, workflow=workflow, kind=kind,
                                         closed_at__isnull=True).first()
    if found is not None:
        if found.level == WARNING and level == CRITICAL:
            with transaction.atomic():
                found.level, found.detail = CRITICAL, detail
                found.save(update_fields=["level", "detail"])
                _announce(workflow, kind, level, detail, figures)
            _tell(found, title, link)
        return
    try:
        with transaction.atomic():
            incident = AlertIncident.objects.create(organization_id=organization_id, workflow=workflow, kind=kind,
                                                    level=level, detail=detail, opened_at=now)
            _announce(workflow, kind, level, detail, figures)
    except IntegrityError:
        return  # another sweep opened it at the same moment
    _tell(incident, title, link)


def close_incident(organization_id: int, workflow_id: int | None, kind: str, now: datetime) -> None:
    # (None, an organization's own incident, is IS NULL: a Q, as the type checker's lookups leave None out)
    AlertIncident.objects.filter(Q(workflow_id=workflow_id), organization_id=organization_id, kind=kind,
                                 closed_at__isnull=True).update(closed_at=now)


def _median_seconds(runs) -> float | None:
    durations = [(finished - started).total_seconds() for started, finished in runs]
    return statistics.median(durations) if durations else None


def _watch_workflows(now: datetime) -> None:
    conf = alert_conf()
    since = now - timedelta(seconds=conf["WINDOW_SECONDS"])
    finished = (WorkflowRun.objects.filter(started_at__gte=since, finished_at__isnull=False, simulated=False,
                                           workflow__status=WorkflowStatus.ACTIVATED)
                .exclude(status=RunStatus.CANCELLED))
    stats = {row["workflow_id"]: row for row in finished.values("workflow_id").annotate(
        runs=Count("id"), ok=Count("id", filter=Q(status=RunStatus.COMPLETED)))}
    open_ones = set(AlertIncident.objects.filter(closed_at__isnull=True, kind__in=[SUCCESS, SLOW])
                    .values_list("workflow_id", "kind"))
    watched = set(stats) | {workflow_id for workflow_id, _ in open_ones}
    for workflow in Workflow.objects.filter(pk__in=watched):
        row = stats.get(workflow.pk, {"runs": 0, "ok": 0})
        link = reverse("web:runs") + f"?workflow={workflow.pk}&status=failed"
        if row["runs"] >= conf["MIN_RUNS"]:
            rate = row["ok"] / row["runs"]
            level = CRITICAL if rate < conf["CRITICAL_SUCCESS_RATE"] else WARNING \
                if rate < conf["WARNING_SUCCESS_RATE"] else None
            if level:
                detail = (f"{row['ok']} of the {row['runs']} runs of “{workflow.name}” in the last hour succeeded "
                          f"({100 * rate:.0f} %; {level} below {100 * conf['WARNING_SUCCESS_RATE']:.0f} % / "
                          f"{100 * conf['CRITICAL_SUCCESS_RATE']:.0f} %).")
                open_incident(workflow.organization_id, workflow, SUCCESS, level, detail,
                              f"{level.capitalize()}: “{workflow.name}” succeeds in {100 * rate:.0f} % of its runs",
                              link, now, figures={"runs": row["runs"], "failed": row["runs"] - row["ok"],
                                                  "failure_rate": round(1 - rate, 3)})
            else:
                close_incident(workflow.organization_id, workflow.pk, SUCCESS, now)
            _watch_speed(workflow, since, now, link)  # only with enough runs to say anything
        elif row["runs"] == 0:
            close_incident(workflow.organization_id, workflow.pk, SUCCESS, now)
            close_incident(workflow.organization_id, workflow.pk, SLOW, now)


def _watch_speed(workflow: Workflow, since: datetime, now: datetime, link: str) -> None:
    conf = alert_conf()
    runs = WorkflowRun.objects.filter(workflow=workflow, finished_at__isnull=False, simulated=False).order_by(
        "-started_at").values_list("started_at", "finished_at")
    recent = _median_seconds(runs.filter(started_at__gte=since)[:BASELINE_RUNS])
    baseline = _median_seconds(runs.filter(started_at__lt=since)[:BASELINE_RUNS])
    if recent is None or baseline is None or baseline <= 0:
        return
    if recent > conf["SLOW_FACTOR"] * baseline:
        detail = (f"Runs of “{workflow.name}” in the last hour took {recent:.1f} s (median), "
                  f"{recent / baseline:.1f}× their usual {baseline:.1f} s.")
        open_incident(workflow.organization_id, workflow, SLOW, WARNING, detail,
              f"Warning: “{workflow.name}” runs {recent / baseline:.1f}× slower than usual", link, now)
    else:
        close_incident(workflow.organization_id, workflow.pk, SLOW, now)


def _watch_backlog(now: datetime) -> None:
    limit = alert_conf()["BACKLOG"]
    waiting = dict(AutomationEvent.objects.filter(processed_at__isnull=True).values("organization_id")
                   .annotate(n=Count("id")).values_list("organization_id", "n"))
    for organization_id, count in waiting.items():
        if count > limit:
            open_incident(organization_id, None, BACKLOG, WARNING,
                  f"{count:,} changes wait to be processed (more than {limit:,}): the workers are behind or stopped.",
                  f"Warning: {count:,} changes wait for the automation", reverse("web:workflows"), now)
    for organization_id in AlertIncident.objects.filter(kind=BACKLOG, closed_at__isnull=True).exclude(
            organization_id__in=[o for o, n in waiting.items() if n > limit]).values_list("organization_id", flat=True):
        close_incident(organization_id, None, BACKLOG, now)


def check(now: datetime | None = None) -> None:
    """One pass (the sweep's): these alerts, then run_alerts' (slow runs, volume, error rate)."""
    from crm_automation.automation.ops import run_alerts  # (it builds on this module)

    now = now or timezone.now()
    _watch_workflows(now)
    _watch_backlog(now)
    run_alerts.check(now)
