"""Streamable HTTP at /mcp, served by the project's WSGI servers (runserver, gunicorn).

The SDK's transport is an ASGI application. This view authenticates the token, then hands the
request to a fresh stateless `StreamableHTTPSessionManager` (JSON answers, no sessions: every
POST carries one JSON-RPC message and gets its answer in the response) inside
`async_to_sync`, with an ASGI scope made from the Django request, a `receive` that gives the
body once and a `send` that collects the answer. The tools run back on this request's thread
(server.py), so they use its database connection.

Refused before the SDK sees the request: no or a wrong token (401, `WWW-Authenticate`), GET and
DELETE (405: in stateless mode there is no stream to open and no session to end; the SDK's client
copes), a person over the API's request budget (429, counted with their API requests), a body
over 1 MB (413) or nested too deep (400). Refused by the SDK's TransportSecuritySettings (DNS
rebinding protection): a Host that is not one of ALLOWED_HOSTS (421; Django's own check answers
400 first for most) and an Origin that is not one of MCP_ALLOWED_ORIGINS or the site's own (403).
"""

import re
from typing import Any

import anyio
from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.request import split_domain_port, validate_host
from django.views.decorators.csrf import csrf_exempt
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request
from rest_framework.views import APIView
from starlette.types import Message

from crm_automation.api.mcp_server.caller import Caller, authenticate
from crm_automation.api.mcp_server.server import build_server
from crm_automation.api.models import McpCall
from crm_automation.api.throttling import PerPerson
from crm_automation.bounded_reader import PAYLOAD, InputRefused, read_json

AUTHORIZATION = re.compile(r"(?:Token|Bearer)\s+(\S+)\s*", re.IGNORECASE)
MAX_BODY = 1_000_000  # one JSON-RPC message; a YAML document in it is at most 200,000 bytes


def _unauthorized(message: str) -> JsonResponse:
    response = JsonResponse({"error": "unauthorized", "detail": message}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="mcp"'
    return response


def security_settings(request: HttpRequest) -> TransportSecuritySettings:
    """ALLOWED_HOSTS as the SDK's host patterns. The SDK knows exact hosts (and host:* for any port)
    only: for Django's ".example.com" and "*" the request's own host is allowed when Django's own
    check accepts it. Origins: MCP_ALLOWED_ORIGINS, plus the site itself (SITE_URL) and
    http(s)://<an allowed exact host> on any port."""
    hosts: list[str] = []
    raw_host = request.META.get("HTTP_HOST", "")
    for allowed in settings.ALLOWED_HOSTS:
        if allowed == "*" or allowed.startswith("."):
            domain, _ = split_domain_port(raw_host)
            if domain and validate_host(domain, [allowed]):
                hosts.append(raw_host)
        else:
            hosts += [allowed, f"{allowed}:*"]
    origins = list(settings.MCP_ALLOWED_ORIGINS) + [settings.SITE_URL]
    origins += [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=origins)


def _scope(request: HttpRequest) -> dict[str, Any]:
    """The ASGI scope of the request (headers as bytes, as the WSGI server received them)."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in request.headers.items()]
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
            "scheme": request.scheme, "path": request.path, "raw_path": request.path.encode(), "root_path": "",
            "query_string": request.META.get("QUERY_STRING", "").encode("latin-1"), "headers": headers,
            "client": (request.META.get("REMOTE_ADDR", ""), 0),
            "server": (request.META.get("SERVER_NAME", ""), int(request.META.get("SERVER_PORT") or 0))}


async def _answer(caller: Caller, scope: dict[str, Any], body: bytes,
                  security: TransportSecuritySettings) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    sent: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray()}
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await anyio.sleep_forever()  # the client stays connected until the answer is sent
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            sent["status"], sent["headers"] = message["status"], list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            sent["body"] += message.get("body", b"")

    manager = StreamableHTTPSessionManager(app=build_server(lambda: caller, McpCall.Transport.HTTP), stateless=True,
                                           json_response=True, security_settings=security,
                                           max_request_body_size=MAX_BODY + 1)  # (checked before)
    async with manager.run():
        await manager.handle_request(scope, receive, send)
    return sent["status"], sent["headers"], bytes(sent["body"])


@csrf_exempt
def mcp_endpoint(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        refused = JsonResponse({"error": "method_not_allowed", "detail": "Send MCP messages with POST (this "
                                "server is stateless: no event stream, no sessions)."}, status=405)
        refused["Allow"] = "POST"
        return refused
    found = AUTHORIZATION.fullmatch(request.headers.get("Authorization", ""))
    if found is None:
        return _unauthorized("Send your API token: Authorization: Bearer <token> (or Token <token>).")
    try:
        caller = authenticate(found.group(1), transport=McpCall.Transport.HTTP, base_url=settings.SITE_URL)
    except AuthenticationFailed as exc:
        return _unauthorized(f"{exc.detail} Make a token: POST /api/v1/auth/token/.")
    counted = Request(request)
    counted.user = caller.user  # the throttle counts per person: the API's budget, shared with it
    throttle = PerPerson()
    if not throttle.allow_request(counted, APIView()):
        busy = JsonResponse({"error": "throttled", "detail": "Too many requests: this budget is shared with the "
                             "API (API_THROTTLE_RATE); try again later."}, status=429)
        busy["Retry-After"] = str(int(throttle.wait() or 1))
        return busy
    body = request.body
    if len(body) > MAX_BODY:
        return JsonResponse({"error": "too_large", "detail": f"A message is at most {MAX_BODY:,} bytes."}, status=413)
    try:
        # The SDK's parser gives up on deep nesting with a RecursionError (a 500): the bounded
        # reader refuses it, and too many values, first. The SDK reads the body again.
        read_json(body, PAYLOAD)
    except InputRefused as exc:
        return JsonResponse({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": str(exc)}},
                            status=400)
    status, headers, body = async_to_sync(_answer)(caller, _scope(request), body, security_settings(request))
    response = HttpResponse(body, status=status)
    for name, value in headers:
        if name.lower() not in (b"content-length", b"connection"):
            response[name.decode("latin-1")] = value.decode("latin-1")
    return response
