"""The `condition` node ("continue only if"): its rules are evaluated against the record as it is
*now* (after a wait: "is the deal still in Proposal?"), and the run goes on by its true or its
false handle (a side with no edge ends that path). The side taken is recorded on the step row.
Config: {"combinator": "and", "rules": [{"field": "deal.stage", "operator": "eq", "value": "proposal"}]},
the same rules as a workflow's conditions.
"""

from typing import TYPE_CHECKING, Any

from crm_automation.automation.definition import conditions, graph
from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes.flow import FlowNode, Problems, Steps

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState, StepRow


def gate(config: dict[str, Any], trigger_type: str, context: dict[str, Any]) -> conditions.Outcome:
    return conditions.evaluate(config, trigger_type, context, lambda: context)


def side(passed: bool) -> str:
    return graph.TRUE if passed else graph.FALSE


class Condition(FlowNode):
    type = "condition"
    label = "Continue only if"
    example = '{"rules": [{"field": "deal.stage", "operator": "eq", "value": "proposal"}]}'

    def validate(self, config: dict[str, Any], *, trigger_type: str, organization_id: int) -> Problems:
        if not config.get("rules"):
            return [("config.rules", "a “continue only if” step needs at least one rule")]
        return [(f"config.{w.removeprefix('conditions.')}" if w != "conditions" else "config", m)
                for w, m in conditions.validate(config, trigger_type, organization_id=organization_id)]

    def run(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow | None") -> None:
        outcome = gate(state.node(place[0]).config, state.run.trigger_type, state.context_at(place))
        steps.record(state, place, StepStatus.COMPLETED,
                     result={"passed": outcome.passed, "explanation": outcome.explanation,
                             "handle": side(outcome.passed)})
        steps.follow(state, place, {side(outcome.passed)})

    def read_back(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow") -> None:
        steps.follow(state, place, {side(bool((previous.result or {}).get("passed")))})
