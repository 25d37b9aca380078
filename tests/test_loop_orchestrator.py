"""`loopMode: ask-orchestrator`: the model is asked after each iteration whether the loop goes on
(a structured answer), at most maxIterations; each decision is recorded on the loop's step and
read back on resume (never asked twice); a spent AI budget or a failed question fails the loop
with the reason; a simulation runs one iteration and says why it stopped."""

import json

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from crm_automation.automation.models import AiCall
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.automation.services.simulation import simulate
from crm_automation.crm.models import Organization, Task
from tests.conftest import make_workflow, time_passes
from tests.fake_ai import chat
from tests.test_graph_engine import edge, task, win


def orchestrated(cap=5, **config) -> dict:
    return {"id": "again", "type": "loop", "label": "Follow up", "config": {
        "loopMode": "ask-orchestrator", "maxIterations": cap,
        "orchestratorPrompt": "Go on while {{deal.title}} needs more follow-ups.", **config}}


def decision(go_on: bool, reason: str = "") -> dict:
    return chat(json.dumps({"continue": go_on, "reason": reason or ("more to do" if go_on else "enough")}),
                prompt_tokens=50, completion_tokens=10)


def flow(cap=5, body=None, **config):
    body = body or [task("step", "Iteration {{loop.index}}")]
    edges = [edge("trigger", "again"), edge("again", body[0]["id"], "loop-body"),
             *[edge(a["id"], b["id"]) for a, b in zip(body, body[1:], strict=False)],
             edge("again", "after", "loop-done")]
    return [orchestrated(cap, **config), *body, task("after", "After the loop")], edges


def titles() -> list[str]:
    return sorted(Task.objects.values_list("title", flat=True))


def client_page(run) -> str:
    client = Client()
    client.force_login(User.objects.get(username="owner"))
    return client.get(f"/crm/automation/runs/{run.pk}/").content.decode()


def test_the_loop_stops_when_the_model_says_stop(org, deal, openai):
    openai.reply(200, decision(True, "no reply yet"))
    openai.reply(200, decision(False, "two follow-ups are enough"))
    run = win(org, deal, *flow())
    assert run.status == "completed", run.error
    assert titles() == ["After the loop", "Iteration 0", "Iteration 1"]
    loop = run.actions.get(node_id="again")
    assert loop.result["count"] == 2 and "stopped" not in loop.result
    assert [(d["after"], d["continue"], d["reason"]) for d in loop.result["decisions"]] == [
        (1, True, "no reply yet"), (2, False, "two follow-ups are enough")]
    assert "2 iterations; the AI model stopped it: “two follow-ups are enough”" in client_page(run)
    assert sorted(AiCall.objects.values_list("automation_key", flat=True)) == [
        f"run:{run.pk}:node:again:decide:0", f"run:{run.pk}:node:again:decide:1"]
    asked = json.loads(openai.requests[0]["body"])
    schema = asked["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["continue", "reason"] and schema["properties"]["continue"]["type"] == "boolean"
    assert asked["messages"][1]["content"] == "Go on while Website needs more follow-ups."
    assert "Iteration 1 of at most 5 is over" in asked["messages"][0]["content"]


def test_the_loop_stops_at_max_iterations_without_asking_after_the_last(org, deal, openai):
    openai.reply(200, decision(True))
    run = win(org, deal, *flow(cap=2))
    assert run.status == "completed", run.error
    assert titles() == ["After the loop", "Iteration 0", "Iteration 1"]
    loop = run.actions.get(node_id="again")
    assert loop.result["stopped"] == "at maxIterations" and len(openai.requests) == 1


def test_a_resumed_run_reads_its_decisions_back_and_never_asks_twice(org, deal, openai):
    body = [task("step", "Iteration {{loop.index}}"),
            {"id": "pause", "type": "wait", "config": {"delayAmount": 1, "delayUnit": "days"}}]
    openai.reply(200, decision(True))
    openai.reply(200, decision(False))
    run = win(org, deal, *flow(body=body))
    assert run.status == "waiting" and not openai.requests  # iteration 0 waits: nothing decided yet
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "waiting" and len(openai.requests) == 1  # decided after 0: go on; 1 waits
    time_passes()
    sweep(fan_out=False)  # replays iteration 0 and its decision from the rows
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert len(openai.requests) == 2 and AiCall.objects.count() == 2
    assert titles() == ["After the loop", "Iteration 0", "Iteration 1"]


def test_a_failed_question_fails_the_loop_and_a_retry_asks_again(org, deal, openai):
    openai.reply(200, chat("Sure, keep going!"))  # not the decision asked for
    openai.reply(200, decision(False))
    actions, edges = flow()
    actions[0] = {**actions[0], "on_error": {"policy": "retry", "maxAttempts": 2, "baseSeconds": 60}}
    run = win(org, deal, actions, edges)
    loop = run.actions.get(node_id="again")
    assert run.status == "waiting" and loop.status == "waiting"
    assert loop.error.startswith("the AI model could not decide whether the loop goes on: the model's answer is "
                                 "not a decision")
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert titles() == ["After the loop", "Iteration 0"] and len(openai.requests) == 2


def test_a_spent_budget_fails_the_loop_with_the_reason(org, deal, openai):
    Organization.objects.filter(pk=org.pk).update(ai_monthly_token_budget=100)
    AiCall.objects.create(organization=org, automation_key="earlier", node_type="agent", request={},
                          input_tokens=100)
    run = win(org, deal, *flow())
    loop = run.actions.get(node_id="again")
    assert run.status == "failed" and loop.status == "failed"
    assert "monthly AI budget of 100 tokens is spent" in loop.error and not openai.requests
    assert titles() == ["Iteration 0"]


def test_a_simulation_runs_one_iteration_and_says_why(org, deal, owner, openai):
    actions, edges = flow()
    workflow = make_workflow(org, actions=actions, graph={"edges": edges})
    run = simulate(workflow_id=workflow.pk, by=owner, record=deal)
    loop = run.actions.get(node_id="again")
    assert loop.result["count"] == 1 and "not asked in a simulation" in loop.result["decisions"][0]["reason"]
    assert not openai.requests and not AiCall.objects.exists() and not Task.objects.exists()


@pytest.mark.parametrize(("config", "message"), [
    ({"loopMode": "ask-orchestrator", "orchestratorPrompt": "Go on?"}, "config.maxIterations: is required"),
    ({"loopMode": "ask-orchestrator", "maxIterations": 3}, "config.orchestratorPrompt: is required"),
    ({"loopMode": "ask-orchestrator", "maxIterations": 1001, "orchestratorPrompt": "x"},
     "config.maxIterations: must be a whole number from 1 to"),
    ({"loopMode": "ask-orchestrator", "maxIterations": 3, "orchestratorPrompt": "{{deal.nope}}"},
     "{{deal.nope}} is not a field"),
    ({"loopMode": "count", "count": 2, "orchestratorPrompt": "x"}, "is read only with loopMode: ask-orchestrator"),
    ({"loopMode": "ask-me"}, "must be for-each, count or ask-orchestrator"),
])
def test_orchestrator_settings_are_checked(org, config, message):
    with pytest.raises(ValidationError) as refused:
        make_workflow(org, activate=False, actions=[{"id": "again", "type": "loop", "config": config},
                                                    task("step", "Step")],
                      graph={"edges": [edge("trigger", "again"), edge("again", "step", "loop-body")]})
    assert any(message in m for m in refused.value.messages), refused.value.messages
