"""Allow-listed functions that a workflow's `function` node calls.

A node's config is `{"functionRef": "crm/query_deals", "args": {...}}`. No user code ever runs:
the ref must name one of FUNCTIONS, and each function checks its arguments against explicit
allow-lists (fields, operators, units). Arguments are checked when a workflow is saved
(`validate`) and again, without database reads, when a step runs (`call`): a stored version
may outlive a change to these lists, and it must then fail with a message, not a KeyError.

Queries are always scoped by the run's organization (invariant 8) and bounded: one query of at
most MAX_LIMIT + 1 rows, the extra row only telling whether more matched.

Output is plain JSON: ids and texts as strings, dates as ISO text, and every Decimal as an int
when whole, else a float (amounts have at most 14 digits, which a float carries unchanged).
"""

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from operator import or_
from typing import TYPE_CHECKING, Any, TypeGuard, TypeVar

from django.db import models
from django.db.models import F, OrderBy, Q
from django.utils import timezone

from crm_automation.automation.definition import coercion
from crm_automation.automation.definition.catalog import suggest
from crm_automation.automation.definition.coercion import json_number, json_value, to_date_or_datetime
from crm_automation.automation.definition.templating import (
    MAX_TEMPLATE,
    TemplateTooLong,
    is_path,
    render,
    template_paths,
)
from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes.base import ActionFailed
from crm_automation.automation.nodes.flow import FlowNode, Steps
from crm_automation.crm.models import Contact, Deal, Lead
from crm_automation.crm.selectors import shown, stage_slugs

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState, StepRow

Problems = list[tuple[str, str]]
Coerced = TypeVar("Coerced")

CONFIG_KEYS = ("functionRef", "args")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_FILTERS = 20
MAX_IN_VALUES = 100
MAX_TEXT = 300
# Numbers past 15 digits would not survive the float in the output; nobody means them.
DIGITS = 15
MAX_ROUND_PLACES = 10
MAX_DATE_AMOUNT = 1_000_000


# --- Values -----------------------------------------------------------------------------------

def is_template(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and "{{" in value


def template_problems(place: str, text: str) -> Problems:
    """A template's own shape. Which names exist depends on the trigger and the graph around
    the node, which the engine's graph validator checks; here only what makes it unrenderable."""
    if len(text) > MAX_TEMPLATE:  # checked before scanning: a huge template is never parsed
        return [(place, f"is longer than {MAX_TEMPLATE} characters")]
    return [(place, f"{{{{{path}}}}} is not a value name; use dotted names such as {{{{deal.amount}}}}")
            for path in template_paths(text) if not is_path(path)]


def rendered(value: object, context: dict[str, Any], place: str) -> object:
    """A templated text rendered against the run's context; any other value as it is.

    Strict: a placeholder that is not a known value fails the step. Rendering it empty would
    silently change what a filter or a sum means while the run says "completed"."""
    if not is_template(value):
        return value
    try:
        result = render(value, context)
    except TemplateTooLong as exc:
        raise ActionFailed(f"{place} {exc}; nothing was run") from None
    if result.unresolved:
        paths = ", ".join(f"{{{{{p}}}}}" for p in result.unresolved)
        raise ActionFailed(f"{place}: {paths} is not a value this workflow knows")
    if result.truncated:
        raise ActionFailed(f"{place}: the rendered text is too long")
    return result.text


# The function node's limits on the shared coercions (definition/coercion.py).
def to_number(value: object) -> Decimal:
    return coercion.to_number(value, digits=DIGITS)


def to_whole(value: object) -> int:
    return coercion.to_whole(value, digits=DIGITS)


def to_text(value: object) -> str:
    return coercion.to_text(value, limit=MAX_TEXT)


def check_value(place: str, value: object, coerce: Callable[[Any], object]) -> Problems:
    """A static value must coerce now; a templated one can only be checked for its shape."""
    if is_template(value):
        return template_problems(place, value)
    try:
        coerce(value)
    except ValueError as exc:
        return [(place, str(exc))]
    return []


def runtime_value(place: str, value: object, context: dict[str, Any], coerce: Callable[[Any], Coerced]) -> Coerced:
    try:
        return coerce(rendered(value, context, place))
    except ValueError as exc:
        raise ActionFailed(f"{place}: {exc}") from None


def listed(values: Iterable[str]) -> str:
    return ", ".join(values)


# --- The registry -----------------------------------------------------------------------------

class Function:
    """One allow-listed function. `check` and `run` see only the node's `args`; the places they
    report are relative to it ("filters[0].operator")."""

    ref: str = ""
    summary: str = ""
    arguments: dict[str, str] = {}  # name → what it means, for messages and the authoring UI
    required: tuple[str, ...] = ()

    def check(self, args: dict[str, Any], *, organization_id: int | None) -> Problems:
        """`organization_id` None: skip checks that read the database (used at run time)."""
        problems = [(str(name), f"unknown argument; {self.ref} takes {listed(self.arguments) or 'no arguments'}")
                    for name in sorted(set(args) - set(self.arguments), key=str)]
        problems += [(name, "is required") for name in self.required if args.get(name) in (None, "")]
        return problems

    def run(self, args: dict[str, Any], *, organization_id: int, context: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


# --- Queries ----------------------------------------------------------------------------------

TEXT, CHOICE, STAGE, NUMBER, WHOLE, DATE, DATETIME, UUID, ID = (
    "text", "choice", "stage", "number", "whole", "date", "datetime", "uuid", "id")
TEXTUAL = {TEXT, CHOICE, STAGE}  # compared ignoring case, as conditions do
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "contains", "in", "is_empty")
_COMPARING = ("eq", "ne", "gt", "gte", "lt", "lte")
_KIND_OPERATORS = {
    TEXT: ("eq", "ne", "contains", "in"),
    CHOICE: ("eq", "ne", "in"),
    STAGE: ("eq", "ne", "in"),
    NUMBER: (*_COMPARING, "in"),
    WHOLE: (*_COMPARING, "in"),
    DATE: _COMPARING,
    DATETIME: _COMPARING,
    UUID: ("eq", "ne", "in"),
    ID: ("eq", "ne", "in"),
}
_KIND_WORDS = {TEXT: "text", CHOICE: "a choice", STAGE: "a stage", NUMBER: "a number", WHOLE: "a whole number",
               DATE: "a date", DATETIME: "a date and time", UUID: "an id", ID: "an id"}
_LOOKUPS = {"gt": "gt", "gte": "gte", "lt": "lt", "lte": "lte"}


@dataclass(frozen=True)
class Field:
    """A queryable and returned field: its ORM path, its kind and whether it can be empty."""

    lookup: str
    kind: str
    can_be_empty: bool = False
    choices: tuple[str, ...] = ()

    @property
    def operators(self) -> tuple[str, ...]:
        return _KIND_OPERATORS[self.kind] + (("is_empty",) if self.can_be_empty else ())

    def coerce(self, value: object) -> object:
        if self.kind in (TEXT, STAGE):
            return to_text(value)
        if self.kind == CHOICE:
            return coercion.to_choice(value, self.choices)
        return {NUMBER: to_number, WHOLE: to_whole, DATE: coercion.to_day, DATETIME: to_date_or_datetime,
                UUID: coercion.to_uuid, ID: coercion.to_id}[self.kind](value)

    def q(self, operator: str, value: Any) -> Q:
        """The filter for one rule, with a value already coerced."""
        if operator == "is_empty":
            empty = Q(**{f"{self.lookup}__isnull": True})
            if self.kind in TEXTUAL:
                empty |= Q(**{self.lookup: ""})
            return ~empty if value is False else empty
        if operator == "ne":
            # Negated, so rows where the field is empty count as "not equal" (SQL NULL would not).
            return ~self.q("eq", value)
        if operator == "in":
            if self.kind in TEXTUAL:  # no case-insensitive IN in SQL: one iexact per value
                return functools.reduce(or_, (Q(**{f"{self.lookup}__iexact": v}) for v in value))
            return Q(**{f"{self.lookup}__in": value})
        lookup = self.lookup
        if self.kind == DATETIME and not isinstance(value, datetime):
            lookup += "__date"  # a plain date compares by day, on the current (default) time zone
        if self.kind in TEXTUAL:
            return Q(**{f"{lookup}__{'icontains' if operator == 'contains' else 'iexact'}": value})
        return Q(**{f"{lookup}__{_LOOKUPS.get(operator, 'exact')}": value})


DEAL_FIELDS = {
    "id": Field("id", UUID),
    "title": Field("title", TEXT),
    "amount": Field("amount", NUMBER),
    "stage": Field("stage__slug", STAGE),
    "probability": Field("probability", WHOLE),
    "close_date": Field("close_date", DATE, can_be_empty=True),
    "created_at": Field("created_at", DATETIME),
    "owner": Field("owner__username", TEXT, can_be_empty=True),
    "owner_id": Field("owner_id", ID, can_be_empty=True),
    "contact_id": Field("contact_id", ID, can_be_empty=True),
    "contact_email": Field("contact__email", TEXT, can_be_empty=True),
    "contact_first_name": Field("contact__first_name", TEXT, can_be_empty=True),
    "contact_last_name": Field("contact__last_name", TEXT, can_be_empty=True),
}
LEAD_FIELDS = {
    "id": Field("id", UUID),
    "name": Field("name", TEXT),
    "email": Field("email", TEXT, can_be_empty=True),
    "company": Field("company", TEXT, can_be_empty=True),
    "status": Field("status", CHOICE, choices=tuple(Lead.Status.values)),
    "owner": Field("owner__username", TEXT, can_be_empty=True),
    "owner_id": Field("owner_id", ID, can_be_empty=True),
    "created_at": Field("created_at", DATETIME),
    "converted_at": Field("converted_at", DATETIME, can_be_empty=True),
}
CONTACT_FIELDS = {
    "id": Field("id", ID),
    "first_name": Field("first_name", TEXT),
    "last_name": Field("last_name", TEXT, can_be_empty=True),
    "email": Field("email", TEXT, can_be_empty=True),
    "phone": Field("phone", TEXT, can_be_empty=True),
    "company": Field("company", TEXT, can_be_empty=True),
    "created_at": Field("created_at", DATETIME),
}
FILTER_KEYS = ("field", "operator", "value")


class Query(Function):
    """crm/query_<records>: rows of one organization, filtered, ordered and limited."""

    def __init__(self, ref: str, model: type[models.Model], noun: str, fields: dict[str, Field]) -> None:
        self.ref, self.model, self.noun, self.fields = ref, model, noun, fields
        self.summary = f"Find {noun}s of the organization by field; returns rows, count and truncated."
        self.arguments = {
            "filters": 'rules {"field", "operator", "value"}, all of which must hold',
            "orderBy": f"a field, “-” first for descending (default -created_at); one of {listed(fields)}",
            "limit": f"how many rows at most, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT})",
        }

    # Checks ---------------------------------------------------------------------------------
    def check(self, args: dict[str, Any], *, organization_id: int | None) -> Problems:
        problems = super().check(args, organization_id=organization_id)
        if "filters" in args:
            problems += self.check_filters(args["filters"], organization_id)
        if "orderBy" in args:
            problems += self.check_order(args["orderBy"])
        if "limit" in args:
            limit = args["limit"]
            if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
                problems.append(("limit", f"{shown(limit)} is not allowed; use a whole number from 1 to {MAX_LIMIT}"))
        return problems

    def check_filters(self, filters: object, organization_id: int | None) -> Problems:
        if not isinstance(filters, list):
            return [("filters", 'must be a list of rules like {"field": "amount", "operator": "gt", "value": 1000}')]
        if len(filters) > MAX_FILTERS:
            return [("filters", f"has {len(filters)} rules; at most {MAX_FILTERS} are allowed")]
        # One read of the organization's stages however many rules name one.
        stages = functools.cache(lambda: stage_slugs(organization_id)) if organization_id is not None else None
        problems: Problems = []
        for i, rule in enumerate(filters):
            problems += self.check_filter(f"filters[{i}]", rule, stages)
        return problems

    def check_filter(self, place: str, rule: object, stages: Callable[[], list[str]] | None) -> Problems:
        if not isinstance(rule, dict):
            return [(place, 'must be an object like {"field": "amount", "operator": "gt", "value": 1000}')]
        problems = [(f"{place}.{name}", f"unknown key; a rule takes {listed(FILTER_KEYS)}")
                    for name in sorted(set(rule) - set(FILTER_KEYS), key=str)]
        name, operator = rule.get("field"), rule.get("operator")
        spec = self.fields.get(name) if isinstance(name, str) else None
        if spec is None:
            return [*problems, (f"{place}.field", f"{shown(name)} is not a field of {self.noun}s; use one of "
                                                  f"{listed(self.fields)}{suggest(name, self.fields)}")]
        if not isinstance(operator, str) or operator not in spec.operators:
            what = "does not apply to" if operator in OPERATORS else "is not an operator for"
            return [*problems, (f"{place}.operator", f"{shown(operator)} {what} {name} ({_KIND_WORDS[spec.kind]}); "
                                                     f"use one of {listed(spec.operators)}")]
        return problems + self.check_rule_value(place, rule, spec, stages)

    def check_rule_value(self, place: str, rule: dict[str, Any], spec: Field,
                         stages: Callable[[], list[str]] | None) -> Problems:
        operator, where = rule["operator"], f"{place}.value"
        if operator == "is_empty":
            if rule.get("value") not in (None, True, False):
                return [(where, "must be true (the field is empty) or false (it is not), or left out")]
            return []
        if "value" not in rule:
            return [(where, f"operator “{operator}” needs a value")]
        values = [(where, rule["value"])]
        if operator == "in":
            if not isinstance(rule["value"], list) or not rule["value"]:
                return [(where, "operator “in” needs a non-empty list of values")]
            if len(rule["value"]) > MAX_IN_VALUES:
                return [(where, f"has {len(rule['value'])} values; at most {MAX_IN_VALUES} are allowed")]
            values = [(f"{where}[{j}]", v) for j, v in enumerate(rule["value"])]
        problems: Problems = []
        for at, value in values:
            found = check_value(at, value, spec.coerce)
            if not found and spec.kind == STAGE and stages is not None and not is_template(value):
                slugs = stages()
                if str(value).casefold() not in {s.casefold() for s in slugs}:
                    found = [(at, f"{shown(value)} is not a stage of this organization; use one of {listed(slugs)}")]
            problems += found
        return problems

    def check_order(self, order: object) -> Problems:
        name = order[1:] if isinstance(order, str) and order.startswith("-") else order
        if isinstance(name, str) and name in self.fields:
            return []
        return [("orderBy", f"{shown(order)} is not a field of {self.noun}s; use one of {listed(self.fields)}, "
                            f"with “-” first for descending{suggest(name, self.fields)}")]

    # Run ------------------------------------------------------------------------------------
    def run(self, args: dict[str, Any], *, organization_id: int, context: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(organization_id, int) or isinstance(organization_id, bool):
            # Never run a query that is not scoped to one organization.
            raise TypeError("organization_id must be an organization's id")
        condition = Q()
        for i, rule in enumerate(args.get("filters") or []):
            condition &= self.rule_q(f"config.args.filters[{i}]", rule, context)
        limit = args.get("limit", DEFAULT_LIMIT)
        names = list(self.fields)
        rows = list(self.model._default_manager.filter(organization_id=organization_id).filter(condition)
                    .order_by(*self.ordering(args.get("orderBy") or "-created_at"))
                    .values_list(*(self.fields[n].lookup for n in names))[:limit + 1])
        return {"rows": [{n: json_value(v, numbers=True) for n, v in zip(names, row, strict=True)}
                         for row in rows[:limit]],
                "count": min(len(rows), limit), "truncated": len(rows) > limit}

    def rule_q(self, place: str, rule: dict[str, Any], context: dict[str, Any]) -> Q:
        spec, operator = self.fields[rule["field"]], rule["operator"]
        if operator == "is_empty":
            return spec.q(operator, rule.get("value"))
        if operator == "in":
            values = [runtime_value(f"{place}.value[{j}]", v, context, spec.coerce)
                      for j, v in enumerate(rule["value"])]
            return spec.q(operator, values)
        return spec.q(operator, runtime_value(f"{place}.value", rule["value"], context, spec.coerce))

    def ordering(self, order: str) -> list[OrderBy | str]:
        descending = order.startswith("-")
        column = F(self.fields[order.lstrip("-")].lookup)
        # Empty values last on every database (SQLite and PostgreSQL disagree by default), and
        # the primary key breaks ties so a limit always cuts at the same row.
        return [column.desc(nulls_last=True) if descending else column.asc(nulls_last=True), "pk"]


# --- Small helpers ----------------------------------------------------------------------------

DATE_UNITS = ("days", "hours", "minutes")


def to_date_amount(value: object) -> int:
    amount = to_whole(value)
    if abs(amount) > MAX_DATE_AMOUNT:
        raise ValueError(f"{shown(value)} is too large; use at most {MAX_DATE_AMOUNT:,} either way")
    return amount


class DateAdd(Function):
    ref = "date/add"
    summary = "A date or date and time moved by an amount of days, hours or minutes."
    arguments = {"date": "ISO date or date and time (may be a template)",
                 "amount": "a whole number, negative to go back (may be a template)",
                 "unit": f"{listed(DATE_UNITS)} (default days)"}
    required = ("date", "amount")

    def check(self, args: dict[str, Any], *, organization_id: int | None) -> Problems:
        problems = super().check(args, organization_id=organization_id)
        if args.get("date") not in (None, ""):
            problems += check_value("date", args["date"], to_date_or_datetime)
        if args.get("amount") not in (None, ""):
            problems += check_value("amount", args["amount"], to_date_amount)
        if args.get("unit", "days") not in DATE_UNITS:
            problems.append(("unit", f"{shown(args['unit'])} is not a unit; use one of {listed(DATE_UNITS)}"))
        return problems

    def run(self, args: dict[str, Any], *, organization_id: int, context: dict[str, Any]) -> dict[str, Any]:
        start = runtime_value("config.args.date", args["date"], context, to_date_or_datetime)
        amount = runtime_value("config.args.amount", args["amount"], context, to_date_amount)
        unit = args.get("unit", "days")
        try:
            return {"value": self.moved(start, amount, unit).isoformat()}
        except OverflowError:
            raise ActionFailed(f"{start.isoformat()} moved by {amount} {unit} is not a date we can write") from None

    @staticmethod
    def moved(start: date | datetime, amount: int, unit: str) -> date | datetime:
        if unit == "days":
            # Calendar days: the same wall-clock time, even across a daylight-saving change.
            return start + timedelta(days=amount)
        if not isinstance(start, datetime):
            start = datetime.combine(start, time(), tzinfo=timezone.get_default_timezone())
        # Hours and minutes are elapsed time: add them in UTC, then return to the start's zone
        # (adding to a local time would be an hour off across a daylight-saving change).
        return (start.astimezone(UTC) + timedelta(**{unit: amount})).astimezone(start.tzinfo)


class DateToday(Function):
    ref = "date/today"
    summary = "Today's date on the organization's clock (settings.TIME_ZONE)."
    arguments = {}

    def run(self, args: dict[str, Any], *, organization_id: int, context: dict[str, Any]) -> dict[str, Any]:
        return {"value": timezone.localdate(timezone=timezone.get_default_timezone()).isoformat()}


CALC_OPS = ("add", "subtract", "multiply", "divide", "percent_of", "round")


def to_places(value: object) -> int:
    places = to_whole(value)
    if not 0 <= places <= MAX_ROUND_PLACES:
        raise ValueError(f"{shown(value)} decimal places is not allowed; use 0 to {MAX_ROUND_PLACES}")
    return places


class NumberCalc(Function):
    ref = "number/calc"
    summary = "Arithmetic on two numbers: a op b."
    arguments = {"a": "a number (may be a template)",
                 "b": "a number (may be a template); for round, the decimal places (default 0)",
                 "op": f"{listed(CALC_OPS)}; percent_of is a percent of b (15 percent_of 200 is 30)"}

    def check(self, args: dict[str, Any], *, organization_id: int | None) -> Problems:
        problems = super().check(args, organization_id=organization_id)
        op = args.get("op")
        if op not in CALC_OPS:
            return [*problems, ("op", f"{shown(op)} is not an operation; use one of {listed(CALC_OPS)}")]
        if args.get("a") in (None, ""):
            problems.append(("a", "is required"))
        else:
            problems += check_value("a", args["a"], to_number)
        if op == "round":
            if args.get("b") not in (None, ""):
                problems += check_value("b", args["b"], to_places)
        elif args.get("b") in (None, ""):
            problems.append(("b", "is required"))
        else:
            found = check_value("b", args["b"], to_number)
            if not found and op == "divide" and not is_template(args["b"]) and to_number(args["b"]) == 0:
                found = [("b", "cannot divide by zero")]
            problems += found
        return problems

    def run(self, args: dict[str, Any], *, organization_id: int, context: dict[str, Any]) -> dict[str, Any]:
        op = args["op"]
        a = runtime_value("config.args.a", args["a"], context, to_number)
        if op == "round":
            places = runtime_value("config.args.b", args.get("b", 0), context, to_places)
            return {"value": json_number(a.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))}
        b = runtime_value("config.args.b", args["b"], context, to_number)
        if op == "divide" and b == 0:
            raise ActionFailed("config.args.b: cannot divide by zero")
        result = {"add": lambda: a + b, "subtract": lambda: a - b, "multiply": lambda: a * b,
                  "divide": lambda: a / b, "percent_of": lambda: a * b / 100}[op]()
        return {"value": json_number(result)}


FUNCTIONS: dict[str, Function] = {f.ref: f for f in (
    Query("crm/query_deals", Deal, "deal", DEAL_FIELDS),
    Query("crm/query_leads", Lead, "lead", LEAD_FIELDS),
    Query("crm/query_contacts", Contact, "contact", CONTACT_FIELDS),
    DateAdd(),
    DateToday(),
    NumberCalc(),
)}


# --- What the engine calls --------------------------------------------------------------------

def _problems(config: object, *, organization_id: int | None) -> Problems:
    example = '{"functionRef": "crm/query_deals", "args": {…}}'
    if not isinstance(config, dict):
        return [("config", f"must be an object like {example}")]
    problems = [(f"config.{name}", f"unknown setting; a function node takes {listed(CONFIG_KEYS)}")
                for name in sorted(set(config) - set(CONFIG_KEYS), key=str)]
    ref = config.get("functionRef")
    if ref in (None, ""):
        return [*problems, ("config.functionRef", f"is required; use one of {listed(FUNCTIONS)}")]
    if not isinstance(ref, str) or ref not in FUNCTIONS:
        return [*problems, ("config.functionRef", f"{shown(ref)} is not a function; use one of "
                                                  f"{listed(FUNCTIONS)}{suggest(ref, FUNCTIONS)}")]
    args = config.get("args")
    if args is None:
        args = {}
    function = FUNCTIONS[ref]
    if not isinstance(args, dict):
        return [*problems, ("config.args", f"must be an object of arguments; {ref} takes "
                                           f"{listed(function.arguments) or 'no arguments'}")]
    return problems + [(f"config.args.{place}", message)
                       for place, message in function.check(args, organization_id=organization_id)]


def validate(config: object, *, organization_id: int) -> Problems:
    """Every problem of a function node's config as (place, message), places relative to the
    node's data ("config.args.filters[0].operator"); empty when it is valid."""
    return _problems(config, organization_id=organization_id)


def call(config: dict[str, Any], *, organization_id: int, context: dict[str, Any]) -> dict[str, Any]:
    """Run the node's function and return its JSON output; ActionFailed on a bad value."""
    problems = _problems(config, organization_id=None)
    if problems:
        place, message = problems[0]
        raise ActionFailed(f"{place}: {message}")
    function = FUNCTIONS[config["functionRef"]]
    return function.run(config.get("args") or {}, organization_id=organization_id, context=context)


class FunctionNode(FlowNode):
    """A `function` node calls one allow-listed function (a query, a date or number helper): it
    only reads, so a redelivery may call it again; its output is recorded and read back from then
    on, as {{Label.field}} for the nodes after it."""

    type = "function"
    label = "Function"

    def validate(self, config: dict[str, Any], *, trigger_type: str, organization_id: int) -> Problems:
        return validate(config, organization_id=organization_id)

    def run(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow | None") -> None:
        started = timezone.now()
        try:
            output = call(state.node(place[0]).config, organization_id=state.run.organization_id,
                          context=state.context_at(place))
        except ActionFailed as exc:
            steps.fail(state, place, str(exc), started=started)
            return
        steps.record(state, place, StepStatus.COMPLETED, result={"output": output}, started=started)
        steps.finished(state, place)
