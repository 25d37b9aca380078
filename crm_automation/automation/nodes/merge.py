"""The `merge` node: branches come back together. With `strategy: wait-all` (the default) it
runs once every incoming edge has arrived, or once nothing else can arrive (the other branches
ended elsewhere); with `first`, on the first arrival. Which branches arrived is recorded."""

from typing import TYPE_CHECKING, Any

from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes.flow import FlowNode, Problems, Steps

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState, StepRow

STRATEGIES = ("wait-all", "first")


class Merge(FlowNode):
    type = "merge"
    label = "Merge"
    example = '{"strategy": "wait-all"}'

    def validate(self, config: dict[str, Any], *, trigger_type: str, organization_id: int) -> Problems:
        errors = [(f"config.{k}", "unknown setting; a merge takes strategy")
                  for k in sorted(set(config) - {"strategy"})]
        if config.get("strategy", "wait-all") not in STRATEGIES:
            errors.append(("config.strategy", f"must be one of {', '.join(STRATEGIES)}"))
        return errors

    def accepts(self, state: "RunState", place: "Place", source: str) -> bool:
        first = state.node(place[0]).config.get("strategy") == "first"
        return state.arrive(place, source, state.graph.incoming.get(place[0], []), first=first)

    def run(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow | None") -> None:
        steps.record(state, place, StepStatus.COMPLETED,
                     result={"arrived_from": state.merged(place),
                             "strategy": state.node(place[0]).config.get("strategy", "wait-all")})
        steps.follow(state, place)
