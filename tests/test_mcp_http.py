"""The MCP server over streamable HTTP at /mcp, driven by the SDK's own client against a live
server: a whole session (tools, search, fetch, a draft from YAML, a simulation, a dry and a real
start, the run, the audit log), and what is refused: no token, a wrong one, an outsider's ids, a
viewer's start, a token without the scope, a foreign Origin or Host."""

import httpx
import pytest
from mcp import ClientSession

from crm_automation.api.models import McpCall
from crm_automation.api.tokens import token_create
from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.crm.models import Task
from tests.conftest import make_workflow
from tests.mcp_client import answer, over_http, refusal

pytestmark = pytest.mark.django_db(transaction=True)

CALL_ABOUT = """id: call-about-deal
name: Call about the deal
nodes:
- id: trigger
  type: workflow
  data: {subtype: manual, label: Started on a deal, config: {entity: deal}}
- id: call
  type: workflow
  data:
    subtype: tool-call
    label: Call task
    config: {toolName: crm/create_task, defaults: {title: "Call about {{deal.title}}", assignee: owner}}
edges:
- {source: trigger, target: call}
"""


def key_of(user, scopes=None) -> str:
    return token_create(user=user, scopes=scopes)[1]


def url(live_server) -> str:
    return f"{live_server.url}/mcp"


def test_a_whole_session_from_search_to_a_real_start(live_server, org, owner, teammate, deal):
    key = key_of(teammate, ["read", "draft", "run"])

    async def discover(session: ClientSession):
        tools = await session.list_tools()
        found = answer(await session.call_tool("search", {"query": "Website"}))
        fetched = answer(await session.call_tool("fetch", {"id": f"deal:{deal.pk}"}))
        created = answer(await session.call_tool("create_draft", {"yaml": CALL_ABOUT}))
        simulated = answer(await session.call_tool("simulate", {
            "workflow_id": created["id"], "entity_type": "deal", "entity_id": str(deal.pk)}))
        return tools, found, fetched, created, simulated

    tools, found, fetched, created, simulated = over_http(url(live_server), key, discover)
    names = {tool.name for tool in tools.tools}
    assert {"search", "fetch", "create_draft", "simulate", "start_workflow", "why", "get_run", "list_runs",
            "retry_run", "resume_run", "answer_approval", "list_workflows", "get_workflow"} <= names
    assert {"id": f"deal:{deal.pk}", "title": "Deal “Website”",
            "url": f"http://127.0.0.1:8000/crm/automation/records/deal/{deal.pk}/"} in found["results"]
    assert fetched["title"] == "Website" and fetched["metadata"]["stage"] == "proposal"
    assert '"amount": "12000.00"' in fetched["text"]
    workflow = Workflow.objects.get(pk=created["id"])
    assert (workflow.status, workflow.organization, workflow.created_by) == ("draft", org, teammate)
    assert "Call about {{deal.title}}" in created["yaml"]
    assert simulated["simulated"] and simulated["status"] == "completed"
    assert simulated["steps"][-1]["result"]["title"] == "Call about Website"
    assert not Task.objects.exists()  # a simulation changes nothing

    workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)  # a person reviews and activates it
    start = {"workflow_id": workflow.pk, "entity_type": "deal", "entity_id": str(deal.pk)}

    async def start_it(session: ClientSession):
        dry = answer(await session.call_tool("start_workflow", start))
        unconfirmed = refusal(await session.call_tool("start_workflow", {**start, "dry_run": False}))
        real = answer(await session.call_tool("start_workflow", {**start, "dry_run": False, "confirm": True}))
        return dry, unconfirmed, real

    dry, unconfirmed, real = over_http(url(live_server), key, start_it)
    assert dry["dry_run"] and dry["simulated"]
    assert "confirm: true" in unconfirmed
    run = WorkflowRun.objects.get(simulated=False)
    assert real == {**real, "dry_run": False, "id": run.pk, "workflow": workflow.pk, "simulated": False}
    continue_runs([run.pk])  # the worker's part
    assert Task.objects.get().title == "Call about Website"

    async def follow(session: ClientSession):
        return (answer(await session.call_tool("get_run", {"run_id": run.pk})),
                answer(await session.call_tool("list_runs", {"workflow_id": workflow.pk})),
                answer(await session.call_tool("why", {"entity_type": "deal", "entity_id": str(deal.pk)})))

    got, listed, why = over_http(url(live_server), key, follow)
    assert got["status"] == "completed" and got["steps"][-1]["result"]["title"] == "Call about Website"
    assert [r["id"] for r in listed["runs"]] == [run.pk]
    assert why["decisions"][0] == {**why["decisions"][0], "workflow": workflow.pk, "reason": "started by teammate"}

    calls = list(McpCall.objects.order_by("id").values_list("tool", "outcome", "user__username", "transport",
                                                            "organization__slug"))
    assert [c[:2] for c in calls] == [
        ("search", "ok"), ("fetch", "ok"), ("create_draft", "ok"), ("simulate", "ok"), ("start_workflow", "ok"),
        ("start_workflow", "refused"), ("start_workflow", "ok"), ("get_run", "ok"), ("list_runs", "ok"),
        ("why", "ok")]
    assert {c[2:] for c in calls} == {("teammate", "http", "acme")}
    draft_call = McpCall.objects.get(tool="create_draft")
    assert draft_call.arguments["yaml"].startswith("id: call-about-deal") and draft_call.token_id
    # The organization's admin reads the log, newest first.
    from rest_framework.test import APIClient
    client = APIClient()
    client.force_authenticate(owner)
    page = client.get("/api/v1/mcp-calls/").json()
    assert [row["tool"] for row in page["results"]][:2] == ["why", "list_runs"]
    assert page["results"][0]["user"] == "teammate" and page["results"][0]["outcome"] == "ok"


def test_no_token_or_a_wrong_one_is_a_401(live_server, org, owner):
    for headers in ({}, {"Authorization": "Bearer " + "0" * 64}, {"Authorization": "Token nope"}):
        response = httpx.post(url(live_server), json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                              headers={"Accept": "application/json, text/event-stream", **headers})
        assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Bearer realm="mcp"'
    assert httpx.get(url(live_server), headers={"Authorization": f"Bearer {key_of(owner)}"}).status_code == 405
    assert not McpCall.objects.exists()


def test_an_outsider_finds_nothing_of_the_organization(live_server, org, owner, outsider, deal):
    workflow = make_workflow(org, name="Secret plan")

    async def snoop(session: ClientSession):
        return (refusal(await session.call_tool("fetch", {"id": f"workflow:{workflow.pk}"})),
                refusal(await session.call_tool("get_workflow", {"workflow_id": workflow.pk})),
                refusal(await session.call_tool("why", {"entity_type": "deal", "entity_id": str(deal.pk)})),
                answer(await session.call_tool("search", {"query": "Secret"})))

    fetched, got, why, found = over_http(url(live_server), key_of(outsider, ["read", "draft", "run"]), snoop)
    assert fetched == got == f"No workflow {workflow.pk} in your organizations."
    assert why == f"No deal '{deal.pk}' in your organizations."
    assert found == {"results": []}
    assert set(McpCall.objects.values_list("outcome", "organization__slug")) == {
        ("refused", "rival"), ("ok", "rival")}  # logged in the outsider's own organization


def test_a_viewers_real_start_is_refused_even_with_the_run_scope(live_server, org, viewer, deal):
    workflow = make_workflow(org, trigger_type="manual_deal", trigger_config={})
    start = {"workflow_id": workflow.pk, "entity_type": "deal", "entity_id": str(deal.pk)}

    async def try_it(session: ClientSession):
        return (refusal(await session.call_tool("start_workflow", {**start, "dry_run": False, "confirm": True})),
                refusal(await session.call_tool("start_workflow", start)))

    real, dry = over_http(url(live_server), key_of(viewer, ["read", "draft", "run"]), try_it)
    assert real == "Only ops members and admins of this organization can start workflows."
    assert dry == "Only ops members and admins of this organization can simulate workflows."
    assert not WorkflowRun.objects.exists()


def test_a_token_without_the_scope_is_refused(live_server, org, teammate, deal):
    workflow = make_workflow(org, trigger_type="manual_deal", trigger_config={})
    start = {"workflow_id": workflow.pk, "entity_type": "deal", "entity_id": str(deal.pk)}

    async def try_it(session: ClientSession):
        return (refusal(await session.call_tool("start_workflow", {**start, "dry_run": False, "confirm": True})),
                refusal(await session.call_tool("retry_run", {"run_id": 1})),
                answer(await session.call_tool("list_workflows", {})))

    no_run, no_retry, listed = over_http(url(live_server), key_of(teammate, ["read", "draft"]), try_it)
    assert no_run == "A real start needs a token with the “run” scope; this one can only do a dry run."
    assert no_retry.startswith("This token does not have the “run” scope that retry_run needs (it has: draft, read).")
    assert [w["id"] for w in listed["workflows"]] == [workflow.pk]
    default_key = key_of(teammate)  # made without scopes: MCP reads only

    async def draft(session: ClientSession):
        return refusal(await session.call_tool("create_draft", {"yaml": CALL_ABOUT}))

    assert over_http(url(live_server), default_key, draft).startswith(
        "This token does not have the “draft” scope that create_draft needs (it has: read).")
    assert not WorkflowRun.objects.exists() and Workflow.objects.count() == 1


def test_bad_arguments_are_named_and_change_nothing(live_server, org, teammate):
    async def bad(session: ClientSession):
        return (refusal(await session.call_tool("simulate", {"workflow_id": 1})),
                refusal(await session.call_tool("list_runs", {"limit": 1000})),
                refusal(await session.call_tool("create_draft", {"yaml": "id: x\nname: X\nnodes: 3\n"})),
                refusal(await session.call_tool("no_such_tool", {})))

    missing, too_many, document, unknown = over_http(url(live_server), key_of(teammate, ["read", "draft"]), bad)
    assert missing == "Invalid arguments: 'entity_type' is a required property"
    assert too_many == "Invalid arguments (limit): 1000 is greater than the maximum of 100"
    assert document.startswith("The document has problems: ")
    assert unknown.startswith("No tool “no_such_tool”")
    assert not Workflow.objects.exists()


def test_a_foreign_origin_or_host_is_refused(live_server, org, owner):
    key = key_of(owner)
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    sent = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    ok = httpx.post(url(live_server), json=body, headers=sent)
    assert ok.status_code == 200 and ok.json()["result"]["serverInfo"]["name"] == "crm-automation"
    foreign = httpx.post(url(live_server), json=body, headers={**sent, "Origin": "https://evil.example"})
    assert foreign.status_code == 403 and foreign.text == "Invalid Origin header"
    own = httpx.post(url(live_server), json=body, headers={**sent, "Origin": live_server.url})
    assert own.status_code == 200
    rebound = httpx.post(url(live_server), json=body, headers={**sent, "Host": "evil.example"})
    assert rebound.status_code == 400  # Django's ALLOWED_HOSTS, before the SDK's own check (421)


def test_an_admin_triggers_any_workflow_on_a_record_with_a_reason(live_server, org, owner, deal):
    """The `trigger` verb over MCP: a stage-change workflow started now on a deal that has
    not moved, by an admin, with the reason kept on the run; without a reason it is refused."""
    from tests.conftest import make_workflow

    workflow = make_workflow(org, name="Kickoff")
    key = key_of(owner, ["read", "draft", "run"])
    start = {"workflow_id": workflow.pk, "entity_type": "deal", "entity_id": str(deal.pk), "dry_run": False,
             "confirm": True}

    async def trigger(session: ClientSession):
        return (refusal(await session.call_tool("start_workflow", start)),
                answer(await session.call_tool("start_workflow", {**start, "reason": "the client asked again"})))

    unexplained, started = over_http(url(live_server), key, trigger)
    assert "reason" in unexplained
    run = WorkflowRun.objects.get(pk=started["id"])
    assert run.metadata["started_by"] == "owner" and run.metadata["reason"] == "the client asked again"
