"""Small rules for the words people read: counts with their unit, text shortened at a word."""

from django.db import models

ELLIPSIS = "…"
# Units as the workflow format names them (plural) and their singular.
_SINGULAR = {"seconds": "second", "minutes": "minute", "hours": "hour", "days": "day", "weeks": "week",
             "months": "month", "items": "item", "steps": "step", "runs": "run", "records": "record"}


def counted(amount: object, unit: object) -> str:
    """“1 day”, “2 days”, “1 hour”, “0 minutes”: a count with its unit, singular for one.
    `unit` is the plural the format uses (days, hours …); an unknown unit stays as it is."""
    plural = str(unit)
    singular = _SINGULAR.get(plural, plural[:-1] if plural.endswith("s") and len(plural) > 1 else plural)
    is_one = amount in (1, -1) and not isinstance(amount, bool)
    return f"{amount} {singular if is_one else plural}"


def limit_of(model: type[models.Model], field: str) -> int:
    """The most characters a text column holds (what `shorten` cuts a text to before saving it)."""
    column = model._meta.get_field(field)
    if not isinstance(column, models.Field) or column.max_length is None:
        raise TypeError(f"{model.__name__}.{field} has no max_length")
    return column.max_length


def shorten(text: object, limit: int) -> str:
    """`text` in at most `limit` characters, on one line: cut at the last word boundary that
    fits, with an ellipsis; inside a word only when that word alone is longer than half the
    limit (else little would be left)."""
    flat = " ".join(str(text or "").split())
    if len(flat) <= limit:
        return flat
    room = max(limit - len(ELLIPSIS), 1)
    cut = flat[:room + 1]  # one more: a space just after the limit is a boundary too
    boundary = cut.rfind(" ")
    kept = cut[:boundary] if boundary >= limit // 2 else flat[:room]
    return kept.rstrip(" ,;:.-–—") + ELLIPSIS
