import pytest

from crm_automation.automation.definition.conditions import evaluate, validate

CTX = {"trigger": {"from_stage": "proposal", "to_stage": "won"},
       "deal": {"title": "Big Website", "amount": 12000, "probability": 40, "stage": "won",
                "close_date": "2026-12-01", "contact": {"email": "", "first_name": "Ada"}}}


def holds(field, operator, value=None, trigger="deal_stage_change"):
    rule = {"field": field, "operator": operator}
    if value is not None:
        rule["value"] = value
    conditions = {"combinator": "and", "rules": [rule]}
    assert validate(conditions, trigger) == []
    return evaluate(conditions, trigger, {"trigger": CTX["trigger"]}, lambda: CTX).passed


@pytest.mark.parametrize(("field", "operator", "value", "expected"), [
    ("deal.title", "eq", "big website", True),
    ("deal.title", "eq", "Small", False),
    ("deal.title", "neq", "Small", True),
    ("deal.title", "neq", "Big Website", False),
    ("deal.amount", "gt", 5000, True),
    ("deal.amount", "gt", 12000, False),
    ("deal.amount", "gte", 12000, True),
    ("deal.amount", "gte", 12001, False),
    ("deal.amount", "lt", 20000, True),
    ("deal.amount", "lt", 12000, False),
    ("deal.amount", "lte", 12000, True),
    ("deal.amount", "lte", 11999, False),
    ("deal.close_date", "lt", "2027-01-01", True),
    ("deal.title", "contains", "WEB", True),
    ("deal.title", "contains", "app", False),
    ("deal.stage", "in", ["won", "lost"], True),
    ("deal.stage", "in", ["new"], False),
    ("deal.contact.email", "is_empty", None, True),
    ("deal.contact.first_name", "is_empty", None, False),
    ("deal.contact.first_name", "is_not_empty", None, True),
    ("deal.contact.email", "is_not_empty", None, False),
    ("trigger.from_stage", "eq", "proposal", True),
])
def test_every_operator(field, operator, value, expected):
    assert holds(field, operator, value) is expected


def test_or_needs_one_true_rule():
    conditions = {"combinator": "or", "rules": [{"field": "deal.amount", "operator": "lt", "value": 1},
                                               {"field": "deal.title", "operator": "contains", "value": "big"}]}
    assert evaluate(conditions, "deal_stage_change", CTX, lambda: CTX).passed


def test_cheap_rules_run_first_and_skip_loading_the_record():
    loads = []
    conditions = {"rules": [{"field": "deal.amount", "operator": "gt", "value": 1},
                            {"field": "trigger.from_stage", "operator": "eq", "value": "new"}]}
    outcome = evaluate(conditions, "deal_stage_change", {"trigger": CTX["trigger"]},
                       lambda: loads.append(1) or CTX)
    assert not outcome.passed and loads == []
    assert outcome.explanation == ("condition “Trigger › From stage equals new” was false: Trigger › From stage is "
                                   "proposal")


@pytest.mark.parametrize(("conditions", "where", "message"), [
    ({"rules": [{"field": "deal.secret", "operator": "eq", "value": 1}]},
     "conditions.rules[0].field", "unknown field"),
    ({"rules": [{"field": "deal.amount", "operator": "like", "value": 1}]},
     "conditions.rules[0].operator", "unknown operator"),
    ({"rules": [{"field": "deal.amount", "operator": "gt", "value": "lots"}]},
     "conditions.rules[0].value", "not a number"),
    ({"rules": [{"field": "deal.title", "operator": "gt", "value": "a"}]},
     "conditions.rules[0].operator", "compares numbers"),
    ({"rules": [{"field": "deal.stage", "operator": "in", "value": "won"}]},
     "conditions.rules[0].value", "non-empty list"),
    ({"rules": [{"field": "deal.amount", "operator": "eq"}]},
     "conditions.rules[0].value", "needs a value"),
    ({"combinator": "xor", "rules": []}, "conditions.combinator", "'and' or 'or'"),
    ({"rules": [{"field": "lead.name", "operator": "eq", "value": "x"}]}, "conditions.rules[0].field", "unknown field"),
])
def test_invalid_conditions_say_what_and_where(conditions, where, message):
    errors = validate(conditions, "deal_stage_change")
    assert errors and errors[0][0] == where and message in errors[0][1]
