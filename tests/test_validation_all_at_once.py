"""One save reports every problem, each at its field: an audit's save once
reported only the empty name, then only the 20,000-character message, then the other eight.
Also refused with a message: a trigger from Won to Won, a 5,000-character subject, a name of
309 characters (never cut to 200 in silence)."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from crm_automation.automation.definition.validation import validate_definition
from crm_automation.automation.models import Workflow
from crm_automation.automation.services.versions import workflow_clone, workflow_import_yaml
from crm_automation.automation.services.workflows import workflow_create, workflow_update
from crm_automation.automation.workflow_templates import get as template
from tests.admin_helpers import page_form
from tests.conftest import make_workflow

LONG_NAME = "Kickoff for every deal that is won " * 9  # 315 characters, spaces and all
BODY = "x" * 20_001


def broken_document(name: str = "") -> dict:
    """The audit's document: an empty name, a 20,001-character message, and eight more problems
    in the trigger and the nodes."""
    return {
        "id": "", "name": name, "description": "",
        "settings": {"errorPolicy": "abort", "reenrollment": "not_while_running", "timeoutSeconds": 60},
        "nodes": [
            {"id": "trigger", "type": "workflow", "data": {"subtype": "chat-app", "label": "Won", "config": {
                "event": "deal_stage_change", "from_stage": "won", "to_stage": "won"}}},          # 1 Won → Won
            {"id": "mail", "type": "workflow", "data": {"subtype": "tool-call", "label": "Mail", "config": {
                "toolName": "crm/send_email", "defaults": {
                    "to": "not an address",                                                        # 2
                    "subject": "S" * 5_000,                                                        # 3
                    "body": BODY}}}},                                                              # (the long one)
            {"id": "task", "type": "workflow", "data": {"subtype": "tool-call", "label": "Task", "config": {
                "toolName": "crm/create_task", "defaults": {
                    "title": "",                                                                   # 4
                    "priority": "whenever",                                                        # 5
                    "due_in_days": -1,                                                             # 6
                    "assignee": "nobody-here"}}}},                                                 # 7
            {"id": "pause", "type": "workflow", "data": {"subtype": "wait", "label": "Pause", "config": {
                "delayAmount": 1, "delayUnit": "fortnights"}}},                                    # 8
        ],
        "edges": [{"source": "trigger", "target": "mail"}, {"source": "mail", "target": "task"},
                  {"source": "task", "target": "pause"}],
    }


EXPECTED = {  # place → a word of its message
    "name": "needs a name",
    "nodes[trigger].data.config.to_stage": "same stage",
    "nodes[mail].data.config.defaults.to": "not an email address",
    "nodes[mail].data.config.defaults.subject": "at most 255",
    "nodes[mail].data.config.defaults.body": "longer than 20,000",
    "nodes[task].data.config.defaults.title": "required",
    "nodes[task].data.config.defaults.priority": "must be one of",
    "nodes[task].data.config.defaults.due_in_days": "0 to 3650",
    "nodes[task].data.config.defaults.assignee": "not a member",
    "nodes[pause].data.config.delayUnit": "must be one of",
}


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def assert_all_reported(errors: list[dict]) -> None:
    found: dict[str, list[str]] = {}
    for error in errors:
        found.setdefault(error["place"], []).append(error["message"])
    for place, word in EXPECTED.items():
        assert any(word in message for message in found.get(place, [])), (place, found)
    # The 20,001 characters are said once, at their place (not again by the template check).
    assert len(found["nodes[mail].data.config.defaults.body"]) == 1


def test_the_api_reports_every_problem_of_the_document_at_once(org, teammate):
    response = as_user(teammate).post("/api/v1/workflows/", data=json.dumps(broken_document()),
                                      content_type="application/json")
    assert response.status_code == 400
    assert_all_reported(response.json()["errors"])
    assert not Workflow.objects.exists()


def test_the_builder_shows_every_problem_at_its_node_and_field(org, teammate):
    response = as_user(teammate).post("/crm/automation/workflows/new/", content_type="application/json",
                                      data=json.dumps({"document": broken_document(), "revision": None}))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert_all_reported(errors)
    by_place = {e["place"]: e for e in errors}
    assert (by_place["nodes[mail].data.config.defaults.subject"]["node"],
            by_place["nodes[mail].data.config.defaults.subject"]["field"]) == ("mail", "subject")
    assert by_place["name"]["node"] == ""  # shown under the name field (builder.js: place "name")
    assert not Workflow.objects.exists()


def test_the_yaml_tab_lists_every_problem_with_its_line(org, owner):
    workflow = make_workflow(org, activate=False)
    client = as_user(owner)
    document = {**broken_document(), "id": workflow.key}
    from crm_automation.automation.definition.documents import to_yaml

    page = client.post(reverse("web:yaml", args=[workflow.pk]),
                       {"yaml": to_yaml(document), "revision": workflow.draft_revision})
    text = page.content.decode()
    assert "Nothing was saved: 10 problems" in text
    for place in EXPECTED:
        assert place in text, place
    assert Workflow.objects.get(pk=workflow.pk).draft_revision == workflow.draft_revision


def test_the_services_refuse_with_every_problem_in_one_error(org):
    definition = {"trigger_type": "deal_stage_change", "trigger_config": {"from_stage": "won", "to_stage": "won"},
                  "conditions": {}, "error_handling": "stop", "reenrollment": "every_time", "timeout_seconds": 60}
    actions = [{"type": "send_email", "config": {"to": "x", "subject": "S" * 5_000, "body": BODY}}]
    with pytest.raises(ValidationError) as refused:
        workflow_create(organization=org, name="", actions=actions,
                        **{k: v for k, v in definition.items() if k != "trigger_type"},
                        trigger_type=definition["trigger_type"])
    text = " | ".join(refused.value.messages)
    for words in ("name: a workflow needs a name", "trigger_config.to_stage: is the same stage",
                  "actions[0].config.to: “x” is not an email address",
                  "actions[0].config.subject: is 5,000 characters long; at most 255",
                  "actions[0].config.body: is longer than 20,000 characters"):
        assert words in text, text
    assert not Workflow.objects.exists()
    # The validator alone says the same, in one list.
    places = [place for place, _ in validate_definition({**definition, "actions": actions}, org.pk)]
    assert places == ["actions[0].config.body", "trigger_config.to_stage", "actions[0].config.subject",
                      "actions[0].config.to"]


def test_a_trigger_from_won_to_won_is_refused_with_a_reason(org):
    with pytest.raises(ValidationError, match="a deal never moves from a stage to itself"):
        make_workflow(org, trigger_config={"from_stage": "won", "to_stage": "won"})
    make_workflow(org, trigger_config={"from_stage": "negotiation", "to_stage": "won"})  # another stage: fine


@pytest.mark.parametrize(("action", "field", "limit"), [
    ("send_email", "subject", 255), ("create_task", "title", 200), ("notify", "title", 200)])
def test_a_short_text_longer_than_makes_sense_is_refused(org, action, field, limit):
    config = {"to": "{{deal.contact.email}}", "subject": "Hi"} if action == "send_email" else {}
    config[field] = "W" * (limit + 1)
    with pytest.raises(ValidationError, match=rf"config.{field}: is {limit + 1} characters long; at most {limit}"):
        make_workflow(org, actions=[{"type": action, "config": config}])
    config[field] = "W" * limit
    make_workflow(org, actions=[{"type": action, "config": config}])


# --- A name too long is refused, never cut ------------------------------------------------------
def test_a_309_character_name_is_refused_by_the_services_not_cut(org):
    assert len(LONG_NAME.strip()) > 300
    with pytest.raises(ValidationError, match=r"name: is 314 characters long; a name has at most 200"):
        make_workflow(org, name=LONG_NAME)
    workflow = make_workflow(org, activate=False)
    with pytest.raises(ValidationError, match="at most 200"):
        workflow_update(workflow_id=workflow.pk, changes={"name": LONG_NAME})
    assert Workflow.objects.get(pk=workflow.pk).name == "Kickoff"


def test_a_309_character_name_is_refused_by_the_api_and_the_builder(org, teammate):
    client = as_user(teammate)
    document = {**broken_document(LONG_NAME), "nodes": broken_document()["nodes"][:1], "edges": []}
    document["nodes"][0]["data"]["config"] = {"event": "deal_stage_change", "to_stage": "won"}
    response = client.post("/api/v1/workflows/", data=json.dumps(document), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["errors"] == [{"place": "name", "line": None, "message": (
        "is 314 characters long; a name has at most 200 (nothing was cut: shorten it)")}]
    saved = client.post("/crm/automation/workflows/new/", content_type="application/json",
                        data=json.dumps({"document": document}))
    assert saved.status_code == 400 and saved.json()["errors"][0]["place"] == "name"
    assert not Workflow.objects.exists()
    page = client.get("/crm/automation/workflows/new/").content.decode()
    assert 'id="wf-name" type="text" maxlength' not in page  # the browser does not cut a pasted name


def test_a_309_character_name_is_refused_by_the_yaml_import_and_the_clone(org, owner):
    text = template("won-deal-kickoff").text.replace("name: Won deal kickoff", f"name: {LONG_NAME.strip()}")
    from crm_automation.automation.definition.documents import DocumentError

    with pytest.raises(DocumentError, match="name: is 314 characters long"):
        workflow_import_yaml(organization=org, by=owner, text=text)
    source = make_workflow(org, name="A" * 200, activate=False)
    with pytest.raises(ValidationError, match="at most 200"):
        workflow_clone(workflow_id=source.pk, by=owner, name=LONG_NAME)
    copy = workflow_clone(workflow_id=source.pk, by=owner)  # a made-up name is shortened, visibly
    assert len(copy.name) == 200 and copy.name.startswith("Copy of AAA") and copy.name.endswith("…")
    response = as_user(owner).post(f"/api/v1/workflows/{source.pk}/clone/", data={"name": LONG_NAME},
                                   content_type="application/json")
    assert response.status_code == 400 and "at most 200" in response.json()["name"][0]


def test_the_admin_form_shows_every_problem_at_its_field(client, org, owner):
    client.force_login(owner)
    add = reverse("admin:automation_workflow_add")
    data = page_form(client, add, name=LONG_NAME, trigger_type="deal_stage_change",
                     trigger_config=json.dumps({"from_stage": "won", "to_stage": "won"}),
                     steps=json.dumps([{"type": "send_email", "config": {"to": "x", "subject": "S" * 5_000,
                                                                        "body": BODY}}]))
    page = client.post(add, data).content.decode()
    assert "at most 200 characters (it has 314)" in page  # the name's field
    assert "trigger_config.to_stage: is the same stage" in page
    assert "config.subject: is 5,000 characters long; at most 255" in page
    assert "config.body: is longer than 20,000 characters" in page
    assert "config.to: “x” is not an email address" in page
    assert 'name="name" maxlength' not in page and 'maxlength="200"' not in page.split('name="name"')[1][:200]
    assert not Workflow.objects.exists()

