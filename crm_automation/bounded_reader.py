"""The one reader of YAML and JSON that comes from a person or a model.

Every such text (API bodies, the YAML tab, the builder's save, the admin import,
`import_workflows`, AI authoring's answer, a trigger's input) is read here, within limits that
are checked *while* it is parsed, so no small body can make a worker busy for long:

- size: the text is refused before parsing when it is larger than `max_bytes`;
- depth: a collection nested deeper than `max_depth` stops the parse at that point (PyYAML's
  parser slows down with depth, so a few kilobytes of `[[[[…` would otherwise take seconds);
- values: more than `max_nodes` scalars and collections stop the parse;
- YAML anchors and aliases (`&a`, `*a`) are refused where they appear: they let a few hundred
  bytes stand for billions of values (the "billion laughs");
- only JSON's types come out: YAML timestamps stay text, `!!binary`, `!!set` and other tags are
  refused, and so are numbers that are not finite, NUL characters and lone surrogates (which
  PostgreSQL cannot store).

A refusal is an `InputRefused` whose message says which limit was passed and, for YAML, on
which line. The documented limits are in the README ("Limits on what you send").
"""

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_depth: int
    max_nodes: int
    what: str = "text"  # how messages name it: "the YAML", "the body"


# A workflow document: 50 steps export to about 20 KB, 1,000 values and 8 levels.
DOCUMENT = Limits(max_bytes=200_000, max_depth=24, max_nodes=20_000, what="the workflow")
# Any other body an endpoint reads (record fields, a trigger's input, answers), and webhooks.
PAYLOAD = Limits(max_bytes=1_000_000, max_depth=64, max_nodes=100_000, what="the body")

_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class InputRefused(ValueError):
    """The text passed a limit or is not something we can store; `message` says which."""

    def __init__(self, message: str, line: int | None = None, *, place: str = "", problem: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.place = place  # where in the value ("rules[0].value"), when a value was refused
        self.problem = problem or message  # what is wrong there, without the place

    def __str__(self) -> str:
        return f"{self.message} (line {self.line})" if self.line else self.message


# --- YAML ---------------------------------------------------------------------------------------
class _LimitedComposer(Composer):
    """PyYAML's composer, counting depth and values as each event arrives."""

    limits: Limits

    def compose_node(self, parent, index):
        event = self.peek_event()
        line = event.start_mark.line + 1 if event.start_mark else None
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise InputRefused("YAML anchors and aliases (&name, *name) are not accepted; write the values out", line)
        self._nodes += 1
        if self._nodes > self.limits.max_nodes:
            raise InputRefused(f"{self.limits.what.capitalize()} has more than {self.limits.max_nodes:,} values", line)
        if isinstance(event, yaml.CollectionStartEvent):
            self._depth += 1
            if self._depth > self.limits.max_depth:
                raise InputRefused(f"{self.limits.what.capitalize()} nests more than {self.limits.max_depth} levels "
                                   "deep", line)
        try:
            return super().compose_node(parent, index)
        finally:
            if isinstance(event, yaml.CollectionStartEvent):
                self._depth -= 1


class _JsonConstructor(SafeConstructor):
    """SafeConstructor that makes JSON's types only."""

    def construct_yaml_timestamp(self, node):
        return self.construct_scalar(node)  # a date stays the text it was written as

    def construct_yaml_float(self, node):
        value = super().construct_yaml_float(node)
        if not math.isfinite(value):
            raise InputRefused("numbers must be finite (not .inf or .nan)", node.start_mark.line + 1)
        return value

    def construct_yaml_int(self, node):
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # more digits than Python converts (4,300)
            raise InputRefused("a number has too many digits", node.start_mark.line + 1) from None

    def construct_undefined(self, node):
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise InputRefused(f"the tag {tag} is not accepted: use text, numbers, yes/no, lists and mappings",
                           node.start_mark.line + 1)


def _construct(tag: str | None, constructor: Callable[[_JsonConstructor, yaml.Node], object]) -> None:
    # (PyYAML's stubs take only yaml's own loader classes as a constructor's first argument)
    _JsonConstructor.add_constructor(tag, constructor)  # type: ignore[type-var]


_construct("tag:yaml.org,2002:timestamp", _JsonConstructor.construct_yaml_timestamp)
_construct("tag:yaml.org,2002:float", _JsonConstructor.construct_yaml_float)
_construct("tag:yaml.org,2002:int", _JsonConstructor.construct_yaml_int)
for _tag in ("binary", "set", "omap", "pairs"):
    _construct(f"tag:yaml.org,2002:{_tag}", _JsonConstructor.construct_undefined)
_construct(None, _JsonConstructor.construct_undefined)

# libyaml's parser (C) when PyYAML was built with it, which is ~20x faster; PyYAML's own otherwise.
# Either way the events go through the composer above, so the limits are the same.
try:
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - PyYAML wheels carry libyaml
    _Parser = None  # type: ignore[assignment,misc]  # (the class is absent here, so the name holds None)


if _Parser is not None:
    class _Loader(_LimitedComposer, _Parser, _JsonConstructor, Resolver):
        def __init__(self, stream: str, limits: Limits) -> None:
            _Parser.__init__(self, stream)
            _LimitedComposer.__init__(self)
            _JsonConstructor.__init__(self)
            Resolver.__init__(self)
            self.limits, self._depth, self._nodes = limits, 0, 0
else:  # pragma: no cover - PyYAML wheels carry libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Loader(Reader, Scanner, Parser, _LimitedComposer, _JsonConstructor, Resolver):  # type: ignore[no-redef]
        def __init__(self, stream: str, limits: Limits) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            _LimitedComposer.__init__(self)
            _JsonConstructor.__init__(self)
            Resolver.__init__(self)
            self.limits, self._depth, self._nodes = limits, 0, 0


def read_yaml(text: str | bytes, limits: Limits = DOCUMENT) -> tuple[Any, yaml.Node | None]:
    """The value of one YAML document and its node tree (for the lines of later errors)."""
    text = _text(text, limits)
    loader = _Loader(text, limits)
    try:
        tree = loader.get_single_node()
        value = loader.construct_document(tree) if tree is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if "maximum nesting depth" in str(exc.problem):  # libyaml's own limit (1,000) came first
            raise InputRefused(f"{limits.what.capitalize()} nests more than {limits.max_depth} levels deep",
                               mark.line + 1 if mark else None) from None
        raise InputRefused(f"this is not valid YAML ({exc.problem or exc.context})",
                           mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise InputRefused(f"this is not valid YAML ({exc})") from None
    except RecursionError:  # cannot happen within max_depth; never a 500 if it does
        raise InputRefused(f"{limits.what.capitalize()} nests too deeply") from None
    finally:
        loader.dispose()
    check_value(value, limits, counted=True)
    return value, tree


# --- JSON ---------------------------------------------------------------------------------------
def _refuse_constant(name: str):
    raise InputRefused(f"{name} is not a number JSON can hold")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputRefused(f"the number {text[:20]} is too large")
    return value


def read_json(text: str | bytes, limits: Limits = PAYLOAD) -> Any:
    """The value of a JSON text. Python's parser is C and linear, and gives up on deep nesting
    at its recursion limit long before it is slow, so depth and size are checked on the value."""
    text = _text(text, limits)
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise InputRefused(f"{limits.what.capitalize()} nests more than {limits.max_depth} levels deep") from None
    except InputRefused:
        raise
    except json.JSONDecodeError as exc:
        raise InputRefused(f"this is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise InputRefused(f"this is not valid JSON ({exc})") from None
    check_value(value, limits)
    return value


# --- Values -------------------------------------------------------------------------------------
def check_value(value: Any, limits: Limits = PAYLOAD, *, counted: bool = False) -> None:
    """Refuse a parsed value (or one a model handed over as data) that passes the limits or holds
    text PostgreSQL cannot store, naming where (`config.rules[0].value`). Iterative: a hostile
    value cannot exhaust the stack. `counted`: depth and values were counted while parsing."""
    # Each entry: the value, its depth and its place as a linked (parent place, key) pair, made
    # into words only for the one that is refused.
    stack: list[tuple[Any, int, tuple | None]] = [(value, 1, None)]
    nodes = 0
    while stack:
        item, depth, place = stack.pop()
        nodes += 1
        if not counted and nodes > limits.max_nodes:
            raise InputRefused(f"{limits.what.capitalize()} has more than {limits.max_nodes:,} values")
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                raise _at(place, problem)
        elif isinstance(item, float) and not math.isfinite(item):
            raise _at(place, "is not a finite number")
        elif isinstance(item, dict | list):
            if not counted and depth > limits.max_depth:
                raise InputRefused(f"{limits.what.capitalize()} nests more than {limits.max_depth} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    problem = text_problem(key) if isinstance(key, str) else None
                    if problem:
                        raise _at(place, f"has a key that {problem}")
                    stack.append((child, depth + 1, (place, key)))
            else:
                stack.extend((child, depth + 1, (place, index)) for index, child in enumerate(item))


def _at(place: tuple | None, problem: str) -> InputRefused:
    """The refusal of the value at `place`: “rules[0].value: contains …”, or “the text contains …”
    at the top."""
    parts = []
    while place is not None:
        place, key = place
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    where = "".join(reversed(parts)).lstrip(".")
    return InputRefused(f"{where}: {problem}" if where else f"the text {problem}", place=where, problem=problem)


def text_problem(text: str) -> str | None:
    """Why PostgreSQL could not store `text` (a NUL, or half of a surrogate pair), or None."""
    bad = _BAD_CHARACTER.search(text)
    if bad is None:
        return None
    if bad.group() == "\x00":
        return "contains a NUL character (\\u0000), which cannot be stored"
    return f"contains an unpaired surrogate (\\u{ord(bad.group()):04x}), which is not text: send UTF-8"


def _text(text: str | bytes, limits: Limits) -> str:
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        raise InputRefused(f"{limits.what.capitalize()} is larger than {limits.max_bytes:,} bytes ({size:,})")
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputRefused("the text is not UTF-8") from None
    return text


# --- Numbers in forms and query strings ---------------------------------------------------------
def read_int(text: str | None, *, max_digits: int = 18) -> int | None:
    """A whole number typed or sent as text (`?against=3`, a form's revision), or None when it is
    not one: no sign, ASCII digits only ("²".isdigit() is true, int("²") fails), and short
    enough for a database integer (int() of 5,000 digits raises)."""
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def read_upload(source, limits: Limits = DOCUMENT) -> str:
    """The text of an uploaded or local file (anything with `read(n)` giving bytes), reading at
    most one byte past the limit: a huge file is refused without being read into memory."""
    data = source.read(limits.max_bytes + 1)
    if len(data) > limits.max_bytes:
        raise InputRefused(f"{limits.what.capitalize()} is larger than {limits.max_bytes:,} bytes")
    return _text(data, limits)
