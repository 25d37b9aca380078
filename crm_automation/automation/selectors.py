"""Reads that more than one surface uses (the admin, the pages, the API)."""

from typing import Any

from django.db import connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, QuerySet, Window
from django.db.models.functions import RowNumber

from crm_automation.automation.models import (
    StepStatus,
    WorkflowDecision,
    WorkflowRun,
    WorkflowRunAction,
    WorkflowVersion,
)
from crm_automation.automation.nodes import approval as questions
from crm_automation.crm.selectors import user_has_role


def runs_of_record(*, entity_id, organization_id: int) -> QuerySet[WorkflowRun]:
    """The runs a deal or lead triggered, newest first (through the runs' record index)."""
    return (WorkflowRun.objects.filter(trigger_entity_id=entity_id, organization_id=organization_id,
                                       history_suppressed=False)
            .select_related("workflow").order_by("-started_at", "-id"))


def decisions_of_record(*, entity_id, organization_id: int) -> QuerySet[WorkflowDecision]:
    """Why each candidate workflow did or did not run for the record's changes, newest first."""
    return (WorkflowDecision.objects.filter(entity_id=entity_id, workflow__organization_id=organization_id)
            .select_related("workflow", "event").order_by("-event_id", "workflow_id"))


MEDIAN_OF_RECENT = 1000


def median_durations(*, workflow_ids: list[int], recent: int = MEDIAN_OF_RECENT) -> dict[int, int]:
    """{workflow id: median duration in ms} of the workflows' last `recent` finished runs
    (simulations aside), in one query: the recent runs are taken per workflow from the
    (workflow, -started_at) index, ranked by duration, and only the middle one or two come back.
    Bounded on purpose: a workflow with a million runs costs what one with a thousand does.

    On PostgreSQL a LATERAL join reads exactly the last `recent` index entries per workflow
    (2 ms with 1,000,000 runs); the portable window query below ranks every finished run of the
    workflows first (0.9 s there), which is fine for the embedded SQLite database's sizes."""
    if not workflow_ids:
        return {}
    if connection.vendor == "postgresql":
        return {workflow_id: round(seconds[0] * 1000)
                for workflow_id, seconds in recent_duration_percentiles(workflow_ids, [0.5], recent).items()}
    finished = WorkflowRun.objects.filter(workflow_id__in=workflow_ids, simulated=False, finished_at__isnull=False)
    latest = finished.annotate(recency=Window(RowNumber(), partition_by=F("workflow_id"),
                                              order_by=F("started_at").desc())).filter(recency__lte=recent)
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    per_workflow: dict[str, Any] = {"partition_by": F("workflow_id")}
    middle_rows = (
        WorkflowRun.objects.filter(pk__in=latest.values("pk")).annotate(duration=duration)
        .annotate(rank=Window(RowNumber(), order_by=[F("duration").asc(), F("id").asc()], **per_workflow),
                  total=Window(Count("id"), **per_workflow))
        .filter(rank__gte=(F("total") + 1) / 2, rank__lte=(F("total") + 2) / 2)
        .values_list("workflow_id", "duration"))
    found: dict[int, list] = {}
    for workflow_id, duration in middle_rows:
        found.setdefault(workflow_id, []).append(duration)
    return {workflow_id: round(sum(d.total_seconds() for d in middle) * 1000 / len(middle))
            for workflow_id, middle in found.items()}


def recent_duration_percentiles(workflow_ids: list[int], fractions: list[float],
                                recent: int = MEDIAN_OF_RECENT) -> dict[int, list[float]]:
    """PostgreSQL: {workflow id: [seconds at each fraction]} of the workflows' last `recent`
    finished runs, by a LATERAL join that reads exactly those index entries per workflow."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT w.id, percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY x.s)
                FROM unnest(%s::bigint[]) AS w(id) CROSS JOIN LATERAL (
                    SELECT extract(epoch FROM r.finished_at - r.started_at) AS s
                    FROM {WorkflowRun._meta.db_table} r
                    WHERE r.workflow_id = w.id AND NOT r.simulated AND r.finished_at IS NOT NULL
                    ORDER BY r.started_at DESC LIMIT %s) x
                GROUP BY w.id""", [list(fractions), list(workflow_ids), recent])
        return {workflow_id: [float(v) for v in values] for workflow_id, values in cursor.fetchall()}


def runs_of_organization(*, organization_id: int) -> QuerySet[WorkflowRun]:
    """The organization's run history, newest first along its (organization, -started_at, -id)
    index; runs kept without history (over the plan's quota) are not part of it."""
    return (WorkflowRun.objects.filter(organization_id=organization_id, history_suppressed=False)
            .annotate(workflow_name=F("workflow__name"), version_number=F("version__number"))
            .order_by("-started_at", "-id"))


def version_labels(version: WorkflowVersion) -> dict[str, str]:
    """{node id: label} of a version, as its document shows them (labels export writes included)."""
    document = version.document
    return {node["id"]: node["data"].get("label", "") for node in document.get("nodes", [])}


def open_approvals(*, organization_id: int, user) -> QuerySet[WorkflowRunAction]:
    """The questions (waiting user-input steps, not answered) of the organization's runs that
    `user` may answer: the step's role or a higher one. Oldest question first."""
    roles = [role for role in questions.ROLES if user_has_role(user, organization_id, role)]
    return (WorkflowRunAction.objects
            .filter(run__organization_id=organization_id, run__simulated=False, action_type=questions.USER_INPUT,
                    status=StepStatus.WAITING, result__role__in=roles)
            .exclude(result__has_key="decision")
            .select_related("run__workflow", "run__version").order_by("started_at", "id"))
