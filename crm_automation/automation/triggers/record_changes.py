"""Record-updated triggers (docs/product.md#triggers): "a deal is updated", optionally only
when some fields change, optionally only when the record starts to meet the workflow's
conditions.

    deal_updated / lead_updated / contact_updated / task_updated:
        {"fields": ["amount", "stage"], "crossing": true}

- `fields`: the save must change at least one of them (empty or absent: any tracked field).
- `crossing`: the conditions must be false for the record as it was before the save and true
  after it, so "amount over 10,000" fires once when the amount crosses 10,000, not on every
  later save of a big deal. The record before the save is the record now with the changed
  fields put back (the event's `changed`: old and new values, written by the CRM's save).

A deal's stage change is one of its updates: a `deal_stage_change` event is offered to
`deal_updated` workflows too (catalog.LISTENERS), so one save is one event; so is a task's
completion (`task_completed`, offered to `task_updated` workflows).

A contact travels in its event (`contact`, as saved), a task too (`trigger.task`; the event is
about the task's deal or lead): the record before the save is that copy with the old values.
"""

import copy
from decimal import Decimal, InvalidOperation

from crm_automation.automation.definition import catalog, conditions
from crm_automation.crm.changes import CONTACT_TRACKED, DEAL_TRACKED, LEAD_TRACKED, PROJECT_TRACKED, TASK_TRACKED
from crm_automation.crm.custom_fields import KEY

FIELDS = {entity: tuple(name.removesuffix("_id") for name in tracked) for entity, tracked in
          (("deal", DEAL_TRACKED), ("lead", LEAD_TRACKED), ("contact", CONTACT_TRACKED), ("task", TASK_TRACKED),
           ("project", PROJECT_TRACKED))}
SETTINGS = ("fields", "crossing")


def validate(trigger_type: str, config) -> list[tuple[str, str]]:
    if not isinstance(config, dict):
        return [("config", "must be a mapping")]
    known = FIELDS[catalog.UPDATED[trigger_type]]
    errors = []
    fields = config.get("fields", [])
    own = "custom" in known  # one of the organization's own fields may be watched: "custom.<key>"
    if not isinstance(fields, list) or any(f not in known and not (own and isinstance(f, str) and f.startswith(
            "custom.") and KEY.fullmatch(f.removeprefix("custom."))) for f in fields):
        errors.append(("config.fields", f"must be a list of these fields: {', '.join(known)}"
                                        + (" (or one of your own: custom.<key>)" if own else "")))
    if not isinstance(config.get("crossing", False), bool):
        errors.append(("config.crossing", "must be true (only when the record starts to meet the conditions) "
                                          "or false"))
    for key in sorted(set(config) - {*SETTINGS, "conditions"}):
        errors.append((f"config.{key}", f"is not a setting of this trigger ({', '.join(SETTINGS)})"))
    return errors


def describe(trigger_type: str, config: dict) -> str:
    """“A deal's amount or stage changes (only when it starts to meet the conditions)”."""
    entity = catalog.UPDATED[trigger_type]
    fields = [f.replace("_", " ") for f in config.get("fields") or []]
    words = f"A {entity}'s {' or '.join(fields)} changes" if fields else f"A {entity} is updated"
    return words + (", when it starts to meet the conditions" if config.get("crossing") else "")


def changed_of(payload: dict) -> dict[str, list]:
    changed = payload.get("changed")
    return changed if isinstance(changed, dict) else {}


def with_own_keys(changed: dict) -> dict:
    """`changed`, with each of the organization's own fields that changed named on its own
    ("custom.budget"), so a workflow may watch one of them."""
    old, new = changed.get("custom", [None, None]) if isinstance(changed.get("custom"), list) else (None, None)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return changed
    return {**changed, **{f"custom.{key}": [old.get(key), new.get(key)] for key in {*old, *new}
                          if old.get(key) != new.get(key)}}


def unwatched(config: dict, changed: dict) -> str | None:
    """Why the save does not concern the workflow (none of its fields changed), or None."""
    wanted = config.get("fields") or []
    changed = with_own_keys(changed)
    if not changed:
        return "nothing the workflow watches changed"
    if wanted and not set(wanted) & set(changed):
        # Both sides by their names: "the workflow watches Amount; this change was to Stage".
        return (f"the workflow watches {' or '.join(catalog.field_name(f) for f in wanted)}; this change was to "
                f"{' and '.join(catalog.field_name(f) for f in sorted(changed))}")
    return None


def _old_value(entity: str, field: str, old, trigger: dict):
    if field == "stage":
        return trigger.get("from_stage")  # a stage change's event names its from-stage
    if field == "amount" and old is not None:
        try:
            return Decimal(str(old))
        except InvalidOperation:
            return old
    if field in ("contact", "owner", "assignee"):
        return None  # the old related record is not loaded: conditions on it read as empty
    return old


def before_the_save(full: dict, entity: str, changed: dict, trigger: dict) -> dict:
    """The context of the record as it was before the save."""
    old = copy.deepcopy(full)
    carried = old.get("trigger", {}).get(entity)  # a task is only in the trigger: {{trigger.task.title}}
    in_trigger_only = entity not in old and isinstance(carried, dict)
    record = (carried if in_trigger_only else old.get(entity)) or {}
    for field, (before, _after) in changed.items():
        record[field] = _old_value(entity, field, before, trigger)
    if not in_trigger_only:
        old[entity] = record
    old["trigger"] = {**old.get("trigger", {}), entity: record}
    return old


def crossing(definition: dict, trigger_type: str, trigger: dict, full: dict, changed: dict) -> str | None:
    """Why a crossing workflow does not fire (the record met its conditions before the save
    already), or None. Called after the conditions were found true for the record now."""
    entity = catalog.UPDATED[trigger_type]
    old = before_the_save(full, entity, changed, trigger)
    was = conditions.evaluate(definition.get("conditions"), trigger_type, {"trigger": old["trigger"]}, lambda: old)
    if was.passed:
        return "the record met the conditions before this change already (the workflow fires when it starts to)"
    return None
