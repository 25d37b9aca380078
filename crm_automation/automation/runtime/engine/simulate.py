"""The engine without effects, for Simulate and Live Debug: the real walk of one run inside the
caller's transaction (which the caller rolls back), with waits fast-forwarded, questions
answered "approved" and nothing delivered (an external step completes with a stand-in result).
Live debug names the waits to fast-forward and the answers given; the walk stops, as a real run
would wait, at any other wait or question."""

from collections.abc import Callable
from typing import Any

from crm_automation.automation.models import RunStatus, StepStatus, WorkflowRun
from crm_automation.automation.nodes.base import ExecutionContext
from crm_automation.automation.runtime.engine.runs import final_status, load_states, lock_records
from crm_automation.automation.runtime.engine.walk import Rows, RunState, Walk, step_all

MAX_PASSES = 200
# (node id, node type, result, the step's context) → result
StandIn = Callable[[str, str, dict[str, Any], ExecutionContext], dict[str, Any]]


def walk_without_effects(run: WorkflowRun, stand_in: StandIn, prepare: Callable[[RunState], None] | None = None
                         ) -> tuple[str, str, list[dict[str, Any]]]:
    """Walk `run` to its end (or, in live debug, to a wait or question not passed). `stand_in`:
    what an undelivered external step is taken to have returned; `prepare`: sets the debug's
    choices on the run's state. Returns (status, error, the step rows it would have written)."""
    (state,) = load_states([run], simulating=True)
    if prepare is not None:
        prepare(state)
    rows: Rows = {}
    for _ in range(MAX_PASSES):
        lock_records([state])
        step_all([state], rows)
        if not state.delivering:
            break
        walk = Walk(rows)
        for place, (ctx, result) in state.to_deliver():  # nothing is delivered
            state.delivered(place)
            node = state.node(place[0])
            result = stand_in(node.id, node.type, result, ctx)
            walk.record(state, place, StepStatus.COMPLETED, result=result, ctx=ctx, new_attempt=False)
            walk.finished(state, place, result)
    noted = [{"node_id": place[0], "token": place[1], **values} for _, place, values in rows.values()]
    if state.paused:
        return RunStatus.PAUSED, state.paused, noted
    if state.parked and not state.done:
        return RunStatus.WAITING, "", noted
    status = final_status(state.outcomes, state.aborted)
    return status, ("" if status == RunStatus.COMPLETED else (state.failure or state.halted)), noted
