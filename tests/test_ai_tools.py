"""An agent step that calls allow-listed CRM tools, against the local fake of each provider (its
native tool calling): a task made and a field changed once, under keys of their own, and never
again when the step is retried; a tool the step may not call refused and recorded; maxToolCalls
holding; another organization's records out of reach; every call on the step's result, on the
API and the run page; simulate and live debug making nothing."""

import json
from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from crm_automation.automation.ai import tool_calling
from crm_automation.automation.models import AiCall, FieldChange, WorkflowRun
from crm_automation.automation.nodes import ai_conversation
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.automation.services.simulation import simulate
from crm_automation.automation.services.workflows import workflow_create
from crm_automation.crm.models import Contact, Deal, EmailMessage, Project, SmsMessage, SmsSettings, Task
from crm_automation.webhooks.models import ChatChannel
from tests.conftest import make_workflow, stage, time_passes
from tests.fake_ai import chat
from tests.http_receiver import Receiver
from tests.test_api_workflows import api
from tests.test_engine import dispatched_run, execute_run, expire_leases
from tests.test_graph_engine import edge, task, win
from tests.test_live_debug import as_user, post


def tool_agent(tools=("create_task", "update_field"), **config) -> dict:
    return {"id": "helper", "type": "agent", "label": "Helper",
            "config": {"additionalPrompt": "Follow up on {{deal.title}}.", "tools": list(tools), **config}}


def calls(*asked: tuple[str, dict], prompt_tokens=100, completion_tokens=20) -> dict:
    """An OpenAI-compatible answer that asks for tool calls."""
    return {"id": "chatcmpl-2", "model": "gpt-test-2026", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(asked)]}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}


FOLLOW_UP = (("create_task", {"title": "Call Ada about the launch", "priority": "high"}),
             ("update_field", {"field": "probability", "value": 80}))


def test_the_agent_creates_a_task_and_updates_a_field_then_answers(org, deal, openai):
    openai.reply(200, calls(*FOLLOW_UP))
    openai.reply(200, chat("Task made and probability raised."))
    run = win(org, deal, [tool_agent(), task("after", "Said: {{Helper}}")], [edge("trigger", "helper"),
                                                                            edge("helper", "after")])
    assert run.status == "completed", run.error
    made = Task.objects.get(title="Call Ada about the launch")
    assert (made.priority, made.deal_id, made.automation_key) == ("high", deal.pk, f"run:{run.pk}:node:helper:call:1")
    assert Deal.objects.get(pk=deal.pk).probability == 80
    assert FieldChange.objects.get().automation_key == f"run:{run.pk}:node:helper:call:2"
    assert Task.objects.filter(title="Said: Task made and probability raised.").exists()
    step = run.actions.get(node_id="helper")
    assert [(c["n"], c["name"]) for c in step.result["tool_calls"]] == [(1, "create_task"), (2, "update_field")]
    changed = step.result["tool_calls"][1]
    assert changed["arguments"] == {"field": "probability", "value": 80}
    assert (changed["result"]["field"], changed["result"]["new"]) == ("deal.probability", 80)
    assert step.result["model_calls"] == 2 and step.result["tokens"] == {"input": 220, "output": 50}
    assert sorted(AiCall.objects.values_list("automation_key", flat=True)) == [
        f"run:{run.pk}:node:helper", f"run:{run.pk}:node:helper:turn:1"]
    first, second = (json.loads(r["body"]) for r in openai.requests)
    assert [t["function"]["name"] for t in first["tools"]] == ["create_task", "update_field"]
    assert "response_format" not in first
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_0", "call_1"]
    assert "Call Ada about the launch" in tool_messages[0]["content"]


def test_a_retried_step_replays_its_conversation_and_makes_nothing_twice(org, deal, openai):
    openai.reply(200, calls(*FOLLOW_UP))
    openai.reply(503, {"error": {"message": "overloaded"}})
    openai.reply(200, chat("Done."))
    run = win(org, deal, [{**tool_agent(), "on_error": {"policy": "retry", "maxAttempts": 2, "baseSeconds": 60}}],
              [edge("trigger", "helper")])
    step = run.actions.get(node_id="helper")
    assert run.status == "waiting" and step.error == "model call 2: the AI provider answered 503: overloaded"
    assert Task.objects.count() == 1 and FieldChange.objects.count() == 1
    Deal.objects.filter(pk=deal.pk).update(probability=10)  # changed by someone meanwhile: not changed back
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert Task.objects.count() == 1 and FieldChange.objects.count() == 1
    assert Deal.objects.get(pk=deal.pk).probability == 10
    assert len(openai.requests) == 3  # the first reply was read back, not asked for again
    step = run.actions.get(node_id="helper")
    assert step.result["output"] == "Done." and step.result["tool_calls"][0]["result"]["repeated_delivery"] is True


def test_a_retried_step_whose_first_model_call_failed_asks_again(org, deal, openai):
    openai.reply(503, {"error": {"message": "overloaded"}})
    openai.reply(200, calls(*FOLLOW_UP))
    openai.reply(200, chat("Done."))
    run = win(org, deal, [{**tool_agent(), "on_error": {"policy": "retry", "maxAttempts": 2, "baseSeconds": 60}}],
              [edge("trigger", "helper")])
    assert run.status == "waiting" and "503" in run.actions.get(node_id="helper").error
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert Task.objects.count() == 1 and len(openai.requests) == 3


def test_a_worker_that_dies_mid_conversation_leaves_nothing_to_repeat(org, deal, openai, monkeypatch):
    """The model's first reply was kept and both tools were called, then the worker died while
    asking again: the resumed run reads the reply and finds the effects; only the rest is asked."""
    openai.reply(200, calls(*FOLLOW_UP))
    openai.reply(200, chat("Done."))
    make_workflow(org, actions=[tool_agent()], graph={"edges": [edge("trigger", "helper")]})
    run_id = dispatched_run(org, deal)
    real, asked = tool_calling.converse, []

    def die_on_the_second_question(*args, **kwargs):
        asked.append(1)
        if len(asked) == 2:
            raise KeyboardInterrupt("worker killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(tool_calling, "converse", die_on_the_second_question)
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id)
    monkeypatch.undo()
    assert AiCall.objects.get(automation_key=f"run:{run_id}:node:helper").status == "sending"
    assert Task.objects.count() == 1 and FieldChange.objects.count() == 1
    expire_leases()
    sweep(fan_out=False)
    run = WorkflowRun.objects.get(pk=run_id)
    assert run.status == "completed", run.error
    assert Task.objects.count() == 1 and FieldChange.objects.count() == 1
    assert len(openai.requests) == 2  # the first reply was read back; the second asked once
    step = run.actions.get(node_id="helper")
    assert step.result["output"] == "Done." and step.result["model_calls"] == 2


def test_a_stopping_worker_hands_the_conversation_back_between_model_calls(org, deal, openai, monkeypatch):
    openai.reply(200, calls(FOLLOW_UP[0]))
    openai.reply(200, chat("Done."))
    make_workflow(org, actions=[tool_agent()], graph={"edges": [edge("trigger", "helper")]})
    run_id = dispatched_run(org, deal)
    # The cluster starts stopping once the first question is asked (as the conversation sees it).
    monkeypatch.setattr(ai_conversation, "shutdown", SimpleNamespace(past=lambda deadline: True))
    execute_run(run_id)
    monkeypatch.undo()
    assert WorkflowRun.objects.get(pk=run_id).status == "started" and len(openai.requests) == 1
    assert AiCall.objects.get(automation_key=f"run:{run_id}:node:helper").status == "queued"
    expire_leases()
    sweep(fan_out=False)
    run = WorkflowRun.objects.get(pk=run_id)
    assert run.status == "completed", run.error
    assert Task.objects.count() == 1 and len(openai.requests) == 2


def test_a_tool_the_step_may_not_call_is_refused_and_recorded(org, deal, contact, openai):
    openai.reply(200, calls(("send_email", {"to": contact.email, "subject": "Hi", "body": "x"}),
                            ("drop_database", {})))
    openai.reply(200, chat("I could not email."))
    run = win(org, deal, [tool_agent(tools=["create_task"])], [edge("trigger", "helper")])
    assert run.status == "completed", run.error
    refused = run.actions.get(node_id="helper").result["tool_calls"]
    assert refused[0]["error"] == "“send_email” is not a tool this step may call; it may call create_task"
    assert refused[1]["error"].startswith("“drop_database” is not a tool")
    assert not EmailMessage.objects.exists()
    told = [m for m in json.loads(openai.requests[1]["body"])["messages"] if m["role"] == "tool"]
    assert "refused" in told[0]["content"]


def test_max_tool_calls_holds(org, deal, openai):
    openai.reply(200, calls(*[("create_task", {"title": f"Task {i}"}) for i in range(3)]))
    run = win(org, deal, [tool_agent(maxToolCalls=2)], [edge("trigger", "helper")])
    step = run.actions.get(node_id="helper")
    assert run.status == "failed" and step.status == "failed"
    assert step.error == ("the model asked for more than maxToolCalls (2) tool calls; stopped after 2 calls "
                          "without an answer")
    assert sorted(Task.objects.values_list("title", flat=True)) == ["Task 0", "Task 1"]
    assert len(step.result["tool_calls"]) == 2 and len(openai.requests) == 1


def test_another_organizations_records_are_out_of_reach(org, other_org, deal, openai):
    rival = Deal.objects.create(organization=other_org, title="Rival secret", stage=stage(other_org, "new"))
    rival_contact = Contact.objects.create(organization=other_org, first_name="Eve", email="eve@rival.example")
    openai.reply(200, calls(("update_field", {"field": "title", "value": "Hacked", "record_id": str(rival.pk)}),
                            ("search_records", {"kind": "deal", "text": "Rival"}),
                            ("send_email", {"to": rival_contact.email, "subject": "Data", "body": "All of it"})))
    openai.reply(200, chat("Nothing found."))
    run = win(org, deal, [tool_agent(tools=["update_field", "search_records", "send_email"])],
              [edge("trigger", "helper")])
    assert run.status == "completed", run.error
    update, search, email = run.actions.get(node_id="helper").result["tool_calls"]
    assert update["error"].startswith("update_field takes no argument “record_id”")
    assert search["result"] == {"kind": "deal", "found": []}
    assert email["error"].startswith("“eve@rival.example” is not the address of one of the organization's")
    assert Deal.objects.get(pk=rival.pk).title == "Rival secret" and Deal.objects.get(pk=deal.pk).title == "Website"
    assert not EmailMessage.objects.exists()


def test_search_records_finds_the_organizations_records_of_each_kind(org, deal, contact, lead, openai):
    Project.objects.create(organization=org, name="Roof repair", contact=contact)
    openai.reply(200, calls(("search_records", {"kind": "contact", "text": "ada"}),
                            ("search_records", {"kind": "lead", "text": "grace@"}),
                            ("search_records", {"kind": "project", "text": "roof"}),
                            ("search_records", {"kind": "deal", "text": "web"}),
                            ("search_records", {"kind": "invoice", "text": "x"})))
    openai.reply(200, chat("Found them."))
    run = win(org, deal, [tool_agent(tools=["search_records"], maxToolCalls=5)], [edge("trigger", "helper")])
    found = run.actions.get().result["tool_calls"]
    assert [r["name"] for r in found[0]["result"]["found"]] == ["Ada Lovelace"]
    assert [r["email"] for r in found[1]["result"]["found"]] == ["grace@example.com"]
    assert [r["name"] for r in found[2]["result"]["found"]] == ["Roof repair"]
    assert [r["title"] for r in found[3]["result"]["found"]] == ["Website"]
    assert found[4]["error"] == "kind must be deal, lead, contact or project"


def test_an_sms_and_a_slack_post_are_sent_once_through_their_nodes_code(org, deal, contact, openai, settings):
    slack = Receiver()
    try:
        settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
        SmsSettings.objects.create(organization=org, from_number="+15550009999", auth_token="t")
        Contact.objects.filter(pk=contact.pk).update(phone="+15550100100", phone_e164="+15550100100")
        ChatChannel.objects.create(organization=org, name="sales-wins", kind="slack",
                                   webhook_url=f"http://127.0.0.1:{slack.port}/services/T1/B1/secret")
        openai.reply(200, calls(("send_sms", {"to": "+1 555 010 0100", "body": "Thanks Ada!"}),
                                ("post_slack", {"channel": "sales-wins", "text": "Website is won"}),
                                ("send_sms", {"to": "+15550199999", "body": "Hi stranger"})))
        openai.reply(200, chat("Texted and posted."))
        run = win(org, deal, [tool_agent(tools=["send_sms", "post_slack"])], [edge("trigger", "helper")])
        assert run.status == "completed", run.error
        texted, posted, stranger = run.actions.get().result["tool_calls"]
        sms = SmsMessage.objects.get()
        assert (sms.to, sms.body, sms.status, sms.automation_key) == (
            "+15550100100", "Thanks Ada!", "sent", f"run:{run.pk}:node:helper:call:1")
        assert texted["result"]["delivery"] == "sent"
        assert json.loads(slack.requests[0]["body"]) == {"text": "Website is won"}
        assert posted["result"]["delivery"] == "succeeded" and "secret" not in json.dumps(posted)
        assert stranger["error"].startswith("“+15550199999” is not the number of one of the organization's")
    finally:
        slack.close()


def test_arguments_are_values_not_templates(org, deal, openai):
    openai.reply(200, calls(("create_task", {"title": "{{deal.contact.email}}"})))
    openai.reply(200, chat("ok"))
    run = win(org, deal, [tool_agent()], [edge("trigger", "helper")])
    assert "a tool's arguments are values, not templates" in run.actions.get().result["tool_calls"][0]["error"]
    assert not Task.objects.exists()


def test_anthropic_tool_use_and_tool_results(org, deal, anthropic):
    anthropic.reply(200, {"id": "msg_1", "model": "claude-test", "role": "assistant", "content": [
        {"type": "text", "text": "Let me add a task."},
        {"type": "tool_use", "id": "toolu_9", "name": "create_task", "input": {"title": "Send the invoice"}}],
        "usage": {"input_tokens": 300, "output_tokens": 40}})
    anthropic.reply(200, {"id": "msg_2", "model": "claude-test", "role": "assistant",
                          "content": [{"type": "text", "text": "Added."}], "usage": {"input_tokens": 400,
                                                                                      "output_tokens": 5}})
    run = win(org, deal, [tool_agent(tools=["create_task"])], [edge("trigger", "helper")])
    assert run.status == "completed", run.error
    assert Task.objects.get().title == "Send the invoice"
    first, second = (json.loads(r["body"]) for r in anthropic.requests)
    assert first["tools"][0]["name"] == "create_task" and "input_schema" in first["tools"][0]
    assert "tool_choice" not in first
    assistant, results = second["messages"][1:]
    assert assistant["content"][1] == {"type": "tool_use", "id": "toolu_9", "name": "create_task",
                                       "input": {"title": "Send the invoice"}}
    assert results["role"] == "user" and results["content"][0]["tool_use_id"] == "toolu_9"
    step = run.actions.get()
    assert step.result["tokens"] == {"input": 700, "output": 45}
    assert step.result["cost_usd"] == "0.002775"  # 700 × 3 + 45 × 15 per million


def test_the_api_and_the_run_page_show_each_call(org, deal, owner, outsider, viewer, client, openai):
    openai.reply(200, calls(*FOLLOW_UP))
    openai.reply(200, chat("Done."))
    run = win(org, deal, [tool_agent()], [edge("trigger", "helper")])
    (step,) = api(viewer).get(f"/api/v1/runs/{run.pk}/").json()["steps"]
    assert [c["name"] for c in step["result"]["tool_calls"]] == ["create_task", "update_field"]
    assert api(outsider).get(f"/api/v1/runs/{run.pk}/").status_code == 404
    client.force_login(viewer)
    page = client.get(f"/crm/automation/runs/{run.pk}/").content.decode()
    assert "called create_task, update_field" in page


def test_simulate_asks_nothing_and_makes_nothing(org, deal, owner, openai):
    workflow = make_workflow(org, actions=[tool_agent()], graph={"edges": [edge("trigger", "helper")]})
    run = simulate(workflow_id=workflow.pk, by=owner, record=deal)
    assert not openai.requests and not Task.objects.exists() and not AiCall.objects.exists()
    (step,) = run.actions.all()
    assert step.result["would_use_tools"] == ["create_task", "update_field"]


def test_live_debug_asks_the_model_and_previews_each_tool_call(org, owner, deal, contact, openai):
    workflow = make_workflow(org, activate=False, actions=[tool_agent(tools=["create_task", "send_email",
                                                                             "update_field"])])
    openai.reply(200, calls(("create_task", {"title": "Call Ada"}),
                            ("send_email", {"to": contact.email, "subject": "Hello", "body": "Hi Ada"}),
                            ("update_field", {"field": "probability", "value": 90})))
    openai.reply(200, chat("All set."))
    answer = post(as_user(owner), workflow, {"record": {"type": "deal", "id": str(deal.pk)},
                                             "ask_model": True}).json()
    assert answer["status"] == "completed", answer
    (helper,) = answer["steps"]
    made, mailed, changed = helper["output"]["tool_calls"]
    assert made["result"]["would_create_task"]["title"] == "Call Ada"
    assert mailed["result"]["would_send"] == {"to": contact.email, "subject": "Hello", "body": "Hi Ada"}
    assert mailed["result"]["delivery"] == "not sent: simulation"
    assert changed["result"]["new"] == 90
    assert helper["output"]["output"] == "All set."
    assert not Task.objects.exists() and not EmailMessage.objects.exists() and not AiCall.objects.exists()
    assert Deal.objects.get(pk=deal.pk).probability != 90


@pytest.mark.parametrize(("config", "message"), [
    ({"tools": ["create_task", "delete_everything"]}, "config.tools: “delete_everything” is not a tool"),
    ({"tools": "create_task"}, "config.tools: must be a list of tool names"),
    ({"tools": ["create_task"], "maxToolCalls": 21}, "config.maxToolCalls: must be a whole number from 1 to 20"),
    ({"maxToolCalls": 3, "tools": None}, "config.tools: must be a list"),
])
def test_tool_settings_are_checked(org, config, message):
    with pytest.raises(ValidationError) as refused:
        workflow_create(organization=org, name="A", trigger_type="deal_stage_change",
                        trigger_config={"to_stage": "won"},
                        actions=[{"id": "helper", "type": "agent",
                                  "config": {"additionalPrompt": "Help", **config}}])
    assert any(message in m for m in refused.value.messages), refused.value.messages
