"""Writes to workflows: create, change the definition (a new version), status transitions."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django_fsm import has_transition_perm

from crm_automation.automation import plans
from crm_automation.automation.definitions import (
    activation_problems,
    definition_of,
    raise_if_invalid,
    validate_definition,
)
from crm_automation.automation.models import Workflow, WorkflowAction, WorkflowStatus, WorkflowVersion
from crm_automation.crm.models import Organization


def _replace_actions(workflow: Workflow, actions: list[dict]) -> None:
    workflow.actions.all().delete()
    WorkflowAction.objects.bulk_create([
        WorkflowAction(workflow=workflow, position=i, action_type=a["type"], config=a.get("config") or {})
        for i, a in enumerate(actions)
    ])


def workflow_snapshot(*, workflow: Workflow, by=None) -> WorkflowVersion:
    """Record the current definition as a new immutable version, unless it is unchanged."""
    definition = definition_of(workflow)
    latest = workflow.versions.order_by("-number").first()
    if latest is not None and latest.definition == definition:
        return latest
    number = (latest.number if latest else 0) + 1
    version = WorkflowVersion.objects.create(workflow=workflow, number=number, definition=definition,
                                             created_by=by)
    Workflow.objects.filter(pk=workflow.pk).update(version=number, current_version=version)
    workflow.version, workflow.current_version = number, version
    return version


@transaction.atomic
def workflow_create(*, organization: Organization, name: str, trigger_type: str,
                    actions: list[dict], trigger_config: dict | None = None,
                    conditions: dict | None = None, error_handling: str = Workflow.ErrorHandling.STOP,
                    timeout_seconds: int = 60, description: str = "", created_by=None) -> Workflow:
    workflow = Workflow(organization=organization, name=name, description=description,
                        trigger_type=trigger_type, trigger_config=trigger_config or {},
                        conditions=conditions or {}, error_handling=error_handling,
                        timeout_seconds=timeout_seconds, created_by=created_by)
    raise_if_invalid(validate_definition(definition_of(workflow, actions), organization.pk))
    if not name.strip():
        raise ValidationError({"name": "A workflow needs a name."})
    workflow.save()
    _replace_actions(workflow, actions)
    workflow_snapshot(workflow=workflow, by=created_by)
    return workflow


@transaction.atomic
def workflow_update(*, workflow: Workflow, by=None, actions: list[dict] | None = None, **fields) -> Workflow:
    """Change a workflow's definition; creates a new version. Archived workflows are frozen."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if workflow.status == WorkflowStatus.ARCHIVED:
        raise ValidationError("An archived workflow cannot be changed.")
    editable = {"name", "description", "trigger_type", "trigger_config", "conditions",
                "error_handling", "timeout_seconds"}
    unknown = set(fields) - editable
    if unknown:
        raise ValidationError(f"Unknown workflow field(s): {', '.join(sorted(unknown))}")
    for key, value in fields.items():
        setattr(workflow, key, value)
    if actions is None:
        actions = [{"type": a.action_type, "config": a.config} for a in workflow.actions.all()]
    definition = definition_of(workflow, actions)
    errors = validate_definition(definition, workflow.organization_id)
    if workflow.status == WorkflowStatus.ACTIVATED and not actions:
        errors.append(("actions", "an activated workflow needs at least one action"))
    raise_if_invalid(errors)
    workflow.save()
    _replace_actions(workflow, actions)
    workflow_snapshot(workflow=workflow, by=by)
    return workflow


TRANSITIONS = ("activate", "pause", "archive")


@transaction.atomic
def workflow_transition(*, workflow_id: int, name: str, by) -> Workflow:
    """Apply a status transition after checking who asks and why it may not happen.

    The organization row is locked first, so two concurrent activations cannot both pass the
    plan's limit, and the workflow row is re-read under the lock, so a stale page cannot apply
    a transition from a state the workflow has already left.
    """
    if name not in TRANSITIONS:
        raise ValidationError(f"Unknown transition {name!r}.")
    organization_id = Workflow.objects.values_list("organization_id", flat=True).get(pk=workflow_id)
    organization = Organization.objects.select_for_update().get(pk=organization_id)
    workflow = Workflow.objects.select_for_update().get(pk=workflow_id)
    method = getattr(workflow, name)
    if by is not None and not has_transition_perm(method, by):
        raise PermissionError(f"You may not {name} workflows in {organization.name}.")
    from django_fsm import can_proceed

    if not can_proceed(method):
        raise ValidationError(f"Cannot {name} a workflow that is {workflow.get_status_display().lower()}.")
    if name == "activate":
        problems = []
        if not plans.includes_automation(organization.plan):
            problems.append(f"the {organization.get_plan_display()} plan does not include automation")
        limit = plans.ACTIVE_WORKFLOW_LIMIT.get(organization.plan)
        if limit:
            active = Workflow.objects.filter(organization=organization, status=WorkflowStatus.ACTIVATED).count()
            if active >= limit:
                problems.append(f"the {organization.get_plan_display()} plan allows {limit} activated "
                                f"workflows and {active} already are")
        workflow_snapshot(workflow=workflow, by=by)
        problems += activation_problems(workflow.current_version.definition, organization.pk)
        if problems:
            raise ValidationError(f"Cannot activate “{workflow.name}”: " + "; ".join(problems) + ".")
    method()
    workflow.save(update_fields=["status", "updated_at"])
    return workflow
