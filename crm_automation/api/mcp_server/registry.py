"""The tools, each with the scope it needs, its JSON input schema and its words for the model.
Each family of tools (reads.py, writes.py) registers here with `@tool`; server.py lists them
and calls them."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crm_automation.api.mcp_server.caller import Call

Handler = Callable[[Call, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Tool:
    name: str
    scope: str  # api.models.SCOPES
    description: str
    schema: dict[str, Any]
    handler: Handler
    read_only: bool


TOOLS: dict[str, Tool] = {}


def tool(name: str, *, scope: str, description: str, properties: dict[str, Any] | None = None,
         required: tuple[str, ...] = ()) -> Callable[[Handler], Handler]:
    schema = {"type": "object", "properties": properties or {}, "required": list(required),
              "additionalProperties": False}

    def register(handler: Handler) -> Handler:
        TOOLS[name] = Tool(name=name, scope=scope, description=description, schema=schema, handler=handler,
                           read_only=scope == "read")
        return handler

    return register


def plain(value: object) -> str:
    """JSON for what json cannot write itself: times in ISO 8601, uuids and decimals as text."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)


# Pieces of schemas the tools share.
ID = {"type": ["integer", "string"], "description": "The id (a number)."}
RECORD_KIND = {"type": "string", "enum": ["deal", "lead", "contact", "project"],
               "description": "The kind of record."}
RECORD_ID = {"type": ["string", "integer"],
             "description": "The record's id: a uuid for a deal, lead or project, a number for a contact "
                            "(as search and fetch give them after the colon, e.g. deal:<uuid> → <uuid>)."}
LIMIT = {"type": "integer", "minimum": 1, "maximum": 100, "default": 20, "description": "At most this many."}
ORGANIZATION = {"type": "string", "description": "The organization's slug; needed only by people who belong "
                                                 "to several."}
