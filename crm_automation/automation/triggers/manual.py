"""Starting a workflow by hand (the `manual` trigger, docs/product.md#triggers): a person starts
an activated workflow whose trigger is "started by a person" on one deal, lead, contact or
project (from that record's page), or on no record (from the workflow list), answering the
inputs the workflow declares.

Inputs are declared on the trigger node (`inputs: [{key, label, kind, required, default,
choices}]`, the kinds of the organization's own fields); a start is checked against them (each
problem named at `input.<key>`, nothing started), defaults fill what was left out, and the run
reads them as {{trigger.input.<key>}}.
"""

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from crm_automation.automation import lifecycle, plans
from crm_automation.automation.definition import catalog
from crm_automation.automation.models import (
    AutomationEvent,
    Workflow,
    WorkflowDecision,
    WorkflowRun,
    WorkflowStatus,
)
from crm_automation.automation.runtime import rollout
from crm_automation.automation.runtime.queue import enqueue_continue
from crm_automation.crm import business_events, changes
from crm_automation.crm.custom_fields import value_of
from crm_automation.crm.selectors import record_kind, user_has_role
from crm_automation.crm.snapshots import snapshot
from crm_automation.refusals import Refused

KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
KINDS = business_events.KINDS  # the kinds an input may be: those of an event's data
MAX_INPUTS = 20


@dataclass(frozen=True)
class Input:
    key: str
    kind: str = "text"
    label: str = ""
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()


def inputs_of(definition: dict) -> list[Input]:
    """The inputs a (valid) definition declares."""
    found = (definition.get("trigger_config") or {}).get("inputs") or []
    return [Input(i["key"], i.get("kind", "text"), i.get("label") or i["key"].replace("_", " ").capitalize(),
                  bool(i.get("required")), i.get("default"), tuple(i.get("choices") or ())) for i in found]


def validate(trigger_type: str, config: dict, organization_id: int) -> list[tuple[str, str]]:
    """A manual trigger's settings: its inputs (nothing else: `entity` is the node's own)."""
    errors = [(f"config.{key}", "unknown setting (a workflow started by a person takes inputs)")
              for key in sorted(set(config) - {"inputs"})]
    inputs = config.get("inputs", [])
    if not isinstance(inputs, list) or len(inputs) > MAX_INPUTS:
        return [*errors, ("config.inputs", f"must be a list of at most {MAX_INPUTS} inputs, each {{key, label, kind, "
                                           "required, default}")]
    seen: set[str] = set()
    for i, item in enumerate(inputs):
        where = f"config.inputs[{i}]"
        if not isinstance(item, dict):
            errors.append((where, "must be an object with key, label, kind, required and default"))
            continue
        for extra in sorted(set(item) - {"key", "label", "kind", "required", "default", "choices"}):
            errors.append((f"{where}.{extra}", "unknown setting (key, label, kind, required, default, choices)"))
        key = item.get("key")
        if not isinstance(key, str) or not KEY.fullmatch(key):
            errors.append((f"{where}.key", "a name such as reason or visit_date (lower-case letters, digits, _)"))
        elif key in seen:
            errors.append((f"{where}.key", f"“{key}” is declared twice"))
        else:
            seen.add(key)
        kind = item.get("kind", "text")
        if kind not in KINDS:
            errors.append((f"{where}.kind", f"must be one of {', '.join(KINDS)}"))
            continue
        if not isinstance(item.get("label", ""), str) or len(item.get("label", "")) > 100:
            errors.append((f"{where}.label", "text of at most 100 characters"))
        if not isinstance(item.get("required", False), bool):
            errors.append((f"{where}.required", "must be true or false"))
        choices = item.get("choices", [])
        if kind == "choice" and not (isinstance(choices, list) and 0 < len(choices) <= 50 and all(
                isinstance(c, str) and c.strip() for c in choices)):
            errors.append((f"{where}.choices", "list the choices, one to 50 texts"))
            continue
        if kind != "choice" and choices:
            errors.append((f"{where}.choices", "only a one-of input has choices"))
        if item.get("default") not in (None, "") and isinstance(key, str):
            spec = Input(key, kind, str(item.get("label") or key), choices=tuple(choices or ()))
            try:
                value_of(spec, item["default"], organization_id)
            except ValueError as exc:
                errors.append((f"{where}.default", str(exc)))
    return errors


def checked_input(definition: dict, given: object, organization_id: int) -> dict:
    """The input of a start, checked against the declared inputs and with their defaults: the
    values as stored, or ValidationError naming each `input.<key>` wrong."""
    if given in (None, ""):
        given = {}
    if not isinstance(given, dict):
        raise ValidationError({"input": ["must be an object of the workflow's inputs"]})
    from crm_automation.automation.definition.validation import plain_data_errors  # (it imports this module)

    errors = plain_data_errors(given, "input")
    if errors:
        raise ValidationError({"input": [f"{w}: {m}" for w, m in errors]})
    declared = inputs_of(definition)
    if not declared:
        return given  # a workflow without declared inputs takes any plain data, as before
    problems: dict[str, list[str]] = {}
    known = {i.key: i for i in declared}
    for key in given:
        if key not in known:
            problems[f"input.{key}"] = [f"is not an input of this workflow ({', '.join(known)})"]
    clean: dict[str, Any] = {}
    for spec in declared:
        raw = given.get(spec.key)
        if raw in (None, "", []):
            raw = spec.default
        try:
            value = value_of(spec, raw, organization_id)
        except ValueError as exc:
            problems[f"input.{spec.key}"] = [f"{spec.label}: {exc}"]
            continue
        if value is None and spec.required:
            problems[f"input.{spec.key}"] = [f"{spec.label} is required"]
        clean[spec.key] = value
    if problems:
        raise ValidationError(problems)
    return clean


def manual_workflows(record: Any, organization_id: int | None = None) -> list[Workflow]:
    """The activated workflows a person may start on this record (None: on no record, in the
    organization)."""
    entity = record_kind(record)
    trigger = next(t for t, e in catalog.MANUAL.items() if e == entity)
    org_id: int = record.organization_id if record is not None else int(organization_id or 0)
    return list(Workflow.objects.filter(organization_id=org_id, trigger_type=trigger,
                                        status=WorkflowStatus.ACTIVATED).select_related("current_version")
                .order_by("name"))


@transaction.atomic
def workflow_start(*, workflow_id: int, by, record=None, input: dict | None = None, reason: str = "") -> WorkflowRun:
    """Start the workflow on `record` (None: a workflow started on no record) now, with its
    inputs (checked, defaults applied; templates read {{trigger.input.x}}) and, optionally, why.
    Ops members and admins of its organization may start a workflow started by a person; an
    admin may start any other activated workflow too, with a reason (triggers/on_demand.py)."""
    workflow = Workflow.objects.select_related("organization", "current_version").get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can start workflows.")
    if record is not None and record.organization_id != workflow.organization_id:
        raise ValidationError("That record belongs to another organization.")
    if workflow.trigger_type not in catalog.MANUAL:
        from crm_automation.automation.triggers import on_demand  # (it imports the simulation, which imports this)

        return on_demand.start(workflow, by=by, record=record, input=input, reason=reason)
    reason = (reason or "").strip()
    if len(reason) > 500:
        raise ValidationError({"reason": ["At most 500 characters."]})
    entity = record_kind(record)
    if workflow.trigger_type not in catalog.MANUAL or catalog.MANUAL[workflow.trigger_type] != entity:
        how = catalog.trigger_label(workflow.trigger_type).lower()
        on = f"on a {entity}" if entity else "without a record"
        raise Refused(f"“{workflow.name}” is not started by hand {on} (its trigger: {how}).")
    if workflow.status != WorkflowStatus.ACTIVATED or workflow.current_version is None:
        raise Refused(f"“{workflow.name}” is {workflow.get_status_display().lower()}: activate it first.")
    if not plans.includes_automation(workflow.organization.plan):
        raise Refused(f"The {workflow.organization.get_plan_display()} plan does not include automation.")
    who = by.get_username() if by is not None else "the system"
    entity_type = entity if entity in ("deal", "lead", "project") else "contact" if entity else "manual"
    entity_id = (changes.stand_in("contact", record.pk) if entity == "contact" else record.pk) if record is not None \
        else changes.stand_in("manual", f"{workflow.pk}:{timezone.now().timestamp()}")
    version, rolling = rollout.version_for(workflow, entity_id)  # a rollout's share, or the current version
    assert version is not None
    values = checked_input(version.definition, input, workflow.organization_id)
    logged = plans.reserve_history(organization=workflow.organization, runs=1)  # counts like any run
    payload: dict[str, Any] = {"started_by": who, "input": values}
    if entity == "contact":  # a contact travels in its event, as a contact's triggers carry it
        payload["contact"] = snapshot("contact", record)
    event = AutomationEvent.objects.create(
        organization_id=workflow.organization_id, kind=workflow.trigger_type, entity_type=entity_type,
        entity_id=entity_id, payload=payload, processed_at=timezone.now())
    WorkflowDecision.objects.create(
        event=event, workflow=workflow, version=version, entity_id=entity_id,
        outcome=WorkflowDecision.Outcome.MATCHED if logged else WorkflowDecision.Outcome.MATCHED_UNLOGGED,
        reason=(f"started by {who}: {reason}" if reason else f"started by {who}")
        + (f" ({rolling})" if rolling else ""))
    run = WorkflowRun.objects.create(
        organization_id=workflow.organization_id, workflow=workflow, version=version, event=event,
        trigger_type=workflow.trigger_type, trigger_entity_type=entity_type, trigger_entity_id=entity_id,
        metadata={"started_by": who, **({"reason": reason} if reason else {})}, history_suppressed=not logged)
    lifecycle.runs_started([run])
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue([run.pk]))
    return run
