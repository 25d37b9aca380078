"""Workflows as YAML documents (docs/product.md#documents): export, import, compare.

A workflow's definition is written out as a document: a header (`id`, `name`, `_status`),
`nodes` (every node `type: workflow`, behaviour in `data.subtype`, a `data.label` and a
`data.config`) and `edges` (`source`, `target`, optional `sourceHandle`). The trigger is a
`chat-app` (the CRM event, its stage filter and conditions), `manual` or `schedule` node;
actions are `tool-call` nodes (`crm/send_email`, `crm/create_task`, `crm/update_record`,
`http/request`) whose arguments are in `config.defaults`; every other subtype keeps its settings
in `config` as they are. Node ids are stable across versions, so two versions compare node by
node.

The header may also hold, both optional on import, `description` and `settings` (`errorPolicy`
abort | skip | pause, `reenrollment`, `timeoutSeconds`). `_status` is draft | production |
paused | archive.

Errors name the place as `nodes[<node id>].data.config…` and, for YAML text, the line.
"""

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from crm_automation import bounded_reader
from crm_automation.automation import wording
from crm_automation.automation.definition import catalog, graph
from crm_automation.automation.models import Workflow
from crm_automation.automation.nodes import control

TRIGGER_ID = "trigger"
MAX_NAME = wording.limit_of(Workflow, "name")
TOOLS = {"send_email": "crm/send_email", "create_task": "crm/create_task", "update_field": "crm/update_record",
         "http_request": "http/request", "create_project": "crm/create_project", "create_contact": "crm/create_contact",
         "create_deal": "crm/create_deal", "create_note": "crm/create_note", "delete_record": "crm/delete_record",
         "archive_record": "crm/archive_record", "send_sms": "crm/send_sms", "post_slack": "crm/post_slack",
         "post_teams": "crm/post_teams"}
ACTIONS = {tool: action for action, tool in TOOLS.items()}
ERROR_POLICY = {"stop": "abort", "continue": "skip", "pause": "pause", "fallback": "fallback"}
ERROR_HANDLING = {policy: handling for handling, policy in ERROR_POLICY.items()}
STATUS_OUT = {"draft": "draft", "activated": "production", "paused": "paused", "archived": "archive"}
STATUS_IN = {"draft": "draft", "production": "activated", "paused": "paused", "archive": "archived"}
# Node subtypes whose config is the step's config as it is (no toolName / defaults wrapping).
PLAIN = {"desktop-notification": "notify", "function": "function", "user-input": "user_input",
         "sub-workflow": "sub_workflow", "response": "response",
         **{node: node for node in (*catalog.LATER_NODES, *catalog.AI_NODES)}}
# The settings of relative-time (relative_time.py) and record-updated (record_changes.py)
# triggers, on a chat-app trigger node.
RELATIVE_KEYS = ("field", "offsetDays", "time", "stage", "days", "fields", "crossing", "bulk")
PLAIN_SUBTYPE = {action: subtype for subtype, action in PLAIN.items()}
TRUE_HANDLE, FALSE_HANDLE = "condition-true", "condition-false"
NODE_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@dataclass(frozen=True)
class TriggerNode:
    """How a trigger node of one subtype reads as a trigger type and its settings, and back.

    `keys`: every key its config takes, in the order messages list them (None: any; a
    schedule's are checked by schedules.validate); `own`: those the node reads itself, the
    rest are the trigger's settings (`trigger_config`)."""

    keys: tuple[str, ...] | None
    own: tuple[str, ...]
    type_of: Callable[[dict], object]  # the trigger type its config says
    config_of: Callable[[str], dict]  # the config that says a trigger type
    check: Callable[[dict], list[tuple[str, str]]] = lambda config: []  # (key, message): cannot be read


MANUAL_ENTITIES = ("deal", "lead", "contact", "project", "none")


def _entity_problems(config: dict) -> list[tuple[str, str]]:
    return [] if config.get("entity", "deal") in MANUAL_ENTITIES else [
        ("entity", f"must be one of {', '.join(MANUAL_ENTITIES)} (what it starts on; none: from the workflow list)")]


def _manual_type(config: dict) -> object:
    entity = config.get("entity", "deal")
    return catalog.MANUAL_NONE if entity == "none" else f"manual_{entity}"


def _event_problems(config: dict) -> list[tuple[str, str]]:
    return [] if isinstance(event_type(config.get("event")), str) else [
        ("event", "is required (text): the CRM event, e.g. deal_stage_change")]


TRIGGER_NODES = {
    "chat-app": TriggerNode(keys=("event", "from_stage", "to_stage", "conditions", "endpoint", *RELATIVE_KEYS),
                            own=("event", "conditions"), type_of=lambda config: event_type(config.get("event")),
                            config_of=lambda trigger_type: {"event": str(trigger_type).removeprefix(
                                catalog.EVENT_PREFIX)}, check=_event_problems),
    "manual": TriggerNode(keys=("entity", "inputs"), own=("entity",), type_of=_manual_type,
                          config_of=lambda trigger_type: {"entity": catalog.MANUAL.get(trigger_type) or "none"},
                          check=_entity_problems),
    "schedule": TriggerNode(keys=None, own=("conditions",), type_of=lambda config: catalog.SCHEDULE,
                            config_of=lambda trigger_type: {}),
}
TRIGGERS = tuple(TRIGGER_NODES)


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
def new_node_id(action_type: object, taken: set[str]) -> str:
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
def _trigger_label(trigger_type: Any, config: dict) -> str:
    label = catalog.trigger_label(trigger_type)
    if config.get("to_stage"):
        label += f" to {config['to_stage']}"
    if config.get("from_stage"):
        label += f" from {config['from_stage']}"
    return label


def _action_label(action: dict) -> str:
    config = action.get("config") or {}
    if action.get("type") == "update_field":
        return f"Update {config.get('field', 'field')}"
    if action.get("type") == "function":
        return f"Call {str(config.get('functionRef', 'function')).replace('/', ' ')}"
    kind: Any = action.get("type")  # (a draft's node may have none)
    return {"send_email": "Send email", "create_task": "Create task", "notify": "Notify",
            "create_project": "Create project", "create_contact": "Create contact", "create_deal": "Create deal",
            "create_note": "Add a note", "delete_record": "Delete record", "archive_record": "Archive record",
            "send_sms": "SMS", "post_slack": "Post to Slack", "post_teams": "Post to Teams",
            "http_request": "HTTP request",
            "user_input": "Ask", "sub_workflow": f"Run {config.get('workflowId', 'sub-workflow')}"}.get(kind, "Step")


def _unique(label: str, used: set[str]) -> str:
    candidate, n = label, 2
    while candidate.casefold() in used:
        candidate, n = f"{label} {n}", n + 1
    used.add(candidate.casefold())
    return candidate


def _subtype(action_type: Any) -> str:
    if control.is_control(action_type):
        return action_type
    return PLAIN_SUBTYPE.get(action_type, "tool-call")


def _auto_label(action: dict) -> str:
    if control.is_control(action.get("type")):
        return control.label(action["type"], action.get("config"))
    return _action_label(action)


def canonical(value):
    """Mappings with their keys in PostgreSQL's jsonb order (shorter first, then by bytes): what
    a database stored comes out the same on SQLite and PostgreSQL, so an export is the same text
    wherever it was made, and a file written in this order round-trips exactly."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value, key=lambda k: (len(k.encode()), k.encode()))}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def trigger_subtype(trigger_type) -> str:
    """The trigger node's subtype for a trigger type: manual_*, schedule, else a CRM event (chat-app)."""
    if trigger_type in catalog.MANUAL:
        return "manual"
    return "schedule" if trigger_type == catalog.SCHEDULE else "chat-app"


def document_of(*, key: str, name: str, definition: dict, description: str = "", status: str | None = None) -> dict:
    """A definition (trigger, conditions, settings, actions, graph) as a workflow document: what
    the services store and export writes. Nodes without a label get one made from what they do."""
    definition = {**definition, "actions": with_node_ids(list(definition.get("actions") or []))}
    trigger = (definition.get("graph") or {}).get("trigger") or {}
    given = [trigger.get("label"), *(action.get("label") for action in definition["actions"])]
    used = {TRIGGER_ID, *(str(label).casefold() for label in given if label)}
    nodes = [_trigger_node(definition, used), *(_action_node(action, used) for action in definition["actions"])]
    positions = (definition.get("graph") or {}).get("positions") or {}
    for node in nodes:
        if node["id"] in positions:
            node["position"] = dict(positions[node["id"]])
    edges = [{k: edge[k] for k in ("source", "target", "sourceHandle") if edge.get(k)}
             for edge in graph.edges_of(definition)]
    document = {"id": key, "name": name}
    if status:
        document["_status"] = STATUS_OUT.get(status, status)
    if description:
        document["description"] = description
    return {**document, "settings": _settings_of(definition), "nodes": nodes, "edges": edges}


def _trigger_node(definition: dict, used: set[str]) -> dict:
    trigger_type: Any = definition.get("trigger_type")
    settings = definition.get("trigger_config") or {}
    subtype = trigger_subtype(trigger_type)
    config = TRIGGER_NODES[subtype].config_of(trigger_type)
    config.update({k: v for k, v in canonical(settings).items() if v not in (None, "")})
    if (definition.get("conditions") or {}).get("rules"):
        config["conditions"] = canonical(definition["conditions"])
    label = ((definition.get("graph") or {}).get("trigger") or {}).get("label")
    return {"id": graph.trigger_id(definition), "type": "workflow", "data": {
        "subtype": subtype, "label": label or _unique(_trigger_label(trigger_type, settings), used), "config": config}}


def _action_node(action: dict, used: set[str]) -> dict:
    kind: Any = action.get("type")
    subtype = _subtype(kind)
    config = canonical(action.get("config") or {})
    if subtype == "tool-call":
        config = {"toolName": TOOLS.get(kind, kind), "defaults": config}
    data = {"subtype": subtype, "label": action.get("label") or _unique(_auto_label(action), used), "config": config}
    if action.get("on_error"):
        data["onError"] = canonical(action["on_error"])
    return {"id": action["id"], "type": "workflow", "data": data}


def _settings_of(definition: dict) -> dict:
    handling: Any = definition.get("error_handling")
    return {"errorPolicy": ERROR_POLICY.get(handling, handling),
            "reenrollment": definition.get("reenrollment", "every_time"),
            "timeoutSeconds": definition.get("timeout_seconds", 60)}


# --- YAML ---------------------------------------------------------------------------------------
def to_yaml(document: dict) -> str:
    plain = json.loads(json.dumps(document))  # plain JSON types only (choice enums are str subclasses)
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def from_yaml(text: str) -> tuple[dict, yaml.Node | None]:
    """The document and its YAML node tree (for line numbers); DocumentError if unreadable or
    past the bounded reader's limits (size, depth, values, no anchors)."""
    try:
        document, tree = bounded_reader.read_yaml(text, bounded_reader.DOCUMENT)
    except bounded_reader.InputRefused as exc:
        raise DocumentError([("", exc.message, exc.line)]) from None
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
    if index.isascii() and index.isdigit():
        return sequence.value[int(index)] if int(index) < len(sequence.value) else None
    for item in sequence.value:  # nodes[<id>]: the item whose `id` is that
        if isinstance(item, yaml.MappingNode) and any(
                getattr(k, "value", None) == "id" and getattr(v, "value", None) == index for k, v in item.value):
            return item
    return None


# --- Document → definition ----------------------------------------------------------------------
def _check_shape(document: dict) -> list[tuple[str, str]]:
    errors = []
    if not isinstance(document.get("id"), str) or not document["id"].strip():
        errors.append(("id", "is required (text)"))
    if not isinstance(document.get("name"), str) or not document["name"].strip():
        errors.append(("name", "a workflow needs a name"))
    if isinstance(document.get("id"), str) and not (NODE_ID.fullmatch(document["id"]) and len(document["id"]) <= 70):
        errors.append(("id", "must be kebab-case (lower-case letters, digits and single dashes), at most 70 long"))
    named = document.get("name")
    name = named.strip() if isinstance(named, str) else ""
    if len(name) > MAX_NAME:  # refused, never cut: the person decides how to shorten it
        errors.append(("name", f"is {len(name):,} characters long; a name has at most {MAX_NAME} (nothing was "
                               "cut: shorten it)"))
    if document.get("_status") not in (None, *STATUS_IN):
        errors.append(("_status", f"must be one of {', '.join(STATUS_IN)}"))
    for key in ("nodes", "edges"):
        if not isinstance(document.get(key), list):
            errors.append((key, "must be a list"))
    settings = document.get("settings")
    if settings is not None and not isinstance(settings, dict):
        errors.append(("settings", "must be a mapping (errorPolicy, reenrollment, timeoutSeconds)"))
    if isinstance(settings, dict):
        for key in ("errorPolicy", "reenrollment"):
            if key in settings and not isinstance(settings[key], str):
                errors.append((f"settings.{key}", "must be text"))
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
        if not isinstance(data.get("subtype"), str):
            errors.append((f"{place}.data.subtype", "is required (text): chat-app, tool-call, condition, …"))
        if node.get("type") != "workflow":
            errors.append((f"{place}.type", "must be workflow (the behaviour is in data.subtype)"))
        if not isinstance(data.get("label"), str) or not data["label"].strip():
            errors.append((f"{place}.data.label", "is required: templates refer to nodes by label"))
        if not isinstance(data.get("config", {}), dict):
            errors.append((f"{place}.data.config", "must be a mapping"))
            continue
        if "position" in node and (problem := graph.position_problem(node["position"])):
            errors.append((f"{place}.position", problem))
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


def _edges(document: dict) -> tuple[list[tuple[str, str]], list[dict]]:
    errors, edges = [], []
    for i, edge in enumerate(document["edges"]):
        if not isinstance(edge, dict):
            errors.append((f"edges[{i}]", "must have source and target"))
            continue
        unknown = sorted(set(edge) - {"source", "target", "sourceHandle"})
        if unknown:
            errors.append((f"edges[{i}].{unknown[0]}", "unknown key (source, target, sourceHandle)"))
        edges.append({k: edge[k] for k in ("source", "target", "sourceHandle") if edge.get(k) not in (None, "")})
    return errors, edges


def event_type(event):
    """A chat-app node's `event` as a trigger type: ours (`contact_updated`, what exports write)
    or the same event spelled with dots (`contact.updated`, `task.completed`); any other name is
    a business event of the organization's catalog (`invoice.overdue` → "event:invoice.overdue";
    validation checks that it is declared)."""
    if not isinstance(event, str) or event in catalog.TRIGGER_TYPES:
        return event
    if "." in event and event.replace(".", "_") in catalog.TRIGGER_TYPES:
        return event.replace(".", "_")
    if event and not event.startswith(catalog.EVENT_PREFIX):
        return catalog.EVENT_PREFIX + event
    return event


def definition_from(document: dict) -> tuple[dict, list[tuple[str, str]]]:
    """The definition (trigger, conditions, settings, nodes with their ids and labels, edges) of
    a document, and what is wrong with its format, named by place; the definition is {} when
    some node could not be read. The graph's shape and the nodes' configs are checked on the
    definition (validation.validate_definition). compiled.py keeps what this gives a version."""
    header = _check_shape(document)
    if any(place in ("nodes", "edges") or place.startswith("settings") for place, _ in header):
        return {}, header  # nothing below can be read
    # The header's problems (name, id, status) are reported with everything else: one save
    # shows all there is to fix.
    errors, by_id = _check_nodes(document["nodes"])
    if errors:
        return {}, header + errors
    edge_errors, edges = _edges(document)
    errors = _subtype_errors(by_id) + edge_errors
    if errors:
        return {}, header + errors
    trigger_node = next(node for node in by_id.values() if node["data"]["subtype"] in TRIGGER_NODES)
    definition, errors = _trigger_of(trigger_node, document.get("settings") or {})
    complete = not errors  # every node was read (its settings can be checked too)
    errors += _unknown_trigger_keys(trigger_node)
    for node in by_id.values():
        if node is not trigger_node:
            action, problems = _action_of(node)
            errors += problems
            if action is None:
                complete = False
            else:
                definition["actions"].append(action)
    if not complete:
        return {}, header + errors
    _drop_automatic_labels(definition)
    positions = {node_id: graph.position_of(node["position"]) for node_id, node in by_id.items()
                 if node.get("position") is not None}
    _keep_graph(definition, trigger_node, edges, positions)
    return definition, header + errors


def _subtype_errors(by_id: dict[str, dict]) -> list[tuple[str, str]]:
    errors = [(f"nodes[{node_id}].data.subtype", f"unknown subtype “{node['data'].get('subtype')}”")
              for node_id, node in by_id.items()
              if node["data"].get("subtype") not in (*TRIGGER_NODES, "tool-call", *PLAIN, *control.LABELS)]
    triggers = [node_id for node_id, node in by_id.items() if node["data"].get("subtype") in TRIGGER_NODES]
    if not errors and len(triggers) != 1:
        errors.append(("nodes", "a workflow has exactly one trigger node (subtype chat-app, manual or schedule); "
                                f"found {len(triggers)}"))
    return errors


def _trigger_of(node: dict, settings: dict) -> tuple[dict, list[tuple[str, str]]]:
    """The definition's trigger and settings from the trigger node, its actions still empty;
    the problems that keep it from being read."""
    reader, config = TRIGGER_NODES[node["data"]["subtype"]], node["data"].get("config") or {}
    definition = {
        "trigger_type": reader.type_of(config),
        "trigger_config": {k: v for k, v in config.items()
                           if k not in reader.own and (reader.keys is None or k in reader.keys)},
        "conditions": config.get("conditions") or {},
        "error_handling": ERROR_HANDLING.get(settings.get("errorPolicy", "abort"), settings.get("errorPolicy")),
        "reenrollment": settings.get("reenrollment", "not_while_running"),
        "timeout_seconds": settings.get("timeoutSeconds", 60),
        "actions": [],
    }
    return definition, [(f"nodes[{node['id']}].data.config.{key}", message) for key, message in reader.check(config)]


def _unknown_trigger_keys(node: dict) -> list[tuple[str, str]]:
    keys, config = TRIGGER_NODES[node["data"]["subtype"]].keys, node["data"].get("config") or {}
    return [] if keys is None else [(f"nodes[{node['id']}].data.config.{key}", f"unknown setting ({', '.join(keys)})")
                                    for key in sorted(set(config) - set(keys))]


def _action_of(node: dict) -> tuple[dict | None, list[tuple[str, str]]]:
    """The definition's action for a node; None when its tool is unknown."""
    node_id, data = node["id"], node["data"]
    config, subtype = data.get("config") or {}, data.get("subtype")
    action = {"id": node_id, "type": PLAIN.get(subtype, subtype), "config": config, "label": data["label"].strip()}
    if data.get("onError") is not None:
        action["on_error"] = data["onError"]
    if subtype != "tool-call":
        return action, []
    tool = config.get("toolName")
    if not isinstance(tool, str) or tool not in ACTIONS:
        return None, [(f"nodes[{node_id}].data.config.toolName", f"“{tool}” is not a tool; use one of "
                                                                 f"{', '.join(ACTIONS)}")]
    unknown = sorted(set(config) - {"toolName", "defaults"})
    errors = [(f"nodes[{node_id}].data.config.{unknown[0]}", "unknown setting (toolName, defaults)")] if unknown else []
    return {**action, "type": ACTIONS[tool], "config": config.get("defaults") or {}}, errors


def _keep_graph(definition: dict, trigger_node: dict, edges: list[dict], positions: dict[str, dict]) -> None:
    """Only what a plain chain would not reproduce is kept: the trigger's own id and label, the
    edges when they are not the chain of the nodes in order, and where the canvas placed each
    node (no run reads it)."""
    graph_part: dict[str, Any] = {}
    label = trigger_node["data"]["label"].strip()
    if trigger_node["id"] != TRIGGER_ID or label != _trigger_label(definition["trigger_type"],
                                                                   definition["trigger_config"]):
        graph_part["trigger"] = {"id": trigger_node["id"], "label": label}
    if edges != graph.chain_edges({**definition, "graph": graph_part}):
        graph_part["edges"] = edges
    if positions:
        graph_part["positions"] = positions
    if graph_part:
        definition["graph"] = graph_part


def _labels(document: dict) -> dict[str, str]:
    return {node["id"]: node["data"]["label"] for node in document["nodes"]}


def _unlabelled(action: dict) -> dict:
    return {k: v for k, v in action.items() if k != "label"}


def _drop_automatic_labels(definition: dict) -> None:
    """Labels equal to the ones export would write anyway are not kept: a workflow imported
    from its own export has the same definition (and versions compare equal)."""
    labelled = definition["actions"]
    automatic = _labels(document_of(key="x", name="x", definition={
        **definition, "actions": [_unlabelled(a) for a in labelled]}))
    kept = [_unlabelled(a) if a.get("label") == automatic.get(a["id"]) else a for a in labelled]
    again = _labels(document_of(key="x", name="x", definition={**definition, "actions": kept}))
    if all(again[a["id"]] == a["label"] for a in labelled):
        definition["actions"] = kept


def place_in_document(where: str, definition: dict) -> str:
    """A definition error's place ("actions[1].config.to") as the document's place
    ("nodes[send-email].data.config.defaults.to")."""
    match = re.match(r"actions\[(\d+)\]\.?(.*)", where)
    actions = definition.get("actions") or []
    if match and int(match.group(1)) < len(actions):
        rest = match.group(2)
        action = actions[int(match.group(1))]
        node = f"nodes[{action['id']}].data"
        if rest.startswith("on_error"):
            return f"{node}.onError{rest[len('on_error'):]}"
        if rest.startswith("config") and _subtype(action.get("type")) != "tool-call":
            return f"{node}.{rest}"
        if rest.startswith("config"):
            return f"{node}.config.defaults{rest[len('config'):]}"
        return f"{node}.config.toolName" if rest == "type" else f"{node}.{rest}" if rest else node
    if where.startswith(("trigger_type", "trigger_config", "conditions")):
        key = where.split(".", 1)
        tail = {"trigger_type": "event"}.get(key[0], key[1] if key[0] == "trigger_config" and len(key) > 1 else where)
        return f"nodes[{graph.trigger_id(definition)}].data.config.{tail}"
    setting = {"error_handling": "errorPolicy", "reenrollment": "reenrollment", "timeout_seconds": "timeoutSeconds"}
    return f"settings.{setting[where]}" if where in setting else where


# --- Comparing two documents --------------------------------------------------------------------
def _unplaced(node: dict) -> dict:
    """A node without its place on the canvas: moving a node changes nothing it does."""
    return {k: v for k, v in node.items() if k != "position"}


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
                          if i in old_nodes and _unplaced(old_nodes[i]) != _unplaced(new_nodes[i])],
        "nodes_moved": [i for i in new_nodes if i in old_nodes and _unplaced(old_nodes[i]) == _unplaced(new_nodes[i])
                        and old_nodes[i].get("position") != new_nodes[i].get("position")],
        "edges_added": sorted(new_edges - old_edges, key=str),
        "edges_removed": sorted(old_edges - new_edges, key=str),
        "settings_changed": old.get("settings") != new.get("settings"),
        "text": text,
    }
