"""The audit log of MCP calls (api.models.McpCall): every call, whatever its outcome, with its
arguments as sent less what must not be kept (anything named like a secret) and cut to a size
a person reads (a YAML document is kept as its first lines)."""

import logging
from typing import Any

from crm_automation.api.models import McpCall

log = logging.getLogger("crm_automation.mcp")

SECRET_WORDS = ("password", "secret", "token", "authorization", "api_key", "apikey", "credential")
MAX_TEXT = 500  # characters of one string argument that are kept
MAX_ITEMS = 50


def cleaned(value: Any, depth: int = 0) -> Any:
    """`value` with secrets replaced and long texts cut (bounded in depth and size)."""
    if depth > 4:
        return "…"
    if isinstance(value, dict):
        return {str(k).replace("\x00", "")[:64]: "(removed)" if any(w in str(k).lower() for w in SECRET_WORDS)
                else cleaned(v, depth + 1) for k, v in list(value.items())[:MAX_ITEMS]}
    if isinstance(value, list):
        return [cleaned(v, depth + 1) for v in value[:MAX_ITEMS]]
    if isinstance(value, str):
        text = value.replace("\x00", "")
        return text if len(text) <= MAX_TEXT else f"{text[:MAX_TEXT]}… ({len(text):,} characters)"
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:MAX_TEXT]


def record_call(*, user: Any, token_id: str, transport: str, tool: str, arguments: Any, outcome: str,
                message: str, duration_ms: int, organization_id: int | None) -> None:
    """Writes the row. A failure to write it is logged and does not change the call's answer: the
    call has already happened (and a log must never turn a done change into an error)."""
    try:
        McpCall.objects.create(user=user, token_id=token_id, transport=transport, tool=tool[:64],
                               arguments=cleaned(arguments if isinstance(arguments, dict) else {}),
                               outcome=outcome, message=message[:4000], duration_ms=max(0, duration_ms),
                               organization_id=organization_id)
    except Exception:
        log.exception("The MCP call %s could not be written to the audit log", tool)
    log.info("MCP %s %s: %s", tool, outcome, message,
             extra={"tool": tool, "outcome": outcome, "transport": transport, "token_id": token_id,
                    "user_id": getattr(user, "pk", None), "organization_id": organization_id,
                    "duration_ms": duration_ms})
