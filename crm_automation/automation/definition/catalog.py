"""What a workflow may refer to: trigger types, fields and operators (the allow-lists).

Templates, conditions and `update_field` only ever see the paths listed here; everything
else resolves to nothing (invariant 9).
"""

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from crm_automation.crm.changes import (
    CONTACT_CREATED,
    CONTACT_DELETED,
    CONTACT_UPDATED,
    DEAL_CREATED,
    DEAL_DELETED,
    DEAL_STAGE_CHANGE,
    DEAL_UPDATED,
    LEAD_CONVERTED,
    LEAD_CREATED,
    LEAD_DELETED,
    LEAD_UPDATED,
    PROJECT_COMPLETED,
    PROJECT_CREATED,
    PROJECT_DELETED,
    PROJECT_UPDATED,
    TASK_COMPLETED,
    TASK_UPDATED,
)

TRIGGER_CHOICES = [
    (DEAL_STAGE_CHANGE, "Deal stage changes"),
    (DEAL_CREATED, "Deal created"),
    (LEAD_CONVERTED, "Lead converted"),
    (LEAD_CREATED, "Lead created"),
]
# Manual triggers (docs/product.md#triggers): a person starts the workflow on a deal, a lead, a
# contact or a project (from its page), or on no record (from the workflow list), answering the
# workflow's declared inputs ({{trigger.input.x}}, triggers/manual.py).
MANUAL_DEAL, MANUAL_LEAD = "manual_deal", "manual_lead"
MANUAL_CONTACT, MANUAL_PROJECT, MANUAL_NONE = "manual_contact", "manual_project", "manual"
MANUAL = {MANUAL_DEAL: "deal", MANUAL_LEAD: "lead", MANUAL_CONTACT: "contact", MANUAL_PROJECT: "project",
          MANUAL_NONE: ""}
TRIGGER_CHOICES += [(MANUAL_DEAL, "Started by a person on a deal"), (MANUAL_LEAD, "Started by a person on a lead"),
                    (MANUAL_CONTACT, "Started by a person on a contact"),
                    (MANUAL_PROJECT, "Started by a person on a project"),
                    (MANUAL_NONE, "Started by a person (no record)")]
# An inbound webhook (crm_automation/webhooks): no record; its JSON is {{trigger.body}}.
WEBHOOK = "webhook"
TRIGGER_CHOICES += [(WEBHOOK, "Inbound webhook")]
# A record's fields change (field_changes.py): any save that changes a field, or only some
# fields, optionally only when the record starts to meet the workflow's conditions.
TRIGGER_CHOICES += [(DEAL_UPDATED, "A deal is updated"), (LEAD_UPDATED, "A lead is updated")]
UPDATED = {DEAL_UPDATED: "deal", LEAD_UPDATED: "lead", CONTACT_UPDATED: "contact", TASK_UPDATED: "task",
           PROJECT_UPDATED: "project"}
# Which workflows an event is for, by the event's kind: a stage change is also an update, and so
# is a task's or a project's completion.
LISTENERS = {DEAL_STAGE_CHANGE: (DEAL_STAGE_CHANGE, DEAL_UPDATED), TASK_COMPLETED: (TASK_COMPLETED, TASK_UPDATED),
             PROJECT_COMPLETED: (PROJECT_COMPLETED, PROJECT_UPDATED)}


def listeners(kind: str) -> tuple[str, ...]:
    """The trigger types of the workflows an event of this kind may start."""
    return LISTENERS.get(kind, (kind,))


# A contact is created (no record to load: the contact is in the event), a task is completed
# (about its deal or lead when it has one; the task is in the event).
TRIGGER_CHOICES += [(CONTACT_CREATED, "A contact is created"), (TASK_COMPLETED, "A task is completed")]
# A contact's or a task's fields change (field_changes.py, as deal_updated): the contact or the
# task travels in the event, a task's event is about its deal or lead.
TRIGGER_CHOICES += [(CONTACT_UPDATED, "A contact is updated"), (TASK_UPDATED, "A task is updated")]

# Projects (crm Project): created, completed (its status moves to completed) or updated.
TRIGGER_CHOICES += [(PROJECT_CREATED, "A project is created"), (PROJECT_COMPLETED, "A project is completed"),
                    (PROJECT_UPDATED, "A project is updated")]
# A record is deleted: the event carries it as it was ({{deal.title}} reads the deleted deal).
DELETED = {DEAL_DELETED: "deal", LEAD_DELETED: "lead", CONTACT_DELETED: "contact", PROJECT_DELETED: "project"}
TRIGGER_CHOICES += [(DEAL_DELETED, "A deal is deleted"), (LEAD_DELETED, "A lead is deleted"),
                    (CONTACT_DELETED, "A contact is deleted"), (PROJECT_DELETED, "A project is deleted")]

# Business events from other systems (crm/business_events.py): the organization's catalog names
# them; a workflow on `invoice.overdue` has the trigger type "event:invoice.overdue".
EVENT_PREFIX = "event:"


def is_event(trigger_type: object) -> bool:
    return isinstance(trigger_type, str) and trigger_type.startswith(EVENT_PREFIX)


def known_trigger(trigger_type: object) -> bool:
    """A trigger type of the product, or a business event (whether the organization declared it
    is validation's to check)."""
    return trigger_type in TRIGGER_TYPES or is_event(trigger_type)


def trigger_label(trigger_type: object) -> str:
    if is_event(trigger_type):
        return f"Event {str(trigger_type).removeprefix(EVENT_PREFIX)}"
    return dict(TRIGGER_CHOICES).get(str(trigger_type), str(trigger_type))


# The declared events' data fields ({trigger type: {path: type}}) of the organization whose
# workflow is checked or built: set around validation (definition/validation.py) and the
# builder, as node_scope sets a loop's variables.
_declared: ContextVar[dict[str, dict[str, str]] | None] = ContextVar("declared_events", default=None)


@contextmanager
def declared_events(fields: dict[str, dict[str, str]]) -> Iterator[None]:
    token = _declared.set(fields)
    try:
        yield
    finally:
        _declared.reset(token)


# Relative time (relative_time.py): a deal's date comes up, or a deal stays in a stage.
DATE_REACHED, IN_STAGE = "deal_date_reached", "deal_in_stage"
TRIGGER_CHOICES += [(DATE_REACHED, "A deal's date comes up"), (IN_STAGE, "A deal stays in a stage")]
# Events meant for one workflow (its payload names it): the others are not candidates.
ADDRESSED = {DATE_REACHED, IN_STAGE, "schedule"}
# A schedule (schedules.py): no record; {{trigger.scheduled_for}}, {{trigger.missed}}.
SCHEDULE = "schedule"
TRIGGER_CHOICES += [(SCHEDULE, "On a schedule")]
TRIGGER_TYPES = {value for value, _ in TRIGGER_CHOICES}
# Parts of the workflow format (docs/product.md#nodes) that do not run yet: a workflow using them
# is kept as a draft (import, export, edit), and activation says why it cannot run yet.
LATER_TRIGGERS: dict[str, str] = {}
LATER_NODES: dict[str, str] = {}
# Nodes that ask the language model (ai/nodes.py): a workflow with one is published only when
# a provider is set up.
AI_NODES = ("agent", "router")
TRIGGER_ENTITY = {
    DEAL_STAGE_CHANGE: "deal",
    DEAL_CREATED: "deal",
    LEAD_CONVERTED: "lead",
    LEAD_CREATED: "lead",
    DATE_REACHED: "deal",
    IN_STAGE: "deal",
    DEAL_UPDATED: "deal",
    LEAD_UPDATED: "lead",
    MANUAL_DEAL: "deal",
    MANUAL_LEAD: "lead",
    MANUAL_PROJECT: "project",
    PROJECT_CREATED: "project",
    PROJECT_COMPLETED: "project",
    PROJECT_UPDATED: "project",
}
# Triggers whose config may name a from/to stage.
STAGE_CONFIG = {DEAL_STAGE_CHANGE: ("from_stage", "to_stage"), DEAL_CREATED: ("to_stage",)}
# Other trigger settings (not stages): a webhook workflow may listen to one endpoint only.
TRIGGER_SETTINGS = {"webhook": ("endpoint",)}

# Field types: str, number, date, stage (a stage slug of the organization).
_TRIGGER_FIELDS = {"trigger.type": "str", "trigger.from_stage": "stage", "trigger.to_stage": "stage"}
_DEAL_FIELDS = {
    "deal.id": "str",
    "deal.title": "str",
    "deal.amount": "number",
    "deal.stage": "stage",
    "deal.stage_name": "str",
    "deal.probability": "number",
    "deal.close_date": "date",
    "deal.contact.first_name": "str",
    "deal.contact.last_name": "str",
    "deal.contact.email": "str",
    "deal.contact.phone": "str",
    "deal.contact.company": "str",
    "deal.owner.username": "str",
    "deal.owner.email": "str",
    "deal.owner.first_name": "str",
    # The organization's own fields (crm/custom_fields.py), by key: {{deal.custom.budget_code}}.
    "deal.custom": "object",
    "deal.contact.custom": "object",
}
_LEAD_FIELDS = {
    "lead.id": "str",
    "lead.name": "str",
    "lead.email": "str",
    "lead.company": "str",
    "lead.status": "str",
    "lead.source": "lead_source",
    "lead.owner.username": "str",
    "lead.owner.email": "str",
    "lead.custom": "object",
}

_CONTACT_FIELDS = {f"contact.{name}": "str" for name in ("id", "first_name", "last_name", "email", "phone", "company")}
_CONTACT_FIELDS["contact.custom"] = "object"
_PROJECT_FIELDS = {
    "project.id": "str",
    "project.name": "str",
    "project.status": "project_status",
    "project.service_type": "str",
    "project.start_date": "date",
    "project.end_date": "date",
    "project.deal_id": "str",
    "project.contact.first_name": "str",
    "project.contact.last_name": "str",
    "project.contact.email": "str",
    "project.contact.phone": "str",
    "project.contact.company": "str",
    "project.contact.custom": "object",
    "project.owner.username": "str",
    "project.owner.email": "str",
    "project.owner.first_name": "str",
    "project.custom": "object",
}
# The fields of each record, for the triggers about it (a deleted record's, as it was).
RECORD_FIELDS = {"deal": _DEAL_FIELDS, "lead": _LEAD_FIELDS, "contact": _CONTACT_FIELDS, "project": _PROJECT_FIELDS}


OPEN = "object"  # a value whose sub-fields are not known in advance (a loop's current item)
# What a node may read besides the trigger's fields (loop variables inside a loop body). Set
# by the graph validator around each node's checks, so every action's and condition's
# validator sees it without each of them taking the node's place as an argument.
_node_fields: ContextVar[dict[str, str] | None] = ContextVar("node_fields", default=None)


@contextmanager
def node_scope(fields: dict[str, str]) -> Iterator[None]:
    token = _node_fields.set(fields)
    try:
        yield
    finally:
        _node_fields.reset(token)


def normal(path):
    """A path with its first name in lower case: node labels are matched in any case."""
    if not isinstance(path, str):
        return path
    head, dot, rest = path.partition(".")
    return head.strip().casefold() + dot + rest


class Fields(dict):
    """Paths and their types; a sub-path of an OPEN value (loop.current.first_name) is known, of
    type "any" (a number when it reads as one, else text)."""

    def _open(self, path) -> bool:
        return isinstance(path, str) and any(
            kind == OPEN and path.startswith(f"{name}.") for name, kind in self.items())

    def __contains__(self, path) -> bool:
        path = normal(path)
        return dict.__contains__(self, path) or self._open(path)

    def __getitem__(self, path):
        path = normal(path)
        return dict.__getitem__(self, path) if dict.__contains__(self, path) else "any" if self._open(path) else \
            dict.__getitem__(self, path)

    def get(self, path, default=None):
        return self[path] if path in self else default  # noqa: SIM401 (dict.get would skip open paths)


def fields_for(trigger_type: str) -> dict[str, str]:
    """The paths a workflow on this trigger may read, with their types."""
    fields = Fields(_TRIGGER_FIELDS)
    fields.update(_node_fields.get() or {})
    if TRIGGER_ENTITY.get(trigger_type) == "deal":
        fields.update(_DEAL_FIELDS)
    elif trigger_type == LEAD_CONVERTED:
        fields.update(_LEAD_FIELDS)
        fields.update(_DEAL_FIELDS)  # the deal the conversion created
    elif trigger_type in (LEAD_CREATED, MANUAL_LEAD, LEAD_UPDATED):
        fields.update(_LEAD_FIELDS)
    elif TRIGGER_ENTITY.get(trigger_type) == "project":
        # The project, its contact ({{trigger.contact.first_name}}) and the deal that sold it.
        fields.update(_PROJECT_FIELDS)
        fields.update(_CONTACT_FIELDS)
        fields.update(_DEAL_FIELDS)
    if trigger_type in DELETED:
        fields.update(RECORD_FIELDS[DELETED[trigger_type]])
    declared = (_declared.get() or {}).get(trigger_type, {})
    if is_event(trigger_type) or declared:
        # What the event names (its contact, deal, lead, project), what it is, and its data.
        for entity in ("contact", "deal", "lead", "project"):
            fields.update(RECORD_FIELDS[entity])
        fields.update({"trigger.event.id": "str", "trigger.event.name": "str", "trigger.event.source": "str",
                       "trigger.event.idempotency_key": "str"})
        fields.update(declared)
    if trigger_type in MANUAL:
        fields["trigger.input"] = OPEN  # what the person or the API passed when starting it
    if trigger_type in (DATE_REACHED, IN_STAGE):
        fields["trigger.occasion"] = "str"
    if trigger_type in (CONTACT_CREATED, CONTACT_UPDATED, MANUAL_CONTACT):
        fields.update(_CONTACT_FIELDS)
    if trigger_type in (TASK_COMPLETED, TASK_UPDATED):
        # The task's deal, lead or project, when it has one (conditions and templates on the others
        # read as empty).
        fields.update(_DEAL_FIELDS)
        fields.update(_LEAD_FIELDS)
        fields.update(_PROJECT_FIELDS)
        fields.update({"trigger.task.id": "number", "trigger.task.title": "str", "trigger.task.priority": "str",
                       "trigger.task.status": "str", "trigger.task.due_date": "date", "trigger.task.assignee": "str"})
    if trigger_type in UPDATED:
        fields["trigger.changed"] = OPEN  # {field: {"old": …, "new": …}} of the save
    if trigger_type in CHANGE_TRIGGERS:  # where the change came from, and its bulk operation (bulk.py)
        fields.update({"trigger.source": "str", "trigger.bulk.size": "number", "trigger.bulk.id": "str"})
    if trigger_type == SCHEDULE:
        fields.update({"trigger.scheduled_for": "str", "trigger.missed": "number", "trigger.fired_at": "str"})
    if trigger_type == WEBHOOK:
        fields.update({"trigger.body": OPEN, "trigger.endpoint": "str", "trigger.endpoint_name": "str",
                       "trigger.webhook_id": "str"})
    # {{trigger}} (the whole payload, as JSON) and {{trigger.deal.title}}, the same field as
    # {{deal.title}} (docs/product.md#templates).
    fields.update({f"trigger.{name}": kind for name, kind in list(fields.items())
                   if name.startswith(("deal.", "lead.", "project.", "contact."))})
    # (An event's data is declared: {{trigger.invoice.colour}} is a mistake the checks name, so its
    # whole payload is a value of its own, not an open object whose every sub-path is known.)
    fields["trigger"] = "payload" if is_event(trigger_type) else "object"
    return fields


def suggest(name, known) -> str:
    """"; did you mean deal.title?" for a near miss, else an empty string."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return f"; did you mean {close[0]}?" if close else ""


OPERATORS = {
    "eq": "equals",
    "neq": "does not equal",
    "gt": "is greater than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "contains": "contains",
    "in": "is one of",
    "is_empty": "is empty",
    "is_not_empty": "is not empty",
}
ORDERING_OPERATORS = {"gt", "gte", "lt", "lte"}
VALUELESS_OPERATORS = {"is_empty", "is_not_empty"}

# Fields `update_field` may change, per entity: name → type.
UPDATABLE_FIELDS = {
    "deal": {"title": "str", "amount": "number", "probability": "percent", "close_date": "date",
             "stage": "stage"},
    "lead": {"name": "str", "email": "email", "company": "str", "status": "lead_status", "source": "lead_source"},
    "project": {"name": "str", "status": "project_status", "service_type": "str", "start_date": "date",
                "end_date": "date"},
}
# Fields a record cannot be without: update_field never writes an empty value into them.
REQUIRED_FIELDS = {"deal": ("title",), "lead": ("name",), "project": ("name",)}

# Triggers on recorded changes of records: they may say what to do with bulk changes (bulk.py).
CHANGE_TRIGGERS = {DEAL_STAGE_CHANGE, DEAL_CREATED, LEAD_CONVERTED, LEAD_CREATED, DEAL_UPDATED, LEAD_UPDATED,
                   CONTACT_CREATED, TASK_COMPLETED, *UPDATED, PROJECT_CREATED, PROJECT_COMPLETED, *DELETED}


# --- Names a person reads -----------------------------------------------------------------------
# One name per variable on every surface (the builder's picker and condition rows, Simulate, the
# "why not" tables): "deal.contact.first_name" is "Deal › Contact › First name". The path is what
# a person types ({{deal.contact.first_name}}); the name is what they read.
SEPARATOR = " › "
_WORDS = {"id": "ID", "url": "URL", "username": "Username"}
# The first names of paths that are ours (a node's label keeps the case it was given).
_HEADS = {"trigger", "deal", "lead", "contact", "loop", "task", "project"}


def field_name(field: str) -> str:
    """One field of a record in words: "close_date" → "Close date", "id" → "ID"."""
    field = str(field)
    if field in _WORDS:
        return _WORDS[field]
    words = field.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def variable_name(path: str) -> str:
    """A variable's human name: "deal.contact.first_name" → "Deal › Contact › First name",
    "trigger.from_stage" → "Trigger › From stage", "Find Deals.rows" → "Find Deals › Rows".
    `trigger.deal.title` reads as `deal.title`: it is the same value (docs/product.md#templates)."""
    if not isinstance(path, str) or not path.strip():
        return str(path or "")
    parts = path.strip().split(".")
    if len(parts) > 2 and parts[0] == "trigger" and parts[1] in ("deal", "lead", "project", "contact"):
        parts = parts[1:]
    head = field_name(parts[0]) if parts[0].casefold() in _HEADS else parts[0]
    return SEPARATOR.join([head, *(field_name(part) for part in parts[1:])])


def variable_names(trigger_types=None) -> dict[str, str]:
    """Every allow-listed path of these trigger types (all by default) with its human name: what
    the builder's script shows for a path (static/web/builder.js `fieldLabel`)."""
    paths = {path for trigger in (trigger_types or TRIGGER_TYPES) for path in fields_for(trigger)}
    return {path: variable_name(path) for path in sorted(paths)}
