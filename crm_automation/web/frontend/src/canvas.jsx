// The workflow canvas: the builder's document drawn as a graph (React Flow), with a palette to
// drag steps from, handles to draw edges from, and auto-layout (dagre). It owns no document: the
// builder (static/web/builder.js) hands it a picture of the document (`api.picture()`: nodes with
// their words, handles and problems; edges) and is told of every change a person makes here
// (`api.onAdd`, `onConnect`, `onDelete`, `onPlace`, `onSelect` …), which it applies to the one
// document the list view, the YAML tab and the server share. Built by `make assets`.
import { StrictMode, useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState, useSyncExternalStore } from "react";
import { createRoot } from "react-dom/client";
import {
  Background, Controls, Handle, MarkerType, MiniMap, Position, ReactFlow, ReactFlowProvider,
  applyNodeChanges, useReactFlow, useUpdateNodeInternals,
} from "@xyflow/react";
import dagre from "@dagrejs/dagre";
import "@xyflow/react/dist/style.css";
import "./canvas.css";

const NODE_WIDTH = 240;
const NODE_HEIGHT = 96; // before a node is measured
const DRAG_TYPE = "application/x-workflow-step";

// Top-left corners for every node, laid out top to bottom by dagre from the edges.
export function layout(nodes, edges, sizes = {}) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "TB", nodesep: 48, ranksep: 64, marginx: 24, marginy: 24 });
  g.setDefaultEdgeLabel(() => ({}));
  nodes.forEach((n) => {
    const size = sizes[n.id] || {};
    g.setNode(n.id, { width: size.width || NODE_WIDTH, height: size.height || NODE_HEIGHT });
  });
  edges.forEach((e) => { if (g.hasNode(e.source) && g.hasNode(e.target)) g.setEdge(e.source, e.target); });
  dagre.layout(g);
  const placed = {};
  nodes.forEach((n) => {
    const box = g.node(n.id);
    placed[n.id] = { x: Math.round(box.x - box.width / 2), y: Math.round(box.y - box.height / 2) };
  });
  return placed;
}

function StepNode({ id, data }) {
  const outs = data.handles || [{ id: "", label: "" }];
  const problems = data.problems || [];
  const cls = ["canvas-node"];
  if (data.trigger) cls.push("trigger");
  if (problems.length || data.fieldProblems) cls.push("has-error");
  if (data.status) cls.push("run-" + data.status);
  return (
    <div className={cls.join(" ")} data-step={id} title={data.summary || ""}>
      {data.trigger ? null : <Handle type="target" position={Position.Top} isConnectable={data.editable} />}
      <div className="canvas-node-kind">{data.kind}</div>
      <div className="canvas-node-title">{data.title}</div>
      {data.status ? <div className="canvas-node-status">{data.statusWords || data.status}</div> : null}
      {data.summary ? <div className="canvas-node-summary">{data.summary}</div> : null}
      {data.notice ? <div className="canvas-node-notice">{data.notice}</div> : null}
      {problems.map((p, i) => <div key={i} className="canvas-node-error">{p}</div>)}
      {data.fieldProblems ? (
        <div className="canvas-node-error">{data.fieldProblems} problem{data.fieldProblems > 1 ? "s" : ""} in this step's settings</div>
      ) : null}
      <div className="canvas-node-outs">
        {outs.map((h) => (
          <div className="canvas-out" key={h.id || "out"}>
            {h.label ? <span className="canvas-out-label">{h.label}</span> : null}
            <Handle type="source" position={Position.Bottom} id={h.id || null} isConnectable={data.editable}
              aria-label={h.label ? "Way out: " + h.label : "Way out"} />
          </div>
        ))}
      </div>
    </div>
  );
}
const NODE_TYPES = { step: StepNode };

function Palette({ kinds, onAdd }) {
  const groups = [];
  kinds.forEach((k) => {
    const name = k.group || "Steps";
    let group = groups.find((g) => g.name === name);
    if (!group) groups.push(group = { name, kinds: [] });
    group.kinds.push(k);
  });
  return (
    <nav className="canvas-palette" aria-label="Steps to add: drag one onto the canvas, or press it to add it">
      {groups.map((g) => (
        <div key={g.name} className="canvas-palette-group">
          <p className="canvas-palette-title">{g.name}</p>
          {g.kinds.map((k) => (
            <button type="button" key={k.key} className="canvas-palette-item" draggable="true" data-kind={k.key}
              onDragStart={(event) => { event.dataTransfer.setData(DRAG_TYPE, k.key); event.dataTransfer.effectAllowed = "move"; }}
              onClick={() => onAdd(k.key, null)}>{k.label}</button>
          ))}
        </div>
      ))}
    </nav>
  );
}

function Flow({ store, api, controller }) {
  const picture = useSyncExternalStore(store.subscribe, store.get);
  const flow = useReactFlow();
  const updateInternals = useUpdateNodeInternals();
  const [nodes, setNodes] = useState([]);
  const wrapper = useRef(null);
  const automatic = useRef({}); // places laid out here for nodes the document has none for
  const handleKeys = useRef({});
  const laidOutMeasured = useRef(false);
  const editable = picture.editable;

  // Fit the whole graph in view, its top near the top edge (a short flow starts at the top, as
  // a page does, rather than floating in the middle).
  const frame = useCallback(() => {
    const box = wrapper.current && wrapper.current.getBoundingClientRect();
    const all = flow.getNodes();
    if (!box || !all.length) return;
    const bounds = flow.getNodesBounds(all);
    const room = { width: box.width - 48, height: box.height - 96 }; // the toolbar above, a margin around
    const zoom = Math.max(0.1, Math.min(1, room.width / (bounds.width || 1), room.height / (bounds.height || 1)));
    flow.setViewport({ x: box.width / 2 - (bounds.x + bounds.width / 2) * zoom, y: 56 - bounds.y * zoom, zoom });
  }, [flow]);


  // The picture becomes React Flow's nodes; what only the canvas knows (selection, measured size,
  // a drag under way) is kept.
  useEffect(() => {
    const missing = picture.nodes.filter((p) => !p.position && !automatic.current[p.id]);
    if (missing.length) automatic.current = layout(picture.nodes, picture.edges);
    setNodes((current) => {
      const before = new Map(current.map((n) => [n.id, n]));
      // Steps just added (or pasted) come selected, and only they.
      const fresh = picture.nodes.some((p) => !before.has(p.id) && p.selected);
      return picture.nodes.map((p) => {
        const was = before.get(p.id);
        const position = was && was.dragging ? was.position : p.position || automatic.current[p.id] || { x: 0, y: 0 };
        return {
          id: p.id, type: "step", position, data: { ...p, editable },
          selected: was && !fresh ? !!was.selected : !!p.selected, measured: was ? was.measured : undefined,
          dragging: was ? was.dragging : false, deletable: editable && !p.trigger, draggable: editable,
          connectable: editable, ariaLabel: (p.trigger ? "Trigger: " : p.kind + ": ") + p.title,
        };
      });
    });
    const moved = picture.nodes.filter((p) => {
      const key = JSON.stringify(p.handles || null);
      const changed = handleKeys.current[p.id] !== undefined && handleKeys.current[p.id] !== key;
      handleKeys.current[p.id] = key;
      return changed;
    }).map((p) => p.id);
    moved.forEach((id) => remeasure.current.add(id));
  }, [picture, editable]);

  // A node whose ways out changed (a router's route, a parallel's next branch) is measured again
  // once its new handles are in the page, before it is painted: an edge can be drawn from a new
  // handle at once (measured earlier, React Flow would not know where it is).
  const remeasure = useRef(new Set());
  useLayoutEffect(() => {
    if (!remeasure.current.size) return;
    const ids = [...remeasure.current];
    remeasure.current.clear();
    updateInternals(ids);
  }, [nodes, updateInternals]);

  // Once every node has its size, a layout made without sizes is made again with them.
  useEffect(() => {
    if (laidOutMeasured.current || !nodes.length || !nodes.every((n) => n.measured && n.measured.height)) return;
    laidOutMeasured.current = true;
    if (!picture.nodes.some((p) => !p.position)) return;
    const sizes = Object.fromEntries(nodes.map((n) => [n.id, n.measured]));
    automatic.current = layout(picture.nodes, picture.edges, sizes);
    setNodes((current) => current.map((n) => (picture.nodes.find((p) => p.id === n.id) || {}).position ? n
      : { ...n, position: automatic.current[n.id] || n.position }));
    requestAnimationFrame(frame);
  }, [nodes, picture, frame]);

  // The first time every node has its size: the view frames them.
  const framed = useRef(false);
  useEffect(() => {
    if (framed.current || !nodes.length || !nodes.every((n) => n.measured && n.measured.height)) return;
    framed.current = true;
    requestAnimationFrame(frame);
  }, [nodes, frame]);

  const edges = useMemo(() => picture.edges.map((e) => ({
    id: e.source + "|" + (e.sourceHandle || "") + "|" + e.target,
    source: e.source, target: e.target, sourceHandle: e.sourceHandle || null,
    type: "smoothstep", markerEnd: { type: MarkerType.ArrowClosed }, deletable: editable,
    className: e.status ? "run-" + e.status : undefined, animated: e.status === "taken-live",
    data: { source: e.source, target: e.target, sourceHandle: e.sourceHandle || "" },
  })), [picture.edges, editable]);

  const positions = useCallback(() => Object.fromEntries(flow.getNodes().map((n) => [n.id, {
    x: Math.round(n.position.x), y: Math.round(n.position.y) }])), [flow]);
  const sizes = useCallback(() => Object.fromEntries(flow.getNodes().map((n) => [n.id, n.measured || {}])), [flow]);
  const centre = useCallback(() => {
    const box = wrapper.current.getBoundingClientRect();
    const at = flow.screenToFlowPosition({ x: box.left + box.width / 2, y: box.top + box.height / 3 });
    return { x: Math.round(at.x - NODE_WIDTH / 2), y: Math.round(at.y) };
  }, [flow]);

  // What the builder may ask of the canvas.
  useEffect(() => {
    Object.assign(controller, {
      positions,
      fit: frame,
      layout: () => layout(picture.nodes, picture.edges, sizes()),
      select: (id) => setNodes((current) => current.map((n) => ({ ...n, selected: n.id === id }))),
      centre,
    });
  }, [controller, positions, frame, picture, sizes, centre]);

  const onNodesChange = useCallback((changes) => {
    // Removals go through the builder (onDelete), which redraws the picture without them.
    setNodes((current) => applyNodeChanges(changes.filter((c) => c.type !== "remove"), current));
  }, []);
  const onDrop = useCallback((event) => {
    const kind = event.dataTransfer.getData(DRAG_TYPE);
    if (!kind || !editable) return;
    event.preventDefault();
    const at = flow.screenToFlowPosition({ x: event.clientX, y: event.clientY });
    api.onAdd(kind, { x: Math.round(at.x - NODE_WIDTH / 2), y: Math.round(at.y - 20) }, positions());
  }, [api, editable, flow, positions]);
  const onKeyDown = useCallback((event) => {
    if (!editable || event.target.closest("input, textarea, select, [contenteditable]")) return;
    const mod = event.ctrlKey || event.metaKey;
    if (!mod) return;
    const key = event.key.toLowerCase();
    const selected = flow.getNodes().filter((n) => n.selected).map((n) => n.id);
    if (key === "z" && !event.shiftKey) api.undo();
    else if ((key === "z" && event.shiftKey) || key === "y") api.redo();
    else if (key === "c" && selected.length) api.copy(selected, positions());
    else if (key === "v") api.paste(positions());
    else return;
    event.preventDefault();
  }, [api, editable, flow, positions]);

  return (
    <div className="canvas-frame">
      {editable ? <Palette kinds={picture.kinds} onAdd={(kind) => api.onAdd(kind, centre(), positions())} /> : null}
      <div className="canvas-area" ref={wrapper} onKeyDown={onKeyDown} tabIndex={-1}
        onDragOver={(event) => { if (editable) { event.preventDefault(); event.dataTransfer.dropEffect = "move"; } }}
        onDrop={onDrop}>
        {editable ? (
          <div className="canvas-toolbar" role="toolbar" aria-label="Canvas">
            <button type="button" onClick={() => api.undo()} disabled={!picture.canUndo} title="Undo (Ctrl+Z)">Undo</button>
            <button type="button" onClick={() => api.redo()} disabled={!picture.canRedo} title="Redo (Ctrl+Shift+Z)">Redo</button>
            <button type="button" onClick={() => api.onPlace(layout(picture.nodes, picture.edges, sizes()), true)} title="Lay the steps out from the trigger down">Tidy up</button>
            <button type="button" onClick={() => { const s = flow.getNodes().filter((n) => n.selected).map((n) => n.id); if (s.length) api.copy(s, positions()); }} title="Copy the selected steps (Ctrl+C)">Copy</button>
            <button type="button" onClick={() => api.paste(positions())} disabled={!picture.canPaste} title="Paste the copied steps (Ctrl+V)">Paste</button>
            {picture.canDebug ? (
              <button type="button" className="canvas-debug" onClick={() => api.onDebug()} aria-pressed={picture.debugging ? "true" : "false"}
                title="Run it on a deal or lead in a sandbox: nothing is sent, no record changes">Debug</button>
            ) : null}
          </div>
        ) : null}
        <ReactFlow
          nodes={nodes} edges={edges} nodeTypes={NODE_TYPES}
          onNodesChange={onNodesChange}
          onNodeDragStop={() => api.onPlace(positions(), false)}
          onConnect={(c) => api.onConnect(c.source, c.sourceHandle || "", c.target, positions())}
          isValidConnection={(c) => c.source !== c.target && !(picture.nodes.find((p) => p.id === c.target) || {}).trigger}
          onDelete={({ nodes: gone, edges: cut }) => api.onDelete(gone.map((n) => n.id), cut.map((e) => e.data))}
          onNodeClick={(event, node) => api.onSelect([node.id])}
          onPaneClick={() => api.onSelect([])}
          nodesDraggable={editable} nodesConnectable={editable} elementsSelectable
          multiSelectionKeyCode={["Shift", "Control", "Meta"]}
          deleteKeyCode={editable ? ["Backspace", "Delete"] : null}
          minZoom={0.1} maxZoom={2}
          connectionLineType="smoothstep" proOptions={{ hideAttribution: false }}
        >
          <Background gap={20} />
          <Controls showInteractive={false} />
          <MiniMap pannable zoomable ariaLabel="Map of the whole workflow" />
        </ReactFlow>
      </div>
    </div>
  );
}

// mount(element, api) → a controller: refresh() after the document changed, positions(),
// fit(), layout(), select(id).
function mount(element, api) {
  let picture = api.picture();
  const listeners = new Set();
  const store = {
    get: () => picture,
    subscribe: (listener) => { listeners.add(listener); return () => listeners.delete(listener); },
  };
  const controller = {
    refresh() { picture = api.picture(); listeners.forEach((l) => l()); },
    positions: () => ({}), fit() {}, layout: () => ({}), select() {}, centre: () => ({ x: 0, y: 0 }),
  };
  createRoot(element).render(
    <StrictMode>
      <ReactFlowProvider><Flow store={store} api={api} controller={controller} /></ReactFlowProvider>
    </StrictMode>,
  );
  return controller;
}

window.WorkflowCanvas = { mount, layout };
