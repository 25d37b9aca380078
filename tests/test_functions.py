"""Allow-listed functions of `function` nodes: outputs, operators, limits, templates, tenants,
and the messages a bad config gets."""

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from crm_automation.automation.nodes.base import ActionFailed
from crm_automation.automation.nodes.function import FUNCTIONS, call, validate
from crm_automation.crm.models import Contact, Deal, Lead
from tests.conftest import stage

CONTEXT = {"deal": {"title": "Website", "amount": Decimal("3000.00"), "probability": 0, "stage": "won",
                    "close_date": date(2026, 6, 30), "contact": None},
           "trigger": {"occurred_at": datetime(2026, 3, 28, 12, 0, tzinfo=ZoneInfo("UTC"))}}


def run(ref, org, context=CONTEXT, **args):
    config = {"functionRef": ref, "args": args}
    assert validate(config, organization_id=org.pk) == []
    return call(config, organization_id=org.pk, context=context)


def titles(org, *filters, **args):
    return {row["title"] for row in run("crm/query_deals", org, filters=list(filters), **args)["rows"]}


def rule(field, operator, *value):
    return {"field": field, "operator": operator, **({"value": value[0]} if value else {})}


@pytest.fixture
def deals(org, other_org, contact, owner, teammate, outsider):
    website = Deal.objects.create(organization=org, title="Website", amount=12000, stage=stage(org, "proposal"),
                                  probability=40, close_date=date(2026, 6, 30), contact=contact, owner=owner)
    Deal.objects.create(organization=org, title="Logo", amount=Decimal("800.50"), stage=stage(org, "new"))
    Deal.objects.create(organization=org, title="Hosting", amount=3000, stage=stage(org, "won"), probability=100,
                        close_date=date(2026, 1, 15), contact=contact, owner=teammate)
    # The rival's rows match every filter below: none of them may ever come back.
    rival_contact = Contact.objects.create(organization=other_org, first_name="Ada", email="ada@example.com")
    Deal.objects.create(organization=other_org, title="Website", amount=12000, stage=stage(other_org, "won"),
                        contact=rival_contact, owner=outsider)
    return website


def test_query_deals_returns_the_allow_listed_fields_as_json(org, deals, owner, contact):
    out = run("crm/query_deals", org, filters=[rule("title", "eq", "Website")])
    assert out == {"count": 1, "truncated": False, "rows": [{
        "id": str(deals.pk), "title": "Website", "amount": 12000, "stage": "proposal", "probability": 40,
        "close_date": "2026-06-30", "created_at": deals.created_at.isoformat(), "owner": "owner",
        "owner_id": owner.pk, "contact_id": contact.pk, "contact_email": "ada@example.com",
        "contact_first_name": "Ada", "contact_last_name": "Lovelace"}]}
    logo = run("crm/query_deals", org, filters=[rule("title", "eq", "logo")])["rows"][0]
    assert (logo["amount"], logo["owner"], logo["contact_email"], logo["close_date"]) == (800.5, None, None, None)


@pytest.mark.parametrize(("filters", "expected"), [
    ([rule("title", "eq", "website")], {"Website"}),
    ([rule("title", "ne", "Website")], {"Logo", "Hosting"}),
    ([rule("title", "contains", "OST")], {"Hosting"}),
    ([rule("title", "in", ["logo", "Hosting", "nothing"])], {"Logo", "Hosting"}),
    ([rule("amount", "gt", 3000)], {"Website"}),
    ([rule("amount", "gte", "3000")], {"Website", "Hosting"}),
    ([rule("amount", "lt", 3000)], {"Logo"}),
    ([rule("amount", "lte", 800.5)], {"Logo"}),
    ([rule("amount", "eq", "800.50")], {"Logo"}),
    ([rule("probability", "in", [10, 100])], {"Logo", "Hosting"}),
    ([rule("stage", "in", ["new", "WON"])], {"Logo", "Hosting"}),
    ([rule("stage", "ne", "new")], {"Website", "Hosting"}),
    ([rule("close_date", "lt", "2026-03-01")], {"Hosting"}),
    ([rule("close_date", "ne", "2026-01-15")], {"Website", "Logo"}),  # an empty date is "not equal"
    ([rule("close_date", "is_empty")], {"Logo"}),
    ([rule("close_date", "is_empty", False)], {"Website", "Hosting"}),
    ([rule("owner", "is_empty", True)], {"Logo"}),
    ([rule("owner", "eq", "teammate")], {"Hosting"}),
    ([rule("contact_email", "eq", "ADA@example.com")], {"Website", "Hosting"}),
    ([rule("contact_email", "ne", "ada@example.com")], {"Logo"}),
    ([rule("created_at", "lt", "2000-01-01T00:00")], set()),
    ([rule("amount", "gt", 500), rule("probability", "lt", 50)], {"Website", "Logo"}),  # rules all hold
])
def test_each_operator_filters_deals(org, deals, filters, expected):
    assert titles(org, *filters) == expected


def test_datetimes_compare_with_a_date_by_day_and_ids_by_value(org, deals):
    today = deals.created_at.date().isoformat()
    assert titles(org, rule("created_at", "gte", today)) == {"Website", "Logo", "Hosting"}
    assert titles(org, rule("created_at", "gt", today)) == set()
    assert titles(org, rule("id", "eq", str(deals.pk))) == {"Website"}


def test_rows_of_another_organization_are_never_returned(org, other_org, deals):
    rival = Deal.objects.get(organization=other_org)
    assert titles(org) == {"Website", "Logo", "Hosting"}
    assert titles(org, rule("id", "eq", str(rival.pk))) == set()
    contacts = run("crm/query_contacts", org, filters=[rule("email", "eq", "ada@example.com")])
    assert [row["first_name"] for row in contacts["rows"]] == ["Ada"] and contacts["count"] == 1
    assert run("crm/query_leads", other_org)["rows"] == []


def test_a_query_is_one_database_read(org, deals, django_assert_num_queries):
    config = {"functionRef": "crm/query_deals", "args": {"filters": [rule("stage", "in", ["won", "new"])],
                                                          "limit": 1}}
    with django_assert_num_queries(1):  # running needs no stage lookup: only the save checks stages
        out = call(config, organization_id=org.pk, context=CONTEXT)
    assert (out["count"], out["truncated"]) == (1, True)


def test_limit_cuts_the_rows_and_says_so(org, deals):
    out = run("crm/query_deals", org, orderBy="title", limit=2)
    assert ([r["title"] for r in out["rows"]], out["count"], out["truncated"]) == (["Hosting", "Logo"], 2, True)
    out = run("crm/query_deals", org, limit=3)
    assert (out["count"], out["truncated"]) == (3, False)


def test_limit_defaults_to_20_and_is_capped_at_100(org):
    Contact.objects.bulk_create([Contact(organization=org, first_name=f"C{i:02}") for i in range(21)])
    out = run("crm/query_contacts", org)
    assert (out["count"], out["truncated"]) == (20, True)
    for limit in (101, 0, "5", True):
        assert validate({"functionRef": "crm/query_contacts", "args": {"limit": limit}}, organization_id=org.pk) \
            == [("config.args.limit", f"{'“5”' if limit == '5' else 'yes' if limit is True else limit} is not "
                                      "allowed; use a whole number from 1 to 100")]


def test_order_by_a_field_either_way_with_empty_values_last(org, deals):
    def order(by):
        return [r["title"] for r in run("crm/query_deals", org, orderBy=by)["rows"]]
    assert order("amount") == ["Logo", "Hosting", "Website"]
    assert order("-amount") == ["Website", "Hosting", "Logo"]
    assert order("close_date") == ["Hosting", "Website", "Logo"]
    assert order("-close_date") == ["Website", "Hosting", "Logo"]


def test_filter_values_may_be_templates(org, deals):
    assert titles(org, rule("amount", "gt", "{{deal.amount}}")) == {"Website"}
    assert titles(org, rule("stage", "in", ["{{deal.stage}}", "new"])) == {"Hosting", "Logo"}
    assert titles(org, rule("close_date", "lte", "{{trigger.occurred_at}}")) == {"Hosting"}


@pytest.mark.parametrize(("value", "message"), [
    ("{{deal.title}}", "config.args.filters[0].value: “Website” is not a number"),
    ("{{deal.nothing}}", "config.args.filters[0].value: {{deal.nothing}} is not a value this workflow knows"),
    ("{{deal.contact.email}}", "config.args.filters[0].value: empty is not a number"),
])
def test_a_template_that_renders_a_bad_value_fails_the_step(org, deals, value, message):
    config = {"functionRef": "crm/query_deals", "args": {"filters": [rule("amount", "gt", value)]}}
    assert validate(config, organization_id=org.pk) == []
    with pytest.raises(ActionFailed) as failed:
        call(config, organization_id=org.pk, context=CONTEXT)
    assert str(failed.value) == message


def test_query_leads_and_contacts(org, lead, contact):
    Lead.objects.create(organization=org, name="Alan Turing", status="qualified")
    out = run("crm/query_leads", org, filters=[rule("status", "eq", "New"), rule("converted_at", "is_empty")])
    assert out["rows"] == [{"id": str(lead.pk), "name": "Grace Hopper", "email": "grace@example.com",
                            "company": "Compiler Co", "status": "new", "owner": "owner", "owner_id": lead.owner_id,
                            "created_at": lead.created_at.isoformat(), "converted_at": None}]
    out = run("crm/query_contacts", org, filters=[rule("company", "contains", "analytic")])
    assert out["rows"] == [{"id": contact.pk, "first_name": "Ada", "last_name": "Lovelace",
                            "email": "ada@example.com", "phone": "", "company": "Analytical",
                            "created_at": contact.created_at.isoformat()}]
    assert run("crm/query_contacts", org, filters=[rule("phone", "is_empty")])["count"] == 1


@pytest.mark.parametrize(("args", "value"), [
    ({"date": "2026-01-30", "amount": 3}, "2026-02-02"),
    ({"date": "2026-01-30", "amount": -30, "unit": "days"}, "2025-12-31"),
    ({"date": "2026-01-30", "amount": 90, "unit": "minutes"}, "2026-01-30T01:30:00+00:00"),
    ({"date": "2026-01-30T10:00:00+02:00", "amount": 5, "unit": "hours"}, "2026-01-30T15:00:00+02:00"),
    ({"date": "{{trigger.occurred_at}}", "amount": "{{deal.probability}}"}, "2026-03-28T12:00:00+00:00"),
    ({"date": "{{deal.close_date}}", "amount": "2"}, "2026-07-02"),
])
def test_date_add(org, args, value):
    assert run("date/add", org, **args) == {"value": value}


def test_date_add_counts_days_on_the_calendar_and_hours_as_elapsed_time(org, settings):
    settings.TIME_ZONE = "Europe/Paris"  # clocks go forward on 2026-03-29
    assert run("date/add", org, date="2026-03-28T12:00", amount=1)["value"] == "2026-03-29T12:00:00+02:00"
    assert run("date/add", org, date="2026-03-28T12:00", amount=24, unit="hours")["value"] \
        == "2026-03-29T13:00:00+02:00"


def test_date_add_fails_on_a_rendered_non_date(org):
    with pytest.raises(ActionFailed, match=r"config.args.date: “Website” is not a date"):
        call({"functionRef": "date/add", "args": {"date": "{{deal.title}}", "amount": 1}},
             organization_id=org.pk, context=CONTEXT)


def test_date_today_is_on_the_configured_clock(org, settings):
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14: a different day from UTC for 14 hours
    expected = datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    assert run("date/today", org) == {"value": expected}


@pytest.mark.parametrize(("a", "op", "b", "value"), [
    (2, "add", 3, 5),
    ("0.1", "add", 0.2, 0.3),  # exact decimal arithmetic, not 0.30000000000000004
    (10, "subtract", 12.5, -2.5),
    ("{{deal.amount}}", "multiply", "1.1", 3300),
    (10, "divide", 4, 2.5),
    (15, "percent_of", "{{deal.amount}}", 450),
    (2.345, "round", 2, 2.35),  # half up, as people round
    (2.5, "round", None, 3),
])
def test_number_calc(org, a, op, b, value):
    args = {"a": a, "op": op, **({} if b is None else {"b": b})}
    out = run("number/calc", org, **args)
    assert out == {"value": value} and type(out["value"]) is type(value)


def test_dividing_by_zero_fails_the_step_or_the_save(org):
    with pytest.raises(ActionFailed, match="cannot divide by zero"):
        call({"functionRef": "number/calc", "args": {"a": 1, "op": "divide", "b": "{{deal.probability}}"}},
             organization_id=org.pk, context=CONTEXT)
    assert validate({"functionRef": "number/calc", "args": {"a": 1, "op": "divide", "b": "0.0"}},
                    organization_id=org.pk) == [("config.args.b", "cannot divide by zero")]


@pytest.mark.parametrize(("config", "place", "message"), [
    ("crm/query_deals", "config", "must be an object like"),
    ({"args": {}}, "config.functionRef", "is required; use one of crm/query_deals, crm/query_leads"),
    ({"functionRef": "crm/query_deal"}, "config.functionRef",
     "“crm/query_deal” is not a function; use one of crm/query_deals"),
    ({"functionRef": "os/system"}, "config.functionRef", "number/calc"),
    ({"functionRef": "date/today", "code": "x"}, "config.code", "unknown setting; a function node takes "
                                                                "functionRef, args"),
    ({"functionRef": "date/today", "args": []}, "config.args", "must be an object of arguments"),
    ({"functionRef": "date/today", "args": {"tz": "UTC"}}, "config.args.tz", "unknown argument; date/today "
                                                                             "takes no arguments"),
    ({"functionRef": "crm/query_deals", "args": {"filters": {}}}, "config.args.filters", "must be a list"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("secret", "eq", 1)]}},
     "config.args.filters[0].field", "“secret” is not a field of deals; use one of id, title, amount"),
    ({"functionRef": "crm/query_leads", "args": {"filters": [rule("organization", "eq", 1)]}},
     "config.args.filters[0].field", "“organization” is not a field of leads"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("titel", "eq", "x")]}},
     "config.args.filters[0].field", "did you mean title?"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("title", "like", "x")]}},
     "config.args.filters[0].operator", "“like” is not an operator for title (text); use one of eq, ne, "
                                        "contains, in"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("title", "gt", "x")]}},
     "config.args.filters[0].operator", "“gt” does not apply to title (text)"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("amount", "is_empty")]}},
     "config.args.filters[0].operator", "use one of eq, ne, gt, gte, lt, lte, in"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("amount", "gt")]}},
     "config.args.filters[0].value", "operator “gt” needs a value"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("amount", "gt", "lots")]}},
     "config.args.filters[0].value", "“lots” is not a number"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("close_date", "lt", "31/12/2026")]}},
     "config.args.filters[0].value", "is not a date (YYYY-MM-DD)"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("stage", "in", ["won", "heaven"])]}},
     "config.args.filters[0].value[1]", "“heaven” is not a stage of this organization; use one of new, "
                                        "qualified"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("stage", "in", [])]}},
     "config.args.filters[0].value", "needs a non-empty list"),
    ({"functionRef": "crm/query_leads", "args": {"filters": [rule("status", "eq", "hot")]}},
     "config.args.filters[0].value", "“hot” is not one of new, contacted, qualified, converted, lost"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("id", "eq", "42")]}},
     "config.args.filters[0].value", "“42” is not an id"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [{**rule("title", "eq", "x"), "sql": "1=1"}]}},
     "config.args.filters[0].sql", "unknown key; a rule takes field, operator, value"),
    ({"functionRef": "crm/query_deals", "args": {"filters": [rule("title", "eq", "{{_deal}}")]}},
     "config.args.filters[0].value", "{{_deal}} is not a value name"),
    ({"functionRef": "crm/query_deals", "args": {"orderBy": "-secret"}}, "config.args.orderBy",
     "“-secret” is not a field of deals; use one of id, title"),
    ({"functionRef": "crm/query_deals", "args": {"orderBy": "title; drop"}}, "config.args.orderBy",
     "is not a field of deals"),
    ({"functionRef": "date/add", "args": {"amount": 1}}, "config.args.date", "is required"),
    ({"functionRef": "date/add", "args": {"date": "tomorrow", "amount": 1}}, "config.args.date",
     "“tomorrow” is not a date (YYYY-MM-DD) or a date and time"),
    ({"functionRef": "date/add", "args": {"date": "2026-01-01", "amount": 1.5}}, "config.args.amount",
     "1.5 is not a whole number"),
    ({"functionRef": "date/add", "args": {"date": "2026-01-01", "amount": 1, "unit": "weeks"}},
     "config.args.unit", "“weeks” is not a unit; use one of days, hours, minutes"),
    ({"functionRef": "number/calc", "args": {"a": 1, "b": 2, "op": "pow"}}, "config.args.op",
     "“pow” is not an operation; use one of add, subtract, multiply, divide, percent_of, round"),
    ({"functionRef": "number/calc", "args": {"a": True, "b": 2, "op": "add"}}, "config.args.a", "yes is not a number"),
    ({"functionRef": "number/calc", "args": {"a": 1, "op": "add"}}, "config.args.b", "is required"),
    ({"functionRef": "number/calc", "args": {"a": 1, "b": 11, "op": "round"}}, "config.args.b", "use 0 to 10"),
])
def test_bad_configs_are_refused_with_the_place_named(org, config, place, message):
    found = validate(config, organization_id=org.pk)
    assert found and found[0][0] == place and message in found[0][1], found


def test_every_problem_is_reported_at_once(org):
    found = validate({"functionRef": "crm/query_deals", "args": {
        "filters": [rule("title", "gt", 1), rule("amount", "eq", "x")], "limit": 500, "page": 2}},
        organization_id=org.pk)
    assert [place for place, _ in found] == ["config.args.page", "config.args.filters[0].operator",
                                             "config.args.filters[1].value", "config.args.limit"]


def test_call_refuses_a_config_that_is_no_longer_valid(org):
    # A stored version may name a field that a later release took off the allow-list.
    with pytest.raises(ActionFailed, match=r"config.args.filters\[0\].field: “secret” is not a field"):
        call({"functionRef": "crm/query_deals", "args": {"filters": [rule("secret", "eq", 1)]}},
             organization_id=org.pk, context={})


def test_every_function_describes_its_arguments():
    for ref, function in FUNCTIONS.items():
        assert function.ref == ref and function.summary
        assert all(isinstance(text, str) and text for text in function.arguments.values())
