"""Records in the shape workflows read them: `{{deal.title}}`, `{{project.contact.first_name}}`.

The automation app builds its template context from these (definition/context.py), and a
deleted record's event carries one (`snapshot`, as JSON), so a workflow on `deal.deleted` reads
the deal as it was with the same names as a workflow on a live deal.
"""

from typing import Any

from crm_automation.crm.changes import json_value


def person(user) -> dict | None:
    if user is None:
        return None
    return {"username": user.username, "email": user.email, "first_name": user.first_name,
            "last_name": user.last_name}


def contact_dict(contact) -> dict | None:
    if contact is None:
        return None
    return {"id": str(contact.pk), "first_name": contact.first_name, "last_name": contact.last_name,
            "email": contact.email, "phone": contact.phone, "company": contact.company, "custom": contact.custom}


def deal_dict(deal) -> dict:
    contact = contact_dict(deal.contact)
    if contact is not None:
        contact.pop("id")  # (deal.contact.* has never carried the contact's id)
    return {
        "id": str(deal.pk),
        "title": deal.title,
        "amount": deal.amount,
        "stage": deal.stage.slug,
        "stage_name": deal.stage.name,
        "probability": deal.probability,
        "close_date": deal.close_date,
        "contact": contact,
        "owner": person(deal.owner),
        "custom": deal.custom,  # the organization's own fields: {{deal.custom.<key>}}
    }


def lead_dict(lead) -> dict:
    return {
        "id": str(lead.pk), "name": lead.name, "email": lead.email, "company": lead.company,
        "status": lead.status, "source": lead.source, "owner": person(lead.owner), "custom": lead.custom,
    }


def project_dict(project) -> dict:
    return {
        "id": str(project.pk), "name": project.name, "status": project.status,
        "service_type": project.service_type, "start_date": project.start_date, "end_date": project.end_date,
        "deal_id": str(project.deal_id) if project.deal_id else None,
        "contact": contact_dict(project.contact), "owner": person(project.owner), "custom": project.custom,
    }


SHAPES = {"deal": deal_dict, "lead": lead_dict, "contact": contact_dict, "project": project_dict}


def as_json(value: Any) -> Any:
    """A snapshot as JSON (amounts as their exact text, dates as ISO text)."""
    if isinstance(value, dict):
        return {key: as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    return json_value(value)


def snapshot(entity: str, record) -> dict:
    """The record as a deletion's event carries it."""
    return as_json(SHAPES[entity](record))
