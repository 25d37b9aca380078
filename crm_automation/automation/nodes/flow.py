"""Nodes the engine runs inline, inside the segment's transaction: no side effect outside the
database, nothing to batch or to key (wait, condition, parallel, merge, loop, function, user
input). Each node type is one module with its checks, its run, how it is read back when a run
resumes, and its name in words; `control.FLOW` lists them.

A node acts on the run only through `Steps` (the engine's walk): it records its step row,
goes on through some of its handles, fails, or makes the run wait.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, overload

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState, StepRow

Problems = list[tuple[str, str]]  # (where, what is wrong)


class Steps(Protocol):
    """What a node may do to the run being walked."""

    now: datetime  # one clock per pass: runs that wait alike wake alike

    def record(self, state: "RunState", place: "Place", status: str, *, result: dict[str, Any] | None = None,
               error: str = "", started: datetime | None = None, new_attempt: bool = True,
               counts: bool = True) -> None: ...

    def follow(self, state: "RunState", place: "Place", handles: set[str] | None = None) -> None: ...

    def finished(self, state: "RunState", place: "Place", result: dict[str, Any] | None = None) -> None: ...

    def fail(self, state: "RunState", place: "Place", error: str, *, result: dict[str, Any] | None = None,
             started: datetime | None = None, new_attempt: bool = True) -> None: ...

    @overload
    def due(self, state: "RunState", previous: "StepRow", at: datetime) -> datetime: ...

    @overload
    def due(self, state: "RunState", previous: "StepRow", at: datetime | None) -> datetime | None: ...


class FlowNode:
    type: str = ""
    label: str = ""
    example: str = "{}"  # a config that works, for "must be an object, e.g. …"
    handles_when_skipped: set[str] | None = None  # a failed step skipped: the ways on (None: its one way)

    def validate(self, config: dict[str, Any], *, trigger_type: str, organization_id: int) -> Problems:
        return [(f"config.{k}", f"unknown setting; a {self.label.lower()} node takes none") for k in sorted(config)]

    def describe(self, config: Any) -> str:
        """The node's name in words, from its settings."""
        return self.label

    def accepts(self, state: "RunState", place: "Place", source: str) -> bool:
        """A path arrives from `source`: whether the node runs now (a merge may wait for more)."""
        return True

    def run(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow | None") -> None:
        raise NotImplementedError

    def read_back(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow") -> None:
        """It finished in an earlier delivery: go on as it decided then, never deciding again."""
        steps.finished(state, place, previous.result or {})
