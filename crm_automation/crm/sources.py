"""Where a change comes from (docs/product.md#bulk-operations): every recorded change carries its
source, and a change made as part of a bulk operation carries the operation and its size.

Sources: ``user`` (a person in the admin or the pages), ``api`` (the REST API and the MCP
server's tools), ``import`` and
``bulk`` (an import command or a bulk service/admin action), ``workflow`` (a workflow's step;
also a run a schedule started), ``system`` (anything else: the shell, migrations).

Entry points set it: a middleware for requests (by path), `bulk_operation` around imports and
bulk services; the outbox reads it when it records the change, and says ``workflow`` when a
run caused the change. It is a context variable, so threads and async tasks keep their own.
"""

import contextvars
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

USER, API, IMPORT, BULK, WORKFLOW, SYSTEM = "user", "api", "import", "bulk", "workflow", "system"
SOURCES = (USER, API, IMPORT, BULK, WORKFLOW, SYSTEM)


@dataclass(frozen=True)
class Source:
    kind: str
    operation: str = ""  # a bulk operation's id (uuid), shared by all its changes
    size: int = 1  # how many records the operation changes

    def as_payload(self) -> dict:
        if not self.operation:
            return {"source": self.kind}
        return {"source": self.kind, "bulk": {"id": self.operation, "size": self.size}}


_DEFAULT = Source(SYSTEM)
_current: contextvars.ContextVar[Source] = contextvars.ContextVar("change_source", default=_DEFAULT)


def current_source() -> Source:
    return _current.get()


@contextmanager
def changes_from(kind: str) -> Iterator[None]:
    """Changes made inside come from `kind` (a request's middleware, a command)."""
    token = _current.set(Source(kind))
    try:
        yield
    finally:
        _current.reset(token)


@contextmanager
def bulk_operation(kind: str, size: int) -> Iterator[str]:
    """Changes made inside are one operation of `size` records from `kind` (import or bulk):
    workflows decide per operation whether to run for each record, once as a digest, or hold
    the runs for review (automation/bulk.py). Yields the operation's id."""
    operation = str(uuid.uuid4())
    token = _current.set(Source(kind, operation, size))
    try:
        yield operation
    finally:
        _current.reset(token)


class SourceMiddleware:
    """Requests' changes come from a person (admin, pages) or from the API (/api/)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        with changes_from(API if request.path.startswith("/api/") else USER):
            return self.get_response(request)
