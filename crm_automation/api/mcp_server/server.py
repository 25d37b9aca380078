"""The one MCP server (the SDK's low-level `Server`) behind both transports: it lists the tools
(registry.TOOLS) and calls one at a time, on the thread and database connection of the caller
(`sync_to_async(thread_sensitive=True)`: over HTTP, the Django request's).

A call is checked in this order, and every call is written to the audit log (audit.py):
the token (still valid: over stdio it is checked again on each call), the tool's scope, the
arguments against the tool's schema, then the tool itself, whose service checks the role. A
refusal of any kind is a tool error whose text says why (never a traceback); a fault of ours is
a tool error that says so, logged with its traceback.
"""

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import jsonschema
from asgiref.sync import sync_to_async
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db import close_old_connections
from mcp import types
from mcp.server.lowlevel import Server
from rest_framework.exceptions import AuthenticationFailed

from crm_automation.api.mcp_server import reads, writes  # noqa: F401 (they register their tools)
from crm_automation.api.mcp_server.audit import record_call
from crm_automation.api.mcp_server.caller import Call, Caller, MissingScope, NotFound
from crm_automation.api.mcp_server.registry import TOOLS, Tool, plain
from crm_automation.api.models import McpCall
from crm_automation.automation.definition.documents import DocumentError
from crm_automation.crm.sources import API, changes_from
from crm_automation.refusals import Refused

log = logging.getLogger("crm_automation.mcp")

NAME = "crm-automation"
INSTRUCTIONS = (
    "Workflows of a CRM's automation (what starts them and what they do), their runs and the CRM's records "
    "(deals, leads, contacts, projects). Find things with search and read them with fetch; ids look like "
    "workflow:12, run:34, deal:<uuid>. Drafts and simulations change nothing live; start_workflow is a dry run "
    "unless the person confirms a real start. A refusal's text says why.")


def _reason(exc: Exception) -> str:
    """The words of a refusal, whatever its type (crm_automation/refusals.py)."""
    if isinstance(exc, DocumentError):
        return "The document has problems: " + "; ".join(exc.messages)
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return " ".join(f"{field}: {m}" if field != "__all__" else m
                            for field, errors in exc.message_dict.items() for m in errors)
        return " ".join(exc.messages)
    if isinstance(exc, PermissionDenied):
        return str(exc) or "Your role in this organization does not allow it."
    if isinstance(exc, ObjectDoesNotExist):
        return "Not found in your organizations."
    if isinstance(exc, Refused):
        return exc.message
    if isinstance(exc, jsonschema.ValidationError):
        return exc.message
    return str(exc)


REFUSALS = (NotFound, MissingScope, Refused, PermissionDenied, ValidationError, DocumentError, ObjectDoesNotExist,
            jsonschema.ValidationError)


def _checked(tool: Tool, caller: Caller, arguments: dict[str, Any]) -> None:
    if tool.scope not in caller.scopes:
        raise MissingScope(f"This token does not have the “{tool.scope}” scope that {tool.name} needs (it has: "
                           f"{', '.join(sorted(caller.scopes)) or 'none'}). Make a token with it: POST "
                           "/api/v1/auth/tokens/ with {\"scopes\": [...]}.")
    try:
        jsonschema.validate(arguments, tool.schema)
    except jsonschema.ValidationError as exc:
        where = ".".join(str(p) for p in exc.absolute_path)
        raise jsonschema.ValidationError(f"Invalid arguments{f' ({where})' if where else ''}: {exc.message}") \
            from None


def call_tool(get_caller: Callable[[], Caller], transport: str, name: str, arguments: dict[str, Any]
              ) -> types.CallToolResult:
    """One tool call, answered and written to the audit log (synchronous: the ORM's side)."""
    started = time.monotonic()
    if transport == McpCall.Transport.STDIO:
        close_old_connections()  # a long-lived process: as Django does around each request
    user, token, organization_id = None, "", None
    outcome, message, result = McpCall.Outcome.OK, "", None
    try:
        caller = get_caller()
        user, token = caller.user, caller.token_id
        call = Call(caller)
        organization_id = call.organization_id
        try:
            tool = TOOLS.get(name)
            if tool is None:
                raise NotFound(f"No tool “{name}”: the tools are {', '.join(sorted(TOOLS))}.")
            _checked(tool, caller, arguments)
            with changes_from(API):  # records changed by a call say they came from an integration
                result = json.loads(json.dumps(tool.handler(call, arguments), default=plain))
        finally:
            organization_id = call.organization_id
    except AuthenticationFailed as exc:
        outcome, message = McpCall.Outcome.REFUSED, f"The token is not valid any more ({exc.detail}): make a new one."
    except REFUSALS as exc:
        outcome, message = McpCall.Outcome.REFUSED, _reason(exc)
    except Exception:
        log.exception("MCP tool %s failed", name)
        # Each tool makes at most one change, through one service transaction: it was made or not.
        outcome, message = McpCall.Outcome.ERROR, (f"{name} failed because of a fault on our side; it was logged. "
                                                   "Look at what it acts on (get_run, get_workflow) before trying "
                                                   "again.")
    record_call(user=user, token_id=token, transport=transport, tool=name, arguments=arguments, outcome=outcome,
                message=message, duration_ms=int((time.monotonic() - started) * 1000),
                organization_id=organization_id)
    if transport == McpCall.Transport.STDIO:
        close_old_connections()
    if result is None:
        return types.CallToolResult(content=[types.TextContent(type="text", text=message)], isError=True)
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(result, indent=1))],
                                structuredContent=result, isError=False)


def tool_list() -> list[types.Tool]:
    return [types.Tool(name=t.name, description=f"{t.description} (Token scope: {t.scope}.)", inputSchema=t.schema,
                       annotations=types.ToolAnnotations(readOnlyHint=t.read_only, openWorldHint=False,
                                                         destructiveHint=t.scope == "run"))
            for t in TOOLS.values()]


def build_server(get_caller: Callable[[], Caller], transport: str) -> Server:
    """The server for one caller: `get_caller` gives the caller at each call (over stdio it checks
    the token again, so a revoked token stops working at once)."""
    server: Server = Server(NAME, instructions=INSTRUCTIONS)
    answer = sync_to_async(call_tool, thread_sensitive=True)

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return tool_list()

    @server.call_tool(validate_input=False)  # call_tool validates: a bad argument is audited too
    async def handle(name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        return await answer(get_caller, transport, name, arguments or {})

    return server
