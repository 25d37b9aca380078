"""Values turned into the types fields hold, in one place: a condition's rule value and the
record's value it is compared with, an `update_field` node's new value, a function's arguments.

Every coercion raises ValueError saying why in words ("“lots” is not a number"); the caller puts
its place in front ("config.value: …"). The callers differ only in what they allow, which they
say by their arguments: a deal's amount has at most 12 digits before its cents, a function's
numbers 15 (a float in its output carries them unchanged); a text field 200 characters, a
function's text argument 300.

And one `json_value`: how a value travels as JSON. It is the CRM's (crm/changes.py writes every
change's old and new values with it, and the CRM does not import automation), named here too so
automation code finds it with the other conversions.
"""

import uuid
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from crm_automation.crm.changes import json_number, json_value
from crm_automation.crm.selectors import shown

__all__ = ["aware", "comparable", "json_number", "json_value", "to_choice", "to_date", "to_date_or_datetime",
           "to_day", "to_email", "to_id", "to_number", "to_percent", "to_text", "to_uuid", "to_whole"]


def to_number(value, *, digits: int | None = None) -> Decimal:
    """A finite number (yes/no, a list or an object is not one); with `digits`, at most that many
    digits before the point."""
    if isinstance(value, bool | dict | list) or value is None:
        raise ValueError(f"{shown(value)} is not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{shown(value)} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{shown(value)} is not a number")
    if digits is not None and abs(number) >= Decimal(10) ** digits:
        raise ValueError(f"{shown(value)} is too large (at most {digits} digits)")
    return number


def to_whole(value, *, digits: int | None = None) -> int:
    number = to_number(value, digits=digits)
    if number != number.to_integral_value():
        raise ValueError(f"{shown(value)} is not a whole number")
    return int(number)


def to_percent(value) -> int:
    """A whole number from 0 to 100, written as digits ("40" or 40; not 40.0 or "4e1")."""
    if isinstance(value, bool) or not str(value).strip().isdecimal() or not 0 <= int(str(value)) <= 100:
        raise ValueError(f"{shown(value)} is not a whole number from 0 to 100")
    return int(str(value))


def to_text(value, *, limit: int) -> str:
    """A single value as text, at most `limit` characters; a number as written ("12000.50")."""
    if isinstance(value, bool | dict | list) or value is None:
        raise ValueError(f"{shown(value)} is not a text value")
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    if len(text) > limit:
        raise ValueError(f"must be at most {limit} characters")
    return text


def to_choice(value, choices: tuple[str, ...]) -> str:
    """One of `choices` (lower case), written in any case."""
    if isinstance(value, bool | dict | list) or value is None:
        raise ValueError(f"{shown(value)} is not a text value")
    text = str(value).casefold()
    if text not in choices:
        raise ValueError(f"{shown(value)} is not one of {', '.join(choices)}")
    return text


def to_email(value) -> str:
    try:
        validate_email(str(value))
    except ValidationError:
        raise ValueError(f"{shown(value)} is not an email address") from None
    return str(value)


def to_date(value) -> date:
    """A date written YYYY-MM-DD (a date passes as it is)."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{shown(value)} is not a date (YYYY-MM-DD)") from None


def aware(moment: datetime) -> datetime:
    """A time without an offset means the organization's clock, i.e. settings.TIME_ZONE."""
    if timezone.is_naive(moment):
        return timezone.make_aware(moment, timezone.get_default_timezone())
    return moment


def to_date_or_datetime(value) -> date | datetime:
    if isinstance(value, datetime):
        return aware(value)
    if isinstance(value, date):
        return value
    wrong = f"{shown(value)} is not a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM)"
    if not isinstance(value, str):
        raise ValueError(wrong)
    text = value.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    try:
        return aware(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(wrong) from None


def to_day(value) -> date:
    """A date; a date and time counts as its day on the organization's clock."""
    moment = to_date_or_datetime(value)
    if isinstance(moment, datetime):
        return timezone.localtime(moment, timezone.get_default_timezone()).date()
    return moment


def to_uuid(value) -> uuid.UUID:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise ValueError(f"{shown(value)} is not an id") from None


def to_id(value) -> int:
    """A record's id: a whole number from 1, at most 15 digits (ids are bigints, and a longer
    number is refused here rather than by the database)."""
    number = to_whole(value, digits=15)
    if number < 1:
        raise ValueError(f"{shown(value)} is not an id")
    return number


def comparable(kind: str, value):
    """A condition's rule value, or the record's value it is compared with, as a value of the
    field's kind that compares as people expect: a number, a date, or text ignoring case; None
    when empty. `any` (a node's output, whose kind is not known in advance): a number when it
    reads as one, else text."""
    if value is None or value == "":
        return None
    if kind == "any":
        try:
            return to_number(value)
        except ValueError:
            return str(value).casefold()
    if kind == "number":
        return to_number(value)
    if kind == "date":
        return to_date(value)
    return str(value).casefold()
