// A run on its workflow's graph (crm_automation/web/run_picture.py draws the picture): each
// node with its status, a click shows what each of its steps was given (its settings as they
// read for this run) and what it gave. live.js swaps the picture's data while the run goes on;
// the canvas follows without a reload.
(function () {
  "use strict";

  const holder = document.getElementById("run-graph");
  if (!holder || !window.WorkflowCanvas) return;
  const read = () => JSON.parse(document.getElementById("run-graph-data").textContent);
  let data = read();
  let chosen = null;

  const nothing = () => {};
  const api = {
    picture: () => Object.assign({}, data, { nodes: data.nodes.map((n) => Object.assign({}, n, { selected: n.id === chosen })) }),
    onSelect: (ids) => { chosen = ids.length ? ids[0] : null; showPanel(); },
    onAdd: nothing, onConnect: nothing, onDelete: nothing, onPlace: nothing, undo: nothing, redo: nothing, copy: nothing, paste: nothing,
  };
  const canvas = window.WorkflowCanvas.mount(holder, api);
  document.addEventListener("live:update", () => {
    if (!document.getElementById("run-graph-data")) return;
    data = read();
    canvas.refresh();
    showPanel();
  });

  function el(tag, attrs, ...children) {
    const made = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => { if (k === "text") made.textContent = v; else made.setAttribute(k, v); });
    children.flat().forEach((c) => { if (c) made.append(c); });
    return made;
  }
  const json = (value) => el("pre", { class: "json-view", text: JSON.stringify(value, null, 2) });

  function showPanel() {
    const panel = document.getElementById("run-node-panel");
    const node = data.nodes.find((n) => n.id === chosen);
    if (!node) {
      panel.replaceChildren(el("p", { class: "hint", text: "Select a step on the graph to see what it was given and what it gave." }));
      return;
    }
    const parts = [el("p", { class: "node-kind", text: node.kind }), el("h2", { text: node.title }),
      el("p", {}, el("span", { class: "badge " + node.status, text: node.statusWords }))];
    if (node.summary) parts.push(el("p", { class: "muted", text: node.summary }));
    if (node.trigger) {
      parts.push(el("h3", { text: "What started it" }), json(data.payload));
    } else if (!node.steps.length) {
      parts.push(el("p", { class: "muted", text: data.over ? "The run did not come this way." : "The run has not reached this step yet." }));
    }
    node.steps.forEach((step, i) => {
      const box = el("section", { class: "run-step" });
      if (node.steps.length > 1) box.append(el("h3", { text: "Item " + (step.token || i + 1) }));
      box.append(el("p", { class: "muted", text: [step.status, step.started && "started " + step.started, step.took && "took " + step.took,
        step.attempts > 1 && step.attempts + " attempts"].filter(Boolean).join(" · ") }));
      if (step.error) box.append(el("p", { class: "error-text", text: step.error }));
      const given = step.input || {};
      if (given.settings && Object.keys(given.settings).length) {
        box.append(el("h4", { text: "Given (its settings for this run)" }));
        const list = el("dl", { class: "node-settings" });
        Object.entries(given.settings).forEach(([k, v]) => list.append(el("dt", { text: k }), el("dd", { text: v === "" ? "empty" : v })));
        box.append(list);
      }
      if (given.loop) box.append(el("h4", { text: "Loop item" }), json(given.loop));
      box.append(el("h4", { text: "Gave" }), json(step.output || {}));
      parts.push(box);
    });
    panel.replaceChildren(...parts);
  }
})();
