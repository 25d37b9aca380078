"""Workflow conditions: rules of field / operator / value joined by `and` or `or`.

Stored as {"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt",
"value": 5000}]}. Rules on `trigger.*` need no database read, so they are evaluated first and
the record is only loaded when a cheap rule did not already decide the outcome.
String comparisons ignore case, as ops users expect ("Won" equals "won").
"""

from collections.abc import Callable
from dataclasses import dataclass

from crm_automation.automation.definition import catalog
from crm_automation.automation.definition.coercion import comparable
from crm_automation.automation.definition.templating import format_value, resolve
from crm_automation.crm import custom_fields
from crm_automation.crm.models import Lead, Project
from crm_automation.crm.selectors import shown, stage_slugs

EMPTY = {"combinator": "and", "rules": []}


@dataclass
class Outcome:
    passed: bool
    explanation: str


def _is_cheap(rule: dict) -> bool:
    return rule["field"].startswith("trigger.")


def own_field(path: str, organization_id: int | None):
    """The organization's own field a path such as "deal.custom.budget" or
    "trigger.deal.contact.custom.nickname" names, or None."""
    if organization_id is None:
        return None
    parts = path.removeprefix("trigger.").split(".")
    if len(parts) < 3 or parts[-2] != "custom":
        return None
    entity = parts[-3]
    if entity not in ("deal", "lead", "contact"):
        return None
    return custom_fields.definitions(organization_id, entity).get(parts[-1])


# Fields whose values are one of a standard set: what a value is called, and the set.
CHOICE_KINDS = {"lead_source": ("lead source", Lead.Source), "project_status": ("project status", Project.Status)}


def validate(conditions, trigger_type: str, *, organization_id: int | None = None) -> list[tuple[str, str]]:
    """Errors as (where, message); empty when the conditions are valid for this trigger (and,
    given the organization, name only stages it has)."""
    if conditions in (None, {}, ""):
        return []
    if not isinstance(conditions, dict):
        return [("conditions", "must be an object with 'combinator' and 'rules'")]
    errors = []
    unknown = set(conditions) - {"combinator", "rules"}
    if unknown:
        errors.append(("conditions", f"unknown key(s): {', '.join(sorted(unknown))}"))
    if conditions.get("combinator", "and") not in ("and", "or"):
        errors.append(("conditions.combinator", "must be 'and' or 'or'"))
    rules = conditions.get("rules", [])
    if not isinstance(rules, list):
        return [*errors, ("conditions.rules", "must be a list")]
    fields = catalog.fields_for(trigger_type)
    stages = None
    for i, rule in enumerate(rules):
        where = f"conditions.rules[{i}]"
        if not isinstance(rule, dict):
            errors.append((where, "must be an object with field, operator and value"))
            continue
        field, op = rule.get("field"), rule.get("operator")
        if not isinstance(field, str) or field not in fields:
            errors.append((f"{where}.field", f"unknown field {shown(field)} for trigger {trigger_type}"
                                             f"{catalog.suggest(field, fields)}"))
            continue
        if not isinstance(op, str) or op not in catalog.OPERATORS:
            errors.append((f"{where}.operator",
                           f"unknown operator {shown(op)}; use one of {', '.join(catalog.OPERATORS)}"))
            continue
        kind = fields[field]
        own = own_field(field, organization_id) if kind == "any" and ".custom." in field else None
        if own is not None:  # the organization's own field: compared by its kind
            kind = custom_fields.kind_of(own.kind)
        if op in catalog.VALUELESS_OPERATORS:
            continue
        if "value" not in rule:
            errors.append((f"{where}.value", f"operator {op!r} needs a value"))
            continue
        value = rule["value"]
        if op in catalog.ORDERING_OPERATORS and kind not in ("number", "date", "any"):
            errors.append((f"{where}.operator", f"{op!r} compares numbers or dates; {field} is text"))
            continue
        if op == "in":
            if not isinstance(value, list) or not value:
                errors.append((f"{where}.value", "operator 'in' needs a non-empty list"))
                continue
            values = value
        else:
            values = [value]
        for v in values:
            if isinstance(v, dict | list):
                errors.append((f"{where}.value", "must be a plain value"))
                break
            try:
                comparable(kind, v)
            except ValueError as exc:
                errors.append((f"{where}.value", str(exc)))
                break
            if own is not None and own.kind in ("choice", "choices") and \
                    str(v).casefold() not in {str(c).casefold() for c in own.choices}:
                errors.append((f"{where}.value", f"{shown(v)} is not a choice of “{own.label}”; use one of "
                                                 f"{', '.join(map(str, own.choices))}"))
                break
            named = CHOICE_KINDS.get(kind)
            if named is not None and str(v).casefold() not in {c.casefold() for c in named[1].values}:
                errors.append((f"{where}.value", f"{shown(v)} is not a {named[0]}; use one of "
                                                 f"{', '.join(named[1].values)}"))
                break
            if kind == "stage" and organization_id is not None:
                stages = stage_slugs(organization_id) if stages is None else stages
                if str(v).casefold() not in {s.casefold() for s in stages}:
                    errors.append((f"{where}.value", f"{shown(v)} is not a stage of this organization; "
                                                     f"use one of {', '.join(stages)}"))
                    break
    return errors


def _rule_holds(rule: dict, kind: str, actual) -> bool:
    op = rule["operator"]
    try:
        left = comparable(kind, actual)
    except ValueError:
        left = None
    if op == "is_empty":
        return left is None
    if op == "is_not_empty":
        return left is not None
    if op == "in":
        return left in {comparable(kind, v) for v in rule["value"]}
    right = comparable(kind, rule["value"])
    if op == "eq":
        return left == right
    if op == "neq":
        return left != right
    if op == "contains":
        return left is not None and right is not None and str(right) in str(left)
    if left is None or right is None or type(left) is not type(right):
        return False  # (a node's output that is text is not greater than a number)
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def _value_text(value) -> str:
    if isinstance(value, list):
        return ", ".join(_value_text(v) for v in value)
    return format_value(value) if not isinstance(value, str) else value


def describe(rule: dict) -> str:
    """A rule in words, the field by its human name: “Deal › Amount is greater than 5000”."""
    text = f"{catalog.variable_name(rule['field'])} {catalog.OPERATORS.get(rule['operator'], rule['operator'])}"
    if rule["operator"] not in catalog.VALUELESS_OPERATORS:
        text += f" {_value_text(rule.get('value'))}"
    return text


def evaluate(conditions, trigger_type: str, cheap_context: dict,
             load_context: Callable[[], dict]) -> Outcome:
    """Evaluate cheap rules first; call `load_context` only if an expensive rule is needed."""
    rules = list((conditions or EMPTY).get("rules", []))
    if not rules:
        return Outcome(True, "no conditions to check")
    combinator = conditions.get("combinator", "and")
    fields = catalog.fields_for(trigger_type)
    rules.sort(key=lambda r: not _is_cheap(r))
    context = cheap_context
    for rule in rules:
        if not _is_cheap(rule) and context is cheap_context:
            context = load_context()
        actual = resolve(context, rule["field"])
        holds = _rule_holds(rule, fields.get(rule["field"], "any"), actual)
        if combinator == "and" and not holds:
            now = "empty" if actual in (None, "") else format_value(actual)
            return Outcome(False, f"condition “{describe(rule)}” was false: {catalog.variable_name(rule['field'])} "
                                  f"is {now}")
        if combinator == "or" and holds:
            return Outcome(True, f"condition “{describe(rule)}” was true")
    if combinator == "and":
        return Outcome(True, "all conditions were true")
    return Outcome(False, "none of the conditions was true")
