"""Plain dicts of allow-listed values: what templates and conditions can see (invariant 9)."""

import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from crm_automation.automation.models import AutomationEvent
from crm_automation.compiled_query import CompiledQuery
from crm_automation.crm.models import Contact, Deal, Lead, Project, Stage
from crm_automation.crm.snapshots import contact_dict, deal_dict, lead_dict, project_dict


def stage_slugs(events: list[AutomationEvent]) -> dict[int, str]:
    ids: set[int] = set()
    for e in events:
        ids.update(v for k, v in e.payload.items() if k.endswith("_stage_id") and v)
    return dict(Stage.objects.filter(pk__in=ids).values_list("pk", "slug")) if ids else {}


RECORD_ENTITIES = ("deal", "lead", "project")
GONE, EVENT = "deleted", "event"  # a deleted record's event; another system's business event


def has_record(entity_type: str) -> bool:
    """Whether events of this entity type are about a CRM record that must still exist (an
    inbound webhook's, a deleted record's and a business event's are not)."""
    return entity_type in RECORD_ENTITIES


@dataclass(frozen=True)
class Linked:
    """The records another system's event names (crm/business_events.py), as loaded."""

    contact: Contact | None = None
    deal: Deal | None = None
    lead: Lead | None = None
    project: Project | None = None

    @property
    def primary(self) -> Deal | Lead | Project | None:
        """The record the run acts on (a task it creates links to it): the project, else the
        deal, else the lead."""
        return self.project or self.deal or self.lead


def acted_on(record: Any) -> Any:
    """The record a run acts on: the event's record, or the one a business event names first."""
    return record.primary if isinstance(record, Linked) else record


def trigger_dict(event: AutomationEvent, slugs: dict[int, str]) -> dict:
    trigger: dict[str, Any] = {
        "type": event.kind,
        "from_stage": slugs.get(event.payload.get("from_stage_id")),
        "to_stage": slugs.get(event.payload.get("to_stage_id")),
        "occurred_at": event.created_at,
    }
    if event.entity_type == EVENT:
        # Another system's event: its data at the top ({{trigger.invoice.amount_due}}), what it is.
        trigger.update(event.payload.get("data") or {})
        trigger["event"] = event.payload.get("event") or {}
    elif not has_record(event.entity_type):
        trigger.update(event.payload)  # an inbound webhook: {{trigger.body.x}}, {{trigger.endpoint}}
    if "input" in event.payload:  # a manual start's data: {{trigger.input.x}}
        trigger["input"] = event.payload["input"]
    if "source" in event.payload:  # where the change came from (crm/sources.py): {{trigger.source}}
        trigger["source"] = event.payload["source"]
    if isinstance(event.payload.get("bulk"), dict):  # one of many: {{trigger.bulk.size}}
        trigger["bulk"] = event.payload["bulk"]
    for carried in ("task", "contact"):  # the record an event carries: {{trigger.task.title}}
        if isinstance(event.payload.get(carried), dict):
            trigger[carried] = event.payload[carried]
    if isinstance(event.payload.get("changed"), dict):  # a save's changes: {{trigger.changed.amount.old}}
        trigger["changed"] = {name: {"old": pair[0], "new": pair[1]} for name, pair in event.payload["changed"].items()
                              if isinstance(pair, list) and len(pair) == 2}
    return trigger


_DEAL_RELATED = ("stage", "contact", "owner")
_PROJECT_RELATED = ("contact", "owner", *(f"deal__{r}" for r in _DEAL_RELATED))
# Compiled once per process (compiled_query.py): every dispatch that gets past the cheap checks
# asks. Prepared on PostgreSQL: the deal with its relations was among the statements it took
# longest to plan (bulk_insert.prepared_cursor).
_LOADS = {
    "deal": CompiledQuery(lambda ids: Deal.objects.filter(pk__in=ids).select_related(*_DEAL_RELATED), ids=list[UUID],
                          prepared=True),
    "lead": CompiledQuery(lambda ids: Lead.objects.filter(pk__in=ids).select_related(
        "owner", *(f"converted_deal__{r}" for r in _DEAL_RELATED)), ids=list[UUID], prepared=True),
    "project": CompiledQuery(lambda ids: Project.objects.filter(pk__in=ids).select_related(*_PROJECT_RELATED),
                             ids=list[UUID], prepared=True),
    "contact": CompiledQuery(lambda ids: Contact.objects.filter(pk__in=ids), ids=list[int], prepared=True),
}


def load_records(events: list[AutomationEvent]) -> dict:
    """{entity id: Deal, Lead, Project or Linked} for a batch of events, a query per kind of
    record at most."""
    wanted: dict[str, set] = {kind: set() for kind in _LOADS}
    for e in events:
        if e.entity_type in RECORD_ENTITIES:
            wanted[e.entity_type].add(_key(e.entity_type, e.entity_id))
        elif e.entity_type == EVENT:
            for kind, pk in (e.payload.get("links") or {}).items():
                if kind in wanted and pk:
                    wanted[kind].add(_key(kind, pk))
    loaded: dict[str, dict] = {kind: {} for kind in wanted}
    for kind, ids in wanted.items():
        ids.discard(None)  # (a link that names no record of that kind)
        if ids:
            loaded[kind] = {record.pk: record for record in _LOADS[kind].models(ids=list(ids))}
    found: dict = {}
    for kind in RECORD_ENTITIES:
        found.update(loaded[kind])
    for e in events:
        if e.entity_type == EVENT:
            links = e.payload.get("links") or {}
            found[e.entity_id] = Linked(**{kind: loaded[kind].get(_key(kind, links.get(kind))) for kind in wanted})
    return found


def _key(kind: str, value):
    """A link as the loaded rows are keyed: contacts by their number, the others by uuid."""
    if value is None:
        return None
    try:
        return int(value) if kind == "contact" else uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def full_context(event: AutomationEvent, record, trigger: dict) -> dict:
    context: dict[str, Any] = {"trigger": trigger}
    if isinstance(record, Linked):
        for kind, shape in (("contact", contact_dict), ("deal", deal_dict), ("lead", lead_dict),
                            ("project", project_dict)):
            linked = getattr(record, kind)
            if linked is not None:
                context[kind] = shape(linked)
    elif isinstance(record, Deal):
        context["deal"] = deal_dict(record)
    elif isinstance(record, Lead):
        context["lead"] = lead_dict(record)
        if record.converted_deal is not None:
            context["deal"] = deal_dict(record.converted_deal)
    elif isinstance(record, Project):
        context["project"] = project_dict(record)
        if record.contact is not None:
            context["contact"] = contact_dict(record.contact)  # {{trigger.contact.first_name}}
        if record.deal is not None:
            context["deal"] = deal_dict(record.deal)
    if event.entity_type == GONE and isinstance(event.payload.get("record"), dict):
        context[event.payload.get("entity") or "record"] = event.payload["record"]  # as it was
    if isinstance(trigger.get("contact"), dict) and record is None:
        context["contact"] = trigger["contact"]  # a new contact: {{contact.email}}
    # {{trigger.deal.title}} is {{deal.title}} (docs/product.md#templates): the trigger's payload
    # holds its records too.
    context["trigger"] = {**trigger, **{k: context[k] for k in ("deal", "lead", "project", "contact")
                                        if k in context}}
    return context
