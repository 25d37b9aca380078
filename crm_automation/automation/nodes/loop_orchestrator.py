"""`loopMode: ask-orchestrator`: after each iteration the model is asked whether the loop goes on
(`orchestratorPrompt`, a template), answering {"continue": true | false, "reason": "…"}; at most
`maxIterations` iterations (required in this mode).

The question is an `AiCall` like an AI step's, under the key `<loop's step key>:decide:<n>` (n:
the iteration just over), made in the segment and asked after the commit (no lock is held while
the model thinks). Its answer is the decision: read back by key on every later delivery, never
asked again (a redelivered run goes over the same iterations). The organization's AI budget
and the provider's setup are checked before asking; a question that fails (the provider, an
answer that is not a decision, the budget) fails the loop with the reason and its error
policy decides (a retry asks again). A simulation never asks: the loop runs its first iteration and stops, saying so.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crm_automation.automation.ai import providers
from crm_automation.automation.models import AiCall
from crm_automation.automation.nodes.ai import SYSTEM, AiNode, Status
from crm_automation.automation.nodes.base import ActionFailed, ExecutionContext, Result

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState

MODE = "ask-orchestrator"
PROMPT = "orchestratorPrompt"
DECIDE_TASK = ("You decide whether a loop of this workflow runs another iteration. Iteration {done} of at most {cap} "
               "is over (its steps' outputs are in the data). Answer with JSON "
               '{{"continue": true or false, "reason": <one short sentence>}}.')
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["continue", "reason"],
          "properties": {"continue": {"type": "boolean"}, "reason": {"type": "string"}}}
NOT_SIMULATED = {"continue": False, "reason": "not asked in a simulation: the AI model decides after each iteration "
                                             "whether the loop goes on when the workflow runs"}


class Decider(AiNode):
    """The question after an iteration (not a node of its own: the loop asks it)."""

    type = "loop"
    label = "Loop's decision"
    prompt_setting = PROMPT
    default_tokens = 200

    def question(self, config: dict[str, Any], context: str) -> dict[str, Any]:
        return {"schema": SCHEMA, "system": SYSTEM.format(task=DECIDE_TASK.format(
            done=config["_done"], cap=config["maxIterations"]), context=context)}

    def read(self, request: dict[str, Any], completion: providers.Completion) -> dict[str, Any]:
        data = completion.data
        if not isinstance(data, dict) or not isinstance(data.get("continue"), bool):
            raise ActionFailed(f"the model's answer is not a decision {{continue: true or false}}: "
                               f"{completion.text[:200]!r}")
        reason = data.get("reason")
        return {"output": {"continue": data["continue"], "reason": str(reason)[:500] if reason else ""}}


DECIDER = Decider()


@dataclass(frozen=True)
class Asking:
    """The question is made and waits to be asked after the commit."""


ASKING = Asking()


def decision(state: "RunState", place: "Place", index: int) -> dict[str, Any] | Asking | str:
    """After iteration `index`: the decision ({"continue", "reason"}), ASKING while the model
    is asked, or why there is none (the loop fails)."""
    known = state.loop_decisions.get((place, index))
    if known is not None:
        return known
    if state.simulating:
        state.loop_decisions[(place, index)] = NOT_SIMULATED
        return NOT_SIMULATED
    ctx = _context(state, place, index)
    call = AiCall.objects.filter(automation_key=ctx.key).first()
    if call is None:
        config = {**state.node(place[0]).config, "_done": index + 1}
        try:
            call = DECIDER.prepare(config, ctx)  # (checks the provider and the budget)
        except ActionFailed as exc:
            return str(exc)
        call.save()
    elif call.status == Status.SENDING:  # a worker that is gone was asking: ask again (no side effect)
        AiCall.objects.filter(pk=call.pk, status=Status.SENDING).update(status=Status.QUEUED)
        call.status = Status.QUEUED
    if call.status == Status.SUCCEEDED:
        decided: dict[str, Any] = {**(call.answer or {}).get("output", {}), "ai_call_id": call.pk}
        state.loop_decisions[(place, index)] = decided
        return decided
    if call.status == Status.FAILED:
        # The failed question is kept (its tokens count) under a key of its own, so a retry of
        # the loop by its error policy asks again instead of reading the same failure.
        AiCall.objects.filter(pk=call.pk).update(automation_key=f"{ctx.key}:failed:{call.pk}"[:100])
        return f"the AI model could not decide whether the loop goes on: {call.error}"
    state.hand_over(place, ctx, {"ai_call_id": call.pk})
    return ASKING


def _context(state: "RunState", place: "Place", index: int) -> ExecutionContext:
    run = state.run
    items = state.loop_items.get(place) or []
    loop = {"index": index, "current": items[index] if index < len(items) else None}
    return ExecutionContext(run_id=run.pk, step=f"{state.step(place)}:decide:{index}",
                            organization_id=run.organization_id, trigger_type=run.trigger_type,
                            depth=run.event.depth, template_context={**state.context_at(place), "loop": loop},
                            record=state.record, simulating=state.simulating)


def deliver(items: list[tuple[ExecutionContext, Result]], deadline: float | None) -> list[bool]:
    """Ask the questions handed over (outside any transaction); True for each that is settled."""
    return [outcome is not None for outcome in DECIDER.deliver(items, deadline)]
