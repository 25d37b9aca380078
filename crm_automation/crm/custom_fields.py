"""Fields of an organization's own on its deals, leads, contacts and projects.

A field is defined once (`CustomField`: the record it is on, a key that never changes, a label
that may, a kind, choices for one-of and several-of); its values live in the record's `custom`
mapping, by key. Every value is checked by its kind when a record is saved (`check_values`,
called by the records' `save`: the admin, the API, the pages and workflows all write through
it), so what is stored is always of its kind: text, a number as a JSON number, money as its
exact text with cents ("1200.50", as a deal's amount reads), a date as
YYYY-MM-DD, yes/no as true/false, a choice spelled as defined, a user by username.

Workflows read them as `{{deal.custom.<key>}}` (the record's dictionary carries `custom`), and
conditions compare them by kind (`kind_of`).
"""

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator

KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
MAX_TEXT, MAX_LONG_TEXT, MAX_CHOICES = 200, 5000, 50
# The standard fields of each record, which a custom key may not shadow ({{deal.title}} is one).
STANDARD = {  # (each has archived_at too: added below)
    "deal": {"id", "title", "amount", "stage", "stage_name", "probability", "close_date", "contact", "owner",
             "custom", "created_at", "updated_at"},
    "lead": {"id", "name", "email", "company", "status", "source", "owner", "custom", "created_at", "updated_at"},
    "contact": {"id", "first_name", "last_name", "email", "phone", "company", "custom", "created_at"},
    "project": {"id", "name", "status", "service_type", "contact", "deal", "deal_id", "owner", "start_date",
                "end_date", "custom", "created_at", "updated_at"},
}
for _names in STANDARD.values():
    _names.add("archived_at")
# How a condition compares a kind (definition/coercion.py's kinds).
CONDITION_KINDS = {"number": "number", "money": "number", "date": "date", "datetime": "str", "boolean": "str"}


def kind_of(kind: str) -> str:
    return CONDITION_KINDS.get(kind, "str")


def definitions(organization_id: int, entity: str) -> dict[str, Any]:
    """The organization's fields on that record, by key."""
    from crm_automation.crm.models import CustomField

    return {f.key: f for f in CustomField.objects.filter(organization_id=organization_id, entity=entity)}


def check_values(organization_id: int, entity: str, values: object) -> dict[str, Any]:
    """The values as stored (normalized by kind), or ValidationError naming each field wrong."""
    if values in (None, ""):
        return {}
    if not isinstance(values, dict):
        raise ValidationError({"custom": ["must be a mapping of field keys to values"]})
    fields = definitions(organization_id, entity)
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for key, value in values.items():
        field = fields.get(key)
        if field is None:
            known = ", ".join(sorted(fields)) or "none yet"
            errors[f"custom.{key}"] = [f"is not a field of this organization's {entity}s (its fields: {known})"]
            continue
        try:
            checked = value_of(field, value, organization_id)
        except ValueError as exc:
            errors[f"custom.{key}"] = [f"{field.label}: {exc}"]
            continue
        if checked is not None:
            clean[key] = checked
    if errors:
        raise ValidationError(errors)
    return clean


def value_of(field, value: object, organization_id: int) -> object:
    """One value as stored; None for empty (it is then left out). ValueError says what is wrong."""
    if value is None or value == "" or value == []:
        return None
    kind = field.kind
    if kind in ("text", "long_text", "phone"):
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("must be text")
        text = str(value).strip()
        limit = MAX_LONG_TEXT if kind == "long_text" else 40 if kind == "phone" else MAX_TEXT
        if len(text) > limit:
            raise ValueError(f"is {len(text)} characters long; at most {limit}")
        if kind == "phone" and not re.fullmatch(r"\+?[0-9 ().\-]{3,40}", text):
            raise ValueError("is not a phone number (digits, spaces, + ( ) . -)")
        return text
    if kind in ("number", "money"):
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"“{value}” is not a number") from None
        if not number.is_finite() or abs(number) >= Decimal("1e15"):
            raise ValueError("must be a number below 1,000,000,000,000,000")
        if kind == "money":  # as the amount of a deal reads: "1200.50"
            return str(number.quantize(Decimal("0.01")))
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "date":
        try:
            return date.fromisoformat(str(value).strip()).isoformat()
        except ValueError:
            raise ValueError(f"“{value}” is not a date (YYYY-MM-DD)") from None
    if kind == "datetime":
        try:
            return datetime.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise ValueError(f"“{value}” is not a date and time (YYYY-MM-DDTHH:MM)") from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).strip().casefold() in ("yes", "true", "1", "on"):
            return True
        if str(value).strip().casefold() in ("no", "false", "0", "off"):
            return False
        raise ValueError("must be yes or no")
    if kind == "choice":
        return _choice(field, value)
    if kind == "choices":
        if not isinstance(value, list):
            raise ValueError("must be a list of choices")
        chosen = [_choice(field, v) for v in value]
        return [c for c in field.choices if c in chosen]  # in the field's order, each once
    if kind == "user":
        from crm_automation.crm.models import Membership

        username = str(value).strip()
        if not Membership.objects.filter(organization_id=organization_id, user__username=username).exists():
            raise ValueError(f"“{username}” is not a member of this organization")
        return username
    if kind == "url":
        text = str(value).strip()
        try:
            URLValidator(schemes=["http", "https"])(text)
        except ValidationError:
            raise ValueError(f"“{text[:80]}” is not a web address (https://…)") from None
        return text
    if kind == "email":
        text = str(value).strip()
        try:
            EmailValidator()(text)
        except ValidationError:
            raise ValueError(f"“{text[:80]}” is not an email address") from None
        return text
    raise ValueError(f"has an unknown kind {kind}")


def _choice(field, value: object) -> str:
    for choice in field.choices:
        if str(value).strip().casefold() == str(choice).casefold():
            return str(choice)
    raise ValueError(f"“{value}” is not one of its choices ({', '.join(map(str, field.choices))})")


def check_definition(field) -> dict[str, list[str]]:
    """What is wrong with a field's definition, by form field."""
    errors: dict[str, list[str]] = {}
    if not KEY.fullmatch(field.key or ""):
        errors["key"] = ["must start with a letter, then lower-case letters, digits and underscores (at most 40)"]
    elif field.key in STANDARD.get(field.entity, set()):
        errors["key"] = [f"is a standard field of a {field.entity}; choose another key"]
    if field.kind in ("choice", "choices"):
        choices = field.choices
        if not (isinstance(choices, list) and choices and all(isinstance(c, str) and c.strip() for c in choices)):
            errors["choices"] = ["list the choices, one or more texts"]
        elif len(choices) > MAX_CHOICES or len({c.casefold() for c in choices}) != len(choices):
            errors["choices"] = [f"at most {MAX_CHOICES} choices, each once"]
    elif field.choices:
        errors["choices"] = ["only one-of and several-of fields have choices"]
    return errors


def used_by(field) -> list[str]:
    """The names of the organization's live workflows (activated or paused) whose definition
    reads the field ({{deal.custom.<key>}}, a condition on it): deleting it would break them."""
    import json

    from crm_automation.automation.models import Workflow, WorkflowStatus

    path = f"{field.entity}.custom.{field.key}"
    live = Workflow.objects.filter(organization_id=field.organization_id,
                                   status__in=[WorkflowStatus.ACTIVATED, WorkflowStatus.PAUSED])
    return [w.name for w in live.order_by("name") if path in json.dumps(w.document)]
