from decimal import Decimal

from crm_automation.automation.templating import MAX_OUTPUT, render

CTX = {"deal": {"title": "Website", "amount": Decimal("12000.00"), "contact": None,
                "owner": {"username": "olive"}},
       "trigger": {"to_stage": "won"}}


def test_it_renders_allow_listed_values():
    out = render("Kick off {{deal.title}} ({{ deal.amount }}) → {{trigger.to_stage}}", CTX)
    assert out.text == "Kick off Website (12000.00) → won" and out.unresolved == []


def test_a_missing_relation_renders_empty_without_complaint():
    out = render("Hi {{deal.contact.first_name}}", CTX)
    assert out.text == "Hi " and out.unresolved == []


def test_an_unknown_path_renders_empty_and_is_noted():
    out = render("{{deal.nope}}{{lead.email}}", CTX)
    assert out.text == "" and out.unresolved == ["deal.nope", "lead.email"]


def test_hostile_templates_resolve_to_nothing():
    hostile = ["deal.__class__", "deal.__class__.__mro__", "deal._state", "deal.organization.members",
               "deal.owner.password", "7*7", "deal.title.upper", "deal.save()", "deal|safe",
               "deal", "deal.owner"]
    for path in hostile:
        out = render("{{" + path + "}}", CTX)
        assert out.text == "", path


def test_django_template_syntax_is_just_text():
    assert render("{% load static %}{{ deal.title }}", CTX).text == "{% load static %}Website"


def test_output_is_bounded():
    big = {"deal": {"title": "x" * 4000}}
    out = render("{{deal.title}}" * 5, big)
    assert len(out.text) == MAX_OUTPUT and out.truncated
