"""A workflow's definition as plain data, and its validation (what and where is wrong)."""

import math
import uuid
from collections.abc import Callable

from django.core.exceptions import ValidationError

from crm_automation import bounded_reader
from crm_automation.automation.ai import providers
from crm_automation.automation.definition import catalog, conditions, error_policy, graph
from crm_automation.automation.models import Workflow
from crm_automation.automation.nodes import REGISTRY, control
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.nodes import function as functions
from crm_automation.automation.nodes.base import template_errors
from crm_automation.automation.triggers import bulk, business_events, record_changes, relative_time, schedules
from crm_automation.automation.triggers import manual as manual_inputs
from crm_automation.crm.selectors import shown, stage_slugs

MAX_ACTIONS = 200  # a canvas of a few hundred steps opens in well under a second (benchmarks/canvas_open.py)
MAX_TEXT = 20_000
TOO_LONG = "is longer than"
# Settings that are one line a person reads (a subject, a title): a sensible length, and the
# column they end up in. Longer texts (an email's body) have MAX_TEXT.
SHORT_TEXT = {"send_email": {"to": 254, "subject": 255}, "create_task": {"title": 200},
              "notify": {"title": 200}, "user_input": {"promptText": 1000}}
MAX_DEPTH = 8
DEFINITION_FIELDS = ("trigger_type", "trigger_config", "conditions", "error_handling", "reenrollment",
                     "timeout_seconds", "graph")
LOOP_FIELDS = {"loop.index": "number", "loop.current": catalog.OPEN}
FUNCTION = "function"
RESERVED = {"trigger", "deal", "lead", "loop", "contact", "project"}  # the first names of template paths


def plain_data_errors(value, where: str, depth: int = 0) -> list[tuple[str, str]]:
    """JSON a database can store and our code can compare: no NUL characters (PostgreSQL
    refuses them), no NaN or Infinity, bounded size and nesting."""
    if depth > MAX_DEPTH:
        return [(where, "is nested too deeply")]
    if isinstance(value, str):
        problem = bounded_reader.text_problem(value)
        if problem:
            return [(where, problem)]
        if len(value) > MAX_TEXT:
            return [(where, f"{TOO_LONG} {MAX_TEXT:,} characters ({len(value):,})")]
        return []
    if isinstance(value, float) and not math.isfinite(value):
        return [(where, f"{value} is not a number")]
    if isinstance(value, dict):
        errors = []
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key:
                return [(where, "has a key that is not plain text")]
            errors += plain_data_errors(item, f"{where}.{key}" if where else key, depth + 1)
        return errors
    if isinstance(value, list):
        return [e for i, item in enumerate(value) for e in plain_data_errors(item, f"{where}[{i}]", depth + 1)]
    if value is None or isinstance(value, bool | int | float):
        return []
    return [(where, f"{type(value).__name__} is not a JSON value")]


Problems = list[tuple[str, str]]
# The triggers whose family checks their settings (trigger type, settings, organization id →
# (place in the settings, message)); the others take a stage filter or a webhook endpoint
# (_stage_settings). A new trigger family registers its types here.
TRIGGER_SETTINGS: dict[str, Callable[[str, dict, int], Problems]] = {
    catalog.SCHEDULE: lambda trigger_type, config, organization_id: schedules.validate(config),
    catalog.DATE_REACHED: relative_time.validate,
    catalog.IN_STAGE: relative_time.validate,
    **dict.fromkeys(catalog.UPDATED, lambda trigger_type, config, organization_id: record_changes.validate(
        trigger_type, config)),
    **dict.fromkeys(catalog.MANUAL, lambda trigger_type, config, organization_id: manual_inputs.validate(
        trigger_type, config, organization_id)),
}


def validate_trigger(trigger_type, trigger_config, organization_id: int) -> list[tuple[str, str]]:
    """The trigger's type and settings; a trigger on record changes may also say what it does
    with bulk changes (`bulk`, bulk.py)."""
    if isinstance(trigger_config, dict) and "bulk" in trigger_config and trigger_type in catalog.CHANGE_TRIGGERS:
        rest = {key: value for key, value in trigger_config.items() if key != "bulk"}
        return bulk.validate(trigger_config["bulk"]) + _trigger_settings(trigger_type, rest, organization_id)
    return _trigger_settings(trigger_type, trigger_config, organization_id)


def _trigger_settings(trigger_type, trigger_config, organization_id: int) -> list[tuple[str, str]]:
    if trigger_type in catalog.LATER_TRIGGERS:
        return [] if isinstance(trigger_config or {}, dict) else [("trigger_config", "must be a mapping")]
    if catalog.is_event(trigger_type):
        return [("trigger_" + place, message) for place, message in business_events.validate(
            trigger_type, trigger_config or {}, organization_id)]
    if not isinstance(trigger_type, str) or trigger_type not in catalog.TRIGGER_TYPES:
        return [("trigger_type", f"unknown trigger {shown(trigger_type)}; use one of "
                                 f"{', '.join(sorted(catalog.TRIGGER_TYPES))}")]
    family = TRIGGER_SETTINGS.get(trigger_type)
    if family is not None:
        return [("trigger_" + place, message) for place, message in family(trigger_type, trigger_config or {},
                                                                           organization_id)]
    return _stage_settings(trigger_type, trigger_config or {}, organization_id)


def _stage_settings(trigger_type: str, config, organization_id: int) -> list[tuple[str, str]]:
    """A record trigger's stage filter (from, to) and an inbound webhook's endpoint."""
    if not isinstance(config, dict):
        return [("trigger_config", "must be an object, e.g. {\"to_stage\": \"won\"}")]
    settings = catalog.TRIGGER_SETTINGS.get(trigger_type, ())
    allowed = catalog.STAGE_CONFIG.get(trigger_type, ())
    errors = []
    if "endpoint" in settings and config.get("endpoint") not in (None, ""):
        try:
            uuid.UUID(str(config["endpoint"]))
        except ValueError:
            errors.append(("trigger_config.endpoint", "must be the id (uuid) of one of this organization's webhook "
                                                      "endpoints"))
    for key in sorted(set(config) - set(allowed) - set(settings)):
        hint = f"allowed: {', '.join(allowed)}" if allowed else f"{trigger_type} takes no settings"
        errors.append((f"trigger_config.{key}", f"unknown setting ({hint})"))
    wanted = {k: config[k] for k in allowed if config.get(k) not in (None, "")}
    if wanted:
        known = stage_slugs(organization_id)
        for key, slug in wanted.items():
            if not isinstance(slug, str) or slug not in known:
                errors.append((f"trigger_config.{key}", f"{shown(slug)} is not a stage of this organization; "
                                                        f"use one of {', '.join(known)}"))
    if "from_stage" in wanted and wanted.get("from_stage") == wanted.get("to_stage"):
        errors.append(("trigger_config.to_stage", f"is the same stage as “from” ({shown(wanted['to_stage'])}): a "
                                                  "deal never moves from a stage to itself, so this workflow would "
                                                  "never run; choose another stage, or leave “from” empty"))
    return errors


def validate_action(action_type, config, *, trigger_type, organization_id, where="") -> list[tuple[str, str]]:
    if control.is_control(action_type):
        return [(f"{where}{loc}", msg) for loc, msg in
                control.validate(action_type, config, trigger_type=trigger_type, organization_id=organization_id)]
    if action_type in catalog.LATER_NODES:
        return [] if isinstance(config, dict) else [(f"{where}config", "must be a mapping")]
    if action_type == questions.USER_INPUT:
        short = _short_text_errors(action_type, config)
        said = {place for place, _ in short}
        return [(f"{where}{loc}", msg) for loc, msg in
                short + [e for e in questions.validate(config, trigger_type=trigger_type) if e[0] not in said]]
    if action_type == FUNCTION:
        if not isinstance(config, dict):
            return [(f"{where}config", 'must be an object, e.g. {"functionRef": "crm/query_deals", "args": {}}')]
        found = functions.validate(config, organization_id=organization_id)
        found += _argument_templates(config.get("args"), "config.args", trigger_type)
        return [(f"{where}{loc}", msg) for loc, msg in found]
    if action_type == "update_field" and catalog.TRIGGER_ENTITY.get(trigger_type) is None and \
            not catalog.is_event(trigger_type) and trigger_type not in (catalog.TASK_COMPLETED, catalog.TASK_UPDATED):
        return [(f"{where}type", "this trigger has no deal, lead or project to update; use a function, a task or "
                                 "an HTTP request instead")]
    action = REGISTRY.get(action_type) if isinstance(action_type, str) else None
    if action is None:
        choices = ", ".join([*REGISTRY, FUNCTION, questions.USER_INPUT, *control.LABELS])
        if action_type in (None, ""):
            return [(f"{where}type", f"choose an action type ({choices})")]
        return [(f"{where}type", f"unknown action {shown(action_type)}; use one of {choices}")]
    short = _short_text_errors(action_type, config)
    said = {place for place, _ in short}  # one message per place: not "too long" twice
    errors = [e for e in action.validate(config, trigger_type=trigger_type, organization_id=organization_id)
              if e[0] not in said]
    return [(f"{where}{loc}", msg) for loc, msg in short + errors]


def _short_text_errors(action_type: str, config) -> list[tuple[str, str]]:
    """One-line settings longer than makes sense for them (SHORT_TEXT)."""
    if not isinstance(config, dict):
        return []
    return [(f"config.{key}", f"is {len(config[key]):,} characters long; at most {limit} fit here")
            for key, limit in SHORT_TEXT.get(action_type, {}).items()
            if isinstance(config.get(key), str) and len(config[key]) > limit]


def _argument_templates(value, where: str, trigger_type: str) -> list[tuple[str, str]]:
    """The templates in a function's arguments name values the node can read."""
    if isinstance(value, str):
        return template_errors(where, value, trigger_type) if "{{" in value else []
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _argument_templates(v, f"{where}.{k}", trigger_type)]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _argument_templates(v, f"{where}[{i}]", trigger_type)]
    return []


def _label_errors(item: dict, where: str) -> list[tuple[str, str]]:
    label = item.get("label")
    if label is None:
        return []
    if not isinstance(label, str) or len(label) > 200:
        return [(f"{where}.label", "must be text of at most 200 characters")]
    if label and not label.strip():
        return [(f"{where}.label", "is blank: leave it out and the step gets one from what it does")]
    if any(c in label for c in ".{}"):
        return [(f"{where}.label", "may not contain dots or braces: templates refer to nodes by label, "
                                   "as in {{Find Deals.rows}}")]
    if label.strip().casefold() in RESERVED:
        return [(f"{where}.label", f"“{label}” is a name templates already use ({', '.join(sorted(RESERVED))})")]
    return []


def _label_clashes(definition: dict) -> list[tuple[str, str]]:
    """Templates refer to nodes by label, so two nodes may not share one, whatever its case (a
    workflow document could not hold them)."""
    part = definition.get("graph")
    trigger = part.get("trigger") if isinstance(part, dict) else None  # (graph.problems checks their shape)
    label = trigger.get("label") if isinstance(trigger, dict) else None
    seen = {label.strip().casefold(): "the trigger"} if isinstance(label, str) and label.strip() else {}
    errors = []
    for i, item in enumerate(definition.get("actions") or []):
        label = item.get("label") if isinstance(item, dict) else None
        if not isinstance(label, str) or not label.strip():
            continue  # (none: export makes one that differs from the others)
        folded = label.strip().casefold()
        if folded in seen:
            errors.append((f"actions[{i}].label", f"is also the label of {seen[folded]}; labels must be unique "
                                                  "(templates refer to nodes by label)"))
        seen.setdefault(folded, f"“{graph.node_id_at(item, i)}”")
    return errors


def node_scopes(definition: dict) -> dict[str, dict[str, str]]:
    """What each node may read besides the trigger's fields: the loop's variables inside a loop
    body, and the output of every node before it, by label (any case) and by id."""
    flow = graph.build(definition)
    before = graph.upstream(flow)
    scopes = {}
    for node_id in flow.nodes:
        fields = dict(LOOP_FIELDS) if node_id in flow.loop_of else {}
        for earlier in before.get(node_id, ()):
            node = flow.nodes[earlier]
            fields[earlier] = catalog.OPEN
            fields[(node.label or earlier).casefold()] = catalog.OPEN
        scopes[node_id] = fields
    return scopes


def validate_definition(definition: dict, organization_id: int) -> list[tuple[str, str]]:
    """Every problem of the definition at once (the trigger, its conditions, the settings and
    every node's config), so one save shows all there is to fix."""
    long_texts = plain_data_errors(definition, "")
    if any(not message.startswith(TOO_LONG) for _, message in long_texts):
        return long_texts  # NUL, NaN, not JSON: nothing below may compare or store such a value
    with catalog.declared_events(business_events.declared_fields(organization_id)):
        errors = _checked(definition, organization_id)
    # A text that is too long is said once, at its place (not again by the template check).
    too_long = {place for place, _ in long_texts}
    return long_texts + [(place, message) for place, message in errors if place not in too_long]


def _checked(definition: dict, organization_id: int) -> list[tuple[str, str]]:
    trigger_type = definition.get("trigger_type")
    errors = validate_trigger(trigger_type, definition.get("trigger_config"), organization_id)
    if trigger_type in catalog.MANUAL and (definition.get("conditions") or {}).get("rules"):
        errors.append(("conditions", "a workflow started by a person has no trigger conditions; check what you "
                                     "need with a condition node after the trigger"))
    if isinstance(trigger_type, str) and catalog.known_trigger(trigger_type):
        errors += conditions.validate(definition.get("conditions"), trigger_type, organization_id=organization_id)
    if definition.get("error_handling") not in Workflow.ErrorHandling.values:
        errors.append(("error_handling", "must be 'stop', 'continue', 'pause' or 'fallback'"))
    if definition.get("reenrollment", Workflow.Reenrollment.EVERY_TIME) not in Workflow.Reenrollment.values:
        errors.append(("reenrollment", f"must be one of {', '.join(Workflow.Reenrollment.values)}"))
    timeout = definition.get("timeout_seconds")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 3600:
        errors.append(("timeout_seconds", "must be a whole number of seconds from 1 to 3600"))
    actions = definition.get("actions") or []
    if not isinstance(actions, list):
        return [*errors, ("actions", "must be a list")]
    if len(actions) > MAX_ACTIONS:
        errors.append(("actions", f"at most {MAX_ACTIONS} actions ({len(actions)} given)"))
    shape = graph.problems(definition) if all(isinstance(a, dict) for a in actions) else []
    scopes = node_scopes(definition) if not shape else {}
    errors += _label_clashes(definition)
    for i, item in enumerate(actions):
        if not isinstance(item, dict):
            errors.append((f"actions[{i}]", "must be an object with type and config"))
            continue
        errors += _label_errors(item, f"actions[{i}]")
        if graph.node_id_at(item, i) in RESERVED:
            errors.append((f"actions[{i}].id", f"“{item['id']}” is a name templates already use"))
        errors += error_policy.validate(item.get("on_error"), f"actions[{i}].on_error")
        with catalog.node_scope(scopes.get(graph.node_id_at(item, i), {})):
            errors += validate_action(item.get("type"), item.get("config"), trigger_type=trigger_type,
                                      organization_id=organization_id, where=f"actions[{i}].")
    return errors + shape


def raise_if_invalid(errors: list[tuple[str, str]]) -> None:
    if errors:
        raise ValidationError([f"{where}: {message}" if where else message for where, message in errors])


def activation_problems(definition: dict, organization_id: int) -> list[str]:
    """Why this definition cannot be activated, in words; empty when it can."""
    problems = [f"{w}: {m}" for w, m in validate_definition(definition, organization_id)]
    if definition.get("trigger_type") in catalog.LATER_TRIGGERS:
        problems.append(f"it cannot run yet: {catalog.LATER_TRIGGERS[definition['trigger_type']]}")
    for i, action in enumerate(definition.get("actions") or []):
        if isinstance(action, dict) and action.get("type") in catalog.LATER_NODES:
            problems.append(f"node “{graph.node_id_at(action, i)}” cannot run yet: "
                            f"{catalog.LATER_NODES[action['type']]}")
    asks_model = [graph.node_id_at(a, i) for i, a in enumerate(definition.get("actions") or [])
                  if isinstance(a, dict) and (a.get("type") in catalog.AI_NODES or (
                      a.get("type") == "loop" and (a.get("config") or {}).get("loopMode") == "ask-orchestrator"))]
    if asks_model and providers.configured() is None:
        names = ", ".join(f"“{node}”" for node in asks_model)
        problems.append(f"AI node{'s' if len(asks_model) > 1 else ''} {names} cannot run: "
                        f"{providers.not_configured_message()}")
    if not definition.get("actions"):
        problems.append("the workflow has no action")
    return problems
