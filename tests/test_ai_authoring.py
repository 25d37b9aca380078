"""Workflows drafted from a description by the AI model (a local fake of the provider): a valid
document is saved as a draft (never activated) with the model's assumptions, a draft with
problems is corrected once, one that stays wrong is refused with its problems and nothing is
saved; the page and the API; roles and no provider."""

import json

import pytest
from rest_framework.test import APIClient

from crm_automation.automation.models import AiCall, Workflow
from tests.fake_ai import chat

GOOD = """id: won-kickoff
name: Won kickoff
_status: production
nodes:
- id: deal-won
  type: workflow
  data: {subtype: chat-app, label: Deal Won, config: {event: deal_stage_change, to_stage: won}}
- id: kickoff-task
  type: workflow
  data:
    subtype: tool-call
    label: Kickoff Task
    config: {toolName: crm/create_task, defaults: {title: "Kick off {{deal.title}}", assignee: owner, due_in_days: 2}}
edges:
- {source: deal-won, target: kickoff-task}
"""
BAD = GOOD.replace("to_stage: won", "to_stage: closed-won")


def answer(yaml_text: str, assumptions=("The task is due in 2 days",)) -> dict:
    return chat(json.dumps({"yaml": yaml_text, "assumptions": list(assumptions)}), 3000, 400)


def describe(client, text="When a deal is won, make a kickoff task for its owner."):
    return client.post("/crm/automation/workflows/describe/", {"description": text}, follow=True)


@pytest.fixture
def logged_in(client, owner):
    client.force_login(owner)
    return client


def test_a_description_becomes_a_draft_opened_in_the_builder_with_the_assumptions(logged_in, org, openai):
    openai.reply(200, answer(GOOD))
    page = describe(logged_in)
    workflow = Workflow.objects.get()
    assert workflow.status == "draft"  # `_status: production` in the answer is not applied: a person activates it
    assert workflow.trigger_type == "deal_stage_change" and workflow.name == "Won kickoff"
    assert page.redirect_chain[-1][0] == f"/crm/automation/workflows/{workflow.pk}/edit/"
    text = page.content.decode()
    assert "The AI model drafted “Won kickoff”" in text and "Assumed: The task is due in 2 days" in text
    system, user = json.loads(openai.requests[0]["body"])["messages"]
    assert user["content"] == "Write this workflow: When a deal is won, make a kickoff task for its owner."
    assert "won: Won" in system["content"] and "id: won-deal-kickoff" in system["content"]  # stages and examples
    call = AiCall.objects.get()
    assert (call.node_type, call.status, call.input_tokens, call.output_tokens) == ("authoring", "succeeded", 3000, 400)


def test_a_draft_with_problems_is_shown_them_and_corrected_once(logged_in, org, openai):
    openai.reply(200, answer(BAD))
    openai.reply(200, answer(GOOD))
    describe(logged_in)
    assert Workflow.objects.get().status == "draft"
    second = json.loads(openai.requests[1]["body"])["messages"][1]["content"]
    assert "“closed-won” is not a stage of this organization" in second and "closed-won" in second
    assert AiCall.objects.count() == 2


def test_a_draft_that_stays_wrong_is_refused_and_nothing_is_saved(logged_in, org, openai):
    openai.reply(200, answer(BAD))
    openai.reply(200, answer(BAD))
    text = describe(logged_in).content.decode()
    assert "could not correct, so nothing was saved" in text and "closed-won" in text
    assert not Workflow.objects.exists()
    assert "When a deal is won" in text  # the description is kept in the form


def test_an_answer_that_is_not_a_document_is_refused(logged_in, org, openai):
    openai.reply(200, chat("I would suggest a kickoff task."))
    text = describe(logged_in).content.decode()
    assert "gave no usable draft" in text and not Workflow.objects.exists()


def test_without_a_provider_the_page_says_what_to_set_and_nothing_is_asked(logged_in, org, settings):
    settings.AI = {**settings.AI, "PROVIDER": "", "MODEL": ""}
    page = logged_in.get("/crm/automation/workflows/describe/").content.decode()
    assert "AI is not set up on this server" in page and "AI_PROVIDER" in page
    text = describe(logged_in).content.decode()
    assert "cannot draft workflows" in text and not Workflow.objects.exists()


def test_viewers_cannot_draft(client, org, viewer, openai):
    client.force_login(viewer)
    assert describe(client).status_code == 403
    assert not openai.requests


def test_the_api_drafts_and_returns_the_assumptions(org, owner, openai):
    openai.reply(200, answer(GOOD, ["Owner gets the task"]))
    api = APIClient()
    api.force_authenticate(owner)
    response = api.post("/api/v1/workflows/draft-from-description/", {"description": "Kickoff on won"}, format="json")
    assert response.status_code == 201, response.content
    assert response.data["status"] == "draft" and response.data["assumptions"] == ["Owner gets the task"]
    assert api.post("/api/v1/workflows/draft-from-description/", {}, format="json").status_code == 400
    openai.reply(200, answer(BAD))
    openai.reply(200, answer(BAD))
    refused = api.post("/api/v1/workflows/draft-from-description/", {"description": "x"}, format="json")
    assert refused.status_code == 400 and "closed-won" in json.dumps(refused.data)
    assert Workflow.objects.count() == 1
