"""`{{path}}` templates rendered against a plain dict (invariant 9: data, not code).

No attribute access, no filters, no calls: a path is dot-separated names looked up in nested
dicts built from allow-listed fields. Names starting with "_" never resolve. Output is bounded.

Scanning is linear in the template's length: placeholders are found with `str.find`, never
with a backtracking regular expression (a regex with `\\s*(.*?)\\s*` took 91 s on "{{" followed
by 5,000 spaces), and a template longer than MAX_TEMPLATE is refused before it is scanned.
"""

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

MAX_OUTPUT = 10_000
MAX_TEMPLATE = 5_000
MAX_PATH = 200
OPEN, CLOSE = "{{", "}}"
# No nested quantifier can overlap (names are separated by dots), so this is linear too; it is
# only ever applied to a placeholder's text of at most MAX_PATH characters.
# The first name may be a node's label ("Find Deals") or id ("find-deals"): spaces and dashes.
PATH_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_ -]*(?:\.[A-Za-z0-9][A-Za-z0-9_]*)*")


class TemplateTooLong(ValueError):
    pass


@dataclass
class Rendered:
    text: str
    unresolved: list[str] = field(default_factory=list)
    truncated: bool = False


@dataclass(frozen=True)
class Placeholder:
    start: int
    end: int
    path: str


def placeholders(template: str) -> Iterator[Placeholder]:
    """Every `{{ path }}` in the template, left to right, in one linear pass."""
    if len(template) > MAX_TEMPLATE:
        raise TemplateTooLong(f"is longer than {MAX_TEMPLATE} characters")
    position = 0
    while True:
        start = template.find(OPEN, position)
        if start < 0:
            return
        end = template.find(CLOSE, start + len(OPEN))
        if end < 0:
            return
        yield Placeholder(start, end + len(CLOSE), template[start + len(OPEN):end].strip())
        position = end + len(CLOSE)


def is_path(text: str) -> bool:
    return len(text) <= MAX_PATH and PATH_RE.fullmatch(text) is not None


def lookup(context: dict, path: str):
    """The value at `path` as it is (a list or mapping too, for a loop's items), or None."""
    if not isinstance(path, str) or not is_path(path):
        return None
    value = context
    for i, part in enumerate(path.split(".")):
        if i == 0 and part not in value:
            part = part.strip().casefold()  # a node's label, in any case
        if isinstance(value, list | tuple) and part.isascii() and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
            continue
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def resolve(context: dict, path: str):
    """The value at `path`, or None when the path is not a plain, allow-listed value."""
    value = lookup(context, path)
    if isinstance(value, dict | list | tuple):
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
    """Substitute every placeholder. A template over MAX_TEMPLATE raises TemplateTooLong
    (validation refuses such templates on save; this guards rows written around it)."""
    template = template or ""
    unresolved: list[str] = []
    parts: list[str] = []
    position = 0
    for ph in placeholders(template):
        parts.append(template[position:ph.start])
        value = lookup(context, ph.path)
        if value is None and not _is_known_empty(context, ph.path):
            unresolved.append(ph.path)
        elif isinstance(value, dict | list | tuple):
            # A whole record or node output ({{trigger}}, {{Find Deals.rows}}): its data as JSON.
            parts.append(json.dumps(value, default=format_value, sort_keys=True, ensure_ascii=False)[:MAX_OUTPUT])
        else:
            parts.append(format_value(value))
        position = ph.end
    parts.append(template[position:])
    text = "".join(parts)
    truncated = len(text) > MAX_OUTPUT
    return Rendered(text=text[:MAX_OUTPUT], unresolved=unresolved, truncated=truncated)


def missing_link(context: dict, path: str) -> str | None:
    """For a known path that holds no value, the part that is missing, e.g. "deal.contact"
    for "deal.contact.email" on a deal without contact; None if the path resolves."""
    if not is_path(path):
        return None
    value: Any = context
    walked: list[str] = []
    for part in path.split("."):
        if value is None:
            return ".".join(walked)
        if not isinstance(value, dict) or part not in value:
            return None
        walked.append(part)
        value = value[part]
    return path if value in (None, "") else None


def _is_known_empty(context: dict, path: str) -> bool:
    """True when the path exists and simply holds no value (e.g. a deal without contact)."""
    if not is_path(path):
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
    return [ph.path for ph in placeholders(template or "")]


SETTING_ROOM = 2000  # characters of one rendered setting kept on the step (the output keeps what was sent)
MAX_SETTINGS = 40


def rendered_settings(config: dict, context: dict, known: Mapping[str, str] | None = None) -> dict[str, str]:
    """The config's templated texts rendered against the run's values, by their place in the
    config ("subject", "rules[0].value"), as a step's record of what it was given; a value the
    run does not know renders empty (the step itself fails on it, and says so). `known`: texts
    the step rendered already, by template (taken as they are, not rendered again)."""
    found: dict[str, str] = {}
    known = known or {}

    def walk(value: object, where: str) -> None:
        if len(found) >= MAX_SETTINGS:
            return
        if isinstance(value, str) and "{{" in value:
            text = known.get(value)
            if text is None:
                try:
                    text = render(value, context).text
                except TemplateTooLong:
                    return
            found[where] = text[:SETTING_ROOM]
        elif isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{where}.{key}" if where else str(key))
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(inner, f"{where}[{index}]")

    walk(config, "")
    return found
