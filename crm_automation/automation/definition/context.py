"""Plain dicts of allow-listed values: what templates and conditions can see (invariant 9)."""

from typing import Any

from crm_automation.automation.models import AutomationEvent
from crm_automation.crm.models import Deal, Lead, Stage


def _person(user) -> dict | None:
    if user is None:
        return None
    return {"username": user.username, "email": user.email, "first_name": user.first_name,
            "last_name": user.last_name}


def deal_dict(deal: Deal) -> dict:
    contact = deal.contact
    return {
        "id": str(deal.pk),
        "title": deal.title,
        "amount": deal.amount,
        "stage": deal.stage.slug,
        "stage_name": deal.stage.name,
        "probability": deal.probability,
        "close_date": deal.close_date,
        "contact": None if contact is None else {
            "first_name": contact.first_name, "last_name": contact.last_name,
            "email": contact.email, "phone": contact.phone, "company": contact.company, "custom": contact.custom,
        },
        "owner": _person(deal.owner),
        "custom": deal.custom,  # the organization's own fields: {{deal.custom.<key>}}
    }


def lead_dict(lead: Lead) -> dict:
    return {
        "id": str(lead.pk), "name": lead.name, "email": lead.email, "company": lead.company,
        "status": lead.status, "source": lead.source, "owner": _person(lead.owner), "custom": lead.custom,
    }


def stage_slugs(events: list[AutomationEvent]) -> dict[int, str]:
    ids: set[int] = set()
    for e in events:
        ids.update(v for k, v in e.payload.items() if k.endswith("_stage_id") and v)
    return dict(Stage.objects.filter(pk__in=ids).values_list("pk", "slug")) if ids else {}


RECORD_ENTITIES = ("deal", "lead")


def has_record(entity_type: str) -> bool:
    """Whether events of this entity type are about a CRM record (an inbound webhook's is not)."""
    return entity_type in RECORD_ENTITIES


def trigger_dict(event: AutomationEvent, slugs: dict[int, str]) -> dict:
    trigger: dict[str, Any] = {
        "type": event.kind,
        "from_stage": slugs.get(event.payload.get("from_stage_id")),
        "to_stage": slugs.get(event.payload.get("to_stage_id")),
        "occurred_at": event.created_at,
    }
    if not has_record(event.entity_type):
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


def load_records(events: list[AutomationEvent]) -> dict:
    """{entity id: Deal or Lead} for a batch of events, in two queries at most."""
    deal_ids = [e.entity_id for e in events if e.entity_type == "deal"]
    lead_ids = [e.entity_id for e in events if e.entity_type == "lead"]
    found: dict = {}
    if deal_ids:
        found.update({d.pk: d for d in Deal.objects.filter(pk__in=deal_ids).select_related(*_DEAL_RELATED)})
    if lead_ids:
        leads = Lead.objects.filter(pk__in=lead_ids).select_related(
            "owner", *(f"converted_deal__{r}" for r in _DEAL_RELATED)
        )
        found.update({lead.pk: lead for lead in leads})
    return found


def full_context(event: AutomationEvent, record, trigger: dict) -> dict:
    context = {"trigger": trigger}
    if isinstance(record, Deal):
        context["deal"] = deal_dict(record)
    elif isinstance(record, Lead):
        context["lead"] = lead_dict(record)
        if record.converted_deal is not None:
            context["deal"] = deal_dict(record.converted_deal)
    if isinstance(trigger.get("contact"), dict) and record is None:
        context["contact"] = trigger["contact"]  # a new contact: {{contact.email}}
    # {{trigger.deal.title}} is {{deal.title}} (docs/product.md#templates): the trigger's payload
    # holds its record too.
    context["trigger"] = {**trigger, **{k: context[k] for k in ("deal", "lead") if k in context}}
    return context
