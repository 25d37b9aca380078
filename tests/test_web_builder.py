"""The builder's server side: the page carries the document and the organization's catalog;
a save posts the whole document and goes through the same services as YAML and the API;
errors come back with the node and field they belong to, and change nothing."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.versions import workflow_document
from tests.conftest import make_workflow
from tests.drafts import draft_action, draft_actions


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


TASK: dict[str, Any] = {"id": "kickoff", "type": "workflow", "data": {
    "subtype": "tool-call", "label": "Kickoff", "config": {
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
    assert workflow.status == "draft" and workflow.definition["trigger_config"] == {"to_stage": "won"}
    assert [a.action_type for a in draft_actions(workflow)] == ["create_task"]


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


# --- AI steps: agent and router ---------------------------------------------------------------------
ROUTER = {"id": "mood", "type": "workflow", "data": {"subtype": "router", "label": "Mood", "config": {
    "classificationPrompt": "Is the deal “{{deal.title}}” going well?",
    "routes": [{"id": "route-0", "label": "positive"}, {"id": "route-1", "label": "negative"}]}}}


def routed(document: dict) -> dict:
    """The starter document with trigger → router (Mood) → a task in each route's branch; the
    positive branch's task reads the router's route and reason, then an agent answers in JSON."""
    happy = {**TASK, "id": "happy", "data": {**TASK["data"], "label": "Ask for a review", "config": {
        "toolName": "crm/create_task", "defaults": {"title": "Review: {{Mood.route}} ({{Mood.reason}})"}}}}
    sad = {**TASK, "id": "sad", "data": {**TASK["data"], "label": "Call them", "config": {
        "toolName": "crm/create_task", "defaults": {"title": "Call about {{deal.title}}"}}}}
    draft = {"id": "draft", "type": "workflow", "data": {"subtype": "agent", "label": "Draft", "config": {
        "additionalPrompt": "Summarize {{deal.title}} because {{Mood.reason}}", "outputFormat": "json",
        "maxTokens": 300}}}
    after = {**TASK, "id": "after", "data": {**TASK["data"], "label": "Follow up", "config": {
        "toolName": "crm/create_task", "defaults": {"title": "{{Draft.summary}}"}}}}
    document["name"] = "Sorted by mood"
    document["nodes"] += [json.loads(json.dumps(ROUTER)), happy, sad, draft, after]
    document["edges"] += [{"source": "trigger", "target": "mood"},
                          {"source": "mood", "target": "happy", "sourceHandle": "route-0"},
                          {"source": "mood", "target": "sad", "sourceHandle": "route-1"},
                          {"source": "sad", "target": "draft"}, {"source": "draft", "target": "after"}]
    return document


@pytest.fixture
def no_ai(settings):
    settings.AI = {**settings.AI, "PROVIDER": "", "MODEL": "", "API_KEY": "", "BASE_URL": ""}


def test_the_page_offers_ai_steps_and_says_when_ai_is_not_set_up(org, teammate, settings, no_ai):
    client = as_user(teammate)
    ai = data_of(client.get("/crm/automation/workflows/new/"))["catalog"]["ai"]
    assert ai["configured"] is False
    assert ai["notice"] == ("AI is not set up on this server: set AI_PROVIDER, AI_MODEL and AI_API_KEY; the workflow "
                            "can be saved as a draft but not activated.")
    page = client.get("/crm/automation/workflows/new/").content.decode()
    assert "web/builder.js" in page
    text = Path(finders.find("web/builder.js")).read_text()  # the "+ Add a step" menu's kinds
    assert 'label: "AI agent"' in text and 'label: "AI router"' in text and 'group: "AI"' in text
    assert "agent" not in data_of(client.get("/crm/automation/workflows/new/"))["catalog"]["later"]
    settings.AI = {**settings.AI, "PROVIDER": "openai", "MODEL": "gpt-test", "API_KEY": "sk-test"}
    assert data_of(client.get("/crm/automation/workflows/new/"))["catalog"]["ai"]["configured"] is True


def test_a_router_with_a_branch_per_route_is_saved_and_comes_back_the_same(org, teammate, no_ai):
    client = as_user(teammate)
    document = routed(data_of(client.get("/crm/automation/workflows/new/"))["document"])
    response = post(client, "/crm/automation/workflows/new/", document)
    assert response.status_code == 200, response.content  # a draft without AI set up
    workflow = Workflow.objects.get(name="Sorted by mood")
    assert workflow.status == "draft"
    actions = {a.node_id: a for a in draft_actions(workflow)}
    assert actions["mood"].action_type == "router" and actions["draft"].action_type == "agent"
    assert actions["mood"].config["routes"] == ROUTER["data"]["config"]["routes"]
    assert actions["draft"].config == {"additionalPrompt": "Summarize {{deal.title}} because {{Mood.reason}}",
                                       "outputFormat": "json", "maxTokens": 300}
    assert {(e["source"], e.get("sourceHandle"), e["target"]) for e in workflow.definition["graph"]["edges"]} >= {
        ("mood", "route-0", "happy"), ("mood", "route-1", "sad")}

    url = response.json()["url"]
    again = data_of(client.get(url))["document"]
    assert again["nodes"] == document["nodes"] and again["edges"] == document["edges"]
    # Saved again as it came back: nothing changes (the same revision follows).
    resaved = post(client, url, again, workflow.draft_revision)
    assert resaved.status_code == 200, resaved.content
    assert data_of(client.get(url))["document"]["edges"] == document["edges"]


def test_a_route_may_have_no_step_after_it(org, teammate, no_ai):
    client = as_user(teammate)
    document = routed(data_of(client.get("/crm/automation/workflows/new/"))["document"])
    document["nodes"][1]["data"]["config"]["routes"].append({"id": "route-2", "label": "unsure"})
    response = post(client, "/crm/automation/workflows/new/", document)
    assert response.status_code == 200, response.content
    routes = draft_action(Workflow.objects.get(name="Sorted by mood"), node_id="mood").config["routes"]
    assert [r["label"] for r in routes] == ["positive", "negative", "unsure"]


def test_errors_of_ai_steps_come_back_at_their_fields(org, teammate, no_ai):
    client = as_user(teammate)
    document = routed(data_of(client.get("/crm/automation/workflows/new/"))["document"])
    mood, draft = document["nodes"][1]["data"]["config"], document["nodes"][4]["data"]["config"]
    mood["routes"][1]["label"] = "Positive"  # the same word as route 0
    draft.update(outputFormat="xml", maxTokens=9000, additionalPrompt="{{Nobody.answer}}")
    document["edges"].append({"source": "mood", "target": "after", "sourceHandle": "route-5"})
    response = post(client, "/crm/automation/workflows/new/", document)
    assert response.status_code == 400
    errors = response.json()["errors"]
    at = {(e["node"], e["field"]): e["message"] for e in errors}
    assert "is the label of another route" in at[("mood", "routes[1].label")]
    assert ("draft", "outputFormat") in at and ("draft", "maxTokens") in at and ("draft", "additionalPrompt") in at
    # An edge's problem is shown on the step it leaves: the router has no route-5.
    edge_error = next(e for e in errors if e["place"].startswith("edges["))
    assert edge_error["node"] == "mood" and "route-0 to route-1" in edge_error["message"]
    assert not Workflow.objects.filter(name="Sorted by mood").exists()


# --- Two people at once: a stale save says what is saved now, by whom and when ----------------------
def test_a_stale_save_answers_with_the_saved_document_its_revision_who_saved_it_and_when(org, owner, teammate, won):
    url = f"/crm/automation/workflows/{won.pk}/edit/"
    opened = won.draft_revision
    mine = data_of(as_user(owner).get(url))["document"]
    theirs = json.loads(json.dumps(mine))
    theirs["nodes"][1]["data"]["config"]["defaults"]["title"] = "Call {{deal.title}}"
    assert post(as_user(teammate), url, theirs, opened).status_code == 200

    mine["name"] = "Mine"
    response = post(as_user(owner), url, mine, opened)
    assert response.status_code == 409
    conflict = response.json()["conflict"]
    won.refresh_from_db()
    assert conflict["revision"] == won.draft_revision == opened + 1
    assert conflict["by"] == "teammate" and str(won.edited_at.year) in conflict["at"]
    assert conflict["document"] == {k: v for k, v in workflow_document(won).items() if k != "_status"}
    assert won.name == "Won deal kickoff"  # nothing of the stale save was written

    # Keeping one's changes is saving them on top of what is saved now, with its revision.
    merged = dict(conflict["document"], name="Mine")
    assert post(as_user(owner), url, merged, conflict["revision"]).status_code == 200
    won.refresh_from_db()
    assert won.name == "Mine" and draft_action(won, action_type="create_task").config["title"] == "Call {{deal.title}}"
    assert won.edited_by == owner


def test_the_same_person_in_another_tab_is_named_as_such(org, owner, won):
    url = f"/crm/automation/workflows/{won.pk}/edit/"
    document = data_of(as_user(owner).get(url))["document"]
    assert post(as_user(owner), url, dict(document, name="First tab"), won.draft_revision).status_code == 200
    response = post(as_user(owner), url, dict(document, name="Second tab"), won.draft_revision)
    assert response.status_code == 409
    assert response.json()["conflict"]["by"] == "Olive (you, in another tab)"


def test_the_catalog_gives_webhook_targets_with_their_url_for_the_cards_words(org, owner, won, settings):
    from crm_automation.webhooks.services import webhook_target_create

    settings.WEBHOOK_ALLOWED_HOSTS = ["billing.example.com"]
    webhook_target_create(organization=org, name="billing", url="https://billing.example.com/hooks", by=None)
    catalog = data_of(as_user(owner).get(f"/crm/automation/workflows/{won.pk}/edit/"))["catalog"]
    assert catalog["targets"] == [{"value": "billing", "url": "https://billing.example.com/hooks"}]


def test_the_builder_page_loads_the_merge_script_without_inline_code(org, owner, won):
    text = as_user(owner).get(f"/crm/automation/workflows/{won.pk}/edit/").content.decode()
    assert text.index("web/builder_merge.js") < text.index("web/builder.js")
    assert text.index("web/builder_conflicts.js") < text.index("web/builder.js")
    assert 'id="builder-conflict"' in text and "onclick=" not in text


YAML_URL = "/crm/automation/workflows/{}/yaml/"


def test_a_stale_yaml_save_keeps_my_text_and_shows_theirs_beside_it(org, owner, teammate, won):
    from crm_automation.automation.services.versions import workflow_export_yaml

    opened, revision = workflow_export_yaml(won), won.draft_revision
    theirs = opened.replace("Kick off {{deal.title}}", "Call {{deal.title}}")
    assert as_user(teammate).post(YAML_URL.format(won.pk), {"yaml": theirs, "revision": revision}).status_code == 302
    mine = opened.replace("Welcome {{deal.title}}", "Hello {{deal.title}}")
    response = as_user(owner).post(YAML_URL.format(won.pk), {"yaml": mine, "revision": revision})
    assert response.status_code == 400
    text = response.content.decode()
    won.refresh_from_db()
    assert "teammate saved this workflow while you were editing it" in text
    assert str(won.edited_at.year) in text.split("They saved it on", 1)[1][:80]
    box = text.split('name="yaml"', 1)[1].split("</textarea>", 1)[0]
    assert "Hello {{deal.title}}" in box and "Call {{deal.title}}" not in box  # my text, as typed
    beside = text.split('class="yaml-theirs"', 1)[1].split("</section>", 1)[0]
    assert "Call {{deal.title}}" in beside and "Hello {{deal.title}}" not in beside  # theirs, as saved
    # What saving mine would change in theirs, in words: their title back, my subject.
    changes = text.split('class="conflict-changes"', 1)[1].split("</ul>", 1)[0]
    assert "Call {{deal.title}}" in changes and "Hello {{deal.title}}" in changes
    assert f'name="revision" value="{won.draft_revision}"' in text  # a second save is on their revision
    email = draft_action(won, action_type="send_email").config
    assert email["subject"] == "Welcome {{deal.title}}"  # nothing of mine was saved

    # Keep mine: the form as it came back, sent again.
    again = as_user(owner).post(YAML_URL.format(won.pk), {"yaml": box.split(">", 1)[1].lstrip("\n").replace(
        "&#x27;", "'").replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"),
        "revision": won.draft_revision})
    assert again.status_code == 302, again.content.decode()[:2000]
    won.refresh_from_db()
    assert draft_action(won, action_type="send_email").config["subject"] == "Hello {{deal.title}}"
    assert draft_action(won, action_type="create_task").config["title"] == "Kick off {{deal.title}}"
    assert won.edited_by == owner


def test_a_yaml_error_that_is_not_a_conflict_keeps_the_revision_it_was_opened_at(org, owner, teammate, won):
    from crm_automation.automation.services.versions import workflow_export_yaml

    broken = workflow_export_yaml(won).replace("to_stage: won", "to_stage: nowhere")
    response = as_user(owner).post(YAML_URL.format(won.pk), {"yaml": broken, "revision": won.draft_revision})
    assert response.status_code == 400
    text = response.content.decode()
    assert "saved this workflow while you were editing it" not in text and 'class="yaml-theirs"' not in text
    assert f'name="revision" value="{won.draft_revision}"' in text
