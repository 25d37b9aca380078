"""`manage.py mcp_stdio`: the MCP server over stdio, for desktop clients (Claude Desktop, an IDE)
that start it as a process. The same server and tools as /mcp (api/mcp_server/), acting as the
person whose API token is in CRM_AUTOMATION_TOKEN; the token is checked again on every call, so
revoking it stops this process's calls at once. Stdout carries the protocol only: logs go to
stderr (settings.LOGGING)."""

import os

import anyio
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from rest_framework.exceptions import AuthenticationFailed

from crm_automation.api.mcp_server.caller import Caller, authenticate
from crm_automation.api.mcp_server.server import build_server
from crm_automation.api.models import McpCall

ENV = "CRM_AUTOMATION_TOKEN"


class Command(BaseCommand):
    help = f"Serve the MCP tools over stdin/stdout as the person whose API token is in ${ENV}."

    def handle(self, *args, **options) -> None:
        key = os.environ.get(ENV, "").strip()
        if not key:
            raise CommandError(f"Set {ENV} to your API token (POST /api/v1/auth/token/ with \"scopes\").")

        def caller() -> Caller:
            return authenticate(key, transport=McpCall.Transport.STDIO, base_url=settings.SITE_URL)

        try:
            caller()  # a wrong token stops here, with words, before any client waits on it
        except AuthenticationFailed as exc:
            raise CommandError(f"{ENV}: {exc.detail}") from None
        anyio.run(serve, build_server(caller, McpCall.Transport.STDIO))


async def serve(server: Server) -> None:
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
