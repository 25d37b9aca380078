"""Which run caused a change: the loop guard's memory.

A workflow action that changes a record (update_field moving a deal) runs inside
`caused_by(run, depth)`; the event that change records carries the run and depth + 1, and
dispatch refuses chains deeper than AUTOMATION_MAX_CHAIN_DEPTH.
"""

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Cause:
    run_id: int
    depth: int  # depth of the event the run is handling


_cause: contextvars.ContextVar[Cause | None] = contextvars.ContextVar("automation_cause", default=None)


@contextmanager
def caused_by(run_id: int, depth: int) -> Iterator[None]:
    """Changes made inside carry this run as their cause (the loop guard reads the depth)."""
    token = _cause.set(Cause(run_id, depth))
    try:
        yield
    finally:
        _cause.reset(token)


def current_cause() -> Cause | None:
    return _cause.get()
