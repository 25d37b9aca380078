"""What a hostile or broken client sends to /mcp gets a clear 4xx and changes nothing: a body that
is not JSON or not a JSON-RPC message, the wrong content type, a body over the limit, a header
that is not a token, arguments of the wrong shape, an id that is no id."""

import dataclasses

import httpx
import pytest
from mcp import ClientSession

from crm_automation.api.mcp_server.server import TOOLS  # (where the tools are registered: reads, writes)
from crm_automation.api.models import McpCall
from crm_automation.api.tokens import token_create
from crm_automation.automation.models import Workflow
from tests.mcp_client import over_http, refusal

pytestmark = pytest.mark.django_db(transaction=True)
ACCEPT = "application/json, text/event-stream"


@pytest.fixture
def post(live_server, teammate):
    key = token_create(user=teammate, scopes=["read", "draft", "run"])[1]

    def send(content: bytes, content_type: str = "application/json", **headers: str) -> httpx.Response:
        return httpx.post(f"{live_server.url}/mcp", content=content, headers={
            "Authorization": f"Bearer {key}", "Accept": ACCEPT, "Content-Type": content_type, **headers})

    return send


def test_bodies_that_are_no_message_are_a_4xx(post, org):
    assert post(b"{not json").status_code == 400
    assert post(b'{"jsonrpc": "2.0", "method": 7}').status_code == 400
    assert post(b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}', "text/plain").status_code == 400
    assert post(b"[" * 100_000).status_code == 400
    assert post(b'"' + b"x" * 1_100_000 + b'"').status_code == 413
    assert not McpCall.objects.exists()


def test_a_header_that_is_not_a_token_is_a_401(live_server, org):
    for value in ("Bearer", "Bearer a b", "Basic dXNlcjpwdw==", "Bearer " + "é" * 64, "Token 12\x01"):
        response = httpx.post(f"{live_server.url}/mcp", content=b"{}",
                              headers={"Authorization": value.encode("latin-1"), "Accept": ACCEPT,
                                       "Content-Type": "application/json"})
        assert response.status_code == 401, value


def test_arguments_of_the_wrong_shape_and_ids_that_are_no_ids_are_refused(live_server, org, teammate):
    key = token_create(user=teammate, scopes=["read", "draft", "run"])[1]

    async def hostile(session: ClientSession):
        return [refusal(await session.call_tool(name, args)) for name, args in (
            ("fetch", {"id": "workflow:99999999999999999999999"}),
            ("fetch", {"id": "deal:not-a-uuid"}),
            ("fetch", {"id": "user:1"}),
            ("get_run", {"run_id": True}),
            ("why", {"entity_type": "task", "entity_id": "1"}),
            ("create_draft", {"yaml": "a: &x [1]\nb: *x\n"}),
            ("create_draft", {"yaml": "x", "description": "y"}),
            ("search", {"query": "x", "extra": 1}),
        )]

    answers = over_http(f"{live_server.url}/mcp", key, hostile)
    assert answers[0] == "No workflow 99999999999999999999999 in your organizations." or \
        answers[0].startswith("No workflow")
    assert answers[1] == "No deal 'not-a-uuid' in your organizations."
    assert answers[2].startswith("No 'user:1'")
    assert answers[3].startswith("Invalid arguments (run_id)")
    assert answers[4].startswith("Invalid arguments (entity_type)")
    assert answers[5].startswith("The document has problems")
    assert answers[6].startswith("Give either `yaml`")
    assert answers[7].startswith("Invalid arguments: Additional properties are not allowed")
    assert not Workflow.objects.exists()
    assert set(McpCall.objects.values_list("outcome", flat=True)) == {"refused"}


def test_a_fault_of_ours_is_a_tool_error_without_a_traceback_and_is_logged(live_server, org, teammate,
                                                                           monkeypatch):
    def broken(call, args):
        raise RuntimeError("secret internals")

    monkeypatch.setitem(TOOLS, "list_workflows", dataclasses.replace(TOOLS["list_workflows"], handler=broken))
    key = token_create(user=teammate)[1]

    async def call(session: ClientSession):
        return refusal(await session.call_tool("list_workflows", {}))

    said = over_http(f"{live_server.url}/mcp", key, call)
    assert said.startswith("list_workflows failed because of a fault on our side; it was logged.")
    assert "secret internals" not in said and "Traceback" not in said
    assert McpCall.objects.get().outcome == "error"


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


@pytest.mark.parametrize("origin, allowed, status", [
    ("https://crm.example.com", [], 200),  # the site itself, on a host of ".example.com"
    ("https://other.example.com", [], 403),
    ("https://app.example.org", ["https://app.example.org"], 200),  # MCP_ALLOWED_ORIGINS
    ("https://app.example.org:8443", ["https://app.example.org:*"], 200),
    ("null", ["https://app.example.org"], 403),
])
def test_origins_are_the_sites_own_or_the_configured_ones(client, settings, teammate, origin, allowed, status):
    settings.ALLOWED_HOSTS, settings.MCP_ALLOWED_ORIGINS = [".example.com"], allowed
    key = token_create(user=teammate)[1]
    response = client.post("/mcp", INITIALIZE, content_type="application/json", HTTP_HOST="crm.example.com",
                           HTTP_ORIGIN=origin, HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_ACCEPT=ACCEPT)
    assert response.status_code == status, response.content
