"""Bad input gets a clear error that names the place, and changes nothing — never a 500."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from crm_automation.automation.definition.validation import validate_action
from crm_automation.automation.models import Workflow
from crm_automation.automation.services.workflows import workflow_create
from tests.admin_helpers import page_form
from tests.conftest import make_workflow

ADD = reverse("admin:automation_workflow_add")


def post_workflow(client, **fields) -> tuple[int, str]:
    data = page_form(client, ADD, name="Probe", trigger_type="deal_stage_change", **fields)
    response = client.post(ADD, data)
    return response.status_code, response.content.decode()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("conditions", {"rules": [{"field": ["deal.amount"], "operator": "eq", "value": 1}]}, "unknown field"),
    ("conditions", {"rules": [{"field": "deal.amount", "operator": ["eq"], "value": 1}]}, "unknown operator"),
    ("trigger_config", {"to_stage": ["won"]}, "is not a stage of this organization"),
    ("conditions", {"rules": [{"field": "deal.amount", "operator": "gt", "value": "NaN"}]}, "is not a number"),
    ("conditions", {"rules": [{"field": "deal.stage", "operator": "eq", "value": "Closed"}]},
     "“Closed” is not a stage of this organization; use one of new, qualified, proposal"),
    ("conditions", {"rules": [{"field": "deal.title", "operator": "eq", "value": "a\u0000b"}]}, "NUL character"),
])
def test_bad_definitions_in_the_admin_are_named_errors(client, org, owner, field, value, message):
    client.force_login(owner)
    status, page = post_workflow(client, **{field: json.dumps(value)})
    assert status == 200 and message in page and not Workflow.objects.exists()


@pytest.mark.parametrize("raw", ['{"rules": [{"field": "deal.amount", "operator": "gt", "value": NaN}]}',
                                 '{"rules": [{"field": "deal.amount", "operator": "gt", "value": Infinity}]}'])
def test_non_numbers_in_raw_json_are_refused(client, org, owner, raw):
    client.force_login(owner)
    status, page = post_workflow(client, conditions=raw)
    assert status == 200 and "is not a number" in page and not Workflow.objects.exists()


def test_a_nul_character_in_an_action_config_is_refused(client, org, owner):
    client.force_login(owner)
    status, page = post_workflow(client, steps=json.dumps([{"type": "create_task", "config": {"title": "x\u0000y"}}]))
    # Refused where the config is read (the bounded reader), naming the place inside it.
    assert status == 200 and "title: contains a NUL character" in page and not Workflow.objects.exists()


def test_more_than_200_actions_are_refused_in_the_admin(client, org, owner):
    client.force_login(owner)
    actions = [{"type": "create_task", "config": {"title": f"Task {i}"}} for i in range(201)]
    status, page = post_workflow(client, steps=json.dumps(actions))
    assert status == 200 and "at most 200 actions" in page and not Workflow.objects.exists()


@pytest.mark.parametrize("config", [[], None, "title"])
def test_a_config_that_is_not_an_object_says_so(org, config):
    ((where, message),) = validate_action("create_task", config, trigger_type="deal_stage_change",
                                          organization_id=org.pk)
    assert where == "config" and message.startswith("must be an object with the settings of “Create task”")


def test_a_missing_action_type_is_named_in_words(org):
    ((where, message),) = validate_action(None, {}, trigger_type="deal_stage_change", organization_id=org.pk)
    assert where == "type" and message.startswith("choose an action type") and "None" not in message


def test_a_line_break_in_a_subject_is_refused_on_save(org):
    errors = validate_action("send_email", {"to": "a@b.co", "subject": "Hi\r\nBcc: x@y.z"},
                             trigger_type="deal_stage_change", organization_id=org.pk)
    assert errors == [("config.subject", "must be a single line (no line breaks)")]


def test_stage_errors_list_the_valid_stages(org):
    ((_, message),) = validate_action("update_field", {"field": "stage", "value": "closed"},
                                      trigger_type="deal_stage_change", organization_id=org.pk)
    assert message == ("“closed” is not a stage of this organization; use one of new, qualified, proposal, "
                       "negotiation, won, lost")


def test_messages_show_values_not_programmer_text(org):
    with pytest.raises(ValidationError) as caught:
        workflow_create(organization=org, name="x", trigger_type="deal_stage_change", actions=[
            {"type": "update_field", "config": {"field": "amount", "value": "lots"}}])
    text = " ".join(caught.value.messages)
    assert "“lots” is not a number" in text and "'lots'" not in text and "Decimal(" not in text


def test_an_invalid_change_to_an_existing_workflow_changes_nothing(client, org, owner):
    wf = make_workflow(org, activate=False)
    client.force_login(owner)
    url = reverse("admin:automation_workflow_change", args=[wf.pk])
    data = page_form(client, url, name="Renamed", trigger_config=json.dumps({"to_stage": ["won"]}))
    response = client.post(url, data)
    assert response.status_code == 200 and "is not a stage of this organization" in response.content.decode()
    wf.refresh_from_db()
    assert (wf.name, wf.definition["trigger_config"], wf.version) == ("Kickoff", {"to_stage": "won"}, 1)


def test_a_json_number_too_long_to_parse_is_a_named_error(client, org, owner):
    client.force_login(owner)
    status, page = post_workflow(client, conditions='{"rules": [{"field": "deal.amount", "operator": "gt", '
                                                     '"value": ' + "9" * 5000 + "}]}")
    assert status == 200 and "Enter valid JSON" in page and not Workflow.objects.exists()


def test_nobody_adds_rows_to_the_email_outbox_by_hand(client, org, teammate):
    client.force_login(teammate)
    assert client.get(reverse("admin:crm_emailmessage_add")).status_code == 403
