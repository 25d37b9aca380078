"""The MCP server over stdio: `manage.py mcp_stdio` started as a process by the SDK's own stdio
client, against the test database, as the person whose token is in CRM_AUTOMATION_TOKEN: the
same tools as over HTTP, calls logged with transport stdio, a token revoked meanwhile refused at
the next call, and no token or a wrong one stops the command with words."""

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from crm_automation.api.models import McpCall
from crm_automation.api.tokens import token_create, tokens_revoke_all
from crm_automation.automation.models import WorkflowRun
from tests.conftest import make_workflow
from tests.mcp_client import answer, refusal
from tests.test_e2e_qcluster import database_url

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def environment(key: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url(), "CRM_AUTOMATION_TOKEN": key}


def over_stdio(key: str, steps):
    params = StdioServerParameters(command=sys.executable, args=["manage.py", "mcp_stdio"], env=environment(key),
                                   cwd=ROOT)

    async def main():
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            return await steps(session)

    return anyio.run(main)


def test_a_desktop_client_uses_the_same_tools(org, teammate, deal):
    workflow = make_workflow(org, name="Call about it", trigger_type="manual_deal", trigger_config={})
    key = token_create(user=teammate, scopes=["read", "draft", "run"])[1]
    start = {"workflow_id": workflow.pk, "entity_type": "deal", "entity_id": str(deal.pk)}

    async def steps(session: ClientSession):
        tools = await session.list_tools()
        found = answer(await session.call_tool("search", {"query": "Call about"}))
        fetched = answer(await session.call_tool("fetch", {"id": f"workflow:{workflow.pk}"}))
        started = answer(await session.call_tool("start_workflow", {**start, "dry_run": False, "confirm": True}))
        return tools, found, fetched, started

    tools, found, fetched, started = over_stdio(key, steps)
    assert "start_workflow" in {tool.name for tool in tools.tools}
    assert found["results"][0]["id"] == f"workflow:{workflow.pk}"
    assert fetched["text"].startswith("id: call-about-it\nname: Call about it\n")
    assert started["id"] == WorkflowRun.objects.get(simulated=False).pk
    assert list(McpCall.objects.order_by("id").values_list("tool", "outcome", "transport", "user__username")) == [
        ("search", "ok", "stdio", "teammate"), ("fetch", "ok", "stdio", "teammate"),
        ("start_workflow", "ok", "stdio", "teammate")]


def test_a_token_revoked_while_the_process_runs_is_refused_at_the_next_call(org, teammate):
    key = token_create(user=teammate)[1]

    async def steps(session: ClientSession):
        before = answer(await session.call_tool("list_workflows", {}))
        await anyio.to_thread.run_sync(lambda: tokens_revoke_all(user=teammate))
        return before, refusal(await session.call_tool("list_workflows", {}))

    before, after = over_stdio(key, steps)
    assert before == {"workflows": [], "total": 0}
    assert after.startswith("The token is not valid any more")
    assert McpCall.objects.filter(outcome="refused", user=None, transport="stdio").exists()


def test_no_token_or_a_wrong_one_stops_the_command_with_words(org):
    for key, words in (("", "Set CRM_AUTOMATION_TOKEN to your API token"), ("f" * 64, "Invalid token.")):
        done = subprocess.run([sys.executable, "manage.py", "mcp_stdio"], cwd=ROOT, env=environment(key),
                              input=b"", capture_output=True, timeout=60)
        assert done.returncode == 1 and words in done.stderr.decode(), done.stderr.decode()[-2000:]
        assert done.stdout == b""  # stdout is the protocol's: nothing else is written there
