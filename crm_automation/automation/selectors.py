"""Reads that more than one surface uses (admin today; pages and the API next)."""

from django.db.models import QuerySet

from crm_automation.automation.models import WorkflowDecision, WorkflowRun


def runs_of_record(*, entity_id, organization_id: int) -> QuerySet[WorkflowRun]:
    """The runs a deal or lead triggered, newest first (through the runs' record index)."""
    return (WorkflowRun.objects.filter(trigger_entity_id=entity_id, organization_id=organization_id,
                                       history_suppressed=False)
            .select_related("workflow").order_by("-started_at", "-id"))


def decisions_of_record(*, entity_id, organization_id: int) -> QuerySet[WorkflowDecision]:
    """Why each candidate workflow did or did not run for the record's changes, newest first."""
    return (WorkflowDecision.objects.filter(entity_id=entity_id, workflow__organization_id=organization_id)
            .select_related("workflow", "event").order_by("-event_id", "workflow_id"))
