"""The builder's server side: the page carries the document and the organization's catalog;
a save posts the whole document and goes through the same services as YAML and the API;
errors come back with the node and field they belong to, and change nothing."""

import json

import pytest
from django.test import Client

from crm_automation.automation.models import Workflow
from crm_automation.automation.versioning import workflow_document
from tests.conftest import make_workflow


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post(client, url, document, revision=None):
    return client.post(url, data=json.dumps({"document": document, "revision": revision}),
                       content_type="application/json")


def data_of(page) -> dict:
    text = page.content.decode()
    return json.loads(text.split('<script id="builder-data" type="application/json">', 1)[1].split("</script>", 1)[0])


TASK = {"id": "kickoff", "type": "workflow", "data": {"subtype": "tool-call", "label": "Kickoff", "config": {
    "toolName": "crm/create_task", "defaults": {"title": "Kick off {{deal.title}}", "assignee": "owner"}}}}


@pytest.fixture
def won(org):
    return make_workflow(org, name="Won deal kickoff", activate=False)


def test_a_new_workflow_is_built_and_saved_as_a_draft(org, teammate):
    client = as_user(teammate)
    page = client.get("/crm/automation/workflows/new/")
    data = data_of(page)
    assert [s["label"] for s in data["catalog"]["stages"]][-2:] == ["Won", "Lost"]  # names, pipeline order
    assert "deal.amount" in data["catalog"]["fields"]["deal_stage_change"]
    document = data["document"]
    document["name"] = "Won: kickoff"
    document["nodes"][0]["data"]["config"]["to_stage"] = "won"
    document["nodes"].append(TASK)
    document["edges"].append({"source": "trigger", "target": "kickoff"})
    response = post(client, "/crm/automation/workflows/new/", document)
    assert response.status_code == 200, response.content
    workflow = Workflow.objects.get(name="Won: kickoff")
    assert response.json()["url"] == f"/crm/automation/workflows/{workflow.pk}/edit/"
    assert workflow.status == "draft" and workflow.trigger_config == {"to_stage": "won"}
    assert [a.action_type for a in workflow.actions.all()] == ["create_task"]


def test_errors_come_back_at_their_node_and_field_and_nothing_is_saved(org, owner, won):
    client = as_user(owner)
    document = data_of(client.get(f"/crm/automation/workflows/{won.pk}/edit/"))["document"]
    before = workflow_document(won)
    document["nodes"][0]["data"]["config"]["to_stage"] = "nowhere"
    document["nodes"][1]["data"]["config"]["defaults"]["title"] = ""
    response = post(client, f"/crm/automation/workflows/{won.pk}/edit/", document, won.draft_revision)
    assert response.status_code == 400
    errors = response.json()["errors"]
    trigger_id, task_id = document["nodes"][0]["id"], document["nodes"][1]["id"]
    assert {(e["node"], e["field"]) for e in errors} >= {(trigger_id, "to_stage")}
    assert any("is not a stage" in e["message"] for e in errors)
    won.refresh_from_db()
    assert workflow_document(won) == before
    assert task_id


def test_a_save_from_an_older_page_is_refused(org, owner, won):
    client = as_user(owner)
    document = data_of(client.get(f"/crm/automation/workflows/{won.pk}/edit/"))["document"]
    document["nodes"].append({**TASK, "id": "extra", "data": {**TASK["data"], "label": "Extra"}})
    document["edges"].append({"source": document["nodes"][-2]["id"], "target": "extra"})
    response = post(client, f"/crm/automation/workflows/{won.pk}/edit/", document, won.draft_revision - 1)
    assert response.status_code == 409 and "Someone else saved" in response.json()["errors"][0]["message"]


def test_roles_viewers_read_ops_edit_drafts_admins_edit_live_workflows(org, owner, teammate, viewer, outsider, won):
    url = f"/crm/automation/workflows/{won.pk}/edit/"
    document = data_of(as_user(owner).get(url))["document"]
    document["name"] = "Renamed"
    assert data_of(as_user(viewer).get(url))["editable"] is False
    assert post(as_user(viewer), url, document, won.draft_revision).status_code == 403
    assert as_user(viewer).get("/crm/automation/workflows/new/").status_code == 403
    assert as_user(outsider).get(url).status_code == 404
    assert post(as_user(outsider), url, document, won.draft_revision).status_code == 404
    assert post(as_user(teammate), url, document, won.draft_revision).status_code == 200
    live = make_workflow(org, name="Live one")
    live_url = f"/crm/automation/workflows/{live.pk}/edit/"
    live_doc = data_of(as_user(owner).get(live_url))["document"]
    live_doc["name"] = "Live one, renamed"
    assert post(as_user(teammate), live_url, live_doc, live.draft_revision).status_code == 403
    response = post(as_user(owner), live_url, live_doc, live.draft_revision)
    assert response.status_code == 200 and "Publish it" in response.json()["message"]


def test_garbage_bodies_get_a_clear_error(org, owner, won):
    client = as_user(owner)
    url = f"/crm/automation/workflows/{won.pk}/edit/"
    for body in ("not json", "[]", json.dumps({"document": "x"}), json.dumps({"document": {"nodes": 5}})):
        response = client.post(url, data=body, content_type="application/json")
        assert response.status_code == 400, body
        assert response.json()["errors"][0]["message"]


def test_a_stale_page_cannot_overwrite_a_newer_name_either(org, owner, won):
    client = as_user(owner)
    url = f"/crm/automation/workflows/{won.pk}/edit/"
    document = data_of(client.get(url))["document"]
    fresh = dict(document, name="Renamed by someone else")
    assert post(client, url, fresh, won.draft_revision).status_code == 200
    stale = dict(document, name="My older rename")
    response = post(client, url, stale, won.draft_revision)
    assert response.status_code == 409
    assert Workflow.objects.get(pk=won.pk).name == "Renamed by someone else"
