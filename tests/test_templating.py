from decimal import Decimal

from crm_automation.automation.definition.templating import MAX_OUTPUT, render

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
               "deal.owner.password", "7*7", "deal.title.upper", "deal.save()", "deal|safe"]
    for path in hostile:
        out = render("{{" + path + "}}", CTX)
        assert out.text == "", path


def test_a_whole_record_or_output_renders_as_json_of_its_allowed_fields_only():
    # {{trigger}} and {{Node Label}} (docs/product.md#templates) name mappings: their data is what the allow-list
    # put in the context, nothing more (no password, no methods).
    assert render("{{deal.owner}}", CTX).text == '{"username": "olive"}'
    assert '"title": "Website"' in render("{{deal}}", CTX).text


def test_django_template_syntax_is_just_text():
    assert render("{% load static %}{{ deal.title }}", CTX).text == "{% load static %}Website"


def test_output_is_bounded():
    big = {"deal": {"title": "x" * 4000}}
    out = render("{{deal.title}}" * 5, big)
    assert len(out.text) == MAX_OUTPUT and out.truncated


def test_an_over_long_template_is_refused_before_it_is_scanned(org, monkeypatch):
    from crm_automation.automation.definition import templating
    from crm_automation.automation.definition.validation import validate_action

    def must_not_scan(template):
        raise AssertionError("an over-long template was scanned")

    monkeypatch.setattr(templating, "placeholders", must_not_scan)
    monkeypatch.setattr("crm_automation.automation.nodes.base.template_paths", must_not_scan)
    # (a task's description: its title is refused sooner, as longer than a title may be)
    errors = validate_action("create_task", {"description": "{{" + " " * 5000}, trigger_type="deal_stage_change",
                             organization_id=org.pk)
    assert errors == [("config.title", "is required"), ("config.description", "is longer than 5000 characters")]


def test_unclosed_and_empty_placeholders_are_plain_text():
    # The shapes that made the old regular expression backtrack for minutes.
    spaces = "{{" + " " * 4990
    assert render(spaces, CTX).text == spaces
    assert render("{{ " * 1600, CTX).text == "{{ " * 1600
    assert render("{{}} {{ }} {{deal.title}}", CTX).text == "  Website"
    assert render("{{{deal.title}}}", CTX).text == "}"  # "{deal.title" is not a path


def test_a_template_longer_than_the_limit_is_not_rendered():
    import pytest

    from crm_automation.automation.definition.templating import TemplateTooLong

    with pytest.raises(TemplateTooLong):
        render("x" * 5001, CTX)
