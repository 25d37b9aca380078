"""What a person does to runs through the MCP server, as they would on the pages: retry a failed
run, resume a paused one, answer an approval (with the question's role), see why a record did
not run a workflow; a draft from a description (the AI model, a local fake); the API's request
budget counts MCP requests too. Each through the SDK's client against a live server."""

import json

import httpx
import pytest
from django.core import mail
from mcp import ClientSession

from crm_automation.api.throttling import PerPerson
from crm_automation.api.tokens import token_create
from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.crm.models import Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage
from tests.fake_ai import chat
from tests.mcp_client import answer, over_http, refusal
from tests.test_ai_authoring import GOOD
from tests.test_approvals import SIDES
from tests.test_error_policies import flow, provider
from tests.test_graph_engine import win
from tests.test_run_controls import failed_email_run

pytestmark = pytest.mark.django_db(transaction=True)
ALL = ["read", "draft", "run"]


def mcp(live_server, user, steps, scopes=ALL):
    return over_http(f"{live_server.url}/mcp", token_create(user=user, scopes=scopes)[1], steps)


def test_a_failed_run_is_retried(live_server, org, deal, teammate, monkeypatch):
    _, run = failed_email_run(org, deal, monkeypatch)

    async def retry(session: ClientSession):
        return answer(await session.call_tool("retry_run", {"run_id": run.pk}))

    assert mcp(live_server, teammate, retry)["status"] == "started"
    continue_runs([run.pk])
    assert WorkflowRun.objects.get(pk=run.pk).status == "completed" and len(mail.outbox) == 1

    async def again(session: ClientSession):
        return refusal(await session.call_tool("retry_run", {"run_id": run.pk}))

    assert mcp(live_server, teammate, again) == f"Run #{run.pk} did not fail (completed); only failed runs are retried."


def test_a_paused_run_is_resumed_by_skipping_its_step(live_server, org, deal, owner, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"))
    run = win(org, deal, *flow({"policy": "pause"}))
    assert run.status == "paused"

    async def resume(session: ClientSession):
        return (refusal(await session.call_tool("resume_run", {"run_id": run.pk, "how": "later"})),
                answer(await session.call_tool("resume_run", {"run_id": run.pk, "how": "skip"})))

    bad, resumed = mcp(live_server, owner, resume)
    assert bad.startswith("Invalid arguments (how): 'later' is not one of ['retry', 'skip']")
    assert resumed["id"] == run.pk
    continue_runs([run.pk])
    assert list(Task.objects.values_list("title", flat=True)) == ["After"]


def test_an_approval_is_answered_by_the_role_it_asks_for(live_server, org, deal, owner, teammate, viewer):
    run = win(org, deal, *SIDES)

    async def look(session: ClientSession):
        return answer(await session.call_tool("get_run", {"run_id": run.pk}))

    question = mcp(live_server, viewer, look, ["read"])["open_questions"]
    assert question == [{"approval": run.actions.get(node_id="ask").pk, "node_id": "ask",
                         "prompt": "Approve the terms of Website?", "role": "admin"}]
    approve = {"approval": question[0]["approval"], "decision": "approved", "comment": "OK up to 10%"}

    async def answer_it(session: ClientSession):
        return await session.call_tool("answer_approval", approve)

    assert refusal(mcp(live_server, teammate, answer_it)) == (
        "Only admins of this organization may answer this question.")
    assert answer(mcp(live_server, owner, answer_it))["status"] == "started"
    continue_runs([run.pk])
    assert list(Task.objects.values_list("title", flat=True)) == ["Send Website terms (OK up to 10%)"]


def test_why_a_record_did_not_run_a_workflow(live_server, org, deal, viewer):
    workflow = make_workflow(org, name="Kickoff on won")  # to_stage: won
    deal_move_to_stage(deal=deal, stage=stage(org, "lost"))
    drain()

    async def why(session: ClientSession):
        return answer(await session.call_tool("why", {"entity_type": "deal", "entity_id": str(deal.pk),
                                                      "workflow_id": workflow.pk}))

    found = mcp(live_server, viewer, why, ["read"])
    assert found["runs"] == [] and len(found["decisions"]) == 1
    decision = found["decisions"][0]
    assert (decision["workflow_name"], decision["outcome"]) == ("Kickoff on won", "stage_filter")
    assert decision["reason"] == "the deal moved to “Lost”; the workflow listens for “Won”"
    assert decision["at"].endswith("Z") or decision["at"].endswith("+00:00")  # ISO 8601


def test_a_draft_from_a_description(live_server, org, teammate, openai):
    openai.reply(200, chat(json.dumps({"yaml": GOOD, "assumptions": ["The task is due in 2 days"]}), 3000, 400))

    async def describe(session: ClientSession):
        return answer(await session.call_tool("create_draft", {
            "description": "When a deal is won, make a kickoff task for its owner."}))

    made = mcp(live_server, teammate, describe)
    assert made["notes"] == ["assumed: The task is due in 2 days"] and made["status"] == "draft"
    assert Workflow.objects.get().name == "Won kickoff"


def test_mcp_requests_draw_from_the_persons_api_budget(live_server, org, owner, monkeypatch):
    monkeypatch.setattr(PerPerson, "THROTTLE_RATES", {"per_person": "3/min"})
    key = token_create(user=owner)[1]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    api = httpx.get(f"{live_server.url}/api/v1/me/", headers={"Authorization": f"Token {key}"})
    codes = [httpx.post(f"{live_server.url}/mcp", json=body, headers=headers).status_code for _ in range(3)]
    assert api.status_code == 200 and codes[:2] == [200, 200] and codes[2] == 429
