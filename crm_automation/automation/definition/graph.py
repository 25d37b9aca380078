"""A workflow version as a graph: nodes, edges with handles, loop bodies; and its checks.

A definition holds its nodes as `actions` (id, type, config, optional label) and, in
`graph`, the trigger node's id and label and the `edges` when they are not the plain chain
(trigger → first action → …, a condition going on by its `condition-true` side). Old
versions have no `graph`: they are chains, so they run exactly as before.

Ways out of a node (edge `sourceHandle`):
- condition: `condition-true`, `condition-false` (a side with no edge ends that path);
- parallel: `branch-0`, `branch-1`, … (every branch runs);
- loop: `loop-body` (the first node of each iteration) and `loop-done` (after the last one).
  The body is every node reachable from `loop-body` without passing the loop node; an edge
  from a body node back to the loop node ends an iteration (so does a body node with no way
  out). Iterations run one after the other;
- every other node: one way out, no handle.

A node runs at most once per token. The token tells loop iterations apart: "" outside loops,
"3" in the fourth iteration of a loop, "3.0" in the first iteration of a loop inside it.
A node with several incoming edges runs on the first arrival, except a merge node, which
waits for all its incoming edges (`strategy: wait-all`) or goes on at the first (`first`).
"""

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

TRIGGER = "trigger"
TRUE, FALSE = "condition-true", "condition-false"
ERROR = "error"  # a failed step's fallback (definition/error_policy.py)
BODY, DONE = "loop-body", "loop-done"
CONTROL_TYPES = ("wait", "condition", "parallel", "merge", "loop")
MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    config: dict
    label: str
    index: int  # position in the definition's list (the effect key of chain versions)
    on_error: dict | None = None  # see error_policy.py


@dataclass
class Graph:
    trigger: str
    nodes: dict[str, Node]
    edges: list[dict]
    out: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # source → [(handle, target)]
    incoming: dict[str, list[str]] = field(default_factory=dict)  # target → sources
    body: dict[str, set[str]] = field(default_factory=dict)  # loop id → nodes of its body
    loop_of: dict[str, str] = field(default_factory=dict)  # node → innermost loop around it

    def targets(self, node_id: str, handles: set[str] | None = None) -> list[tuple[str, str]]:
        """(handle, target) pairs out of a node; only through `handles` when given."""
        return [(h, t) for h, t in self.out.get(node_id, []) if handles is None or h in handles]

    def ends_iteration(self, source: str, target: str) -> bool:
        return target in self.body and source in self.body[target]


def node_id_at(action: dict, index: int) -> str:
    return action.get("id") or f"step-{index + 1}"


def trigger_id(definition: dict) -> str:
    return ((definition.get("graph") or {}).get("trigger") or {}).get("id") or TRIGGER


def chain_edges(definition: dict) -> list[dict]:
    """The edges of a chain: each node to the next, a condition by its true side."""
    actions = definition.get("actions") or []
    ids = [trigger_id(definition), *(node_id_at(a, i) for i, a in enumerate(actions))]
    types = [None, *(a.get("type") for a in actions)]
    edges = []
    for i in range(len(ids) - 1):
        edge = {"source": ids[i], "target": ids[i + 1]}
        if types[i] == "condition":
            edge["sourceHandle"] = TRUE
        edges.append(edge)
    return edges


def edges_of(definition: dict) -> list[dict]:
    graph = definition.get("graph") or {}
    return graph["edges"] if "edges" in graph else chain_edges(definition)


def build(definition: dict) -> Graph:
    """The graph of a definition that passed `problems` (or an old chain version)."""
    nodes = {}
    for i, action in enumerate(definition.get("actions") or []):
        node_id = node_id_at(action, i)
        nodes[node_id] = Node(node_id, action.get("type"), action.get("config") or {},
                              action.get("label") or "", i, action.get("on_error"))
    graph = Graph(trigger=trigger_id(definition), nodes=nodes, edges=edges_of(definition))
    for edge in graph.edges:
        graph.out.setdefault(edge["source"], []).append((edge.get("sourceHandle") or "", edge["target"]))
        graph.incoming.setdefault(edge["target"], []).append(edge["source"])
    for node in nodes.values():
        if node.type == "loop":
            graph.body[node.id] = _reach(graph, [t for _, t in graph.targets(node.id, {BODY})], stop=node.id)
    # The innermost loop is the one with the smallest body around the node.
    for loop_id, members in sorted(graph.body.items(), key=lambda item: -len(item[1])):
        for member in members:
            graph.loop_of[member] = loop_id
    return graph


def _reach(graph: Graph, start: list[str], stop: str | None = None) -> set[str]:
    seen, queue = set(), deque(start)
    while queue:
        node_id = queue.popleft()
        if node_id in seen or node_id == stop:
            continue
        seen.add(node_id)
        queue.extend(t for _, t in graph.out.get(node_id, []))
    return seen


def downstream(graph: Graph, node_id: str) -> list[str]:
    """The nodes after a node on any side, in order, not entering loop bodies (a skipped loop's
    body never starts) and not going back to a loop."""
    order, seen, queue = [], {node_id}, deque([node_id])
    while queue:
        current = queue.popleft()
        for handle, target in graph.targets(current):
            if handle == BODY or graph.ends_iteration(current, target) or target in seen:
                continue
            seen.add(target)
            order.append(target)
            queue.append(target)
    return order


def walk(graph: Graph, ways: Callable[[Node], set[str] | None]) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """One pass from the trigger, each node once: every node reached with the (handle, target)
    edges taken out of it. `ways(node)` picks a node's ways out: None for all of them (the
    trigger, a parallel node's branches), a set of handles for some (a condition's side; an empty
    set ends the path there). An edge that ends a loop's iteration is taken but not followed, so
    a loop's body is passed once (how a static count such as the impact preview reads a run)."""
    seen, todo = set(), [graph.trigger]
    while todo:
        node_id = todo.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes.get(node_id)
        taken = graph.targets(node_id, None if node is None else ways(node))
        yield node_id, taken
        todo.extend(target for _, target in taken if not graph.ends_iteration(node_id, target))


def upstream(graph: Graph) -> dict[str, set[str]]:
    """For each node, the nodes that may have run before it on some path (its ancestors)."""
    parents: dict[str, set[str]] = {}
    for edge in graph.edges:
        if edge["source"] != graph.trigger and not graph.ends_iteration(edge["source"], edge["target"]):
            parents.setdefault(edge["target"], set()).add(edge["source"])
    result: dict[str, set[str]] = {}

    def ancestors(node_id: str, path: frozenset) -> set[str]:
        if node_id in result:
            return result[node_id]
        found: set[str] = set()
        for parent in parents.get(node_id, ()):
            if parent not in path:
                found |= {parent} | ancestors(parent, path | {node_id})
        result[node_id] = found
        return found

    for node_id in graph.nodes:
        ancestors(node_id, frozenset())
    return result


def child_token(token: str, iteration: int) -> str:
    return f"{token}.{iteration}" if token else str(iteration)


def parent_token(token: str) -> str:
    return token.rpartition(".")[0] if "." in token else ""


def within(token: str, scope: str) -> bool:
    """Whether work at `token` belongs to the iteration (or top level) `scope`."""
    return scope == "" or token == scope or token.startswith(scope + ".")


# --- Checks -------------------------------------------------------------------------------------
def _handles(node: Node | None) -> set[str] | None:
    """The handles a node's edges may carry; None: any `branch-N` (a parallel node)."""
    if node is None:  # the trigger
        return {""}
    return {"condition": {TRUE, FALSE}, "loop": {BODY, DONE}, "parallel": None, "router": None,
            "user_input": {"approved", "rejected", "timed-out"}, "wait": {""}, "merge": {""}}.get(
        node.type, {"", ERROR})  # (a step that can fail may have an `error` edge: its fallback)


MAX_COORDINATE = 1_000_000  # canvas pixels: far past any screen, short of absurd


def position_problem(position: object) -> str | None:
    """What is wrong with a node's place on the canvas ({x, y} in pixels), or None."""
    if not isinstance(position, dict) or set(position) != {"x", "y"}:
        return "must be a mapping of x and y (the node's place on the canvas, in pixels)"
    for value in position.values():
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
                or abs(value) > MAX_COORDINATE:
            return f"x and y must be numbers between -{MAX_COORDINATE:,} and {MAX_COORDINATE:,}"
    return None


def position_of(position: dict) -> dict:
    """A checked place, in whole pixels (what a person can see; the YAML stays short)."""
    return {"x": round(position["x"]), "y": round(position["y"])}


def _position_problems(graph_part: dict, known: set[str]) -> list[tuple[str, str]]:
    positions = graph_part.get("positions")
    if positions is None:
        return []
    if not isinstance(positions, dict):
        return [("graph.positions", "must be a mapping of node ids to {x, y}")]
    errors = []
    for node_id, position in positions.items():
        if node_id not in known:
            errors.append((f"graph.positions.{node_id}", "is not a node of this workflow"))
        elif problem := position_problem(position):
            errors.append((f"nodes[{node_id}].position", problem))
    return errors


def _falls_back(definition: dict, action: dict) -> bool:
    """Whether the node's failure follows its error edge (its own policy, or the workflow's)."""
    rule = action.get("on_error")
    if isinstance(rule, dict):
        return rule.get("policy") == "fallback" or (rule.get("policy") == "retry" and rule.get("then") == "fallback")
    return definition.get("error_handling") == "fallback"


def _fallback_problems(definition: dict, edges: list, nodes: dict) -> list[tuple[str, str]]:
    """An error edge belongs to a node that falls back; a node whose own policy is fallback has one."""
    errors = []
    with_error_edge = {e["source"] for e in edges if isinstance(e, dict) and e.get("sourceHandle") == ERROR}
    actions = {node_id_at(a, i): a for i, a in enumerate(definition.get("actions") or []) if isinstance(a, dict)}
    for i, edge in enumerate(edges):
        if isinstance(edge, dict) and edge.get("sourceHandle") == ERROR and edge.get("source") in actions \
                and not _falls_back(definition, actions[edge["source"]]):
            errors.append((f"edges[{i}].sourceHandle", f"“{edge['source']}” has an error edge but does not fall back "
                                                       "on failure: set its onError policy (or the workflow's) to "
                                                       "fallback, or remove the edge"))
    for node_id, action in actions.items():
        rule = action.get("on_error")
        if isinstance(rule, dict) and (rule.get("policy") == "fallback" or rule.get("then") == "fallback") \
                and node_id not in with_error_edge and node_id in nodes:
            errors.append((f"nodes[{node_id}].data.onError", "a fallback runs the node its “error” edge leads to: "
                                                            "draw that edge (sourceHandle: error)"))
    return errors


def problems(definition: dict) -> list[tuple[str, str]]:
    """What is wrong with the shape of the graph, named by place (`edges[2].target`,
    `nodes[send-email]`); the nodes' own configs are checked elsewhere."""
    actions = definition.get("actions") or []
    graph_part = definition.get("graph") or {}
    if not isinstance(graph_part, dict):
        return [("graph", "must be a mapping")]
    ids = [node_id_at(a, i) for i, a in enumerate(actions) if isinstance(a, dict)]
    start = trigger_id(definition)
    if start in ids:
        return [(f"nodes[{start}].id", "is the trigger's id; give the node another one")]
    edges = edges_of(definition)
    if not isinstance(edges, list):
        return [("edges", "must be a list")]
    errors = _position_problems(graph_part, {start, *ids})
    nodes = {node_id_at(a, i): Node(node_id_at(a, i), a.get("type") or "", a.get("config") or {}, "", i)
             for i, a in enumerate(actions) if isinstance(a, dict)}
    seen_ways: set[tuple[str, str]] = set()
    for i, edge in enumerate(edges):
        place = f"edges[{i}]"
        if not isinstance(edge, dict) or not isinstance(edge.get("source"), str) \
                or not isinstance(edge.get("target"), str):
            errors.append((place, "must have a source and a target (node ids)"))
            continue
        source, target, handle = edge["source"], edge["target"], edge.get("sourceHandle") or ""
        if source != start and source not in nodes:
            errors.append((f"{place}.source", f"“{source}” is not a node of this workflow"))
            continue
        if target not in nodes:
            what = "the trigger cannot be the target of an edge" if target == start else \
                f"“{target}” is not a node of this workflow"
            errors.append((f"{place}.target", what))
            continue
        node = nodes.get(source)
        allowed = _handles(node)
        if allowed is None:
            assert node is not None, "the trigger's way out is the plain one"
            prefix = "route-" if node.type == "router" else "branch-"
            routes = node.config.get("routes") if node.type == "router" else None
            if not (handle.startswith(prefix) and handle[len(prefix):].isascii() and handle[len(prefix):].isdigit()):
                errors.append((f"{place}.sourceHandle", f"a {node.type} node's ways out are {prefix}0, {prefix}1, …"))
            elif isinstance(routes, list) and int(handle[len(prefix):]) >= len(routes):
                errors.append((f"{place}.sourceHandle", f"router “{source}” has {len(routes)} routes "
                                                        f"(route-0 to route-{len(routes) - 1})"))
        elif handle not in allowed:
            ways = "one way out (and “error”, the way it falls back on when it fails)" if allowed == {"", ERROR} \
                else ", ".join(sorted(h for h in allowed if h)) or "one way out and takes no handle"
            what = f"this {node.type} node's ways out are {ways}" if node and "" not in allowed else \
                f"“{handle}”: this node has {ways}"
            errors.append((f"{place}.sourceHandle", what))
        if (source, handle) in seen_ways:
            errors.append((place, f"a second edge out of “{source}”{f' ({handle})' if handle else ''}: "
                                  "to run steps side by side, use a parallel node"))
        seen_ways.add((source, handle))
    errors += _fallback_problems(definition, edges, nodes)
    if errors:
        return errors
    graph = build(definition)
    errors += _reach_problems(graph)
    errors += _cycle_problems(graph)
    for loop_id, members in graph.body.items():
        after = _reach(graph, [t for _, t in graph.targets(loop_id, {DONE})], stop=loop_id)
        for node_id in sorted(members & after):
            errors.append((f"nodes[{node_id}]", f"is both inside loop “{loop_id}” and after it; a loop's body "
                                                "and what follows it must be separate"))
        if not graph.targets(loop_id, {BODY}):
            errors.append((f"nodes[{loop_id}]", "a loop needs a loop-body edge to the first step of each "
                                                "iteration"))
    for node in graph.nodes.values():
        if node.type == "parallel" and not graph.targets(node.id):
            errors.append((f"nodes[{node.id}]", "a parallel node needs branch-0, branch-1, … edges"))
    return errors


def _reach_problems(graph: Graph) -> list[tuple[str, str]]:
    reached = _reach(graph, [t for _, t in graph.targets(graph.trigger)])
    return [(f"nodes[{node_id}]", "cannot be reached from the trigger: connect it with an edge")
            for node_id in graph.nodes if node_id not in reached]


def _cycle_problems(graph: Graph) -> list[tuple[str, str]]:
    """Cycles only through loop nodes: without the edges that end an iteration, no circle."""
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node_id: str) -> str | None:
        state[node_id] = 1
        for _, target in graph.out.get(node_id, []):
            if graph.ends_iteration(node_id, target):
                continue
            if state.get(target) == 1:
                return target
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node_id] = 2
        return None

    for node_id in [graph.trigger, *graph.nodes]:
        if node_id not in state:
            found = visit(node_id)
            if found:
                return [(f"nodes[{found}]", "the edges go round in a circle here; to repeat steps, use a loop "
                                            "node (its body's last step may lead back to it)")]
    return []
