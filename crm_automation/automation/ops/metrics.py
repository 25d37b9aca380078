"""Prometheus metrics (the KPIs of docs/product.md#kpis-and-alerts and more), read from the
database at scrape time.

Every figure comes from a counter the engine keeps anyway or from a partial index, so a scrape
costs a few indexed queries whatever the size of the run history:

- runs per workflow by outcome: the workflow's own counters (Workflow.run_count, success_count,
  failure_count);
- run duration per workflow: median and p95 of its last 1,000 finished runs (a LATERAL join on
  PostgreSQL reads exactly those index entries);
- backlog per organization: events not processed yet and the age of the oldest (event_pending_idx);
- runs under way, waiting and paused (run_unfinished_idx, run_waiting_idx, run_trouble_idx);
- wake-up lag: how late the most overdue waiting run is (run_waiting_idx).

Served at /metrics to a scraper that sends `Authorization: Bearer <METRICS_TOKEN>`; with no
METRICS_TOKEN set the endpoint does not exist (404).
"""

import statistics

from django.db import connection
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from crm_automation.automation.models import AutomationEvent, RunStatus, Workflow, WorkflowRun
from crm_automation.automation.selectors import recent_duration_percentiles

RECENT = 1000
PREFIX = "crm_automation"


def duration_percentiles(workflow_ids: list[int], recent: int = RECENT) -> dict[int, tuple[float, float]]:
    """{workflow id: (median, p95) in seconds} of the workflows' last `recent` finished runs."""
    if not workflow_ids:
        return {}
    if connection.vendor == "postgresql":
        return {workflow_id: (p50, p95) for workflow_id, (p50, p95)
                in recent_duration_percentiles(workflow_ids, [0.5, 0.95], recent).items()}
    found = {}
    for workflow_id in workflow_ids:  # the embedded SQLite database: small histories
        rows = (WorkflowRun.objects.filter(workflow_id=workflow_id, simulated=False, finished_at__isnull=False)
                .order_by("-started_at").values_list("started_at", "finished_at")[:recent])
        seconds = sorted((finished - started).total_seconds() for started, finished in rows
                         if finished is not None)  # (none is: filtered on)
        if seconds:
            p95 = seconds[min(len(seconds) - 1, round(0.95 * (len(seconds) - 1)))]
            found[workflow_id] = (statistics.median(seconds), p95)
    return found


class AutomationCollector(Collector):
    def collect(self):
        now = timezone.now()
        labels = ["organization", "workflow"]
        runs = CounterMetricFamily(f"{PREFIX}_workflow_runs", "Runs of a workflow by outcome (its counters).",
                                   labels=[*labels, "outcome"])
        median = GaugeMetricFamily(f"{PREFIX}_workflow_run_duration_median_seconds",
                                   f"Median duration of the workflow's last {RECENT} finished runs.", labels=labels)
        p95 = GaugeMetricFamily(f"{PREFIX}_workflow_run_duration_p95_seconds",
                                f"95th percentile duration of the workflow's last {RECENT} finished runs.",
                                labels=labels)
        workflows = list(Workflow.objects.exclude(status="archived").select_related("organization")
                         .values_list("pk", "key", "organization__slug", "run_count", "success_count",
                                      "failure_count"))
        durations = duration_percentiles([w[0] for w in workflows])
        for pk, key, org, total, succeeded, failed in workflows:
            runs.add_metric([org, key, "succeeded"], succeeded)
            runs.add_metric([org, key, "failed"], failed)
            runs.add_metric([org, key, "other"], max(0, total - succeeded - failed))
            if pk in durations:
                median.add_metric([org, key], durations[pk][0])
                p95.add_metric([org, key], durations[pk][1])
        yield from (runs, median, p95)

        backlog = GaugeMetricFamily(f"{PREFIX}_events_backlog", "Events not processed yet.", labels=["organization"])
        oldest = GaugeMetricFamily(f"{PREFIX}_oldest_event_age_seconds", "Age of the oldest event not processed yet.",
                                   labels=["organization"])
        pending = (AutomationEvent.objects.filter(processed_at__isnull=True).values("organization__slug")
                   .annotate(count=Count("id"), first=Min("created_at")))
        for row in pending:
            backlog.add_metric([row["organization__slug"]], row["count"])
            oldest.add_metric([row["organization__slug"]], (now - row["first"]).total_seconds())
        yield from (backlog, oldest)

        under_way = GaugeMetricFamily(f"{PREFIX}_runs", "Runs that are not finished, by status.", labels=["status"])
        for status in (RunStatus.STARTED, RunStatus.WAITING, RunStatus.PAUSED):
            under_way.add_metric([status.value], WorkflowRun.objects.filter(status=status).count())
        yield under_way

        overdue = (WorkflowRun.objects.filter(status=RunStatus.WAITING, wake_at__lte=now)
                   .aggregate(first=Min("wake_at"))["first"])
        lag = GaugeMetricFamily(f"{PREFIX}_wakeup_lag_seconds",
                                "How late the most overdue waiting run is (0 when none is overdue).")
        lag.add_metric([], (now - overdue).total_seconds() if overdue else 0.0)
        yield lag
