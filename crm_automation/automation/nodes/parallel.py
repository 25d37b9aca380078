"""The `parallel` node: the run goes on along all its outgoing edges at once (its branches are
its edges; it takes no settings). A `merge` node brings branches back together."""

from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes.flow import FlowNode, Problems, Steps


class Parallel(FlowNode):
    type = "parallel"
    label = "Parallel"

    def validate(self, config: dict, *, trigger_type: str, organization_id: int) -> Problems:
        return [(f"config.{k}", "unknown setting; a parallel node takes none (its branches are its edges)")
                for k in sorted(config)]

    def run(self, steps: Steps, state, place, previous) -> None:
        branches = sorted({h for h, _ in state.graph.targets(place[0])})
        steps.record(state, place, StepStatus.COMPLETED, result={"branches": branches})
        steps.follow(state, place, set(branches))

    def read_back(self, steps: Steps, state, place, previous) -> None:
        steps.follow(state, place, {h for h, _ in state.graph.targets(place[0])})
