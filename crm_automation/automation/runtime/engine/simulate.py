"""The engine without effects, for Simulate: the real walk of one run inside the caller's
transaction (which the caller rolls back), with waits fast-forwarded, questions answered
"approved" and nothing delivered (an external step completes with a stand-in result)."""

from collections.abc import Callable
from typing import Any

from crm_automation.automation.models import RunStatus, StepStatus, WorkflowRun
from crm_automation.automation.runtime.engine.runs import final_status, load_states, lock_records
from crm_automation.automation.runtime.engine.walk import Rows, Walk, step_all

MAX_PASSES = 200


def walk_without_effects(run: WorkflowRun, stand_in: Callable[[str, dict[str, Any]], dict[str, Any]]
                         ) -> tuple[str, str, list[dict[str, Any]]]:
    """Walk `run` to its end. `stand_in(node type, result)`: what an undelivered external step
    is taken to have returned. Returns (status, error, the step rows it would have written)."""
    (state,) = load_states([run], simulating=True)
    rows: Rows = {}
    for _ in range(MAX_PASSES):
        lock_records([state])
        step_all([state], rows)
        if not state.delivering:
            break
        walk = Walk(rows)
        for place, (ctx, result) in state.to_deliver():  # nothing is delivered
            state.delivered(place)
            result = stand_in(state.node(place[0]).type, result)
            walk.record(state, place, StepStatus.COMPLETED, result=result, ctx=ctx, new_attempt=False)
            walk.finished(state, place, result)
    noted = [{"node_id": place[0], "token": place[1], **values} for _, place, values in rows.values()]
    if state.paused:
        return RunStatus.PAUSED, state.paused, noted
    status = final_status(state.outcomes, state.aborted)
    return status, ("" if status == RunStatus.COMPLETED else (state.failure or state.halted)), noted
