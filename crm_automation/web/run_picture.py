"""A run drawn on its workflow's graph (the run's page, static/web/run_graph.js): the version
that ran, each node with its status on this run (pending, running, waiting, completed, failed,
skipped, or not on the path once the run is over), its time, and what each of its steps was
given and gave; the edges the run took.

A node's steps are its rows (`WorkflowRunAction`, one per loop item). Which way a branching node
went is read from what it recorded (a condition's `passed`, a router's `route`, an answer's
`decision`), so an edge into a merge is taken only when the run came that way.
"""

from typing import Any

from crm_automation.automation.definition import compiled, graph
from crm_automation.automation.models import RUN_OVER, StepStatus, WorkflowRun
from crm_automation.web.graph_picture import Names, handle_in_words, node_labels, node_words, type_in_words
from crm_automation.web.selectors import stage_names
from crm_automation.web.words import duration, moment

OVER = RUN_OVER
# A node with several steps (a loop's body) shows the most telling of their statuses.
PRECEDENCE = [StepStatus.RUNNING, StepStatus.WAITING, StepStatus.FAILED, StepStatus.PENDING, StepStatus.COMPLETED,
              StepStatus.SKIPPED]
STATUS_WORDS = {"pending": "Pending", "running": "Running", "waiting": "Waiting", "completed": "Completed",
                "failed": "Failed", "skipped": "Skipped", "off-path": "Not on the path"}


def run_picture(run: WorkflowRun, steps: list) -> dict[str, Any]:
    """What the canvas draws for `run` (`steps`: its rows, as the run's page lists them)."""
    definition = compiled.of_version(run.version)
    flow = graph.build(definition)
    names = Names(stages=stage_names(run.organization_id))
    labels = node_labels(definition, names.stages)
    positions = (definition.get("graph") or {}).get("positions") or {}
    by_node: dict[str, list] = {}
    for step in steps:
        by_node.setdefault(step.node_id, []).append(step)
    over = run.status in OVER
    nodes, statuses = [], {}
    for node_id in [flow.trigger, *flow.nodes]:
        mine = by_node.get(node_id, [])
        status = _status(node_id == flow.trigger, mine, over)
        statuses[node_id] = status
        node = flow.nodes.get(node_id)
        ways = [handle for handle, _ in flow.targets(node_id)]
        nodes.append({
            "id": node_id, "trigger": node is None, "kind": "When" if node is None else type_in_words(node.type),
            "title": labels.get(node_id, node_id),
            "summary": node_words(definition, flow, node_id, names, labels.get(node_id, ""), quote=40),
            "handles": [{"id": h, "label": handle_in_words(h)} for h in dict.fromkeys(ways)] if any(ways) else None,
            "position": positions.get(node_id), "status": status,
            "statusWords": _status_words(status, mine, run if node is None else None),
            "steps": [_step(step) for step in mine], "problems": [], "fieldProblems": 0,
        })
    edges = []
    for edge in flow.edges:
        source, target, handle = edge["source"], edge["target"], edge.get("sourceHandle") or ""
        went = _went(flow, source, handle, by_node, statuses)
        status = "taken" if went and by_node.get(target) else ("off-path" if over else "")
        edges.append({"source": source, "target": target, "sourceHandle": handle, "status": status})
    return {"editable": False, "kinds": [], "nodes": nodes, "edges": edges, "over": over,
            "payload": trigger_data(run), "version": run.version.number}


def trigger_data(run: WorkflowRun) -> dict[str, Any]:
    """What started the run: the event, its record, what the run noted of it (stages, the title)
    and the event's data as it was received (a webhook's body, what changed)."""
    event = run.event
    return {"event": event.kind, "record": {"type": run.trigger_entity_type, "id": str(run.trigger_entity_id)},
            **(run.metadata or {}), "received": event.payload}


def _status(is_trigger: bool, steps: list, over: bool) -> str:
    if is_trigger:
        return StepStatus.COMPLETED
    found = {step.status for step in steps}
    for status in PRECEDENCE:
        if status in found:
            return status
    return "off-path" if over else StepStatus.PENDING


def _status_words(status: str, steps: list, run: WorkflowRun | None) -> str:
    words = STATUS_WORDS.get(status, status)
    if run is not None:
        return f"Started {moment(run.started_at)}"
    if len(steps) > 1:
        words += f" · {len(steps)} times"
    took = [s for s in steps if s.started_at and s.finished_at]
    if took:
        total = sum((s.finished_at - s.started_at).total_seconds() for s in took)
        words += f" · {duration(int(total * 1000))}"
    wake = next((s.result.get("wake_at") for s in steps if s.status == StepStatus.WAITING and s.result), None)
    if wake:
        words += f" until {moment(wake)}"
    return words


def _went(flow: graph.Graph, source: str, handle: str, by_node: dict[str, list], statuses: dict[str, str]) -> bool:
    """Whether the run left `source` by `handle`: by what the node decided when it decides."""
    if source == flow.trigger:
        return True
    node = flow.nodes.get(source)
    steps = by_node.get(source) or []
    if node is None or not steps:
        return False
    results = [step.result or {} for step in steps]
    if node.type == "condition":
        return any((graph.TRUE if result.get("passed") else graph.FALSE) == handle
                   for result in results if "passed" in result)
    if node.type == "user_input":
        return any(result.get("decision") == handle for result in results)
    if node.type == "router":
        return any(result.get("handle") == handle for result in results)
    return statuses.get(source) in (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.WAITING, StepStatus.RUNNING)


def _step(step) -> dict[str, Any]:
    took = (step.finished_at - step.started_at) if step.finished_at and step.started_at else None
    return {"token": step.token, "status": step.status, "attempts": step.attempts, "error": step.error,
            "started": moment(step.started_at) if step.started_at else "",
            "took": duration(int(took.total_seconds() * 1000)) if took is not None else "",
            "input": step.input or {}, "output": step.result or {}}
