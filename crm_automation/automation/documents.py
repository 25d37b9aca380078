"""Workflows as seed-001 documents (YAML): export, import, compare.

A workflow's definition is written out in the seed-001 format: a header (`id`, `name`,
`_status`), `nodes` (every node `type: workflow`, behaviour in `data.subtype`, a `data.label`
and a `data.config`) and `edges` (`source`, `target`, optional `sourceHandle`). Today's
workflows are chains: a `chat-app` trigger node (the CRM event, its stage filter and
conditions) followed by `tool-call` nodes (`crm/send_email`, `crm/create_task`,
`crm/update_record`) whose arguments are in `config.defaults`, as in the seed, `wait` nodes
(`delayAmount` + `delayUnit`, or `until` a date field) and `condition` nodes whose
`condition-true` edge goes on (the false side ends the run). Node ids are the
actions' stable ids, so two versions compare node by node.

Our additions to the header, both optional on import: `description` and `settings`
(`errorPolicy` abort | skip, `reenrollment`, `timeoutSeconds`). `_status` is draft |
production | paused | archive (`paused` is ours; the seed has no such state).

Errors name the place as `nodes[<node id>].data.config…` and, for YAML text, the line.
"""

import difflib
import json
import re

import yaml

from crm_automation.automation import catalog, control

TRIGGER_ID = "trigger"
TOOLS = {"send_email": "crm/send_email", "create_task": "crm/create_task", "update_field": "crm/update_record"}
ACTIONS = {tool: action for action, tool in TOOLS.items()}
ERROR_POLICY = {"stop": "abort", "continue": "skip"}
ERROR_HANDLING = {policy: handling for handling, policy in ERROR_POLICY.items()}
STATUS_OUT = {"draft": "draft", "activated": "production", "paused": "paused", "archived": "archive"}
STATUS_IN = {"draft": "draft", "production": "activated", "paused": "paused", "archive": "archived"}
# Seed-001 node types this version does not run yet: accepted by the format, refused on import
# with a message saying so.
LATER = {"schedule", "manual", "agent", "router", "function", "loop", "parallel", "merge",
         "sub-workflow", "user-input", "desktop-notification", "response"}
TRUE_HANDLE, FALSE_HANDLE = "condition-true", "condition-false"
NODE_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class DocumentError(ValueError):
    """What is wrong and where: `errors` is a list of (place, message, line or None)."""

    def __init__(self, errors: list[tuple[str, str, int | None]]) -> None:
        self.errors = errors
        super().__init__("; ".join(describe(e) for e in errors))

    @property
    def messages(self) -> list[str]:
        return [describe(e) for e in self.errors]


def describe(error: tuple[str, str, int | None]) -> str:
    place, message, line = error
    where = f"line {line}: " if line else ""
    return f"{where}{place}: {message}" if place else f"{where}{message}"


# --- Node ids -----------------------------------------------------------------------------------
def new_node_id(action_type: str, taken: set[str]) -> str:
    base = str(action_type or "step").replace("_", "-")
    candidate, n = base, 2
    while candidate in taken or candidate == TRIGGER_ID:
        candidate, n = f"{base}-{n}", n + 1
    taken.add(candidate)
    return candidate


def with_node_ids(actions: list[dict]) -> list[dict]:
    """The actions, each with a stable `id`: kept when it has a valid, unused one, else new."""
    taken = {a["id"] for a in actions if isinstance(a.get("id"), str) and NODE_ID.fullmatch(a["id"])}
    seen: set[str] = set()
    result = []
    for action in actions:
        node_id = action.get("id")
        if not (isinstance(node_id, str) and NODE_ID.fullmatch(node_id)) or node_id in seen or node_id == TRIGGER_ID:
            node_id = new_node_id(action.get("type"), taken)
        seen.add(node_id)
        result.append({**action, "id": node_id})
    return result


# --- Definition → document ----------------------------------------------------------------------
def _trigger_label(trigger_type: str, config: dict) -> str:
    label = dict(catalog.TRIGGER_CHOICES).get(trigger_type, trigger_type)
    if config.get("to_stage"):
        label += f" to {config['to_stage']}"
    if config.get("from_stage"):
        label += f" from {config['from_stage']}"
    return label


def _action_label(action: dict) -> str:
    config = action.get("config") or {}
    if action.get("type") == "update_field":
        return f"Update {config.get('field', 'field')}"
    return {"send_email": "Send email", "create_task": "Create task"}.get(action.get("type"), "Step")


def _unique(label: str, used: set[str]) -> str:
    candidate, n = label, 2
    while candidate.casefold() in used:
        candidate, n = f"{label} {n}", n + 1
    used.add(candidate.casefold())
    return candidate


def document_of(*, key: str, name: str, definition: dict, description: str = "", status: str | None = None) -> dict:
    """A workflow definition (trigger, conditions, ordered actions) as a seed-001 chain."""
    trigger_config = definition.get("trigger_config") or {}
    config = {"event": definition.get("trigger_type")}
    config.update({k: v for k, v in trigger_config.items() if v not in (None, "")})
    if (definition.get("conditions") or {}).get("rules"):
        config["conditions"] = definition["conditions"]
    used = {TRIGGER_ID}
    nodes = [{"id": TRIGGER_ID, "type": "workflow", "data": {
        "subtype": "chat-app", "label": _unique(_trigger_label(config["event"], trigger_config), used),
        "config": config}}]
    for action in with_node_ids(list(definition.get("actions") or [])):
        if control.is_control(action.get("type")):
            nodes.append({"id": action["id"], "type": "workflow", "data": {
                "subtype": action["type"], "label": _unique(control.label(action["type"], action.get("config")), used),
                "config": action.get("config") or {}}})
            continue
        nodes.append({"id": action["id"], "type": "workflow", "data": {
            "subtype": "tool-call", "label": _unique(_action_label(action), used),
            "config": {"toolName": TOOLS.get(action.get("type"), action.get("type")),
                       "defaults": action.get("config") or {}}}})
    edges = []
    for a, b in zip(nodes, nodes[1:], strict=False):
        edge = {"source": a["id"], "target": b["id"]}
        if a["data"]["subtype"] == control.CONDITION:
            edge["sourceHandle"] = TRUE_HANDLE  # the false side ends the run: no edge
        edges.append(edge)
    document = {"id": key, "name": name}
    if status:
        document["_status"] = STATUS_OUT.get(status, status)
    if description:
        document["description"] = description
    document["settings"] = {
        "errorPolicy": ERROR_POLICY.get(definition.get("error_handling"), definition.get("error_handling")),
        "reenrollment": definition.get("reenrollment", "every_time"),
        "timeoutSeconds": definition.get("timeout_seconds", 60),
    }
    document["nodes"], document["edges"] = nodes, edges
    return document


# --- YAML ---------------------------------------------------------------------------------------
def to_yaml(document: dict) -> str:
    plain = json.loads(json.dumps(document))  # plain JSON types only (choice enums are str subclasses)
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def from_yaml(text: str) -> tuple[dict, yaml.Node | None]:
    """The document and its YAML node tree (for line numbers); DocumentError if unreadable."""
    try:
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DocumentError([("", f"this is not valid YAML ({problem})",
                              mark.line + 1 if mark else None)]) from None
    if not isinstance(document, dict):
        raise DocumentError([("", "the file must be a mapping with id, name, nodes and edges", 1)])
    return document, tree


_STEP = re.compile(r"\.?([^.\[\]]+)|\[([^\]]+)\]")


def line_of(tree: yaml.Node | None, place: str) -> int | None:
    """The line of `place` ("nodes[send-email].data.config.defaults.to") in the YAML text, or of
    the nearest enclosing part that exists."""
    node, line = tree, (tree.start_mark.line + 1 if tree is not None else None)
    for key, index in _STEP.findall(place):
        if isinstance(node, yaml.MappingNode) and key:
            node = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and index:
            node = _item(node, index)
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _item(sequence: yaml.SequenceNode, index: str):
    if index.isdigit():
        return sequence.value[int(index)] if int(index) < len(sequence.value) else None
    for item in sequence.value:  # nodes[<id>]: the item whose `id` is that
        if isinstance(item, yaml.MappingNode) and any(
                getattr(k, "value", None) == "id" and getattr(v, "value", None) == index for k, v in item.value):
            return item
    return None


# --- Document → definition ----------------------------------------------------------------------
def _check_shape(document: dict) -> list[tuple[str, str]]:
    errors = []
    for key in ("id", "name"):
        if not isinstance(document.get(key), str) or not document[key].strip():
            errors.append((key, "is required (text)"))
    if isinstance(document.get("id"), str) and not (NODE_ID.fullmatch(document["id"]) and len(document["id"]) <= 70):
        errors.append(("id", "must be kebab-case (lower-case letters, digits and single dashes), at most 70 long"))
    if isinstance(document.get("name"), str) and len(document["name"]) > 200:
        errors.append(("name", "is longer than 200 characters"))
    if document.get("_status") not in (None, *STATUS_IN):
        errors.append(("_status", f"must be one of {', '.join(STATUS_IN)}"))
    for key in ("nodes", "edges"):
        if not isinstance(document.get(key), list):
            errors.append((key, "must be a list"))
    return errors


def _place(node: dict | None, index: int) -> str:
    node_id = node.get("id") if isinstance(node, dict) else None
    return f"nodes[{node_id}]" if isinstance(node_id, str) and node_id else f"nodes[{index}]"


def _check_nodes(nodes: list) -> tuple[list[tuple[str, str]], dict[str, dict]]:
    errors, by_id = [], {}
    for i, node in enumerate(nodes):
        place = _place(node, i)
        if not isinstance(node, dict) or not isinstance(node.get("data"), dict):
            errors.append((place, "must have id, type: workflow and data (subtype, label, config)"))
            continue
        node_id, data = node.get("id"), node["data"]
        if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
            errors.append((f"{place}.id", "must be kebab-case: lower-case letters, digits and single dashes"))
            continue
        if node_id in by_id:
            errors.append((f"{place}.id", "is used by two nodes; node ids must be unique"))
            continue
        if node.get("type") != "workflow":
            errors.append((f"{place}.type", "must be workflow (the behaviour is in data.subtype)"))
        if not isinstance(data.get("label"), str) or not data["label"].strip():
            errors.append((f"{place}.data.label", "is required: templates refer to nodes by label"))
        if not isinstance(data.get("config", {}), dict):
            errors.append((f"{place}.data.config", "must be a mapping"))
            continue
        by_id[node_id] = node
    labels: dict[str, str] = {}
    for node_id, node in by_id.items():
        label = str(node["data"].get("label", "")).casefold()
        if label and label in labels:
            errors.append((f"nodes[{node_id}].data.label", f"is also the label of {labels[label]}; labels must be "
                                                           "unique (templates refer to nodes by label)"))
        labels[label] = node_id
    return errors, by_id


def _chain(document: dict, by_id: dict[str, dict]) -> tuple[list[tuple[str, str]], list[str]]:
    """Check the edges and return the node ids in execution order (a chain from the trigger)."""
    errors, nxt = [], {}
    triggers = [i for i, n in by_id.items() if n["data"].get("subtype") in ("chat-app", "schedule", "manual")]
    if len(triggers) != 1:
        return [("nodes", f"a workflow has exactly one trigger node (subtype chat-app); found {len(triggers)}")], []
    for i, edge in enumerate(document["edges"]):
        place = f"edges[{i}]"
        if not isinstance(edge, dict):
            errors.append((place, "must have source and target"))
            continue
        for end in ("source", "target"):
            if edge.get(end) not in by_id:
                errors.append((f"{place}.{end}", f"“{edge.get(end)}” is not a node of this workflow"))
        handle, source = edge.get("sourceHandle"), by_id.get(edge.get("source"))
        is_gate = source is not None and source["data"].get("subtype") == control.CONDITION
        if is_gate and handle == FALSE_HANDLE:
            errors.append((f"{place}.sourceHandle", "steps on the false side of a condition run from the next "
                                                    "version; for now the false side ends the run (leave it "
                                                    "unconnected)"))
        elif is_gate and handle != TRUE_HANDLE:
            errors.append((f"{place}.sourceHandle", f"a condition's ways out are {TRUE_HANDLE} and {FALSE_HANDLE}"))
        elif not is_gate and handle not in (None, ""):
            errors.append((f"{place}.sourceHandle", f"“{handle}”: this node has one way out and takes no handle"))
        if edge.get("source") in nxt:
            errors.append((place, f"a second edge out of “{edge['source']}”: branching needs a condition or "
                                  "parallel node, which this version does not run yet"))
        elif edge.get("source") in by_id and edge.get("target") in by_id:
            nxt[edge["source"]] = edge["target"]
    if errors:
        return errors, []
    order, node_id = [], triggers[0]
    while node_id is not None and node_id not in order:
        order.append(node_id)
        node_id = nxt.get(node_id)
    if node_id is not None:
        return [("edges", f"the edges go round in a circle at “{node_id}”")], []
    for node_id in by_id:
        if node_id not in order:
            errors.append((f"nodes[{node_id}]", "cannot be reached from the trigger: connect it with an edge"))
    return errors, order


def definition_from(document: dict) -> tuple[dict, list[tuple[str, str]]]:
    """Today's definition (trigger, conditions, ordered actions with their node ids) from a
    document, and what is wrong with it, named by place. Only chains run in this version."""
    errors = _check_shape(document)
    if errors:
        return {}, errors
    errors, by_id = _check_nodes(document["nodes"])
    if errors:
        return {}, errors
    for node_id, node in by_id.items():
        subtype = node["data"].get("subtype")
        if subtype in LATER:
            errors.append((f"nodes[{node_id}].data.subtype", f"“{subtype}” nodes are part of the seed-001 format "
                                                             "but do not run in this version yet"))
        elif subtype not in ("chat-app", "tool-call", control.WAIT, control.CONDITION):
            errors.append((f"nodes[{node_id}].data.subtype", f"unknown subtype “{subtype}”"))
    if errors:
        return {}, errors
    errors, order = _chain(document, by_id)
    if errors:
        return {}, errors
    trigger = by_id[order[0]]["data"].get("config") or {}
    settings = document.get("settings") or {}
    definition = {
        "trigger_type": trigger.get("event"),
        "trigger_config": {k: v for k, v in trigger.items() if k in ("from_stage", "to_stage")},
        "conditions": trigger.get("conditions") or {},
        "error_handling": ERROR_HANDLING.get(settings.get("errorPolicy", "abort"), settings.get("errorPolicy")),
        "reenrollment": settings.get("reenrollment", "not_while_running"),
        "timeout_seconds": settings.get("timeoutSeconds", 60),
        "actions": [],
    }
    for key in sorted(set(trigger) - {"event", "from_stage", "to_stage", "conditions"}):
        errors.append((f"nodes[{order[0]}].data.config.{key}", "unknown setting (event, from_stage, to_stage, "
                                                               "conditions)"))
    for node_id in order[1:]:
        config = by_id[node_id]["data"].get("config") or {}
        subtype = by_id[node_id]["data"].get("subtype")
        if control.is_control(subtype):
            definition["actions"].append({"id": node_id, "type": subtype, "config": config})
            continue
        tool = config.get("toolName")
        if tool not in ACTIONS:
            errors.append((f"nodes[{node_id}].data.config.toolName", f"“{tool}” is not a tool; use one of "
                                                                     f"{', '.join(ACTIONS)}"))
            continue
        unknown = sorted(set(config) - {"toolName", "defaults"})
        if unknown:
            errors.append((f"nodes[{node_id}].data.config.{unknown[0]}", "unknown setting (toolName, defaults)"))
        definition["actions"].append({"id": node_id, "type": ACTIONS[tool], "config": config.get("defaults") or {}})
    return definition, errors


def place_in_document(where: str, definition: dict) -> str:
    """A definition error's place ("actions[1].config.to") as the document's place
    ("nodes[send-email].data.config.defaults.to")."""
    match = re.match(r"actions\[(\d+)\]\.?(.*)", where)
    actions = definition.get("actions") or []
    if match and int(match.group(1)) < len(actions):
        rest = match.group(2)
        action = actions[int(match.group(1))]
        node = f"nodes[{action['id']}].data"
        if rest.startswith("config") and control.is_control(action.get("type")):
            return f"{node}.{rest}"
        if rest.startswith("config"):
            return f"{node}.config.defaults{rest[len('config'):]}"
        return f"{node}.config.toolName" if rest == "type" else f"{node}.{rest}" if rest else node
    if where.startswith(("trigger_type", "trigger_config", "conditions")):
        key = where.split(".", 1)
        tail = {"trigger_type": "event"}.get(key[0], key[1] if key[0] == "trigger_config" and len(key) > 1 else where)
        return f"nodes[{TRIGGER_ID}].data.config.{tail}"
    setting = {"error_handling": "errorPolicy", "reenrollment": "reenrollment", "timeout_seconds": "timeoutSeconds"}
    return f"settings.{setting[where]}" if where in setting else where


# --- Comparing two documents --------------------------------------------------------------------
def compare(old: dict, new: dict) -> dict:
    """Nodes and edges added, removed and changed (by node id), and a unified text diff."""
    old_nodes = {n["id"]: n for n in old.get("nodes", [])}
    new_nodes = {n["id"]: n for n in new.get("nodes", [])}
    edge = lambda e: (e.get("source"), e.get("target"), e.get("sourceHandle"))  # noqa: E731
    old_edges, new_edges = {edge(e) for e in old.get("edges", [])}, {edge(e) for e in new.get("edges", [])}
    text = "".join(difflib.unified_diff(to_yaml(old).splitlines(True), to_yaml(new).splitlines(True),
                                        fromfile="before", tofile="after"))
    return {
        "nodes_added": [new_nodes[i] for i in new_nodes if i not in old_nodes],
        "nodes_removed": [old_nodes[i] for i in old_nodes if i not in new_nodes],
        "nodes_changed": [(old_nodes[i], new_nodes[i]) for i in new_nodes
                          if i in old_nodes and old_nodes[i] != new_nodes[i]],
        "edges_added": sorted(new_edges - old_edges, key=str),
        "edges_removed": sorted(old_edges - new_edges, key=str),
        "settings_changed": old.get("settings") != new.get("settings"),
        "text": text,
    }
