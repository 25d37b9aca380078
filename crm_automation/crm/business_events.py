"""Business events from other systems: an invoice became overdue, a call was missed.

An organization's event catalog is the predeclared events below (the product documents') and
the ones its admins declare (`EventType`): a name such as `invoice.overdue`, what it means, the
record it is about and the fields of its data, each with a kind (the kinds of the organization's
own fields, crm/custom_fields.py) and whether it is required.

Another system sends an event (`event_send`: the API, a signed inbound webhook, a command)
naming the contact (by id, email or phone), the deal, lead or project. It is checked against
its declaration (every problem named by its place, nothing stored), stored (`BusinessEvent`,
unique per organization and idempotency key: the same key again is the same event, and runs
nothing twice) and announced like a record's change, so the workflows that listen to it start:
`{{trigger.invoice.amount_due}}` reads its data, `{{trigger.contact.first_name}}` the contact.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from crm_automation.crm import changes
from crm_automation.crm.custom_fields import value_of
from crm_automation.crm.phones import e164

NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){0,2}")
MAX_NAME = 32  # "event:" + the name is a workflow's trigger type (40 characters)
KEY = re.compile(r"[a-z][a-z0-9_]{0,39}\.[a-z][a-z0-9_]{0,39}")  # "invoice.amount_due": object, then field
MAX_FIELDS = 50
ABOUT = ("contact", "deal", "lead", "project")
KINDS = ("text", "long_text", "number", "money", "date", "datetime", "boolean", "choice", "url", "email", "phone")
# A field's first name may not be one the trigger already uses ({{trigger.contact.…}} is the contact).
RESERVED = {"type", "event", "from_stage", "to_stage", "occurred_at", "input", "source", "bulk", "changed", "task",
            *ABOUT, "body", "endpoint", "record", "links", "data"}
# Events that are the CRM's own changes too: sent by another system, they start the same workflows.
CRM_KINDS = {"project.completed": changes.PROJECT_COMPLETED, "project.created": changes.PROJECT_CREATED,
             "contact.created": changes.CONTACT_CREATED}
EVENT_PREFIX = "event:"
MAX_KEY = 200


@dataclass(frozen=True)
class EventField:
    key: str  # "invoice.amount_due"
    kind: str
    required: bool = False
    label: str = ""
    choices: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        found: dict[str, Any] = {"key": self.key, "kind": self.kind, "required": self.required, "label": self.label}
        if self.choices:
            found["choices"] = list(self.choices)
        return found


@dataclass(frozen=True)
class Declaration:
    name: str
    description: str
    about: str  # the record it must name ("" none)
    fields: tuple[EventField, ...] = field(default=())
    predeclared: bool = True
    id: int | None = None

    @property
    def trigger_type(self) -> str:
        return trigger_type_of(self.name)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "description": self.description, "about": self.about,
                "fields": [f.as_dict() for f in self.fields], "predeclared": self.predeclared,
                "trigger_type": self.trigger_type}


def trigger_type_of(name: str) -> str:
    """The trigger type of the workflows an event starts: the CRM's own for its own changes."""
    return CRM_KINDS.get(name, EVENT_PREFIX + name)


def _f(key: str, kind: str, required: bool = False, label: str = "") -> EventField:
    return EventField(key, kind, required, label or key.split(".", 1)[1].replace("_", " ").capitalize())


PREDECLARED = {d.name: d for d in (
    Declaration("project.completed", "A project's work is done (from the field or the job system).", "project",
                (_f("completion.notes", "long_text"), _f("completion.completed_on", "date"))),
    Declaration("project.created", "A project was opened in another system.", "project"),
    Declaration("invoice.sent", "An invoice was sent to the contact.", "contact",
                (_f("invoice.number", "text", True), _f("invoice.amount", "money", True),
                 _f("invoice.due_date", "date"), _f("invoice.url", "url", label="Link"))),
    Declaration("invoice.paid", "The contact paid an invoice.", "contact",
                (_f("invoice.number", "text", True), _f("invoice.amount_paid", "money", True),
                 _f("invoice.paid_on", "date"), _f("invoice.method", "text", label="Payment method"))),
    Declaration("invoice.overdue", "An invoice is past its due date and unpaid.", "contact",
                (_f("invoice.number", "text", True), _f("invoice.amount_due", "money", True),
                 _f("invoice.due_date", "date", True), _f("invoice.days_overdue", "number"),
                 _f("invoice.url", "url", label="Link"))),
    Declaration("estimate.sent", "An estimate was sent to the contact.", "contact",
                (_f("estimate.number", "text", True), _f("estimate.amount", "money", True),
                 _f("estimate.expires_on", "date"), _f("estimate.url", "url", label="Link"))),
    Declaration("estimate.approved", "The contact approved an estimate.", "contact",
                (_f("estimate.number", "text", True), _f("estimate.amount", "money"))),
    Declaration("estimate.declined", "The contact declined an estimate.", "contact",
                (_f("estimate.number", "text", True), _f("estimate.reason", "long_text"))),
    Declaration("new_lead", "A new enquiry arrived (a web form, a lead marketplace, an ad platform).", "",
                (_f("inquiry.name", "text", True), _f("inquiry.email", "email"), _f("inquiry.phone", "phone"),
                 _f("inquiry.company", "text"), _f("inquiry.source", "text"), _f("inquiry.message", "long_text"))),
    Declaration("contact.created", "A contact was added in another system.", "contact",
                (_f("origin.system", "text", label="Created in"),)),
    Declaration("review.submitted", "The contact left a review.", "contact",
                (_f("review.rating", "number", True), _f("review.text", "long_text"), _f("review.platform", "text"),
                 _f("review.url", "url", label="Link"))),
    Declaration("call.received", "A call from the contact was answered.", "contact",
                (_f("call.from_number", "phone", True, "From"), _f("call.duration_seconds", "number"),
                 _f("call.summary", "long_text"), _f("call.recording_url", "url", label="Recording"))),
    Declaration("call.missed", "A call from the contact was not answered.", "contact",
                (_f("call.from_number", "phone", True, "From"), _f("call.at", "datetime", label="When"))),
    Declaration("change_order.signed", "The client signed a change order on a project.", "project",
                (_f("change_order.number", "text", True), _f("change_order.amount", "money"),
                 _f("change_order.description", "long_text"))),
    Declaration("appointment.booked", "The contact booked an appointment.", "contact",
                (_f("appointment.starts_at", "datetime", True, "Starts at"), _f("appointment.kind", "text"),
                 _f("appointment.location", "text"), _f("appointment.notes", "long_text"))),
    Declaration("sms.received", "An SMS arrived that no workflow was waiting for (from a contact when the "
                                "number is known).", "",
                (_f("sms.body", "long_text", label="Text"), _f("sms.from_number", "phone", True, "From"))),
    Declaration("contract.signed", "The client signed the contract of a deal.", "deal",
                (_f("contract.number", "text", True), _f("contract.amount", "money"), _f("contract.signed_on", "date"),
                 _f("contract.url", "url", label="Link"))),
)}


# --- The catalog --------------------------------------------------------------------------------
def declared(row) -> Declaration:
    fields = tuple(EventField(f["key"], f["kind"], bool(f.get("required")), f.get("label") or f["key"],
                              tuple(f.get("choices") or ())) for f in row.fields or [])
    return Declaration(row.name, row.description, row.about, fields, predeclared=False, id=row.pk)


def catalog(organization_id: int) -> dict[str, Declaration]:
    """Every event of the organization's catalog, by name: the predeclared ones, then its own."""
    from crm_automation.crm.models import EventType

    found = dict(PREDECLARED)
    for row in EventType.objects.filter(organization_id=organization_id).order_by("name"):
        found[row.name] = declared(row)
    return found


def check_declaration(row) -> dict[str, list[str]]:
    """What is wrong with a declaration an admin wrote, by form field."""
    errors: dict[str, list[str]] = {}
    name = row.name or ""
    if not NAME.fullmatch(name) or len(name) > MAX_NAME:
        errors["name"] = [f"lower-case words joined by dots or underscores, e.g. invoice.overdue (at most {MAX_NAME} "
                          "characters)"]
    elif name in PREDECLARED or name.replace(".", "_") in changes.DELETED.values() or name in CRM_KINDS:
        errors["name"] = [f"“{name}” is already in the catalog (it ships with the product)"]
    if row.about not in ("", *ABOUT):
        errors["about"] = [f"must be one of {', '.join(ABOUT)}, or empty (about no record)"]
    fields = row.fields
    if not isinstance(fields, list):
        errors["fields"] = ["must be a list of fields, each {key, kind, required, label}"]
        return errors
    problems, seen = [], set()
    if len(fields) > MAX_FIELDS:
        problems.append(f"at most {MAX_FIELDS} fields")
    for i, item in enumerate(fields[:MAX_FIELDS]):
        where = f"fields[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object with key, kind, required and label")
            continue
        unknown = sorted(set(item) - {"key", "kind", "required", "label", "choices"})
        if unknown:
            problems.append(f"{where}.{unknown[0]}: unknown setting (key, kind, required, label, choices)")
        key = item.get("key")
        if not isinstance(key, str) or not KEY.fullmatch(key):
            problems.append(f"{where}.key: an object and a field, e.g. invoice.amount_due (lower-case letters, digits "
                            "and underscores)")
        elif key.split(".")[0] in RESERVED:
            problems.append(f"{where}.key: “{key.split('.')[0]}” is a name the trigger already uses "
                            f"(the linked {key.split('.')[0]}, if a record); choose another first name")
        elif key in seen:
            problems.append(f"{where}.key: “{key}” is declared twice")
        else:
            seen.add(key)
        if item.get("kind") not in (*KINDS, "choices"):
            problems.append(f"{where}.kind: must be one of {', '.join(KINDS)}")
        if not isinstance(item.get("required", False), bool):
            problems.append(f"{where}.required: must be true or false")
        label = item.get("label", "")
        if not isinstance(label, str) or len(label) > 100:
            problems.append(f"{where}.label: text of at most 100 characters")
        choices = item.get("choices", [])
        if item.get("kind") == "choice" and not (isinstance(choices, list) and choices and all(
                isinstance(c, str) and c.strip() and len(c) <= 100 for c in choices) and len(choices) <= 50):
            problems.append(f"{where}.choices: list the choices, one to 50 texts")
        elif item.get("kind") != "choice" and choices:
            problems.append(f"{where}.choices: only a one-of field has choices")
    if problems:
        errors["fields"] = problems
    return errors


# --- Sending an event ---------------------------------------------------------------------------
def check_data(declaration: Declaration, data: object, organization_id: int) -> tuple[dict, dict[str, str]]:
    """The data as stored (each value normalized by its kind) and what is wrong, by place."""
    if data in (None, ""):
        data = {}
    if not isinstance(data, dict):
        return {}, {"data": "must be an object, e.g. {\"invoice\": {\"amount_due\": \"120.00\"}}"}
    size = len(json.dumps(data, default=str))
    if size > settings.EVENT_MAX_DATA:
        return {}, {"data": f"is {size} bytes as JSON; at most {settings.EVENT_MAX_DATA}"}
    errors: dict[str, str] = {}
    clean: dict[str, dict] = {}
    known = {f.key: f for f in declaration.fields}
    objects = {key.split(".")[0] for key in known}
    for head, inner in data.items():
        if head not in objects:
            errors[f"data.{head}"] = (f"is not part of {declaration.name}" + (
                f" (its data: {', '.join(sorted(objects))})" if objects else " (it carries no data)"))
            continue
        if not isinstance(inner, dict):
            errors[f"data.{head}"] = "must be an object of fields"
            continue
        for name in inner:
            if f"{head}.{name}" not in known:
                fields = ", ".join(sorted(k.split(".", 1)[1] for k in known if k.startswith(f"{head}.")))
                errors[f"data.{head}.{name}"] = f"is not a field of {declaration.name} ({head}'s fields: {fields})"
    for key, spec in known.items():
        head, name = key.split(".", 1)
        inner = data.get(head)
        value = inner.get(name) if isinstance(inner, dict) else None
        try:
            checked = value_of(spec, value, organization_id)
        except ValueError as exc:
            errors[f"data.{key}"] = str(exc)
            continue
        if checked is None:
            if spec.required:
                errors[f"data.{key}"] = f"is required ({spec.kind.replace('_', ' ')})"
            continue
        clean.setdefault(head, {})[name] = checked
    return clean, errors


def _contact(organization_id: int, value: object) -> tuple[Any, str]:
    """The contact a sender names (its id, or {"id"|"email"|"phone": …}), or why it is not found."""
    from crm_automation.crm.models import Contact

    contacts = Contact.objects.filter(organization_id=organization_id)
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in ("id", "email", "phone"):
            return None, "name the contact by one of id, email or phone, e.g. {\"phone\": \"+1 555 0100\"}"
        how, given = next(iter(value.items()))
    else:
        how, given = "id", value
    if isinstance(given, bool) or not isinstance(given, str | int) or not str(given).strip() or \
            len(str(given)) > MAX_KEY:
        return None, f"the contact's {how} must be text"
    text = str(given).strip()
    if how == "id":
        found = contacts.filter(pk=int(text)).first() if text.isascii() and text.isdigit() and len(text) < 19 \
            else None
    elif how == "email":
        found = contacts.filter(email__iexact=text).order_by("pk").first()
    else:
        number = e164(text)
        found = contacts.filter(phone_e164=number).order_by("pk").first() if number else None
        if not number:
            return None, f"“{text[:40]}” is not a phone number"
    if found is None:
        return None, f"no contact with {how} “{text[:80]}” in this organization"
    return found, ""


def _record(kind: str, organization_id: int, value: object) -> tuple[Any, str]:
    from crm_automation.crm.selectors import record_in

    found = record_in(organization_id, kind, value) if isinstance(value, str) else None
    if found is None:
        return None, f"“{str(value)[:80]}” was not found in this organization"
    return found, ""


def resolve_links(organization_id: int, links: dict[str, object], about: str) -> tuple[dict, dict[str, str]]:
    """The records an event names ({kind: record}) and what is wrong, by place."""

    found: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for kind, value in links.items():
        if value in (None, ""):
            continue
        if kind == "contact":
            record, problem = _contact(organization_id, value)
        else:
            record, problem = _record(kind, organization_id, value)
        if problem:
            errors[kind] = problem
        else:
            found[kind] = record
    if about and about not in found and about not in errors:
        how = " (by id, email or phone)" if about == "contact" else " (its id)"
        errors[about] = f"is required: this event is about a {about}; name it{how}"
    return found, errors


@transaction.atomic
def event_send(*, organization_id: int, name: object, data: object = None, links: dict | None = None,
               idempotency_key: object = None, source: str = "api", by=None):
    """Check, store and announce one event. Returns (BusinessEvent, created): an event sent again
    with the same idempotency key is the first one (created False), and nothing runs twice.
    ValidationError maps each place (type, data.invoice.amount_due, contact, idempotency_key) to
    what is wrong; nothing is stored then."""
    from crm_automation.crm.models import BusinessEvent
    from crm_automation.crm.selectors import user_has_role

    if by is not None and getattr(by, "pk", None) and not user_has_role(by, organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can send events.")
    errors: dict[str, str] = {}
    if idempotency_key not in (None, "") and (not isinstance(idempotency_key, str) or len(idempotency_key) > MAX_KEY
                                              or "\x00" in idempotency_key):
        errors["idempotency_key"] = f"must be text of at most {MAX_KEY} characters"
    key = idempotency_key if isinstance(idempotency_key, str) and idempotency_key else None
    if key and not errors:
        earlier = BusinessEvent.objects.filter(organization_id=organization_id, idempotency_key=key).first()
        if earlier is not None:
            return earlier, False
    known = catalog(organization_id)
    declaration = known.get(name) if isinstance(name, str) else None
    if declaration is None:
        shown = str(name)[:60] if isinstance(name, str | int) else type(name).__name__
        errors["type"] = f"“{shown}” is not an event of this organization's catalog ({', '.join(sorted(known))})"
        raise ValidationError(errors)
    clean, problems = check_data(declaration, data, organization_id)
    errors.update(problems)
    records, problems = resolve_links(organization_id, links or {}, declaration.about)
    errors.update(problems)
    if errors:
        raise ValidationError(errors)
    event = BusinessEvent(organization_id=organization_id, name=declaration.name, idempotency_key=key, data=clean,
                          source=source, sent_by=by if getattr(by, "pk", None) else None,
                          **{f"{kind}_id": record.pk for kind, record in records.items()})
    try:
        with transaction.atomic():
            event.save()
    except IntegrityError:  # the same key, sent at the same moment: the first one is the event
        earlier = BusinessEvent.objects.filter(organization_id=organization_id, idempotency_key=key).first()
        if earlier is None:
            raise
        return earlier, False
    payload = {"event": {"id": str(event.pk), "name": event.name, "idempotency_key": key, "source": source},
               "data": clean, "links": {kind: str(record.pk) for kind, record in records.items()}}
    changes.records_changed.send(sender=BusinessEvent, changes=[changes.RecordChange(
        declaration.trigger_type, organization_id, "event", event.pk, payload)])
    return event, True


def sample_data(declaration: Declaration) -> dict:
    """Data that passes the declaration: what Simulate and the builder offer as a sample."""
    samples = {"text": "Sample", "long_text": "A few words.", "number": 3, "money": "120.00", "date": "2026-01-15",
               "datetime": "2026-01-15T09:30:00", "boolean": True, "url": "https://example.com/x",
               "email": "someone@example.com", "phone": "+15550100"}
    data: dict[str, dict] = {}
    for spec in declaration.fields:
        head, name = spec.key.split(".", 1)
        data.setdefault(head, {})[name] = spec.choices[0] if spec.choices else samples.get(spec.kind, "Sample")
    return data


ENVELOPE = ("type", "idempotency_key", "data", *ABOUT)


def event_receive(*, organization_id: int, body: object, source: str, by=None):
    """An event as a sender writes it: {"type": "invoice.overdue", "idempotency_key": "…",
    "contact": {"phone": "+1 555 0100"}, "deal": "<id>", "data": {"invoice": {…}}}."""
    if not isinstance(body, dict):
        raise ValidationError({"detail": "send an object: {\"type\": \"invoice.overdue\", \"contact\": {\"email\": …}, "
                                         "\"data\": {…}}"})
    unknown = sorted(str(key)[:40] for key in body if key not in ENVELOPE)
    if unknown:
        raise ValidationError({key: f"unknown key (an event has {', '.join(ENVELOPE)})" for key in unknown[:10]})
    return event_send(organization_id=organization_id, name=body.get("type"), data=body.get("data"),
                      links={kind: body.get(kind) for kind in ABOUT if kind in body},
                      idempotency_key=body.get("idempotency_key"), source=source, by=by)
