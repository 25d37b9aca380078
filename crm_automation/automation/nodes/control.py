"""The nodes the engine runs inline (see flow.py), by type: one module each.

`FLOW` is what the engine asks; the rest is for the checks and the words, which treat wait,
condition, parallel, merge and loop as "control" nodes of the document format, and function and
user input as nodes of their own.
"""

from typing import Any

from crm_automation.automation.nodes.approval import UserInput
from crm_automation.automation.nodes.condition import Condition, gate
from crm_automation.automation.nodes.flow import FlowNode, Problems
from crm_automation.automation.nodes.function import FunctionNode
from crm_automation.automation.nodes.loop import DEFAULT_ITERATIONS, Loop, loop_items
from crm_automation.automation.nodes.merge import STRATEGIES as MERGE_STRATEGIES
from crm_automation.automation.nodes.merge import Merge
from crm_automation.automation.nodes.parallel import Parallel
from crm_automation.automation.nodes.wait import MAX_WAIT, UNITS, Wait, wake_time

CONTROL: dict[str, FlowNode] = {n.type: n for n in (Wait(), Condition(), Parallel(), Merge(), Loop())}
FLOW: dict[str, FlowNode] = {**CONTROL, **{n.type: n for n in (FunctionNode(), UserInput())}}
WAIT, CONDITION, PARALLEL, MERGE, LOOP = "wait", "condition", "parallel", "merge", "loop"
LABELS = {t: n.label for t, n in CONTROL.items()}

__all__ = ["CONTROL", "DEFAULT_ITERATIONS", "FLOW", "LABELS", "MAX_WAIT", "MERGE_STRATEGIES", "UNITS", "gate",
           "is_control", "label", "loop_items", "validate", "wake_time"]


def is_control(step_type: object) -> bool:
    return step_type in CONTROL


def validate(step_type: str, config: object, *, trigger_type: str, organization_id: int) -> Problems:
    node = CONTROL[step_type]
    if not isinstance(config, dict):
        return [("config", f"must be an object, e.g. {node.example}")]
    return node.validate(config, trigger_type=trigger_type, organization_id=organization_id)


def label(step_type: str, config: Any) -> str:
    node = CONTROL.get(step_type)
    return node.describe(config) if node is not None else step_type
