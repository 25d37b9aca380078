"""A workflow's flow as a picture: inline SVG drawn on the server, no JavaScript.

Layered layout: each node's row is its depth from the trigger (found breadth-first, then
pushed below every node that leads into it, so a merge sits under all of its branches rather
than beside the shortest one); the nodes of a row are spread across it in the order their
parents have. Edges are curves with their way out in words ("yes", "no", "approved" …); the
edge that ends a loop's iteration goes back up, so it is drawn dashed on the right side.

Each box says what its step is set up to do (words.step_settings_in_words: “Create task “Call”
for the record's owner, due in 2 days”, “Wait 2 days”; the trigger's box, the trigger and its
conditions), on up to two lines cut at a word boundary; the whole sentence is in the box's
tooltip and in the list under the picture.

Labels are user input: every piece of text goes through `_text`, which escapes it for XML.
"""

from collections import deque
from dataclasses import dataclass
from html import escape

from crm_automation.automation.definition import documents, graph
from crm_automation.automation.wording import shorten
from crm_automation.web.words import step_settings_in_words, trigger_in_words, trigger_settings_in_words

BOX_W, BOX_H = 240, 84  # a node's box: its name, two lines of what it does, its type
GAP_X, GAP_Y = 36, 76  # between boxes side by side, between rows
MARGIN = 24
LANE_ROOM = 16  # between lanes of loop back-edges, right of the widest row
WORDS_ROOM = 72  # right of the last lane: "next item"
MAX_LABEL = 30  # characters on a box; the whole label is in the box's tooltip
WORDS_LINE = 38  # characters of a line of what the step does (11 px type in a 240 px box)
QUOTE = 24  # characters of a title, subject or prompt on a box, so the other settings fit beside it
HANDLE_WORDS = {graph.TRUE: "yes", graph.FALSE: "no", graph.BODY: "each item", graph.DONE: "when done",
                "approved": "approved", "rejected": "rejected", "timed-out": "no answer in time"}
COLORS = {"trigger": ("#ddf4ff", "#0b5cad"), "control": ("#fff8c5", "#9a6700"), "step": ("#ffffff", "#59636e")}


@dataclass(frozen=True)
class Box:
    id: str
    label: str
    kind: str  # the node's type in words
    tone: str  # a key of COLORS
    x: int
    y: int
    words: str = ""  # what it is set up to do (the tooltip)
    short_words: str = ""  # the same with what people typed shortened (the box)


@dataclass(frozen=True)
class Line:
    source: str
    target: str
    words: str  # the way out in words, "" for the only way out
    back: bool  # ends a loop iteration (goes back up to the loop node)
    nth: int  # which of the source's ways out, to spread their starts
    of: int


def _text(value) -> str:
    return escape(str(value), quote=True)


def handle_in_words(handle: str) -> str:
    """“yes”, “no”, “branch 2”, “approved” … for an edge's sourceHandle; "" for none."""
    if handle in HANDLE_WORDS:
        return HANDLE_WORDS[handle]
    for prefix, word in (("branch-", "branch"), ("route-", "route")):
        if handle.startswith(prefix) and handle[len(prefix):].isascii() and handle[len(prefix):].isdigit():
            return f"{word} {int(handle[len(prefix):]) + 1}"
    return handle


TYPE_WORDS = {"send_email": "Send email", "update_field": "Update field", "create_task": "Create task",
              "wait": "Wait", "condition": "Continue only if", "parallel": "Parallel branches",
              "merge": "Merge branches", "loop": "Loop", "notify": "Desktop notification", "function": "Function",
              "user_input": "Ask a person (approval)", "sub_workflow": "Sub-workflow",
              "http_request": "HTTP request (signed webhook)"}


def type_in_words(node_type: str | None) -> str:
    # Another type (router, agent …): its name is the best we have.
    return TYPE_WORDS.get(node_type or "") or str(node_type or "step").replace("_", " ").capitalize()


def node_labels(definition: dict, stage_names: dict[str, str]) -> dict[str, str]:
    """{node id: label}: the labels the YAML shows (export writes one for every node), the
    trigger in words when the person did not name it."""
    document = documents.document_of(key="x", name="x", definition=definition)
    labels = {node["id"]: node["data"].get("label", "") for node in document["nodes"]}
    trigger = ((definition.get("graph") or {}).get("trigger") or {}).get("label")
    labels[graph.trigger_id(definition)] = trigger or trigger_in_words(
        definition.get("trigger_type", ""), definition.get("trigger_config"), stage_names)
    return labels


def _rows(flow: graph.Graph) -> list[list[str]]:
    """Node ids by row: breadth-first from the trigger, then each node below all its parents
    (back-edges of loops left out, so the rest has no cycle)."""
    forward = {source: [t for _, t in flow.targets(source) if not flow.ends_iteration(source, t)]
               for source in [flow.trigger, *flow.nodes]}
    order, seen, queue = [], {flow.trigger}, deque([flow.trigger])
    while queue:
        current = queue.popleft()
        order.append(current)
        for target in forward.get(current, []):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    order += [node_id for node_id in flow.nodes if node_id not in seen]  # unreachable: still shown, at the end
    depth = {node_id: 0 for node_id in order}
    for _ in order:  # longest path on a DAG: at most one pass per node until nothing moves
        moved = False
        for source in order:
            for target in forward.get(source, []):
                if depth[target] < depth[source] + 1:
                    depth[target], moved = depth[source] + 1, True
        if not moved:
            break
    rows: list[list[str]] = [[] for _ in range(max(depth.values()) + 1)]
    for node_id in order:
        rows[depth[node_id]].append(node_id)
    return _ordered(rows, forward)


def _ordered(rows: list[list[str]], forward: dict[str, list[str]]) -> list[list[str]]:
    """Each row sorted by where its parents are (their mean position), fewer crossings."""
    parents: dict[str, list[str]] = {}
    for source, targets in forward.items():
        for target in targets:
            parents.setdefault(target, []).append(source)
    def centred(row: list[str]) -> dict[str, float]:  # rows are centred: a position is its offset from the middle
        return {node_id: i - (len(row) - 1) / 2 for i, node_id in enumerate(row)}

    place = centred(rows[0])
    for r, row in enumerate(rows[1:], start=1):
        fallback = {node_id: float(len(place) + i) for i, node_id in enumerate(row)}  # no parent: at the end

        def mean_of_parents(node_id: str, fallback=fallback) -> float:
            known = [place[p] for p in parents.get(node_id, []) if p in place]
            return sum(known) / len(known) if known else fallback[node_id]

        rows[r] = sorted(row, key=mean_of_parents)  # stable: ties keep the breadth-first order
        place.update(centred(rows[r]))
    return rows


@dataclass(frozen=True)
class Names:
    """What steps name by key, as people know it: stages (slug → name), workflows (key → name),
    webhook targets (name → URL, whose host a box shows)."""
    stages: dict[str, str]
    workflows: dict[str, str] | None = None
    targets: dict[str, str] | None = None


def _names(stage_names: dict[str, str] | Names) -> Names:
    return stage_names if isinstance(stage_names, Names) else Names(stages=stage_names or {})


def node_words(definition: dict, flow: graph.Graph, node_id: str, names: Names, label: str,
               quote: int | None = None) -> str:
    """What the node is set up to do; for the trigger, the trigger and its conditions (without
    repeating its label when the label already says it). `quote`: see step_settings_in_words."""
    node = flow.nodes.get(node_id)
    if node is not None:
        words = step_settings_in_words(node.type, node.config, names.stages, workflows=names.workflows,
                                       targets=names.targets, quote=quote)
    else:
        words = trigger_settings_in_words(definition.get("trigger_type", ""), definition.get("trigger_config"),
                                          definition.get("conditions"), names.stages)
    if _short(label) != label:  # the box cuts its label: the words say it whole
        return words
    if words == label:
        return ""
    if words.startswith(label + ", "):
        rest = words[len(label) + 2:]
        return rest[:1].upper() + rest[1:]
    return words


def _boxes(flow: graph.Graph, rows: list[list[str]], labels: dict[str, str],
           said: dict[str, tuple[str, str]]) -> tuple[dict[str, Box], int]:
    widest = max(len(row) for row in rows)
    width = widest * BOX_W + (widest - 1) * GAP_X
    boxes = {}
    for r, row in enumerate(rows):
        row_width = len(row) * BOX_W + (len(row) - 1) * GAP_X
        left = MARGIN + (width - row_width) // 2
        for i, node_id in enumerate(row):
            node = flow.nodes.get(node_id)
            tone = "trigger" if node is None else "control" if node.type in graph.CONTROL_TYPES else "step"
            kind = "Trigger" if node is None else type_in_words(node.type)
            boxes[node_id] = Box(node_id, labels.get(node_id) or kind, kind, tone,
                                 left + i * (BOX_W + GAP_X), MARGIN + r * (BOX_H + GAP_Y), *said.get(node_id, ("", "")))
    return boxes, width


def _lines(flow: graph.Graph) -> list[Line]:
    lines = []
    for source in [flow.trigger, *flow.nodes]:
        ways = flow.targets(source)
        for n, (handle, target) in enumerate(ways):
            lines.append(Line(source, target, handle_in_words(handle), flow.ends_iteration(source, target),
                              n, len(ways)))
    return lines


def _short(label: str) -> str:
    return shorten(label, MAX_LABEL)


def wrapped(text: str, width: int = WORDS_LINE, lines: int = 2) -> list[str]:
    """`text` on at most `lines` lines of `width` characters, broken between words (a word
    longer than a line is broken inside); the last line ends with an ellipsis when text is left."""
    found: list[str] = []
    words = text.split()
    while words and len(found) < lines:
        line = ""
        while words and len(line) + len(words[0]) + (1 if line else 0) <= width:
            line = f"{line} {words.pop(0)}".strip()
        if not line:  # one word longer than a line
            line, words[0] = words[0][:width], words[0][width:]
        found.append(line)
    if words:
        found[-1] = shorten(f"{found[-1]} {' '.join(words)}", width)
    return found


def _draw_box(box: Box) -> str:
    fill, stroke = COLORS[box.tone]
    cx = box.x + BOX_W // 2
    # A control step's automatic label is its type ("Loop"): said once.
    kind = (f'<text x="{cx}" y="{box.y + BOX_H - 9}" text-anchor="middle" font-size="10" fill="#59636e">'
            f'{_text(_short(box.kind))}</text>') if box.kind != box.label else ""
    lines = wrapped(box.short_words) if box.short_words else []
    said = "".join(f'<text x="{cx}" y="{box.y + 41 + 15 * n}" text-anchor="middle" font-size="11" fill="#1f2328" '
                   f'class="does">{_text(line)}</text>' for n, line in enumerate(lines))
    tooltip = f"{box.label} ({box.kind})" + (f": {box.words}" if lines else "")
    return (f'<g class="node {box.tone}"><title>{_text(tooltip)}</title>'
            f'<rect x="{box.x}" y="{box.y}" width="{BOX_W}" height="{BOX_H}" rx="8" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{cx}" y="{box.y + (22 if lines else 44)}" text-anchor="middle" font-weight="600" '
            f'font-size="13">{_text(_short(box.label))}</text>{said}{kind}</g>')


def _words_at(x: int, y: int, words: str, anchor: str = "middle") -> str:
    """A way out's words on a white ground, so the line under them does not show through."""
    if not words:
        return ""
    width = len(words) * 7 + 8  # about 7 px a character at 12 px; the ground only needs to cover
    left = x - width // 2 if anchor == "middle" else x - 4
    return (f'<rect x="{left}" y="{y - 12}" width="{width}" height="16" rx="3" fill="#fff"/>'
            f'<text x="{x}" y="{y}" text-anchor="{anchor}" font-size="12" fill="#1f2328">{_text(words)}</text>')


def _draw_forward(line: Line, source: Box, target: Box) -> str:
    """Down from the source's bottom (its ways out spread along it) to the target's top."""
    x1, y1 = source.x + BOX_W * (line.nth + 1) // (line.of + 1), source.y + BOX_H
    x2, y2 = target.x + BOX_W // 2, target.y - 6
    dy = max(30, (y2 - y1) // 2)
    return (f'<g class="edge"><path d="M{x1},{y1} C{x1},{y1 + dy} {x2},{y2 - dy} {x2},{y2}" fill="none" '
            f'stroke-width="1.5" stroke="#59636e" marker-end="url(#arrow)"/>'
            f'{_words_at((x1 + x2) // 2, (y1 + y2) // 2 + 4, line.words)}</g>')


def _draw_back(line: Line, source: Box, target: Box, lane: int) -> str:
    """Up to a loop node: out of the source's bottom into the gap below its row, along that
    gap to a lane right of every box, up the lane, and along the gap above the loop node into
    its top. Gaps and the lane hold no boxes, so the way back never crosses one."""
    x1, y1 = source.x + BOX_W * (line.nth + 1) // (line.of + 1), source.y + BOX_H
    below, above = y1 + GAP_Y // 4, target.y - GAP_Y // 4
    x2, y2 = target.x + BOX_W - 24, target.y - 6
    path = f"M{x1},{y1} V{below} H{lane} V{above} H{x2} V{y2}"
    return (f'<g class="edge back"><path d="{path}" fill="none" stroke-width="1.5" stroke="#8250df" '
            f'stroke-dasharray="6 4" stroke-linejoin="round" marker-end="url(#arrow-back)"/>'
            f'{_words_at(lane + 6, (below + above) // 2, line.words or "next item", "start")}</g>')


DEFS = ('<defs>'
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#59636e"/></marker>'
        '<marker id="arrow-back" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#8250df"/></marker>'
        '</defs>')


def summary(definition: dict, stage_names: dict[str, str] | Names) -> str:
    """One sentence for the picture's title and aria-label."""
    flow = graph.build(definition)
    labels = node_labels(definition, _names(stage_names).stages)
    count = len(flow.nodes)
    steps = "no steps" if count == 0 else "1 step" if count == 1 else f"{count} steps"
    return f"Flow of the workflow: “{labels[flow.trigger]}”, then {steps}"


def svg(definition: dict, stage_names: dict[str, str] | Names) -> str:
    """The flow of a (valid) definition as an <svg> element; every text is escaped. Stage names
    alone, or `Names` (stages, workflows, webhook targets) for the words on the boxes."""
    names = _names(stage_names)
    flow = graph.build(definition)
    labels = node_labels(definition, names.stages)
    rows = _rows(flow)
    said = {node_id: (node_words(definition, flow, node_id, names, labels.get(node_id, "")),
                      node_words(definition, flow, node_id, names, labels.get(node_id, ""), quote=QUOTE))
            for node_id in [flow.trigger, *flow.nodes]}
    boxes, width = _boxes(flow, rows, labels, said)
    lines = [line for line in _lines(flow) if line.source in boxes and line.target in boxes]
    backs = [line for line in lines if line.back]
    lanes = {line: MARGIN + width + LANE_ROOM * (i + 1) for i, line in enumerate(backs)}
    total_w = width + 2 * MARGIN + (LANE_ROOM * len(backs) + WORDS_ROOM if backs else 0)
    total_h = len(rows) * BOX_H + (len(rows) - 1) * GAP_Y + 2 * MARGIN + (GAP_Y // 4 if backs else 0)
    title = _text(summary(definition, stage_names))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="flow-picture" role="img" aria-label="{title}" '
             f'viewBox="0 0 {total_w} {total_h}" width="{total_w}" height="{total_h}" '
             f'font-family="system-ui, sans-serif">',
             f"<title>{title}</title>", DEFS,
             *(_draw_back(line, boxes[line.source], boxes[line.target], lanes[line]) if line.back
               else _draw_forward(line, boxes[line.source], boxes[line.target]) for line in lines),
             *(_draw_box(box) for box in boxes.values()),
             "</svg>"]
    return "".join(parts)


def flow_in_words(definition: dict, stage_names: dict[str, str] | Names) -> list[dict]:
    """The same flow as a list (for screen readers and for copying): each node, its type, what
    it does and where it goes next, by label."""
    names = _names(stage_names)
    flow = graph.build(definition)
    labels = node_labels(definition, names.stages)
    result = []
    for node_id in [flow.trigger, *flow.nodes]:
        node = flow.nodes.get(node_id)
        result.append({
            "label": labels.get(node_id, node_id),
            "kind": "Trigger" if node is None else type_in_words(node.type),
            "does": node_words(definition, flow, node_id, names, labels.get(node_id, "")),
            "next": [{"words": handle_in_words(handle), "label": labels.get(target, target),
                      "back": flow.ends_iteration(node_id, target)} for handle, target in flow.targets(node_id)],
        })
    return result
