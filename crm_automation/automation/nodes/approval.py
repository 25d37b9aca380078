"""User-input nodes (approval gates, docs/product.md#approvals): the run asks a person and waits
for the answer.

Config (the document format's names): `promptText` (a template), `role` (who may answer:
admin, the default, or ops; admins may always answer), optional `timeoutAmount` +
`timeoutUnit`. The node's ways out are its handles `approved`, `rejected` and `timed-out` (a
side with no edge ends that path). The answer is the node's output: {{Approval.decision}},
{{Approval.comment}}, {{Approval.answered_by}}.

Asking writes the question on the step row (status waiting) and tells the people who may
answer (alerts.py); answering (run_controls.run_answer) writes the answer on the row and wakes
the run, which reads it and goes on by its side. Nothing polls meanwhile.
"""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from crm_automation.automation.definition.templating import render
from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes.base import template_errors
from crm_automation.automation.nodes.flow import FlowNode, Problems, Steps
from crm_automation.automation.nodes.wait import UNITS
from crm_automation.automation.ops import paused_run_alerts as alerts

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState, StepRow

USER_INPUT = "user_input"
APPROVED, REJECTED, TIMED_OUT = "approved", "rejected", "timed-out"
HANDLES = (APPROVED, REJECTED, TIMED_OUT)
ROLES = ("admin", "ops")
ALLOWED = {"promptText", "role", "timeoutAmount", "timeoutUnit"}


def validate(config: object, *, trigger_type: str) -> list[tuple[str, str]]:
    if not isinstance(config, dict):
        return [("config", 'must be an object, e.g. {"promptText": "Approve a 20% discount on {{deal.title}}?"}')]
    errors = [(f"config.{k}", f"unknown setting; a user-input node takes {', '.join(sorted(ALLOWED))}")
              for k in sorted(set(config) - ALLOWED)]
    if not config.get("promptText"):
        errors.append(("config.promptText", "is required: the question the person answers"))
    else:
        errors += template_errors("config.promptText", config["promptText"], trigger_type)
    if config.get("role", "admin") not in ROLES:
        errors.append(("config.role", f"must be one of {', '.join(ROLES)} (who may answer)"))
    if "timeoutAmount" in config or "timeoutUnit" in config:
        amount, unit = config.get("timeoutAmount"), config.get("timeoutUnit", "hours")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
            errors.append(("config.timeoutAmount", "must be a whole number, 1 or more"))
        if unit not in UNITS:
            errors.append(("config.timeoutUnit", f"must be one of {', '.join(UNITS)}"))
    return errors


def ask(config: dict[str, Any], context: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The question as the step row keeps it."""
    timeout = None
    if config.get("timeoutAmount"):
        timeout = now + timedelta(seconds=config["timeoutAmount"] * UNITS[config.get("timeoutUnit", "hours")])
    return {"prompt": render(config["promptText"], context).text, "role": config.get("role", "admin"),
            "asked_at": now.isoformat(), "timeout_at": timeout.isoformat() if timeout else None}


def deadline(asked: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(asked["timeout_at"]) if asked.get("timeout_at") else None


def decision(asked: dict[str, Any], due: datetime | None, now: datetime) -> str | None:
    """approved / rejected once answered; timed-out when no answer came in time; else None."""
    answer = asked.get("decision")
    if isinstance(answer, str) and answer in HANDLES:
        return answer
    if due is not None and due <= now:
        return TIMED_OUT
    return None


class UserInput(FlowNode):
    """Ask a person: the run waits, holding nothing, until a permitted user answers (which wakes
    it) or the question times out; it goes on by the answer's handle."""

    type = USER_INPUT
    label = "Ask for approval"

    def validate(self, config: dict[str, Any], *, trigger_type: str, organization_id: int) -> Problems:
        return validate(config, trigger_type=trigger_type)

    def run(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow | None") -> None:
        now = steps.now
        if previous is None or previous.status != StepStatus.WAITING:
            asked = ask(state.node(place[0]).config, state.context_at(place), now)
            answer = state.assumed_answer(place[0])
            if answer is not None:  # nobody is asked: the approved side (or the one chosen in debug) is shown
                steps.record(state, place, StepStatus.COMPLETED,
                             result={**asked, "decision": answer, "simulated": f"assumed {answer}",
                                     "answered_by": "(simulation)", "comment": "(simulated answer)"})
                steps.follow(state, place, {answer})
                return
            if state.simulating:  # live debug stops here until the person answers
                steps.record(state, place, StepStatus.WAITING, result=asked)
                state.wait(place, deadline(asked))
                return
            steps.record(state, place, StepStatus.WAITING, result=asked)
            alerts.question_asked(state.run, place, asked)
            state.wait(place, deadline(asked))
            return
        answer = decision(previous.result, steps.due(state, previous, deadline(previous.result)), now)
        if answer is None:
            state.wait(place, deadline(previous.result))
            return
        state.stop_waiting(place)
        steps.record(state, place, StepStatus.COMPLETED, result={**previous.result, "decision": answer},
                     new_attempt=False)
        if answer == TIMED_OUT:  # (an answer settled its notifications when it was given)
            alerts.question_settled(state.run.pk, place[0], place[1],
                                    "no answer came in time; the run went on without one.")
        steps.follow(state, place, {answer})

    def read_back(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow") -> None:
        answer: Any = (previous.result or {}).get("decision")  # (a completed question has its answer)
        steps.follow(state, place, {answer})
