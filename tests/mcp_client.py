"""The SDK's own MCP client, for the tests of the MCP server (tests/test_mcp_*.py): a session over
streamable HTTP against `live_server`, run from a synchronous test with anyio."""

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

Steps = Callable[[ClientSession], Awaitable[Any]]


def over_http(url: str, key: str | None, steps: Steps, headers: dict[str, str] | None = None) -> Any:
    """Opens a session at `url` with `key` (sent as a Bearer token), initializes it, runs `steps`
    with it and returns what they return."""
    sent = {**({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}

    async def main() -> Any:
        async with httpx.AsyncClient(headers=sent, timeout=30) as http, \
                streamable_http_client(url, http_client=http) as (read, write, _), \
                ClientSession(read, write) as session:
            await session.initialize()
            return await steps(session)

    return anyio.run(main)


def answer(result: types.CallToolResult) -> dict:
    """A tool's JSON answer (it must have succeeded)."""
    assert not result.isError, result.content
    assert result.structuredContent is not None
    text = result.content[0]
    assert isinstance(text, types.TextContent) and json.loads(text.text) == result.structuredContent
    return result.structuredContent


def refusal(result: types.CallToolResult) -> str:
    """A refused call's message."""
    assert result.isError, result.structuredContent
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    return text.text
