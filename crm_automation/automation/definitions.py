"""A workflow's definition as plain data, and its validation (what and where is wrong)."""

from django.core.exceptions import ValidationError

from crm_automation.automation import catalog, conditions
from crm_automation.automation.actions import REGISTRY
from crm_automation.automation.models import Workflow
from crm_automation.crm.models import Stage

MAX_ACTIONS = 25


def definition_of(workflow: Workflow, actions=None) -> dict:
    """The versioned part of a workflow. `actions` defaults to the saved ones, in order."""
    if actions is None:
        actions = [{"type": a.action_type, "config": a.config} for a in workflow.actions.all()]
    return {
        "trigger_type": workflow.trigger_type,
        "trigger_config": workflow.trigger_config or {},
        "conditions": workflow.conditions or {},
        "error_handling": workflow.error_handling,
        "timeout_seconds": workflow.timeout_seconds,
        "actions": actions,
    }


def validate_trigger(trigger_type, trigger_config, organization_id: int) -> list[tuple[str, str]]:
    if trigger_type not in catalog.TRIGGER_TYPES:
        return [("trigger_type", f"unknown trigger {trigger_type!r}; use one of "
                                 f"{', '.join(sorted(catalog.TRIGGER_TYPES))}")]
    config = trigger_config or {}
    if not isinstance(config, dict):
        return [("trigger_config", "must be an object")]
    allowed = catalog.STAGE_CONFIG.get(trigger_type, ())
    errors = []
    for key in sorted(set(config) - set(allowed)):
        hint = f"allowed: {', '.join(allowed)}" if allowed else f"{trigger_type} takes no settings"
        errors.append((f"trigger_config.{key}", f"unknown setting ({hint})"))
    wanted = {k: config[k] for k in allowed if config.get(k) not in (None, "")}
    if wanted:
        known = set(Stage.objects.filter(organization_id=organization_id).values_list("slug", flat=True))
        for key, slug in wanted.items():
            if slug not in known:
                errors.append((f"trigger_config.{key}", f"{slug!r} is not a stage of this organization"))
    return errors


def validate_action(action_type, config, *, trigger_type, organization_id, where="") -> list[tuple[str, str]]:
    action = REGISTRY.get(action_type)
    if action is None:
        return [(f"{where}type", f"unknown action {action_type!r}; use one of {', '.join(REGISTRY)}")]
    return [(f"{where}{loc}", msg) for loc, msg in
            action.validate(config, trigger_type=trigger_type, organization_id=organization_id)]


def validate_definition(definition: dict, organization_id: int) -> list[tuple[str, str]]:
    trigger_type = definition.get("trigger_type")
    errors = validate_trigger(trigger_type, definition.get("trigger_config"), organization_id)
    if trigger_type in catalog.TRIGGER_TYPES:
        errors += conditions.validate(definition.get("conditions"), trigger_type)
    if definition.get("error_handling") not in Workflow.ErrorHandling.values:
        errors.append(("error_handling", "must be 'stop' or 'continue'"))
    timeout = definition.get("timeout_seconds")
    if not isinstance(timeout, int) or not 1 <= timeout <= 3600:
        errors.append(("timeout_seconds", "must be a whole number of seconds from 1 to 3600"))
    actions = definition.get("actions") or []
    if len(actions) > MAX_ACTIONS:
        errors.append(("actions", f"at most {MAX_ACTIONS} actions"))
    for i, item in enumerate(actions):
        errors += validate_action(item.get("type"), item.get("config"), trigger_type=trigger_type,
                                  organization_id=organization_id, where=f"actions[{i}].")
    return errors


def raise_if_invalid(errors: list[tuple[str, str]]) -> None:
    if errors:
        raise ValidationError([f"{where}: {message}" for where, message in errors])


def activation_problems(definition: dict, organization_id: int) -> list[str]:
    """Why this definition cannot be activated, in words; empty when it can."""
    problems = [f"{w}: {m}" for w, m in validate_definition(definition, organization_id)]
    if not definition.get("actions"):
        problems.append("the workflow has no action")
    return problems
