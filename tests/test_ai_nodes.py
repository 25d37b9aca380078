"""Agent and router nodes against a local fake of each provider's API (started by the test):
the prompt rendered from templates, the answer as the step's output, tokens and cost on the
step, a router's structured answer taking its route, an invalid route or a timeout failing the
step (retried through the node's error policy), and no provider: no publishing, and the message
says what to set."""

import json

import pytest
from django.core.exceptions import ValidationError

from crm_automation.automation.models import AiCall, WorkflowRun
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.automation.services import impact
from crm_automation.automation.services.versions import workflow_export_yaml, workflow_import_yaml
from crm_automation.automation.services.workflows import workflow_create, workflow_transition
from crm_automation.crm.models import Deal, EmailMessage, Task
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.refusals import Refused
from tests.conftest import drain, make_workflow, stage, time_passes
from tests.fake_ai import chat, tool_answer
from tests.test_graph_engine import edge, task, win


def agent(node_id="draft", prompt="Write a one-line thank-you to {{deal.contact.first_name}} for {{deal.title}}.",
          **config) -> dict:
    return {"id": node_id, "type": "agent", "label": "Draft SMS",
            "config": {"additionalPrompt": prompt, **config}}


ROUTES = [{"id": "route-0", "label": "positive"}, {"id": "route-1", "label": "negative"}]


def router(**extra) -> dict:
    return {"id": "mood", "type": "router", "label": "Mood",
            "config": {"classificationPrompt": "Is the deal “{{deal.title}}” going well?", "routes": ROUTES}, **extra}


def routed_flow():
    return [router(), task("happy", "Ask for a review"), task("sad", "Call them")], [
        edge("trigger", "mood"), edge("mood", "happy", "route-0"), edge("mood", "sad", "route-1")]


def test_an_agent_writes_the_text_later_steps_use_with_tokens_and_cost_on_the_step(org, deal, openai):
    openai.reply(200, chat("Thanks Ada, the Website is live!"))
    run = win(org, deal, [agent(), task("after", "Send: {{Draft SMS}}")], [edge("trigger", "draft"),
                                                                          edge("draft", "after")])
    assert run.status == "completed", run.error
    assert Task.objects.get(title__startswith="Send").title == "Send: Thanks Ada, the Website is live!"
    (request,) = openai.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == "Bearer sk-test"
    sent = json.loads(request["body"])
    assert sent["model"] == "gpt-test" and "response_format" not in sent
    system, user = sent["messages"]
    assert user == {"role": "user", "content": "Write a one-line thank-you to Ada for Website."}
    assert '"title": "Website"' in system["content"]  # the workflow's data goes with the question
    step = run.actions.get(node_id="draft")
    assert step.status == "completed" and step.result["output"] == "Thanks Ada, the Website is live!"
    assert step.result["tokens"] == {"input": 120, "output": 30}
    assert step.result["cost_usd"] == "0.000036"  # 120 × 0.15 / 1M + 30 × 0.6 / 1M
    assert step.result["model"] == "openai:gpt-test-2026"
    call = AiCall.objects.get()
    assert (call.status, call.attempts, call.run_id) == ("succeeded", 1, run.pk)


def test_a_json_agent_gives_fields_to_later_steps(org, deal, openai):
    openai.reply(200, chat('```json\n{"score": 87, "summary": "keen"}\n```'))
    run = win(org, deal, [agent(prompt="Score {{deal.title}}", outputFormat="json"),
                          task("after", "Score {{Draft SMS.score}}: {{Draft SMS.summary}}")],
              [edge("trigger", "draft"), edge("draft", "after")])
    assert run.status == "completed", run.error
    assert Task.objects.get(title__startswith="Score").title == "Score 87: keen"
    assert json.loads(openai.requests[0]["body"])["response_format"] == {"type": "json_object"}


def test_a_json_agent_that_answers_text_fails_its_step(org, deal, openai):
    openai.reply(200, chat("Sure! The score is 87."))
    run = win(org, deal, [agent(outputFormat="json")], [edge("trigger", "draft")])
    step = run.actions.get(node_id="draft")
    assert run.status == "failed" and step.status == "failed"
    assert "not the JSON object asked for" in step.error and step.result["tokens"] == {"input": 120, "output": 30}


def test_a_router_takes_the_route_the_model_chose(org, deal, anthropic):
    anthropic.reply(200, tool_answer({"route": "negative", "reason": "no reply for weeks"}))
    flow = routed_flow()
    run = win(org, deal, *flow)
    assert run.status == "completed", run.error
    assert list(Task.objects.values_list("title", flat=True)) == ["Call them"]
    (request,) = anthropic.requests
    assert request["path"] == "/v1/messages"
    assert request["headers"]["x-api-key"] == "ak-test" and request["headers"]["anthropic-version"] == "2023-06-01"
    sent = json.loads(request["body"])
    assert sent["tool_choice"] == {"type": "tool", "name": "answer"}
    assert sent["tools"][0]["input_schema"]["properties"]["route"]["enum"] == ["positive", "negative"]
    assert sent["messages"] == [{"role": "user", "content": "Is the deal “Website” going well?"}]
    step = run.actions.get(node_id="mood")
    assert step.result["output"] == {"route": "negative", "reason": "no reply for weeks"}
    assert step.result["handle"] == "route-1" and step.result["cost_usd"] == "0.0009"  # 200×3 + 20×15 per 1M
    assert not run.actions.filter(node_id="happy").exists()


def test_an_openai_router_asks_for_a_json_schema(org, deal, openai):
    openai.reply(200, chat('{"route": "Positive", "reason": "signed"}'))
    run = win(org, deal, *routed_flow())
    assert run.status == "completed", run.error
    assert list(Task.objects.values_list("title", flat=True)) == ["Ask for a review"]
    schema = json.loads(openai.requests[0]["body"])["response_format"]["json_schema"]
    assert schema["strict"] is True and schema["schema"]["properties"]["route"]["enum"] == ["positive", "negative"]


def test_a_route_that_is_not_one_of_the_routers_fails_the_step_and_nothing_is_guessed(org, deal, openai):
    openai.reply(200, chat('{"route": "maybe", "reason": "unclear"}'))
    run = win(org, deal, *routed_flow())
    step = run.actions.get(node_id="mood")
    assert run.status == "failed" and step.status == "failed"
    assert step.error == ('the model chose "maybe", which is not a route of this router (positive, negative); '
                          "no route was taken")
    assert not Task.objects.exists()


@pytest.mark.slow
def test_a_timeout_fails_the_step_and_the_error_policy_asks_again(org, deal, openai):
    openai.reply(200, chat("too late"), delay=3)  # the provider's timeout is 2 s
    openai.reply(200, chat("Thanks!"))
    run = win(org, deal, [{**agent(), "on_error": {"policy": "retry", "maxAttempts": 2, "baseSeconds": 60}},
                          task("after", "Send: {{Draft SMS}}")], [edge("trigger", "draft"), edge("draft", "after")])
    step = run.actions.get(node_id="draft")
    assert run.status == "waiting" and step.status == "waiting"
    assert step.error == "the AI provider did not answer within 2 s"
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert Task.objects.get().title == "Send: Thanks!"
    call = AiCall.objects.get()
    assert (call.status, call.attempts) == ("succeeded", 2)


def test_a_provider_error_is_shown_in_its_words(org, deal, openai):
    openai.reply(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
    run = win(org, deal, [agent()], [edge("trigger", "draft")])
    assert run.actions.get(node_id="draft").error == "the AI provider answered 401: Incorrect API key provided"


def test_a_redelivered_run_reads_the_answer_instead_of_asking_again(org, deal, openai):
    openai.reply(200, chat("Hello"))
    run = win(org, deal, [agent(), task("after", "{{Draft SMS}}")], [edge("trigger", "draft"), edge("draft", "after")])
    assert run.status == "completed"
    from crm_automation.automation.nodes.ai import Agent
    found = Agent().existing([f"run:{run.pk}:node:draft"])
    assert found[f"run:{run.pk}:node:draft"]["output"] == "Hello"
    assert Agent().settle_existing(found[f"run:{run.pk}:node:draft"])[0] is True
    assert len(openai.requests) == 1


def test_without_a_provider_a_draft_is_kept_and_activation_says_what_to_set(org, settings):
    settings.AI = {**settings.AI, "PROVIDER": "", "MODEL": "", "API_KEY": "", "BASE_URL": ""}
    workflow = make_workflow(org, activate=False, actions=[router(), task("happy", "Review")],
                             graph={"edges": [edge("trigger", "mood"), edge("mood", "happy", "route-0")]})
    with pytest.raises(Refused) as refused:
        workflow_transition(workflow_id=workflow.pk, name="activate", by=None)
    message = refused.value.messages[0]
    assert "AI node “mood” cannot run: no AI provider is set up: set AI_PROVIDER" in message
    assert "AI_MODEL and AI_API_KEY" in message and "AI_BASE_URL" in message
    workflow.refresh_from_db()
    assert workflow.status == "draft"


def test_an_unknown_provider_is_named(org, settings):
    settings.AI = {**settings.AI, "PROVIDER": "gemini", "MODEL": "x", "API_KEY": "k"}
    workflow = make_workflow(org, activate=False, actions=[agent()], graph={"edges": [edge("trigger", "draft")]})
    with pytest.raises(Refused, match="AI_PROVIDER “gemini” is not a provider this version knows"):
        workflow_transition(workflow_id=workflow.pk, name="activate", by=None)


def test_a_local_endpoint_needs_no_key(org, deal, settings, model_server):
    settings.AI = {**settings.AI, "PROVIDER": "openai", "MODEL": "llama3.1", "API_KEY": "",
                   "BASE_URL": f"http://127.0.0.1:{model_server.port}/v1", "PRICE_INPUT": 0, "PRICE_OUTPUT": 0}
    model_server.reply(200, chat("Hi"))
    run = win(org, deal, [agent()], [edge("trigger", "draft")])
    assert run.status == "completed", run.error
    assert "authorization" not in model_server.requests[0]["headers"]
    assert run.actions.get().result["cost_usd"] == "0"


@pytest.mark.parametrize(("config", "where", "message"), [
    ({"classificationPrompt": "x", "routes": "positive"}, "config.routes", "must be a list of 2 to 20 routes"),
    ({"classificationPrompt": "x", "routes": [{"id": "route-0", "label": "a"}]}, "config.routes", "2 to 20"),
    ({"classificationPrompt": "x", "routes": [{"id": "route-0", "label": "a"}, {"id": "route-5", "label": "b"}]},
     "config.routes[1].id", "must be route-1"),
    ({"classificationPrompt": "x", "routes": [{"id": "route-0", "label": "a"}, {"id": "route-1", "label": "A"}]},
     "config.routes[1].label", "is the label of another route"),
    ({"classificationPrompt": "{{deal.nope}}", "routes": ROUTES}, "config.classificationPrompt",
     "{{deal.nope}} is not a field this trigger provides"),
    ({"routes": ROUTES}, "config.classificationPrompt", "is required"),
])
def test_router_settings_are_checked_where_they_are_wrong(org, config, where, message):
    with pytest.raises(ValidationError) as refused:
        workflow_create(organization=org, name="R", trigger_type="deal_stage_change",
                        trigger_config={"to_stage": "won"},
                        actions=[{"id": "mood", "type": "router", "config": config}])
    assert any(m.startswith(f"actions[0].{where}") and message in m for m in refused.value.messages), \
        refused.value.messages


def test_agent_settings_are_checked(org):
    with pytest.raises(ValidationError) as refused:
        workflow_create(organization=org, name="A", trigger_type="deal_stage_change",
                        trigger_config={"to_stage": "won"},
                        actions=[agent(outputFormat="xml", maxTokens=99999, temperature=2)])
    messages = " | ".join(refused.value.messages)
    assert "config.outputFormat: must be text" in messages and "config.maxTokens: must be a whole number" in messages
    assert "config.temperature: unknown setting" in messages


def test_an_edge_from_a_route_the_router_does_not_have_is_refused(org):
    with pytest.raises(ValidationError, match=r"router “mood” has 2 routes \(route-0 to route-1\)"):
        workflow_create(organization=org, name="R", trigger_type="deal_stage_change",
                        trigger_config={"to_stage": "won"}, actions=[router(), task("x", "X")],
                        graph={"edges": [edge("trigger", "mood"), edge("mood", "x", "route-2")]})


def test_an_agent_and_router_document_imports_and_exports(org):
    text = """
id: sentiment
name: Sentiment
_status: draft
nodes:
  - id: trigger
    type: workflow
    data: {subtype: chat-app, label: Deal won, config: {event: deal_stage_change, to_stage: won}}
  - id: draft-sms
    type: workflow
    data: {subtype: agent, label: Draft SMS, config: {additionalPrompt: "Thank {{deal.contact.first_name}}"}}
  - id: sentiment-router
    type: workflow
    data:
      subtype: router
      label: Sentiment Router
      config:
        classificationPrompt: "Classify '{{Draft SMS}}'"
        routes: [{id: route-0, label: positive}, {id: route-1, label: negative}]
  - id: create-task
    type: workflow
    data: {subtype: tool-call, label: Task, config: {toolName: crm/create_task, defaults: {title: Call}}}
edges:
  - {source: trigger, target: draft-sms}
  - {source: draft-sms, target: sentiment-router}
  - {source: sentiment-router, target: create-task, sourceHandle: route-1}
"""
    workflow, _ = workflow_import_yaml(organization=org, text=text, by=None)
    exported = workflow_export_yaml(workflow)
    assert "subtype: router" in exported and "classificationPrompt" in exported and "sourceHandle: route-1" in exported


def test_a_simulation_does_not_ask_the_model(org, deal, openai, owner):
    from crm_automation.automation.services.simulation import simulate
    workflow = make_workflow(org, actions=[agent(), router(), task("happy", "Review")],
                             graph={"edges": [edge("trigger", "draft"), edge("draft", "mood"),
                                              edge("mood", "happy", "route-0")]})
    run = simulate(workflow_id=workflow.pk, by=owner, record=deal)
    assert not openai.requests
    steps = {s.node_id: s for s in run.actions.all()}
    assert steps["draft"].result["would_ask"]["prompt"] == "Write a one-line thank-you to Ada for Website."
    assert "the simulation stops here" in steps["mood"].result["note"]
    assert "happy" not in steps and not AiCall.objects.exists()


def test_the_impact_preview_counts_runs_that_would_reach_a_router(org, deal, openai):
    workflow = make_workflow(org, actions=[router(), task("happy", "Review")],
                             graph={"edges": [edge("trigger", "mood"), edge("mood", "happy", "route-0")]})
    workflow_transition(workflow_id=workflow.pk, name="pause", by=None)
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()
    result = impact.preview(workflow, days=7)
    assert result.entered == 1 and result.undecided == {"mood": 1} and "happy" not in result.reached
    assert not openai.requests and not WorkflowRun.objects.exists() and not EmailMessage.objects.exists()


def test_the_admin_lists_the_calls_and_the_run_history_says_what_the_model_did(client, org, owner, deal, openai):
    openai.reply(200, chat('{"route": "negative", "reason": "no reply"}'))
    run = win(org, deal, *routed_flow())
    client.force_login(owner)
    listing = client.get("/admin/automation/aicall/")
    assert listing.status_code == 200 and "openai:gpt-test-2026" in listing.content.decode()
    page = client.get(f"/admin/automation/aicall/{AiCall.objects.get().pk}/change/").content.decode()
    assert "Is the deal “Website” going well?" in page and f"run #{run.pk}" in page
    steps = client.get(f"/crm/automation/runs/{run.pk}/").content.decode()
    assert "chose “negative” (no reply) · 120 + 30 tokens, $0.000036" in steps
