"""`{{path}}` templates rendered against a plain dict (invariant 9: data, not code).

No attribute access, no filters, no calls: a path is dot-separated names looked up in nested
dicts built from allow-listed fields. Names starting with "_" never resolve. Output is bounded.
"""

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

TEMPLATE_RE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
PATH_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*$")
MAX_OUTPUT = 10_000
MAX_TEMPLATE = 5_000


@dataclass
class Rendered:
    text: str
    unresolved: list[str] = field(default_factory=list)
    truncated: bool = False


def resolve(context: dict, path: str):
    """The value at `path`, or None when the path is not a plain, allow-listed value."""
    if not PATH_RE.match(path):
        return None
    value = context
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, dict | list):
        return None
    return value


def format_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def render(template: str, context: dict) -> Rendered:
    unresolved: list[str] = []

    def substitute(match: re.Match) -> str:
        path = match.group(1)
        value = resolve(context, path)
        if value is None and not _is_known_empty(context, path):
            unresolved.append(path)
            return ""
        return format_value(value)

    text = TEMPLATE_RE.sub(substitute, template or "")
    truncated = len(text) > MAX_OUTPUT
    return Rendered(text=text[:MAX_OUTPUT], unresolved=unresolved, truncated=truncated)


def _is_known_empty(context: dict, path: str) -> bool:
    """True when the path exists and simply holds no value (e.g. a deal without contact)."""
    if not PATH_RE.match(path):
        return False
    value = context
    for part in path.split("."):
        if value is None:
            return True
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return value is None


def template_paths(template: str) -> list[str]:
    return [m.group(1) for m in TEMPLATE_RE.finditer(template or "")]
