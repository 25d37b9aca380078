"""The `parallel` node: the run goes on along all its outgoing edges at once (its branches are
its edges; it takes no settings). A `merge` node brings branches back together."""

from typing import TYPE_CHECKING, Any

from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes.flow import FlowNode, Problems, Steps

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState, StepRow


class Parallel(FlowNode):
    type = "parallel"
    label = "Parallel"

    def validate(self, config: dict[str, Any], *, trigger_type: str, organization_id: int) -> Problems:
        return [(f"config.{k}", "unknown setting; a parallel node takes none (its branches are its edges)")
                for k in sorted(config)]

    def run(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow | None") -> None:
        branches = sorted({h for h, _ in state.graph.targets(place[0])})
        steps.record(state, place, StepStatus.COMPLETED, result={"branches": branches})
        steps.follow(state, place, set(branches))

    def read_back(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow") -> None:
        steps.follow(state, place, {h for h, _ in state.graph.targets(place[0])})
