"""Starting a workflow by hand (the `manual` trigger, docs/product.md#triggers): a person starts
an activated workflow whose trigger is "started by a person" on one deal or lead, from that
record's page."""

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from crm_automation.automation import plans
from crm_automation.automation.definition import catalog
from crm_automation.automation.definition.validation import plain_data_errors
from crm_automation.automation.models import (
    AutomationEvent,
    Workflow,
    WorkflowDecision,
    WorkflowRun,
    WorkflowStatus,
)
from crm_automation.automation.runtime.queue import enqueue_continue
from crm_automation.crm.models import Deal
from crm_automation.crm.selectors import user_has_role
from crm_automation.refusals import Refused


def manual_workflows(record) -> list[Workflow]:
    """The activated workflows a person may start on this record."""
    trigger = catalog.MANUAL_DEAL if isinstance(record, Deal) else catalog.MANUAL_LEAD
    return list(Workflow.objects.filter(organization_id=record.organization_id, trigger_type=trigger,
                                        status=WorkflowStatus.ACTIVATED).order_by("name"))


@transaction.atomic
def workflow_start(*, workflow_id: int, by, record, input: dict | None = None) -> WorkflowRun:
    """Start the workflow on `record` now, with optional `input` (plain data its templates read as
    {{trigger.input.x}}). Ops members and admins of its organization may."""
    workflow = Workflow.objects.select_related("organization", "current_version").get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can start workflows.")
    if record.organization_id != workflow.organization_id:
        raise ValidationError("That record belongs to another organization.")
    entity = "deal" if isinstance(record, Deal) else "lead"
    if catalog.MANUAL.get(workflow.trigger_type) != entity:
        how = workflow.get_trigger_type_display().lower()
        raise Refused(f"“{workflow.name}” is not started by hand on a {entity} (its trigger: {how}).")
    if workflow.status != WorkflowStatus.ACTIVATED or workflow.current_version is None:
        raise Refused(f"“{workflow.name}” is {workflow.get_status_display().lower()}: activate it first.")
    if not plans.includes_automation(workflow.organization.plan):
        raise Refused(f"The {workflow.organization.get_plan_display()} plan does not include automation.")
    who = by.get_username() if by is not None else "the system"
    errors = plain_data_errors(input or {}, "input")
    if errors or not isinstance(input or {}, dict):
        raise ValidationError({"input": [f"{w}: {m}" for w, m in errors] or ["must be an object"]})
    logged = plans.reserve_history(organization=workflow.organization, runs=1)  # counts like any run
    event = AutomationEvent.objects.create(
        organization_id=workflow.organization_id, kind=workflow.trigger_type, entity_type=entity,
        entity_id=record.pk, payload={"started_by": who, "input": input or {}}, processed_at=timezone.now())
    WorkflowDecision.objects.create(
        event=event, workflow=workflow, version=workflow.current_version, entity_id=record.pk,
        outcome=WorkflowDecision.Outcome.MATCHED if logged else WorkflowDecision.Outcome.MATCHED_UNLOGGED,
        reason=f"started by {who}")
    run = WorkflowRun.objects.create(
        organization_id=workflow.organization_id, workflow=workflow, version=workflow.current_version, event=event,
        trigger_type=workflow.trigger_type, trigger_entity_type=entity, trigger_entity_id=record.pk,
        metadata={"started_by": who}, history_suppressed=not logged)
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue([run.pk]))
    return run
