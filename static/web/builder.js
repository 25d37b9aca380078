// The workflow builder: the workflow document (docs/product.md#documents) edited in two views of
// the same document: a canvas (static/web/canvas/, React Flow, built by `make assets`) with a
// palette, handles and the selected step's form beside it; and a vertical list of cards (trigger
// first), the accessible view. Both edit through the same typed forms; the whole document is
// saved to the server, which checks it and answers with errors at their place. The server is the
// judge of what is valid; this script only makes the document easy to edit and shows the
// server's answers at the right input.
(function () {
  "use strict";

  const root = document.getElementById("builder");
  if (!root) return;
  const state = JSON.parse(document.getElementById("builder-data").textContent);
  const cat = state.catalog;
  const copy = (value) => JSON.parse(JSON.stringify(value));
  let doc = state.document;
  // What this page started from (as loaded, or as it last saved): a refused save compares it
  // with what someone else saved meanwhile (builder_merge.js).
  let base = copy(doc);
  let errors = [];
  let openNode = null;
  let dirty = false;
  // Which view is shown: the canvas, or the list (also the fallback when the canvas did not load).
  const CAN_DRAW = !!window.WorkflowCanvas;
  let view = CAN_DRAW && readStored("crm-builder-view") !== "list" ? "canvas" : "list";
  let canvas = null;
  let debugging = null;  // while Live Debug is open: the status of each node it reported
  function readStored(key) { try { return window.localStorage.getItem(key); } catch (error) { return null; } }
  function store(key, value) { try { window.localStorage.setItem(key, value); } catch (error) { /* private mode */ } }

  // --- What can be added ------------------------------------------------------------------------
  const KINDS = [
    { key: "create_task", label: "Create a task", name: "Create task", subtype: "tool-call", tool: "crm/create_task",
      config: () => ({ toolName: "crm/create_task", defaults: { title: "", assignee: "owner", priority: "normal" } }) },
    { key: "send_email", label: "Send an email", name: "Send email", subtype: "tool-call", tool: "crm/send_email",
      config: () => ({ toolName: "crm/send_email", defaults: { to: entity() === "lead" ? "{{lead.email}}" : ["contact", "project"].includes(entity()) ? "{{trigger.contact.email}}" : "{{deal.contact.email}}", subject: "", body: "" } }) },
    { key: "send_sms", label: "Send an SMS", name: "Send SMS", subtype: "tool-call", tool: "crm/send_sms",
      config: () => ({ toolName: "crm/send_sms", defaults: { to: entity() === "deal" ? "{{deal.contact.phone}}" : "{{trigger.contact.phone}}", body: "" } }) },
    { key: "post_slack", label: "Post to Slack", name: "Post to Slack", subtype: "tool-call", tool: "crm/post_slack",
      config: () => ({ toolName: "crm/post_slack", defaults: { channel: ((cat.chat_channels || []).find((c) => c.kind === "slack") || {}).value || "", text: "" } }) },
    { key: "post_teams", label: "Post to Teams", name: "Post to Teams", subtype: "tool-call", tool: "crm/post_teams",
      config: () => ({ toolName: "crm/post_teams", defaults: { channel: ((cat.chat_channels || []).find((c) => c.kind === "teams") || {}).value || "", text: "" } }) },
    { key: "update_field", label: "Update a field", name: "Update field", subtype: "tool-call", tool: "crm/update_record",
      config: () => ({ toolName: "crm/update_record", defaults: { field: Object.keys(cat.updatable[entity() || "deal"] || {})[0] || "", value: "" } }) },
    // Records a step makes or removes (automation/nodes/create_records.py).
    { key: "create_project", label: "Create a project", name: "Create project", subtype: "tool-call", tool: "crm/create_project", group: "Records",
      config: () => ({ toolName: "crm/create_project", defaults: { name: entity() === "deal" ? "{{deal.title}}" : "", status: "planned" } }) },
    { key: "create_contact", label: "Create a contact", name: "Create contact", subtype: "tool-call", tool: "crm/create_contact", group: "Records",
      config: () => ({ toolName: "crm/create_contact", defaults: { first_name: "", email: "" } }) },
    { key: "create_deal", label: "Create a deal", name: "Create deal", subtype: "tool-call", tool: "crm/create_deal", group: "Records",
      config: () => ({ toolName: "crm/create_deal", defaults: { title: "", amount: "0" } }) },
    { key: "create_note", label: "Add a note", name: "Add note", subtype: "tool-call", tool: "crm/create_note", group: "Records",
      config: () => ({ toolName: "crm/create_note", defaults: { body: "" } }) },
    { key: "archive_record", label: "Archive a record", name: "Archive record", subtype: "tool-call", tool: "crm/archive_record", group: "Records",
      config: () => ({ toolName: "crm/archive_record", defaults: {} }) },
    { key: "delete_record", label: "Delete a record", name: "Delete record", subtype: "tool-call", tool: "crm/delete_record", group: "Records",
      config: () => ({ toolName: "crm/delete_record", defaults: {} }) },
    { key: "condition", label: "Branch: yes / no", name: "Check", subtype: "condition", group: "Flow",
      config: () => ({ combinator: "and", rules: [{ field: firstField("number"), operator: "gt", value: 0 }] }) },
    { key: "wait", label: "Wait", name: "Wait", subtype: "wait", group: "Flow", config: () => ({ delayAmount: 1, delayUnit: "days" }) },
    { key: "user-input", label: "Ask for approval", name: "Approval", subtype: "user-input",
      config: () => ({ promptText: "", role: "admin", timeoutAmount: 2, timeoutUnit: "days" }) },
    { key: "notify", label: "Notify people", name: "Notify", subtype: "desktop-notification",
      config: () => ({ title: "", recipients: "admins" }) },
    { key: "sub-workflow", label: "Run another workflow", name: "Run workflow", subtype: "sub-workflow",
      config: () => ({ workflowId: (cat.workflows[0] || {}).value || "" }) },
    { key: "http_request", label: "Call a webhook (HTTP)", name: "HTTP request", subtype: "tool-call", tool: "http/request",
      config: () => ({ toolName: "http/request", defaults: { target: (cat.targets[0] || {}).value || "", method: "POST" } }) },
    { key: "response", label: "Reply to the caller", name: "Reply", subtype: "response",
      config: () => ({ responseTemplate: triggerType() === "webhook" ? "{\"received\": \"{{trigger.webhook_id}}\"}" : "", statusCode: 200 }) },
    { key: "function", label: "Find records or compute", name: "Function", subtype: "function",
      config: () => ({ functionRef: "crm/query_deals", args: {} }) },
    { key: "loop", label: "Loop", name: "Loop", subtype: "loop", group: "Flow", config: () => ({ loopMode: "count", count: 3 }) },
    { key: "parallel", label: "Parallel branches", name: "Parallel", subtype: "parallel", group: "Flow", config: () => ({}) },
    { key: "merge", label: "Merge branches", name: "Merge", subtype: "merge", group: "Flow", config: () => ({ strategy: "wait-all" }) },
    // AI steps (automation/ai/nodes.py): the model writes text or JSON, or picks one of the routes.
    { key: "agent", label: "AI agent", name: "AI agent", subtype: "agent", group: "AI",
      config: () => ({ additionalPrompt: "", outputFormat: "text" }) },
    { key: "router", label: "AI router", name: "AI router", subtype: "router", group: "AI",
      config: () => ({ classificationPrompt: "", routes: [{ id: "route-0", label: "positive" }, { id: "route-1", label: "negative" }] }) },
  ];
  const AI_KINDS = ["agent", "router"];
  // An agent's CRM tools (automation/ai/tools.py), in the order they are offered.
  const AGENT_TOOLS = [["search_records", "Search records"], ["create_task", "Create a task"], ["update_field", "Update a field of the record"],
    ["send_email", "Send an email (to a contact or lead)"], ["send_sms", "Send an SMS (to a contact)"], ["post_slack", "Post to Slack"]];
  const STEP_NAME = "Name of this step";
  const MAX_ROUTES = 20, MIN_ROUTES = 2;
  const routeId = (i) => "route-" + i;
  const BRANCHES = {
    condition: [["condition-true", "Yes"], ["condition-false", "No"]],
    "user-input": [["approved", "Approved"], ["rejected", "Rejected"], ["timed-out", "No answer in time"]],
    loop: [["loop-body", "For each item"], ["loop-done", "After the loop"]],
  };
  const OUTPUTS = {  // what later nodes may read of a node, by kind ({{Label.key}})
    "crm/create_task": ["title", "task_id", "assignee"], "crm/send_email": ["to", "subject"],
    "crm/create_project": ["project_id", "name"], "crm/create_contact": ["contact_id", "first_name"],
    "crm/create_deal": ["deal_id", "title"], "crm/create_note": ["note_id", "body"], "crm/delete_record": ["deleted", "record"], "crm/archive_record": ["archived"], "crm/send_sms": ["reply", "timed_out", "to", "body"], "crm/post_slack": ["status", "body"], response: ["response", "status"], "crm/post_teams": ["status", "body"],
    "crm/update_record": ["old", "new"], "http/request": ["status", "body"],
    "user-input": ["decision", "comment", "answered_by"], function: ["value"], "desktop-notification": ["count"],
    loop: ["items", "count"], merge: ["arrived_from"],
    condition: ["passed"], router: ["route", "reason"],
  };

  // --- Document helpers -------------------------------------------------------------------------
  const nodes = () => doc.nodes;
  const node = (id) => doc.nodes.find((n) => n.id === id);
  const trigger = () => doc.nodes.find((n) => ["chat-app", "manual", "schedule"].includes(n.data.subtype));
  const outs = (id) => doc.edges.filter((e) => e.source === id);
  const ins = (id) => doc.edges.filter((e) => e.target === id);
  const kindOf = (n) => n.data.subtype === "tool-call" ? (n.data.config || {}).toolName : n.data.subtype;
  const isBranching = (n) => !!BRANCHES[n.data.subtype] || ["parallel", "router"].includes(n.data.subtype);
  const routesOf = (n) => Array.isArray((n.data.config || {}).routes) ? n.data.config.routes : [];
  const routeName = (route, i) => (route && typeof route.label === "string" && route.label.trim()) || "Route " + (i + 1);

  // A node's ways out as [handle, words]: fixed for conditions, approvals and loops; a router's
  // routes in order (and, to be seen and fixed, any edge whose handle is not one of them); a
  // parallel's branches as its edges have them. Null: one way out.
  function branchesOf(n) {
    if (BRANCHES[n.data.subtype]) return BRANCHES[n.data.subtype];
    const used = Array.from(new Set(outs(n.id).map((e) => e.sourceHandle || "")));
    if (n.data.subtype === "router") {
      const made = routesOf(n).map((r, i) => [routeId(i), routeName(r, i)]);
      used.filter((h) => !made.some(([x]) => x === h)).forEach((h) => made.push([h, (h || "no route") + " (not a route of this router)"]));
      return made;
    }
    if (n.data.subtype === "parallel") return used.map((h) => [h, h]);
    if (fallsBack(n)) return [["", "Done"], ["error", "On error"]];
    return null;
  }
  // A step that falls back when it fails has a second way out, its "error" edge (error_policy.py).
  const NO_FALLBACK = ["condition", "loop", "parallel", "merge", "wait", "router", "user-input"];
  function fallsBack(n) {
    if (!n || NO_FALLBACK.includes(n.data.subtype) || ["chat-app", "manual", "schedule"].includes(n.data.subtype)) return false;
    const rule = n.data.onError;
    if (rule && typeof rule === "object") return rule.policy === "fallback" || (rule.policy === "retry" && rule.then === "fallback");
    return ((doc.settings || {}).errorPolicy) === "fallback";
  }
  // The way out a step inserted before `target` takes to it (the first branch of a branching node).
  function firstHandle(n) {
    if (BRANCHES[n.data.subtype]) return BRANCHES[n.data.subtype][0][0];
    return n.data.subtype === "router" ? routeId(0) : "";
  }

  function triggerType() {
    const t = trigger();
    if (!t) return "";
    const config = t.data.config || {};
    if (t.data.subtype === "manual") return config.entity === "none" ? "manual" : "manual_" + (config.entity || "deal");
    if (t.data.subtype === "schedule") return "schedule";
    return config.event || "";
  }
  function entity() {
    const found = cat.events.find((e) => e.value === triggerType());
    return found ? found.entity : "";
  }
  function fields() { return cat.fields[triggerType()] || {}; }
  function firstField(kind) {
    const found = Object.entries(fields()).find(([path, type]) => type === kind && !path.startsWith("trigger"));
    return found ? found[0] : Object.keys(fields()).find((p) => !p.startsWith("trigger")) || "";
  }
  // A variable's human name, the same on every page: "deal.contact.first_name" → "Deal › Contact ›
  // First name". The server names every catalog path (catalog.variable_name, in cat.names); a
  // node's output ("Find Deals.rows") is named here by the same rule, its label kept as typed.
  function fieldLabel(path) {
    if ((cat.names || {})[path]) return cat.names[path];
    const word = (x) => x === "id" ? "ID" : (x.charAt(0).toUpperCase() + x.slice(1)).replace(/_/g, " ");
    const parts = path.split("."), ours = ["trigger", "deal", "lead", "contact", "loop", "task"];
    return [ours.includes(parts[0]) ? word(parts[0]) : parts[0]].concat(parts.slice(1).map(word)).join(" › ");
  }
  // "1 day", "2 days", "1 hour" (units are named in the plural, as the format has them).
  function counted(amount, unit) {
    return amount + " " + (Math.abs(Number(amount)) === 1 ? String(unit).replace(/s$/, "") : unit);
  }
  function stageName(slug) { const s = cat.stages.find((x) => x.value === slug); return s ? s.label : slug; }

  function freeId(base) {
    const stem = base.replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") || "step";
    let id = stem, n = 2;
    while (node(id)) id = stem + "-" + n++;
    return id;
  }
  function freeLabel(base) {
    const taken = new Set(nodes().map((n) => (n.data.label || "").toLowerCase()));
    let label = base, n = 2;
    while (taken.has(label.toLowerCase())) label = base + " " + n++;
    return label;
  }
  // `structural`: a step added, removed, connected or moved (a checkpoint at once); typing
  // becomes one checkpoint once it pauses.
  function changed(structural) {
    dirty = true;
    const status = document.getElementById("save-state");
    if (status) status.textContent = "Unsaved changes";
    clearTimeout(typing);
    if (structural === true) checkpoint(); else typing = setTimeout(checkpoint, 700);
    redraw();
  }

  // --- Undo and redo: snapshots of the whole document, taken at each checkpoint ------------------
  const UNDO_DEPTH = 100;
  let undoStack = [], redoStack = [], typing = null, lastText = JSON.stringify(doc);
  function checkpoint() {
    clearTimeout(typing);
    typing = null;
    const now = JSON.stringify(doc);
    if (now === lastText) return;
    undoStack.push(lastText);
    if (undoStack.length > UNDO_DEPTH) undoStack.shift();
    redoStack = [];
    lastText = now;
    redraw();
  }
  function travel(from, to) {
    if (typing) checkpoint();
    if (!from.length) return;
    to.push(JSON.stringify(doc));
    doc = JSON.parse(from.pop());
    lastText = JSON.stringify(doc);
    if (openNode && !node(openNode)) openNode = null;
    dirty = true;
    document.getElementById("save-state").textContent = "Unsaved changes";
    render();
  }
  const undo = () => travel(undoStack, redoStack);
  const redo = () => travel(redoStack, undoStack);
  // The canvas is redrawn once per frame however many changes the frame had.
  let redrawing = false;
  function redraw() {
    if (!canvas || redrawing) return;
    redrawing = true;
    window.requestAnimationFrame(() => { redrawing = false; canvas.refresh(); });
  }

  // Nodes no longer reachable from the trigger go (after a removal).
  function prune() {
    const seen = new Set([trigger().id]);
    const queue = [trigger().id];
    while (queue.length) outs(queue.shift()).forEach((e) => { if (!seen.has(e.target)) { seen.add(e.target); queue.push(e.target); } });
    doc.nodes = doc.nodes.filter((n) => seen.has(n.id));
    doc.edges = doc.edges.filter((e) => seen.has(e.source) && seen.has(e.target));
  }

  function insert(kindKey, source, handle, target) {
    const kind = KINDS.find((k) => k.key === kindKey);
    const id = freeId(kind.key.replace("_", "-"));
    const made = { id: id, type: "workflow", data: { subtype: kind.subtype, label: freeLabel(kind.name), config: kind.config() } };
    doc.nodes.push(made);
    doc.edges = doc.edges.filter((e) => !(e.source === source && (e.sourceHandle || "") === (handle || "") && e.target === target));
    doc.edges.push(edge(source, id, handle));
    if (target) doc.edges.push(edge(id, target, firstHandle(made)));
    openNode = id;
    changed();
    render();
  }
  function edge(source, target, handle) {
    const e = { source: source, target: target };
    if (handle) e.sourceHandle = handle;
    return e;
  }

  function remove(id) {
    const n = node(id);
    const first = firstHandle(n);
    const next = outs(id).find((e) => (e.sourceHandle || "") === first) || (isBranching(n) ? null : outs(id)[0]);
    const lost = outs(id).filter((e) => e !== next).length;
    if (lost && !window.confirm("Remove “" + n.data.label + "” and the steps only its other branches lead to?")) return;
    const incoming = ins(id);
    doc.edges = doc.edges.filter((e) => e.source !== id && e.target !== id);
    doc.nodes = doc.nodes.filter((x) => x.id !== id);
    if (next) incoming.forEach((e) => doc.edges.push(edge(e.source, next.target, e.sourceHandle)));
    prune();
    if (openNode === id) openNode = null;
    changed();
    render();
  }

  // A router's routes are numbered in order (route-0, route-1 …) and each edge leaving it keeps
  // following its route: when routes move or go, their edges' handles move with them.
  function renumberRoutes(n) {
    const moved = new Map();
    routesOf(n).forEach((r, i) => {
      if (!r || typeof r !== "object") return;
      if (r.id && r.id !== routeId(i)) moved.set(r.id, routeId(i));
      r.id = routeId(i);
    });
    outs(n.id).forEach((e) => { if (moved.has(e.sourceHandle)) e.sourceHandle = moved.get(e.sourceHandle); });
  }
  function addRoute(n) {
    const routes = n.data.config.routes = routesOf(n);
    const taken = new Set(routes.map((r) => String((r && r.label) || "").trim().toLowerCase()));
    let k = routes.length + 1;
    while (taken.has("route " + k)) k++;
    routes.push({ id: routeId(routes.length), label: "route " + k });
    changed();
    render();
  }
  function removeRoute(n, i) {
    const routes = routesOf(n), handle = routeId(i);
    const out = outs(n.id).find((e) => e.sourceHandle === handle);
    if (out && !window.confirm("Remove the route “" + routeName(routes[i], i) + "” and the steps only it leads to?")) return;
    doc.edges = doc.edges.filter((e) => !(e.source === n.id && e.sourceHandle === handle));
    routes.splice(i, 1);
    renumberRoutes(n);  // the routes after it move up, and their edges with them
    prune();
    changed();
    render();
  }
  // A route renamed: its branch's heading follows as one types (the flow is not redrawn).
  function relabelBranch(n, i) {
    const column = document.querySelector('.branch[data-node="' + n.id + '"][data-handle="' + routeId(i) + '"]');
    if (!column) return;
    const words = routeName(routesOf(n)[i], i);
    column.querySelector(".branch-label").textContent = words;
    const menu = column.querySelector(":scope > .connector > select");
    if (menu) menu.setAttribute("aria-label", adderLabel(n.id, routeId(i), words, menu.dataset.target || null));
  }

  // A simple node in a plain chain can swap places with the simple node before it.
  function movable(id) {
    const n = node(id);
    if (!n || isBranching(n) || n === trigger() || ins(id).length !== 1 || outs(id).length > 1) return null;
    const prev = node(ins(id)[0].source);
    if (!prev || prev === trigger() || isBranching(prev) || ins(prev.id).length !== 1 || outs(prev.id).length !== 1) return null;
    return prev;
  }
  function moveUp(id) {
    const prev = movable(id);
    if (!prev) return;
    const into = ins(prev.id)[0], after = outs(id)[0];
    doc.edges = doc.edges.filter((e) => e !== into && e !== after && !(e.source === prev.id && e.target === id));
    doc.edges.push(edge(into.source, id, into.sourceHandle), edge(id, prev.id));
    if (after) doc.edges.push(edge(prev.id, after.target, after.sourceHandle));
    changed();
    render();
    focusCard(id);
  }
  function moveDown(id) {
    const after = outs(id)[0];
    if (after && movable(after.target) && movable(after.target).id === id) { moveUp(after.target); focusCard(id); }
  }

  // --- Words ---------------------------------------------------------------------------------
  // What each step is set up to do, as its card says it (web/words.py step_settings_in_words says
  // the same on the graph's boxes).
  const RECIPIENT_WORDS = { admins: "the admins", members: "everyone in the organization", owner: "the record's owner" };
  const FUNCTION_WORDS = { "crm/query_deals": "Find deals", "crm/query_leads": "Find leads", "crm/query_contacts": "Find contacts",
    "date/add": "Add to a date", "date/today": "Today's date", "number/calc": "Calculate" };
  const SUMMARY_ROOM = 160;  // characters on a card; the whole sentence is its tooltip
  const given = (v) => v !== undefined && v !== null && v !== "";
  function summary(n) {
    const c = n.data.config || {}, d = c.defaults || {};
    switch (kindOf(n)) {
      case "chat-app": case "manual": case "schedule": return triggerWords();
      case "crm/create_task": return taskWords(d);
      case "crm/send_email": return "Email " + (d.to || "…") + ": “" + (d.subject || "…") + "”";
      case "response": return "Reply " + (c.statusCode || 200) + ": “" + short(c.responseTemplate) + "”";
      case "crm/post_slack": return "Post to Slack " + (d.channel || "…") + ": “" + short(d.text) + "”";
      case "crm/post_teams": return "Post to Teams " + (d.channel || "…") + ": “" + short(d.text) + "”";
      case "crm/send_sms": return "Text " + (d.to || "…") + ": “" + short(d.body) + "”" + (d.wait_for_reply ? ", then wait up to " + (d.reply_timeout_hours || 48) + " h for the reply" : "");
      case "crm/update_record": return "Set " + (d.field || "…").split(".").pop().replace(/_/g, " ") + " → " + (d.field && d.field.split(".").pop() === "stage" ? stageName(d.value) : (given(d.value) ? d.value : "empty"));
      case "http/request": return httpWords(d);
      case "crm/create_project": return "Create the project “" + (d.name || "…") + "”" + (d.status ? " (" + d.status + ")" : "");
      case "crm/create_contact": return "Create the contact " + ([d.first_name, d.last_name].filter(given).join(" ") || "…");
      case "crm/create_deal": return "Create the deal “" + (d.title || "…") + "”";
      case "crm/create_note": return "Note: “" + short(d.body) + "”";
      case "crm/delete_record": return "Delete the " + (d.record || "run's record") + " (only if an admin allowed it)";
      case "crm/archive_record": return "Archive the " + (d.record || "run's record");
      case "condition": return "Continue if " + ((c.rules || []).map(ruleWords).join(c.combinator === "or" ? " or " : " and ") || "…");
      case "wait": return waitWords(c);
      case "loop": return loopWords(c);
      case "parallel": return "Runs its branches side by side";
      case "merge": return c.strategy === "first" ? "Goes on with the first branch to arrive" : "Waits for every branch, then goes on";
      case "function": return FUNCTION_WORDS[c.functionRef] || "Function " + (c.functionRef || "…");
      case "user-input": return "Ask " + (c.role === "ops" ? "ops members" : "admins") + ": “" + short(c.promptText) + "”" + (c.timeoutAmount ? ", answer within " + counted(c.timeoutAmount, c.timeoutUnit || "hours") : "");
      case "desktop-notification": return "Notify " + (RECIPIENT_WORDS[c.recipients || "admins"] || c.recipients) + ": “" + (c.title || "…") + "”";
      case "sub-workflow": { const w = cat.workflows.find((x) => x.value === c.workflowId); return "Run the workflow “" + (w ? w.label : c.workflowId || "…") + "”" + (c.awaitResponse === false ? " (without waiting for it)" : ""); }
      case "agent": return "Ask the model" + (c.outputFormat === "json" ? " for a JSON object" : "") + ": “" + short(c.additionalPrompt) + "”";
      case "router": return "Let the model choose: " + (routesOf(n).map(routeName).join(" / ") || "…");
      default: return n.data.subtype;
    }
  }
  function taskWords(d) {
    const who = d.assignee === "owner" ? " for the record's owner" : d.assignee ? " for " + d.assignee : "";
    const due = !given(d.due_in_days) ? "" : Number(d.due_in_days) === 0 ? ", due the same day" : ", due in " + counted(d.due_in_days, "days");
    const rank = d.priority && d.priority !== "normal" ? ", " + d.priority + " priority" : "";
    return "Create task “" + (d.title || "…") + "”" + who + due + rank;
  }
  function waitWords(c) {
    if (!("until" in c)) return "Wait " + counted(given(c.delayAmount) ? c.delayAmount : 0, c.delayUnit || "hours");
    const field = pathWords(c.until || ""), offset = Number(c.offsetAmount) || 0;
    return "Wait until " + (offset ? counted(Math.abs(offset), c.offsetUnit || "days") + (offset < 0 ? " before " : " after ") : "") + field;
  }
  function loopWords(c) {
    if ((c.loopMode || ("items" in c ? "for-each" : "count")) === "count") return Number(c.count) === 1 ? "Repeat once" : "Repeat " + (c.count || 0) + " times";
    if (c.loopMode === "ask-orchestrator") return "Repeat while the AI model says so (at most " + (c.maxIterations || "…") + ")";
    return Array.isArray(c.items) ? "For each of " + c.items.length + " items" : "For each of " + pathWords(c.items || "…");
  }
  function httpWords(c) {
    const method = String(c.method || "POST").toUpperCase();
    const target = (cat.targets || []).find((t) => t.value === c.target);
    const url = typeof c.url === "string" && c.url && !c.url.includes("{{") ? c.url : target ? target.url : "";
    let host = "";
    try { host = url ? new URL(url).hostname : ""; } catch (error) { host = ""; }
    return method + " to " + (host || "the webhook target “" + (c.target || "…") + "”");
  }
  // A variable in braces by its human name: "{{deal.close_date}}" → "Deal › Close date".
  function pathWords(path) { return fieldLabel(String(path).replace(/^[\s{]+|[\s}]+$/g, "")); }
  // At most `limit` characters: cut at the last word boundary before it, with an ellipsis.
  function shorten(words, limit) {
    const flat = String(words || "").replace(/\s+/g, " ").trim();
    if (flat.length <= limit) return flat;
    let cut = flat.slice(0, limit - 1);
    const space = cut.lastIndexOf(" ");
    if (space >= limit / 2) cut = cut.slice(0, space);
    return cut.replace(/[\s,;:.\-–—]+$/, "") + "…";
  }
  function short(words) { return shorten(words, 80) || "…"; }
  // A card's sentence: shortened to fit, the whole of it in the tooltip.
  function putSummary(holder, words) {
    const shown = shorten(words, SUMMARY_ROOM);
    holder.textContent = shown;
    if (shown !== words) holder.setAttribute("title", words); else holder.removeAttribute("title");
  }
  function ruleWords(r) {
    const op = cat.operators.find((o) => o.value === r.operator);
    const kind = fields()[r.field];
    const choices = { lead_source: cat.lead_sources, lead_status: cat.lead_statuses, project_status: cat.project_statuses }[kind];
    const chosen = choices && choices.find((c) => c.value === r.value);
    const value = cat.valueless.includes(r.operator) ? "" : " " + (kind === "stage" ? stageName(r.value) : chosen ? chosen.label : JSON.stringify(r.value));
    return (r.field ? fieldLabel(r.field) : "…") + " " + (op ? op.label : r.operator) + value;
  }
  function triggerWords() {
    const t = triggerType(), c = trigger().data.config || {};
    if (t === "deal_stage_change") {
      if (c.from_stage && c.to_stage) return "Deal moves from " + stageName(c.from_stage) + " to " + stageName(c.to_stage);
      if (c.to_stage) return "Deal moves to " + stageName(c.to_stage);
      if (c.from_stage) return "Deal leaves " + stageName(c.from_stage);
      return "Deal changes stage";
    }
    if (t === "schedule") return scheduleWords(c);
    if (t === "deal_in_stage") return "A deal in " + stageName(c.stage) + " for " + counted(c.days, "days");
    if (cat.watchable[t]) {
      const who = t.replace(/_updated$/, ""), fields = (c.fields || []).map((f) => f.replace(/_/g, " "));
      return (fields.length ? "A " + who + "'s " + fields.join(" or ") + " changes" : "A " + who + " is updated") +
        (c.crossing ? ", when it starts to meet the conditions" : "");
    }
    if (t === "deal_date_reached") {
      const days = Math.abs(c.offsetDays || 0), what = c.field === "created_at" ? "creation date" : "close date";
      return (days ? counted(days, "days") + " " + ((c.offsetDays || 0) < 0 ? "before" : "after") : "On") + " a deal's " + what + ", at " + (c.time || "09:00");
    }
    const found = cat.events.find((e) => e.value === t);
    return found ? found.label : "Choose what starts the workflow";
  }

  // --- DOM helpers ------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const made = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === false || v === null || v === undefined) return;
      if (k.startsWith("on")) made.addEventListener(k.slice(2), v);
      else if (k === "text") made.textContent = v;
      else made.setAttribute(k, v === true ? "" : v);
    });
    children.flat().forEach((c) => { if (c !== null && c !== undefined && c !== false) made.append(c); });
    return made;
  }
  let uid = 0;
  function fieldBox(label, input, errorFor, hint) {
    const id = input.id || ("f" + (++uid));
    input.id = id;
    const problem = errorFor ? fieldError(errorFor.node, errorFor.field) : "";
    if (problem) { input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-describedby", id + "-error"); }
    return el("div", { class: "field" + (problem ? " invalid" : "") }, el("label", { for: id, text: label }), input,
      hint ? el("p", { class: "hint", text: hint }) : null,
      problem ? el("p", { class: "field-error", id: id + "-error", text: problem }) : null);
  }
  // The fields the open form shows (renderForm lists the node's other problems under it).
  let claimed = null;
  const under = (place, field) => place === field || place.startsWith(field + ".") || place.startsWith(field + "[");
  function fieldError(nodeId, field) {
    if (claimed) claimed.push(field);
    return errors.filter((e) => e.node === nodeId && under(e.field, field)).map((e) => e.message).join("; ");
  }
  function select(options, value, onchange, attrs) {
    const s = el("select", attrs || {});
    options.forEach((o) => s.append(el("option", { value: o.value, text: o.label, selected: String(o.value) === String(value) })));
    s.addEventListener("change", () => onchange(s.value));
    return s;
  }
  function text(value, oninput, attrs) {
    const i = el("input", Object.assign({ type: "text", value: value === undefined || value === null ? "" : value }, attrs || {}));
    i.addEventListener("input", () => oninput(i.value));
    return i;
  }
  function number(value, oninput, attrs) {
    const i = el("input", Object.assign({ type: "number", value: value === undefined || value === null ? "" : value, step: "any" }, attrs || {}));
    i.addEventListener("input", () => oninput(i.value === "" ? "" : Number(i.value)));
    return i;
  }
  function area(value, oninput) {
    const t = el("textarea", { rows: 4 });
    t.value = value || "";
    t.addEventListener("input", () => oninput(t.value));
    return t;
  }
  function refreshSummary(n) {
    const s = document.querySelector('[data-summary="' + n.id + '"]');
    if (s) putSummary(s, cardWords(n));
    if (n === trigger()) {  // the trigger's card is headed by its words ("Deal moves to Won")
      const heading = document.querySelector('[data-label="' + n.id + '"]');
      if (heading) heading.textContent = triggerWords();
    }
  }
  // Under a card's heading: what the step does; under the trigger's, its conditions.
  function cardWords(n) {
    if (n !== trigger()) return summary(n);
    const rules = ((n.data.config || {}).conditions || {}).rules || [];
    return rules.length ? "Only if " + rules.map(ruleWords).join(n.data.config.conditions.combinator === "or" ? " or " : " and ") : "";
  }
  function setter(n, target, key) {
    return (v) => { target[key] = v; changed(); refreshSummary(n); };
  }

  // The variables a node may use: the trigger's fields, and what the nodes before it made.
  function upstream(id) {
    const seen = new Set(), queue = [id];
    while (queue.length) ins(queue.shift()).forEach((e) => { if (!seen.has(e.source)) { seen.add(e.source); queue.push(e.source); } });
    return nodes().filter((n) => seen.has(n.id) && n !== trigger());
  }
  function variables(id) {
    const found = Object.entries(fields()).filter(([p, t]) => !p.startsWith("trigger.") && p !== "trigger" && t !== "object").map(([p]) => p);
    if (triggerType().startsWith("manual")) {
      const inputs = (trigger().data.config || {}).inputs;
      if (Array.isArray(inputs) && inputs.length) inputs.forEach((i) => { if (i && i.key) found.push("trigger.input." + i.key); });
      else found.push("trigger.input.<name>");
    }
    if (triggerType() === "webhook") found.push("trigger.body.<field>");
    upstream(id).forEach((n) => {
      if (kindOf(n) === "agent") {  // the answer is {{Label}}; a JSON answer's fields are {{Label.field}}
        found.push(n.data.label);
        if ((n.data.config || {}).outputFormat === "json") found.push(n.data.label + ".<field>");
        return;
      }
      (OUTPUTS[kindOf(n)] || []).forEach((k) => found.push(n.data.label + "." + k));
    });
    return found;
  }
  function picker(id, input) {
    const choices = [{ value: "", label: "Insert a variable…" }].concat(variables(id).map((v) => ({ value: v, label: fieldLabel(v) + " — {{" + v + "}}" })));
    const s = select(choices, "", (v) => {
      if (!v) return;
      const at = input.selectionStart === undefined || input.selectionStart === null ? input.value.length : input.selectionStart;
      input.value = input.value.slice(0, at) + "{{" + v + "}}" + input.value.slice(input.selectionEnd || at);
      input.dispatchEvent(new Event("input"));
      s.value = "";
      input.focus();
    }, { class: "picker", "aria-label": "Insert a variable into the field above" });
    return s;
  }
  // An SMS's length as carriers count it (crm/sms/segments.py says the same): GSM-7, 160 characters
  // or 153 a part (€ [ ] { } … take two); any other character makes it Unicode, 70 or 67 a part.
  const GSM = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  const GSM_EXTENDED = "^{}\\[~]|€\f";
  function smsLength(textValue) {
    const chars = Array.from(textValue || "");
    const gsm = chars.every((c) => GSM.includes(c) || GSM_EXTENDED.includes(c));
    const units = gsm ? chars.reduce((n, c) => n + (GSM_EXTENDED.includes(c) ? 2 : 1), 0)
      : chars.reduce((n, c) => n + (c.codePointAt(0) > 0xFFFF ? 2 : 1), 0);
    const [single, part] = gsm ? [160, 153] : [70, 67];
    const parts = units <= single ? 1 : Math.ceil(units / part);
    return units + " characters, " + parts + " SMS (" + (gsm ? "GSM-7" : "Unicode: an emoji or a special character makes each SMS shorter") + ")" + ((textValue || "").includes("{{") ? "; {{variables}} are counted as written" : "");
  }

  function templated(label, n, target, key, multiline) {
    const input = multiline ? area(target[key], setter(n, target, key)) : text(target[key], setter(n, target, key));
    const box = fieldBox(label, input, { node: n.id, field: key });
    box.append(picker(n.id, input));
    return box;
  }

  // A value input that fits the field: a stage select, a number, a date, a status select, text.
  function valueInput(type, value, onchange, label) {
    const attrs = { "aria-label": label };
    if (type === "stage") return select([{ value: "", label: "Choose a stage…" }].concat(cat.stages), value, onchange, attrs);
    if (type === "lead_status") return select(cat.lead_statuses, value, onchange, attrs);
    if (type === "lead_source") return select([{ value: "", label: "Choose a source…" }].concat(cat.lead_sources || []), value, onchange, attrs);
    if (type === "project_status") return select([{ value: "", label: "Choose a status…" }].concat(cat.project_statuses || []), value, onchange, attrs);
    if (type === "number" || type === "percent") return number(value, onchange, Object.assign(attrs, type === "percent" ? { min: 0, max: 100 } : {}));
    if (type === "date") return text(value, onchange, Object.assign(attrs, { type: "date" }));
    if (type === "email") return text(value, onchange, Object.assign(attrs, { type: "text", inputmode: "email" }));
    return text(value, onchange, attrs);
  }

  // `prefix`: where the rules are in the node's config as the server names it ("conditions." on a trigger).
  function rulesEditor(n, config, prefix) {
    config.rules = config.rules || [];
    const box = el("fieldset", { class: "rules" }, el("legend", { text: "Continue only if" }));
    box.append(fieldBox("Match", select([{ value: "and", label: "all of these are true" }, { value: "or", label: "any of these is true" }],
      config.combinator || "and", (v) => { config.combinator = v; changed(); refreshSummary(n); })));
    const fieldOptions = ruleFields(n).map((p) => ({ value: p, label: fieldLabel(p) }));
    config.rules.forEach((rule, i) => {
      const row = el("div", { class: "rule" });
      const where = { node: n.id, field: (prefix || "") + "rules[" + i + "]" };
      row.append(select(fieldOptions, rule.field, (v) => { rule.field = v; changed(); renderForm(n); }, { "aria-label": "Field of condition " + (i + 1) }));
      if (rule.field) row.append(el("code", { class: "token muted", text: rule.field, title: "The same value in a text field: {{" + rule.field + "}}" }));
      row.append(select(cat.operators, rule.operator, (v) => { rule.operator = v; if (cat.valueless.includes(v)) delete rule.value; changed(); renderForm(n); }, { "aria-label": "Operator of condition " + (i + 1) }));
      const ownChoices = (cat.custom_choices || {})[rule.field];  // an own field's one-of choices
      if (!cat.valueless.includes(rule.operator)) row.append(ownChoices
        ? select([{ value: "", label: "Choose…" }].concat(ownChoices.map((c) => ({ value: c, label: c }))), rule.value, (v) => { rule.value = v; changed(); refreshSummary(n); }, { "aria-label": "Value of condition " + (i + 1) })
        : valueInput(fields()[rule.field], rule.value, (v) => { rule.value = v; changed(); refreshSummary(n); }, "Value of condition " + (i + 1)));
      row.append(el("button", { type: "button", class: "link", onclick: () => { config.rules.splice(i, 1); changed(); renderForm(n); }, text: "Remove", "aria-label": "Remove condition " + (i + 1) }));
      const problem = fieldError(where.node, where.field);
      box.append(row);
      if (problem) box.append(el("p", { class: "field-error", text: problem }));
    });
    box.append(el("button", { type: "button", onclick: () => { config.rules.push({ field: firstField("str"), operator: "eq", value: "" }); changed(); renderForm(n); }, text: "Add a condition" }));
    return box;
  }

  // What a condition may compare: the record's fields, an event's declared data, and (in a condition
  // step) what the steps before it gave ({{Ask.reply}}, {{Find deals.count}}, an agent's answer).
  const GENERIC_TRIGGER = /^trigger\.(event|type|from_stage|to_stage|deal|lead|project|contact|changed|source|bulk|occurred_at)(\.|$)/;
  function ruleFields(n) {
    const event = !!(cat.events.find((e) => e.value === triggerType()) || {}).description;
    const found = Object.entries(fields()).filter(([p, t]) => t !== "object" && p !== "trigger" &&
      (!p.startsWith("trigger.") || (event && !GENERIC_TRIGGER.test(p)))).map(([p]) => p);
    if (n && !["chat-app", "manual", "schedule"].includes(n.data.subtype)) {
      upstream(n.id).forEach((u) => {
        if (kindOf(u) === "agent") { if (u.data.label) found.push(u.data.label); return; }
        (OUTPUTS[kindOf(u)] || []).forEach((k) => { if (u.data.label) found.push(u.data.label + "." + k); });
      });
    }
    return found;
  }

  // A router's routes: the words the model answers with, each a branch of the flow.
  function routesEditor(n, config) {
    const routes = config.routes = Array.isArray(config.routes) ? config.routes : [];
    const box = el("fieldset", { class: "rules routes" }, el("legend", { text: "Routes (the model takes one)" }));
    routes.forEach((route, i) => {
      if (!route || typeof route !== "object") routes[i] = route = { id: routeId(i), label: "" };
      const input = text(route.label, (v) => { route.label = v; changed(); refreshSummary(n); relabelBranch(n, i); }, { maxlength: 60 });
      const row = fieldBox("Route " + (i + 1), input, { node: n.id, field: "routes[" + i + "]" });
      const line = el("div", { class: "route-line" });
      input.replaceWith(line);
      line.append(input, el("button", { type: "button", class: "link", disabled: routes.length <= MIN_ROUTES, onclick: () => removeRoute(n, i),
        text: "Remove", "aria-label": "Remove route " + (i + 1) + " (" + routeName(route, i) + ")" }));
      box.append(row);
    });
    const whole = errors.filter((e) => e.node === n.id && e.field === "routes").map((e) => e.message).join("; ");
    if (claimed) claimed.push("routes");
    if (whole) box.append(el("p", { class: "field-error", text: whole }));
    box.append(el("button", { type: "button", disabled: routes.length >= MAX_ROUTES, onclick: () => addRoute(n), text: "Add a route" }));
    box.append(el("p", { class: "hint", text: "From " + MIN_ROUTES + " to " + MAX_ROUTES + " routes, each a short unique word the model answers with. A route with no step after it ends the run there." }));
    return box;
  }

  // --- Forms ------------------------------------------------------------------------------------
  function triggerForm(n) {
    const c = n.data.config = n.data.config || {};
    const form = [];
    form.push(fieldBox("Starts when", select(cat.events, triggerType(), (v) => {
      if (v === "manual") { n.data.subtype = "manual"; n.data.config = { entity: "none" }; }
      else if (v.startsWith("manual_")) { n.data.subtype = "manual"; n.data.config = { entity: v.slice(7) }; }
      else if (v === "schedule") { n.data.subtype = "schedule"; n.data.config = { frequency: "daily", time: "09:00" }; }
      else { n.data.subtype = "chat-app"; n.data.config = Object.assign({ event: v }, RELATIVE_DEFAULTS[v] ? RELATIVE_DEFAULTS[v]() : {}); }
      changed(); render();
    }), { node: n.id, field: "event" }));
    const t = triggerType();
    const anyStage = [{ value: "", label: "Any stage" }].concat(cat.stages);
    if (t === "deal_stage_change") {
      form.push(fieldBox("From stage", select(anyStage, c.from_stage || "", (v) => { if (v) c.from_stage = v; else delete c.from_stage; changed(); refreshSummary(n); }), { node: n.id, field: "from_stage" }));
    }
    if (t === "deal_stage_change" || t === "deal_created") {
      form.push(fieldBox(t === "deal_created" ? "Created in stage" : "To stage", select(anyStage, c.to_stage || "", (v) => { if (v) c.to_stage = v; else delete c.to_stage; changed(); refreshSummary(n); }), { node: n.id, field: "to_stage" }));
    }
    if (t === "webhook") {
      form.push(fieldBox("Endpoint", select([{ value: "", label: "Any endpoint" }].concat(cat.endpoints.map((e) => ({ value: e, label: e }))), c.endpoint || "", (v) => { if (v) c.endpoint = v; else delete c.endpoint; changed(); }), { node: n.id, field: "endpoint" }));
    }
    if (t === "schedule") form.push(...scheduleFields(n, c));
    if (n.data.subtype === "manual") {
      form.push(jsonField("Inputs asked before it starts (JSON list, optional)", n, c, "inputs",
        '[\n  {"key": "reason", "label": "Reason", "kind": "text", "required": true},\n  {"key": "days", "kind": "number", "default": 3}\n]',
        "Each: key, label, kind (text, long_text, number, money, date, datetime, boolean, choice, url, email, phone), required, default, choices. Steps read them as {{trigger.input.key}}."));
    }
    if (t === "deal_date_reached") {
      const offset = c.offsetDays || 0;
      form.push(fieldBox("Which date", select([{ value: "close_date", label: "The close date" }, { value: "created_at", label: "The day it was created" }], c.field, setter(n, c, "field")), { node: n.id, field: "field" }));
      form.push(fieldBox("Days", number(Math.abs(offset), (v) => { c.offsetDays = (c.offsetDays < 0 ? -1 : 1) * (Number(v) || 0); changed(); refreshSummary(n); }, { min: 0, max: 365, step: 1 }), { node: n.id, field: "offsetDays" }));
      form.push(fieldBox("Before or after", select([{ value: "before", label: "before that date" }, { value: "after", label: "after that date (or on it, with 0 days)" }], offset < 0 ? "before" : "after", (v) => { c.offsetDays = (v === "before" ? -1 : 1) * Math.abs(c.offsetDays || 0); changed(); refreshSummary(n); })));
      form.push(fieldBox("At", text(c.time || "09:00", setter(n, c, "time"), { type: "time" }), { node: n.id, field: "time" }, "In the organization's time zone."));
    }
    if (cat.watchable[t]) {
      const box = el("fieldset", { class: "rules" }, el("legend", { text: "When these fields change (none ticked: any)" }));
      cat.watchable[t].forEach((f) => {
        const tick = el("input", { type: "checkbox", checked: (c.fields || []).includes(f) });
        tick.addEventListener("change", () => {
          const chosen = new Set(c.fields || []);
          if (tick.checked) chosen.add(f); else chosen.delete(f);
          c.fields = cat.watchable[t].filter((x) => chosen.has(x));
          changed(); refreshSummary(n);
        });
        box.append(el("label", { class: "tick" }, tick, " " + f.replace(/_/g, " ")));
      });
      const problem = fieldError(n.id, "fields");
      if (problem) box.append(el("p", { class: "field-error", text: problem }));
      form.push(box);
      const crossing = el("input", { type: "checkbox", checked: !!c.crossing, id: "crossing-" + n.id });
      crossing.addEventListener("change", () => { c.crossing = crossing.checked; changed(); refreshSummary(n); });
      form.push(el("div", { class: "field" }, el("label", { class: "tick", for: "crossing-" + n.id }, crossing,
        " Only when the record starts to meet the conditions below (once, not on every later save)")));
    }
    if (t === "deal_in_stage") {
      form.push(fieldBox("Stage", select(cat.stages, c.stage, setter(n, c, "stage")), { node: n.id, field: "stage" }));
      form.push(fieldBox("For (days)", number(c.days, setter(n, c, "days"), { min: 1, max: 365, step: 1 }), { node: n.id, field: "days" }, "Still in that stage after this many days."));
    }
    if (n.data.subtype === "chat-app" && t !== "webhook") {
      const conditions = c.conditions = c.conditions || { combinator: "and", rules: [] };
      const rules = rulesEditor(n, conditions, "conditions.");
      rules.querySelector("legend").textContent = "Only when (optional)";
      form.push(rules);
    }
    const s = doc.settings = doc.settings || {};
    form.push(fieldBox("When a step fails", select([{ value: "abort", label: "Stop the run" }, { value: "skip", label: "Skip the step and go on" }, { value: "pause", label: "Pause the run and tell the admins" }, { value: "fallback", label: "Go on along the step's “On error” way (its fallback)" }], s.errorPolicy || "abort", (v) => { s.errorPolicy = v; changed(); render(); })));
    form.push(fieldBox("A record may go through it", select([{ value: "not_while_running", label: "again, but not while its last run is unfinished" }, { value: "once", label: "only once, ever" }, { value: "every_time", label: "every time the trigger fires" }], s.reenrollment || "not_while_running", (v) => { s.reenrollment = v; changed(); })));
    return form;
  }

  const RELATIVE_DEFAULTS = {
    deal_date_reached: () => ({ field: "close_date", offsetDays: -3, time: "09:00" }),
    deal_in_stage: () => ({ stage: (cat.stages[0] || {}).value, days: 14 }),
  };
  // A schedule: how often, and when (in the organization's time zone).
  const FREQUENCIES = [["daily", "Every day"], ["weekly", "Every week"], ["monthly", "Every month"], ["hourly", "Every hour"],
    ["every-n-minutes", "Every few minutes"], ["cron", "Cron expression"]];
  const SCHEDULE_DEFAULTS = { daily: { time: "09:00" }, weekly: { dayOfWeek: "monday", time: "09:00" },
    monthly: { dayOfMonth: 1, time: "09:00" }, hourly: { minute: 0 }, "every-n-minutes": { intervalMinutes: 15 },
    cron: { cron: "0 9 * * 1-5" } };
  function scheduleFields(n, c) {
    const where = (field) => ({ node: n.id, field: field });
    const fields = [fieldBox("How often", select(FREQUENCIES.map(([value, label]) => ({ value: value, label: label })), c.frequency || (c.cron ? "cron" : "daily"), (v) => {
      n.data.config = Object.assign({ frequency: v }, SCHEDULE_DEFAULTS[v]); changed(); renderForm(n);
    }), where("frequency"))];
    const frequency = c.frequency || (c.cron ? "cron" : "daily");
    if (frequency === "weekly") fields.push(fieldBox("On", select(["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"].map((d) => ({ value: d, label: d.charAt(0).toUpperCase() + d.slice(1) })), c.dayOfWeek, setter(n, c, "dayOfWeek")), where("dayOfWeek")));
    if (frequency === "monthly") fields.push(fieldBox("On day", select([{ value: "last", label: "The last day" }].concat(Array.from({ length: 31 }, (_, i) => ({ value: i + 1, label: String(i + 1) }))), c.dayOfMonth, (v) => { c.dayOfMonth = v === "last" ? v : Number(v); changed(); refreshSummary(n); }), where("dayOfMonth"), "Months without that day are skipped; choose “The last day” for month ends."));
    if (["daily", "weekly", "monthly"].includes(frequency)) fields.push(fieldBox("At", text(c.time, setter(n, c, "time"), { type: "time" }), where("time"), "In the organization's time zone."));
    if (frequency === "hourly") fields.push(fieldBox("Minutes past the hour", number(c.minute, setter(n, c, "minute"), { min: 0, max: 59, step: 1 }), where("minute")));
    if (frequency === "every-n-minutes") fields.push(fieldBox("Every", select([1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30].map((m) => ({ value: m, label: m + " minutes" })), c.intervalMinutes, (v) => { c.intervalMinutes = Number(v); changed(); refreshSummary(n); }), where("intervalMinutes")));
    if (frequency === "cron") fields.push(fieldBox("Cron expression", text(c.cron, setter(n, c, "cron")), where("cron"), "Five fields: minute hour day month weekday, e.g. 0 9 * * 1-5."));
    return fields;
  }
  function scheduleWords(c) {
    const f = c.frequency || (c.cron ? "cron" : "");
    if (f === "daily") return "Every day at " + c.time;
    if (f === "weekly") return "Every " + (c.dayOfWeek || "").replace(/^./, (x) => x.toUpperCase()) + " at " + c.time;
    if (f === "monthly") return "Every month on " + (c.dayOfMonth === "last" ? "the last day" : "day " + c.dayOfMonth) + " at " + c.time;
    if (f === "hourly") return "Every hour at " + (c.minute || 0) + " minutes past";
    if (f === "every-n-minutes") return "Every " + c.intervalMinutes + " minutes";
    if (f === "cron") return "On the cron schedule “" + c.cron + "”";
    return "On a schedule";
  }

  function nodeForm(n) {
    const c = n.data.config = n.data.config || {};
    const d = n.data.subtype === "tool-call" ? (c.defaults = c.defaults || {}) : {};
    const name = n.data.label || "Name";
    const readsOf = (label) => kindOf(n) === "agent" ? "Later steps use the answer as {{" + label + "}}" + (c.outputFormat === "json" ? " and its fields as {{" + label + ".field}}" : "") + "."
      : kindOf(n) === "router" ? "Later steps can use the route taken and why as {{" + label + ".route}} and {{" + label + ".reason}}."
        : OUTPUTS[kindOf(n)] ? "Later steps can use what this one made as {{" + label + "." + OUTPUTS[kindOf(n)][0] + "}} …" : "";
    const labelBox = fieldBox(STEP_NAME, text(n.data.label, (v) => {
      n.data.label = v;
      changed();
      const h = document.querySelector('[data-label="' + n.id + '"]');
      if (h) h.textContent = v;
      const hint = labelBox.querySelector(".hint");
      if (hint) hint.textContent = readsOf(v || "Name");  // the name later steps use follows as it is typed
    }), { node: n.id, field: "label" }, readsOf(name));
    const form = [labelBox];
    if (!NO_FALLBACK.includes(n.data.subtype)) {  // this step's own error policy (the workflow's by default)
      const rule = n.data.onError && typeof n.data.onError === "object" ? n.data.onError : null;
      const chosen = rule ? (rule.policy === "retry" ? "retry" : rule.policy) : "";
      const choices = [{ value: "", label: "As the workflow says" }, { value: "fallback", label: "Go on along its “On error” way (a fallback)" }, { value: "skip", label: "Skip it and go on" }, { value: "pause", label: "Pause the run" }, { value: "abort", label: "Stop the run" }];
      if (chosen === "retry") choices.push({ value: "retry", label: "Try again (as set in YAML)" });
      form.push(fieldBox("When this step fails", select(choices, chosen, (v) => {
        if (!v) delete n.data.onError; else if (v !== "retry") n.data.onError = { policy: v };
        changed(); render();
      }), { node: n.id, field: "onError" }, fallsBack(n) ? "Draw its “On error” way to the step to run instead; that step reads the failure as {{" + (n.data.label || "Step") + ".error}}." : ""));
    }
    switch (kindOf(n)) {
      case "crm/create_task":
        form.push(templated("Task title", n, d, "title"));
        form.push(fieldBox("Assign to", select([{ value: "owner", label: "The record's owner" }, { value: "", label: "Nobody" }].concat(cat.members), d.assignee || "", setter(n, d, "assignee")), { node: n.id, field: "assignee" }));
        form.push(fieldBox("Priority", select(cat.priorities, d.priority || "normal", setter(n, d, "priority")), { node: n.id, field: "priority" }));
        form.push(fieldBox("Due in (days)", number(d.due_in_days, (v) => { if (v === "") delete d.due_in_days; else d.due_in_days = v; changed(); }, { min: 0, max: 3650, step: 1 }), { node: n.id, field: "due_in_days" }));
        break;
      case "crm/create_project":
        form.push(templated("Project name", n, d, "name"));
        form.push(templated("Service type", n, d, "service_type"));
        form.push(fieldBox("Status", select(cat.project_statuses || [], d.status || "planned", setter(n, d, "status")), { node: n.id, field: "status" }));
        form.push(fieldBox("Owner", select([{ value: "", label: "The deal's owner" }, { value: "owner", label: "The record's owner" }].concat(cat.members), d.owner || "", setter(n, d, "owner")), { node: n.id, field: "owner" }));
        form.push(fieldBox("Ends in (days)", number(d.ends_in_days, (v) => { if (v === "") delete d.ends_in_days; else d.ends_in_days = v; changed(); }, { min: 0, max: 3650, step: 1 }), { node: n.id, field: "ends_in_days" }, "It is linked to the run's deal and its contact."));
        break;
      case "crm/create_contact":
        ["first_name", "last_name", "email", "phone", "company"].forEach((f) => form.push(templated(f.replace("_", " ").replace(/^./, (x) => x.toUpperCase()), n, d, f)));
        break;
      case "crm/create_deal":
        form.push(templated("Deal title", n, d, "title"));
        form.push(templated("Amount", n, d, "amount"));
        form.push(fieldBox("Stage", select([{ value: "", label: "The first open stage" }].concat(cat.stages), d.stage || "", setter(n, d, "stage")), { node: n.id, field: "stage" }));
        form.push(fieldBox("Owner", select([{ value: "", label: "Nobody" }, { value: "owner", label: "The record's owner" }].concat(cat.members), d.owner || "", setter(n, d, "owner")), { node: n.id, field: "owner" }, "Its contact is the run's contact."));
        break;
      case "crm/create_note":
        form.push(templated("Note", n, d, "body", true));
        break;
      case "crm/archive_record":
        form.push(fieldBox("Archive", select([{ value: "", label: "The record the run is about" }, { value: "deal", label: "Its deal" }, { value: "contact", label: "Its contact" }, { value: "project", label: "Its project" }, { value: "lead", label: "Its lead" }], d.record || "", setter(n, d, "record")), { node: n.id, field: "record" },
          "Archived records keep their history; an admin can restore them."));
        break;
      case "crm/delete_record":
        form.push(fieldBox("Delete", select([{ value: "", label: "The record the run is about" }, { value: "deal", label: "Its deal" }, { value: "contact", label: "Its contact" }, { value: "project", label: "Its project" }, { value: "lead", label: "Its lead" }], d.record || "", setter(n, d, "record")), { node: n.id, field: "record" },
          "Deletes only once an admin allowed this workflow to delete records; the run keeps what it deleted."));
        break;
      case "response":
        form.push(templated("Reply", n, c, "responseTemplate", true));
        form.push(fieldBox("HTTP status", number(c.statusCode === undefined ? 200 : c.statusCode, (v) => { if (v === "") delete c.statusCode; else c.statusCode = v; changed(); refreshSummary(n); }, { min: 200, max: 599, step: 1 }), { node: n.id, field: "statusCode" },
          triggerType() === "webhook" ? "The webhook's caller gets it as the answer when the run gets here in time; else 202 and the reply stays on the run." : "Recorded on the run."));
        form.push(fieldBox("Also post it to (optional)", select([{ value: "", label: "Nobody" }].concat((cat.targets || []).map((t) => ({ value: t.value, label: t.value + " (" + t.url + ")" }))), c.target || "", (v) => { if (v) c.target = v; else delete c.target; changed(); }), { node: n.id, field: "target" },
          "A webhook target: the reply is posted there, signed, once."));
        break;
      case "crm/post_slack": case "crm/post_teams": {
        const kind = kindOf(n) === "crm/post_slack" ? "slack" : "teams";
        const channels = (cat.chat_channels || []).filter((c) => c.kind === kind);
        form.push(fieldBox("Channel", select([{ value: "", label: "Choose…" }].concat(channels), d.channel || "", setter(n, d, "channel")), { node: n.id, field: "channel" },
          channels.length ? "Channels hold the webhook URL or bot token (admin: Chat channels)." : "This organization has no " + (kind === "slack" ? "Slack" : "Teams") + " channel yet: an admin adds one first (admin: Chat channels)."));
        form.push(templated("Title (optional)", n, d, "title"));
        form.push(templated("Message", n, d, "text", true));
        break;
      }
      case "crm/send_sms": {
        form.push(templated("To (a phone number)", n, d, "to"));
        const message = templated("Message", n, d, "body", true);
        const count = el("p", { class: "hint", "aria-live": "polite", "data-sms-length": "" });
        const area_ = message.querySelector("textarea");
        const show = () => { count.textContent = smsLength(area_ ? area_.value : d.body || ""); };
        if (area_) area_.addEventListener("input", show);
        show();
        message.append(count);
        form.push(message);
        const waits = el("input", { type: "checkbox", checked: !!d.wait_for_reply, id: "reply-" + n.id });
        waits.addEventListener("change", () => {
          if (waits.checked) d.wait_for_reply = true; else { delete d.wait_for_reply; delete d.reply_timeout_hours; }
          changed(); renderForm(n);
        });
        form.push(el("div", { class: "field" }, el("label", { class: "tick", for: "reply-" + n.id }, waits,
          " Wait for the reply (later steps read it as {{" + (n.data.label || "Send SMS") + ".reply}}, or {{" + (n.data.label || "Send SMS") + ".timed_out}})")));
        if (d.wait_for_reply) {
          form.push(fieldBox("Wait up to (hours)", number(d.reply_timeout_hours === undefined ? 48 : d.reply_timeout_hours, (v) => { if (v === "") delete d.reply_timeout_hours; else d.reply_timeout_hours = v; changed(); refreshSummary(n); }, { min: 0.0167, max: 720, step: "any" }), { node: n.id, field: "reply_timeout_hours" },
            "The run waits, holding nothing; a reply wakes it. 0.0167 is one minute."));
        }
        break;
      }
      case "crm/send_email":
        form.push(templated("To", n, d, "to"));
        form.push(templated("Subject", n, d, "subject"));
        form.push(templated("Message", n, d, "body", true));
        break;
      case "crm/update_record": {
        const updatable = cat.updatable[entity() || "deal"] || {};
        form.push(fieldBox("Field", select(Object.keys(updatable).map((f) => ({ value: f, label: f.replace("_", " ") })), d.field, (v) => { d.field = v; d.value = ""; changed(); renderForm(n); }), { node: n.id, field: "field" }));
        form.push(fieldBox("New value", valueInput(updatable[d.field], d.value, setter(n, d, "value"), "New value"), { node: n.id, field: "value" }));
        break;
      }
      case "condition":
        form.push(rulesEditor(n, c));
        break;
      case "wait":
        form.push(fieldBox("Wait for", number(c.delayAmount, setter(n, c, "delayAmount"), { min: 0, step: 1 }), { node: n.id, field: "delayAmount" }));
        form.push(fieldBox("Unit", select(cat.units.map((u) => ({ value: u, label: u })), c.delayUnit || "hours", setter(n, c, "delayUnit")), { node: n.id, field: "delayUnit" }));
        break;
      case "user-input":
        form.push(templated("Question", n, c, "promptText", true));
        form.push(fieldBox("Who answers", select([{ value: "admin", label: "Admins" }, { value: "ops", label: "Ops members and admins" }], c.role || "admin", setter(n, c, "role")), { node: n.id, field: "role" }));
        form.push(fieldBox("Answer within", number(c.timeoutAmount, setter(n, c, "timeoutAmount"), { min: 1, step: 1 }), { node: n.id, field: "timeoutAmount" }));
        form.push(fieldBox("Unit", select(cat.units.map((u) => ({ value: u, label: u })), c.timeoutUnit || "days", setter(n, c, "timeoutUnit")), { node: n.id, field: "timeoutUnit" }));
        break;
      case "desktop-notification":
        form.push(templated("Title", n, c, "title"));
        form.push(templated("Text", n, c, "body", true));
        form.push(fieldBox("Who", select(cat.recipients.map((r) => ({ value: r, label: { admins: "Admins", members: "Everyone in the organization", owner: "The record's owner" }[r] || r })), c.recipients || "admins", setter(n, c, "recipients")), { node: n.id, field: "recipients" }));
        break;
      case "sub-workflow":
        form.push(fieldBox("Workflow", select([{ value: "", label: "Choose…" }].concat(cat.workflows), c.workflowId, setter(n, c, "workflowId")), { node: n.id, field: "workflowId" }));
        break;
      case "agent":
        form.push(templated("Prompt", n, c, "additionalPrompt", true));
        form.push(fieldBox("Output format", select([{ value: "text", label: "Text" }, { value: "json", label: "JSON object" }], c.outputFormat || "text", (v) => { c.outputFormat = v; changed(); renderForm(n); }), { node: n.id, field: "outputFormat" },
          c.outputFormat === "json" ? "The model answers with one JSON object; later steps read its fields as {{" + name + ".field}}." : "The model answers with text; later steps read it as {{" + name + "}}."));
        form.push(fieldBox("Max tokens", number(c.maxTokens, (v) => { if (v === "") delete c.maxTokens; else c.maxTokens = v; changed(); }, { min: 1, max: 4000, step: 1 }), { node: n.id, field: "maxTokens" },
          "Optional: the longest answer, 1 to 4000 tokens (500 when empty)."));
        {  // the CRM tools the model may call (none ticked: it only writes)
          const box = el("fieldset", { class: "rules" }, el("legend", { text: "Tools the model may call (none ticked: it only answers)" }));
          AGENT_TOOLS.forEach(([tool, words]) => {
            const tick = el("input", { type: "checkbox", checked: (c.tools || []).includes(tool) });
            tick.addEventListener("change", () => {
              const chosen = new Set(c.tools || []);
              if (tick.checked) chosen.add(tool); else chosen.delete(tool);
              const tools = AGENT_TOOLS.map(([t]) => t).filter((t) => chosen.has(t));
              if (tools.length) c.tools = tools; else { delete c.tools; delete c.maxToolCalls; }
              changed(); renderForm(n);
            });
            box.append(el("label", { class: "tick" }, tick, " " + words));
          });
          const problem = fieldError(n.id, "tools");
          if (problem) box.append(el("p", { class: "field-error", text: problem }));
          form.push(box);
          if (c.tools) form.push(fieldBox("At most (tool calls)", number(c.maxToolCalls, (v) => { if (v === "") delete c.maxToolCalls; else c.maxToolCalls = v; changed(); }, { min: 1, max: 20, step: 1 }), { node: n.id, field: "maxToolCalls" },
            "Optional: 5 when empty, at most 20. A model that asks for more fails the step."));
        }
        break;
      case "router":
        form.push(templated("Classification prompt", n, c, "classificationPrompt", true));
        form.push(routesEditor(n, c));
        break;
      case "http/request": {
        form.push(fieldBox("Webhook target", select([{ value: "", label: "Choose…" }].concat((cat.targets || []).map((t) => ({ value: t.value, label: t.value + " (" + t.url + ")" }))), d.target || "", setter(n, d, "target")), { node: n.id, field: "target" },
          (cat.targets || []).length ? "Targets hold the URL and the signing secret (admin: Webhook targets)." : "This organization has no webhook target yet: an admin creates one first (admin: Webhook targets)."));
        form.push(fieldBox("Method", select((cat.methods || ["POST"]).map((m) => ({ value: m, label: m })), d.method || "POST", (v) => { d.method = v; if (["GET", "DELETE"].includes(v)) delete d.body; changed(); renderForm(n); }), { node: n.id, field: "method" }));
        form.push(templated("URL (optional: the target's URL or a path below it)", n, d, "url"));
        if (!["GET", "DELETE"].includes(d.method || "POST")) form.push(jsonField("Body (JSON object; texts may hold {{variables}})", n, d, "body", "{\n  \"deal\": \"{{deal.title}}\"\n}"));
        form.push(jsonField("Headers (JSON object, optional)", n, d, "headers", "{\n  \"X-Source\": \"crm\"\n}"));
        break;
      }
      case "function": {
        const chosen = (cat.functions || []).find((f) => f.value === c.functionRef);
        form.push(fieldBox("Function", select((cat.functions || []).map((f) => ({ value: f.value, label: (FUNCTION_WORDS[f.value] || f.value) + " (" + f.value + ")" })), c.functionRef, (v) => { c.functionRef = v; c.args = {}; changed(); renderForm(n); }), { node: n.id, field: "functionRef" }));
        const hint = chosen && Object.keys(chosen.arguments).length ? "Takes " + Object.entries(chosen.arguments).map(([k, v]) => k + ": " + v).join("; ") + "." : "Takes no arguments.";
        form.push(jsonField("Arguments (JSON object)", n, c, "args", "{}", hint));
        break;
      }
      case "loop": {
        const mode = c.loopMode || ("items" in c ? "for-each" : "count");
        form.push(fieldBox("Repeat", select([{ value: "count", label: "A number of times" }, { value: "for-each", label: "For each item of a list" }, { value: "ask-orchestrator", label: "Until the AI model says stop" }], mode, (v) => {
          c.loopMode = v;
          delete c.items; delete c.count; delete c.orchestratorPrompt;
          if (v === "count") c.count = 3;
          else if (v === "for-each") c.items = "";
          else { c.orchestratorPrompt = ""; c.maxIterations = c.maxIterations || 5; }
          changed(); renderForm(n);
        }), { node: n.id, field: "loopMode" }));
        if (mode === "count") form.push(fieldBox("Times", number(c.count, setter(n, c, "count"), { min: 0, step: 1 }), { node: n.id, field: "count" }));
        else if (mode === "ask-orchestrator") form.push(templated("What the model decides by (asked after each iteration)", n, c, "orchestratorPrompt", true));
        else form.push(templated("List to go over (one value in braces, e.g. {{Find deals.rows}})", n, c, "items"));
        form.push(fieldBox("At most (iterations)", number(c.maxIterations, (v) => { if (v === "") delete c.maxIterations; else c.maxIterations = v; changed(); }, { min: 1, step: 1 }), { node: n.id, field: "maxIterations" }, "Optional: 100 when empty."));
        form.push(el("p", { class: "hint", text: "“For each item” leads to the steps of one iteration (the last may lead back to this loop); “After the loop” goes on once every iteration is over." }));
        break;
      }
      case "parallel":
        form.push(el("p", { class: "hint", text: "Runs every branch side by side. Its branches are its ways out: draw an edge from each one (a new way out appears for the next). A Merge step brings them back together." }));
        break;
      case "merge":
        form.push(fieldBox("Go on", select([{ value: "wait-all", label: "Once every branch has arrived" }, { value: "first", label: "With the first branch to arrive" }], c.strategy || "wait-all", setter(n, c, "strategy")), { node: n.id, field: "strategy" }));
        break;
      default:
        form.push(el("p", { class: "hint", text: "This kind of step is edited in the YAML tab." }));
    }
    return form;
  }

  // A JSON object typed as text: the document changes only while the text is valid JSON (an
  // empty box leaves the setting out); until then the box says what is wrong.
  function jsonField(label, n, target, key, placeholder, hint) {
    const box = el("textarea", { rows: 4, class: "json", placeholder: placeholder || "", spellcheck: "false" });
    box.value = target[key] === undefined ? "" : JSON.stringify(target[key], null, 2);
    const note = el("p", { class: "field-error", "aria-live": "polite" });
    box.addEventListener("input", () => {
      if (!box.value.trim()) { delete target[key]; note.textContent = ""; changed(); refreshSummary(n); return; }
      try {
        target[key] = JSON.parse(box.value);
        note.textContent = "";
        changed();
        refreshSummary(n);
      } catch (error) {
        note.textContent = "Not valid JSON yet (" + error.message + "); the last valid value is kept.";
      }
    });
    const field = fieldBox(label, box, { node: n.id, field: key }, hint);
    field.append(note);
    return field;
  }

  function renderForm(n) {
    const holder = document.querySelector('[data-form="' + n.id + '"]');
    if (!holder) return;
    claimed = [];
    const parts = n === trigger() ? triggerForm(n) : nodeForm(n);
    // A problem with a setting this form has no input for is still shown, under the form.
    const others = errors.filter((e) => e.node === n.id && e.field && !claimed.some((f) => under(e.field, f)));
    claimed = null;
    holder.replaceChildren(...parts, ...others.map((e) => el("p", { class: "field-error", text: e.field + ": " + e.message })));
    refreshSummary(n);
  }

  // --- Read only: each step's settings as text ----------------------------------------------------
  // The form a person who may edit would get, read back as "label: value" (no inputs, no buttons).
  function settingsList(n) {
    const list = el("dl", { class: "node-settings", "aria-label": "Settings of " + (n === trigger() ? "the trigger" : n.data.label) });
    (n === trigger() ? triggerForm(n) : nodeForm(n)).forEach((part) => readBack(part, list));
    return list.children.length ? list : null;
  }
  function controlText(c) {
    if (c.tagName === "SELECT") return c.selectedIndex >= 0 ? c.options[c.selectedIndex].textContent : "";
    if (c.type === "checkbox") return c.checked ? "yes" : "no";
    return c.value;
  }
  const controlsOf = (holder) => [...holder.querySelectorAll("input, select, textarea")].filter((c) => !c.classList.contains("picker"));
  function readBack(part, list) {
    const add = (term, value) => list.append(el("dt", { text: term }), el("dd", { text: value === "" ? "empty" : value }));
    if (part.tagName === "FIELDSET") {
      const lines = [], ticks = part.querySelectorAll(":scope > label.tick");
      part.querySelectorAll(":scope > .rule").forEach((row) => lines.push(controlsOf(row).map(controlText).join(" ")));
      part.querySelectorAll(":scope > .field").forEach((row) => {
        const label = row.querySelector("label"), control = controlsOf(row)[0];
        if (control && label && label.textContent !== "Match") lines.push(label.textContent + ": " + (controlText(control) || "empty"));
      });
      ticks.forEach((tick) => { if (tick.querySelector("input").checked) lines.push(tick.textContent.trim()); });
      if (ticks.length && !lines.length) lines.push("any of them");
      if (!lines.length) return;  // e.g. no conditions
      const match = part.querySelector(":scope > .field select");
      const joined = part.querySelectorAll(":scope > .rule").length > 1 && match ? " (" + controlText(match) + ")" : "";
      add(part.querySelector("legend").textContent + joined, lines.join("; "));
      return;
    }
    if (!part.classList || !part.classList.contains("field")) return;
    const label = part.querySelector("label"), control = controlsOf(part)[0];
    if (!label || !control || label.textContent === STEP_NAME) return;  // the card's heading says it
    if (control.type === "checkbox") add(label.textContent.trim(), controlText(control));
    else add(label.textContent, controlText(control));
  }

  // --- The flow ---------------------------------------------------------------------------------
  // Kinds the "+ Add a step" menu does not offer (made in the YAML tab), as the graph names them.
  const OTHER_KINDS = { "http/request": "HTTP request", loop: "Loop", parallel: "Parallel branches", merge: "Merge branches",
    function: "Function" };
  function kindLabel(n) {
    const kind = KINDS.find((k) => k.subtype === n.data.subtype && (!k.tool || k.tool === kindOf(n)));
    return kind ? kind.label : OTHER_KINDS[kindOf(n)] || kindOf(n) || n.data.subtype;
  }
  function card(n) {
    const isTrigger = n === trigger();
    const problems = errors.filter((e) => e.node === n.id && !e.field);
    const fieldProblems = errors.filter((e) => e.node === n.id && e.field).length;
    const open = openNode === n.id;
    const prev = movable(n.id), after = outs(n.id)[0];
    const downOk = after && movable(after.target) && movable(after.target).id === n.id;
    const box = el("article", { class: "node-card" + (isTrigger ? " trigger" : "") + (problems.length || fieldProblems ? " has-error" : ""), id: "node-" + n.id, "data-node": n.id, tabindex: "-1" },
      el("header", {},
        el("span", { class: "node-kind", text: isTrigger ? "When" : kindLabel(n) }),
        el("h3", { "data-label": n.id, text: isTrigger ? triggerWords() : n.data.label }),
        withSummary(el("p", { class: "node-summary", "data-summary": n.id }), cardWords(n))),
      problems.map((p) => el("p", { class: "field-error", text: p.message })),
      fieldProblems ? el("p", { class: "field-error", text: fieldProblems + " problem" + (fieldProblems > 1 ? "s" : "") + " in this step's settings" }) : null,
      AI_KINDS.includes(n.data.subtype) && cat.ai && !cat.ai.configured ? el("p", { class: "ai-notice", text: cat.ai.notice }) : null,
      state.editable ? null : settingsList(n),
      state.editable ? el("div", { class: "node-tools" },
        el("button", { type: "button", "aria-expanded": open ? "true" : "false", onclick: () => { openNode = open ? null : n.id; render(); focusCard(n.id); }, text: open ? "Close" : "Edit", "aria-label": (open ? "Close " : "Edit ") + (isTrigger ? "the trigger" : n.data.label) }),
        !isTrigger ? el("button", { type: "button", disabled: !prev, onclick: () => moveUp(n.id), text: "↑", "aria-label": "Move " + n.data.label + " up" }) : null,
        !isTrigger ? el("button", { type: "button", disabled: !downOk, onclick: () => moveDown(n.id), text: "↓", "aria-label": "Move " + n.data.label + " down" }) : null,
        !isTrigger ? el("button", { type: "button", class: "danger", onclick: () => remove(n.id), text: "Remove", "aria-label": "Remove " + n.data.label }) : null) : null);
    if (open) {
      const form = el("div", { class: "node-form", "data-form": n.id });
      box.append(form);
      setTimeout(() => renderForm(n), 0);
    }
    return box;
  }

  // "Add a step after Check (condition-true)"; a route also says its words: "(route-0: positive)".
  function adderLabel(source, handle, words, target) {
    const where = target ? "between " + (node(source).data.label || "the trigger") + " and " + node(target).data.label : "after " + (node(source) === trigger() ? "the trigger" : node(source).data.label);
    const way = handle ? " (" + handle + (node(source).data.subtype === "router" && words ? ": " + words : "") + ")" : "";
    return "Add a step " + where + way;
  }
  // "+ Add a step": the kinds in order, AI steps in a group of their own.
  function adder(source, handle, target, words) {
    if (!state.editable) return el("div", { class: "connector" });
    const menu = el("select", { class: "add-step", "aria-label": adderLabel(source, handle, words, target), "data-target": target || null },
      el("option", { value: "", text: "+ Add a step" }));
    const groups = {};
    KINDS.forEach((k) => {
      const option = el("option", { value: k.key, text: k.label });
      if (!k.group) { menu.append(option); return; }
      if (!groups[k.group]) menu.append(groups[k.group] = el("optgroup", { label: k.group }));
      groups[k.group].append(option);
    });
    menu.addEventListener("change", () => { if (menu.value) insert(menu.value, source, handle, target); });
    return el("div", { class: "connector" }, menu);
  }

  function chain(container, id, placed) {
    const n = node(id);
    if (!n) return;
    placed.add(id);
    container.append(card(n));
    const branches = branchesOf(n);
    if (branches) {
      const row = el("div", { class: "branches" });
      branches.forEach(([handle, label]) => {
        const column = el("div", { class: "branch", "data-node": id, "data-handle": handle }, el("p", { class: "branch-label", text: label }));
        const out = outs(id).find((e) => (e.sourceHandle || "") === handle);
        column.append(adder(id, handle, out ? out.target : null, label));
        if (out) follow(column, out.target, placed);
        else column.append(el("p", { class: "end", text: "Ends here" }));
        row.append(column);
      });
      container.append(row);
      return;
    }
    const out = outs(id)[0];
    container.append(adder(id, out ? out.sourceHandle : "", out ? out.target : null));
    if (out) follow(container, out.target, placed);
    else container.append(el("p", { class: "end", text: "End" }));
  }
  function follow(container, target, placed) {
    if (placed.has(target)) container.append(el("p", { class: "joins" }, "Continues at ", el("a", { href: "#node-" + target, text: node(target).data.label })));
    else chain(container, target, placed);
  }

  function render() {
    document.querySelectorAll("[data-view]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.view === view)));
    const flow = document.getElementById("flow"), drawn = document.getElementById("canvas-view");
    if (view === "canvas") {
      flow.hidden = true;
      flow.replaceChildren();
      drawn.hidden = false;
      if (!canvas) canvas = window.WorkflowCanvas.mount(document.getElementById("canvas"), canvasApi);
      else redraw();
      renderPanel();
      showGeneralErrors();
      return;
    }
    drawn.hidden = true;
    document.getElementById("node-panel").replaceChildren();
    flow.hidden = false;
    renderList(flow);
  }
  function showGeneralErrors() {
    const general = errors.filter((e) => !e.node);
    document.getElementById("builder-errors").replaceChildren(...general.map((e) => el("li", { text: (e.place ? e.place + ": " : "") + e.message })));
  }
  function renderList(flow) {
    const t = trigger();
    if (!t) { flow.replaceChildren(el("p", { class: "field-error", text: "This workflow has no trigger; fix it in the YAML tab." })); return; }
    const placed = new Set();
    const holder = el("div", { class: "chain" });
    chain(holder, t.id, placed);
    const stray = nodes().filter((n) => !placed.has(n.id));
    if (stray.length) holder.append(el("p", { class: "field-error", text: "Not reachable from the trigger: " + stray.map((n) => n.data.label).join(", ") }));
    flow.replaceChildren(holder);
    showGeneralErrors();
  }

  // --- The canvas ---------------------------------------------------------------------------------
  // What the canvas draws: each node with its words, ways out and problems; the edges.
  function picture() {
    const pasted = justPasted;
    justPasted = new Set();
    return {
      editable: !!state.editable,
      kinds: KINDS.map((k) => ({ key: k.key, label: k.label, group: k.group || "" })),
      canUndo: undoStack.length > 0 || !!typing, canRedo: redoStack.length > 0, canPaste: !!clipboard(),
      canDebug: !!state.debug_url, debugging: !!debugging,
      nodes: nodes().map((n) => {
        const isTrigger = n === trigger();
        return {
          id: n.id, trigger: isTrigger, kind: isTrigger ? "When" : kindLabel(n),
          title: isTrigger ? triggerWords() : n.data.label, summary: shorten(cardWords(n), SUMMARY_ROOM),
          problems: errors.filter((e) => e.node === n.id && !e.field).map((e) => e.message),
          fieldProblems: errors.filter((e) => e.node === n.id && e.field).length,
          notice: AI_KINDS.includes(n.data.subtype) && cat.ai && !cat.ai.configured ? "AI is not set up: a draft only (see its form)" : "",
          handles: waysOut(n), position: n.position || null, selected: openNode === n.id || pasted.has(n.id),
          status: debugging && debugging[n.id] ? debugging[n.id].status : "",
          statusWords: debugging && debugging[n.id] ? debugging[n.id].statusWords : "",
        };
      }),
      edges: doc.edges.map((e) => ({ source: e.source, target: e.target, sourceHandle: e.sourceHandle || "" })),
    };
  }
  // A node's ways out as the canvas's handles: a parallel node's branches and one more for the next.
  function waysOut(n) {
    const branches = branchesOf(n);
    if (!branches) return null;
    if (n.data.subtype !== "parallel") return branches.map(([id, words]) => ({ id: id, label: words }));
    const made = branches.map(([id]) => ({ id: id, label: /^branch-\d+$/.test(id) ? "Branch " + (Number(id.slice(7)) + 1) : id }));
    let next = 0;
    while (made.some((h) => h.id === "branch-" + next)) next++;
    made.push({ id: "branch-" + next, label: made.length ? "Another branch" : "Branch 1" });
    return made;
  }
  // Nodes the document has no place for yet take the one the canvas laid them out at, so that
  // once a person arranges anything the whole layout is kept.
  function placeAll(positions) {
    nodes().forEach((n) => { if (!n.position && positions && positions[n.id]) n.position = positions[n.id]; });
  }
  function addAt(kindKey, position, positions) {
    const kind = KINDS.find((k) => k.key === kindKey);
    if (!kind || !state.editable) return;
    placeAll(positions);
    const made = { id: freeId(kind.key.replace("_", "-")), type: "workflow", position: position,
      data: { subtype: kind.subtype, label: freeLabel(kind.name), config: kind.config() } };
    doc.nodes.push(made);
    openNode = made.id;
    changed(true);
    render();
  }
  // An edge drawn from a way out: a way out leads to one step, so it replaces the one it had.
  function connect(source, handle, target, positions) {
    if (!node(source) || !node(target) || node(target) === trigger() || source === target) return;
    placeAll(positions);
    doc.edges = doc.edges.filter((e) => !(e.source === source && (e.sourceHandle || "") === (handle || "")));
    doc.edges.push(edge(source, target, handle));
    changed(true);
    render();
  }
  function deleteParts(ids, cut) {
    const gone = new Set(ids.filter((id) => node(id) && node(id) !== trigger()));
    const same = (a, b) => a.source === b.source && a.target === b.target && (a.sourceHandle || "") === (b.sourceHandle || "");
    doc.edges = doc.edges.filter((e) => !gone.has(e.source) && !gone.has(e.target) && !cut.some((c) => same(c, e)));
    doc.nodes = doc.nodes.filter((n) => !gone.has(n.id));
    if (openNode && !node(openNode)) openNode = null;
    changed(true);
    render();
  }
  function place(positions, tidied) {
    nodes().forEach((n) => { if (positions[n.id]) n.position = positions[n.id]; });
    changed(true);
    if (tidied) window.requestAnimationFrame(() => canvas && canvas.fit());
  }
  function choose(ids) {
    if (debugging) return;  // the panel shows the debug until it is closed
    const chosen = ids.length ? ids[0] : null;
    if (chosen === openNode) return;
    openNode = chosen;
    renderPanel();
  }
  // Copy and paste: the chosen steps and the edges between them, kept in this browser (another
  // workflow's builder can paste them too); pasted with new ids and labels, a little lower.
  const CLIP_KEY = "crm-builder-clipboard";
  let clip = null;
  let justPasted = new Set();  // the copies a paste made: they come selected (and Delete removes them)
  function clipboard() {
    if (clip) return clip;
    try { const kept = JSON.parse(readStored(CLIP_KEY) || "null"); return kept && Array.isArray(kept.nodes) ? kept : null; } catch (error) { return null; }
  }
  function copySteps(ids, positions) {
    placeAll(positions);  // (copies of steps never moved keep their places, a little lower)
    const chosen = nodes().filter((n) => ids.includes(n.id) && n !== trigger());
    if (!chosen.length) return;
    const ours = new Set(chosen.map((n) => n.id));
    clip = { nodes: copy(chosen), edges: doc.edges.filter((e) => ours.has(e.source) && ours.has(e.target)).map(copy) };
    store(CLIP_KEY, JSON.stringify(clip));
    document.getElementById("save-state").textContent = "Copied " + chosen.length + " step" + (chosen.length > 1 ? "s" : "") + ": paste with Ctrl+V or Paste.";
    redraw();
  }
  function paste(positions) {
    const taken = clipboard();
    if (!taken || !state.editable) return;
    placeAll(positions);
    const ids = {};
    const centre = canvas ? canvas.centre() : { x: 0, y: 0 };
    taken.nodes.forEach((n, i) => {
      if (!n || typeof n !== "object" || !n.data) return;
      const made = copy(n);
      made.id = ids[n.id] = freeId(String(n.id || "step"));
      made.data.label = freeLabel(String(n.data.label || "Step"));
      made.position = n.position ? { x: n.position.x + 40, y: n.position.y + 40 } : { x: centre.x + 40 * i, y: centre.y + 40 * i };
      doc.nodes.push(made);
    });
    (taken.edges || []).forEach((e) => { if (ids[e.source] && ids[e.target]) doc.edges.push(edge(ids[e.source], ids[e.target], e.sourceHandle)); });
    taken.nodes.forEach((n) => { if (n && n.position) n.position = { x: n.position.x + 40, y: n.position.y + 40 }; });  // the next paste lands lower
    justPasted = new Set(Object.values(ids));
    if (justPasted.size) openNode = Object.values(ids)[0];
    changed(true);
    render();
  }
  const canvasApi = { picture: picture, onAdd: addAt, onConnect: connect, onDelete: deleteParts, onPlace: place,
    onSelect: choose, undo: undo, redo: redo, copy: copySteps, paste: paste, onDebug: openDebug };

  // Live Debug (builder_debug.js) in the panel beside the canvas; the canvas shows its statuses.
  function openDebug() {
    const entity = entity_();
    if (!entity) {
      document.getElementById("save-state").textContent = "Debug runs the workflow on a deal, a lead or a contact: this trigger starts on none of them.";
      return;
    }
    debugging = {};
    openNode = null;
    redraw();
    window.BuilderDebug.start({
      panel: document.getElementById("node-panel"), el: el, entity: entity, csrf: csrf,
      searchUrl: state.search_url, debugUrl: state.debug_url, nodeIds: () => nodes().map((n) => n.id),
      aiConfigured: !!(cat.ai && cat.ai.configured),
      saveFirst: async () => !dirty || (await save()) === true,
      show: (statuses) => { if (debugging) { debugging = Object.assign({}, statuses); redraw(); } },
      onClose: () => { debugging = null; redraw(); renderPanel(); },
    });
  }
  function entity_() { return (cat.debuggable || {})[triggerType()] || ""; }

  // Beside the canvas: the selected step's form (or, read only, its settings).
  function renderPanel() {
    if (debugging) return;
    const panel = document.getElementById("node-panel");
    const n = openNode ? node(openNode) : null;
    if (!n) {
      panel.replaceChildren(el("p", { class: "hint", text: state.editable
        ? "Select a step to edit it. Drag steps from the palette onto the canvas and connect a way out (the dot under a step) to the top of the next step."
        : "Select a step to read its settings." }));
      return;
    }
    const isTrigger = n === trigger();
    const problems = errors.filter((e) => e.node === n.id && !e.field);
    panel.replaceChildren(
      el("p", { class: "node-kind", text: isTrigger ? "When" : kindLabel(n) }),
      el("h2", { "data-label": n.id, text: isTrigger ? triggerWords() : n.data.label }),
      ...problems.map((e) => el("p", { class: "field-error", text: e.message })),
      state.editable ? el("div", { class: "node-form", "data-form": n.id }) : settingsList(n) || el("p", { class: "hint", text: "No settings." }),
      state.editable && !isTrigger ? el("div", { class: "node-tools" },
        el("button", { type: "button", class: "danger", onclick: () => deleteParts([n.id], []), text: "Remove this step", "aria-label": "Remove " + n.data.label })) : null);
    if (state.editable) renderForm(n);
  }
  function withSummary(holder, words) { putSummary(holder, words); return holder; }
  function focusCard(id) { const c = document.getElementById("node-" + id); if (c) c.focus(); }

  // --- Saving -----------------------------------------------------------------------------------
  function csrf() { return document.querySelector("input[name=csrfmiddlewaretoken]").value; }
  // Empty optional parts are left out, as the YAML export would write them.
  function tidy() {
    const t = trigger();
    const conditions = t && t.data.config && t.data.config.conditions;
    if (conditions && !(conditions.rules || []).length) delete t.data.config.conditions;
    nodes().filter((n) => n.data.subtype === "router").forEach(renumberRoutes);  // route-0, route-1 … in order
  }
  async function save() {
    tidy();
    doc.name = document.getElementById("wf-name").value;
    doc.description = document.getElementById("wf-description").value;
    const status = document.getElementById("save-state");
    status.textContent = "Saving…";
    let response;
    try {
      response = await fetch(state.save_url, { method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() },
        body: JSON.stringify({ document: doc, revision: state.revision }) });
    } catch (error) {
      status.textContent = "Not saved: the server could not be reached (" + error.message + ").";
      return;
    }
    const answer = await response.json().catch(() => ({ errors: [{ message: "The server answered " + response.status, node: "", field: "", place: "" }] }));
    if (response.ok) {
      errors = [];
      dirty = false;
      status.textContent = answer.message;
      if (state.save_url !== answer.url) { window.location.assign(answer.url + "?saved=1"); return; }
      doc = answer.document; delete doc._status;
      base = copy(doc);
      lastText = JSON.stringify(doc);
      state.revision = answer.revision;
      hideConflict();
      render();
      return true;
    }
    if (response.status === 409 && answer.conflict) {
      errors = [];
      status.textContent = "Not saved: " + (answer.conflict.by || "someone else") + " saved this workflow meanwhile (see above).";
      render();
      showConflict(answer.conflict);
      return;
    }
    errors = answer.errors || [];
    const nameProblem = errors.find((e) => e.place === "name");
    document.getElementById("wf-name-error").textContent = nameProblem ? nameProblem.message : "";
    status.textContent = response.status === 409 ? "Not saved: " + errors.map((e) => e.message).join(" ") : "Not saved: " + errors.length + " problem" + (errors.length > 1 ? "s" : "") + " to fix (shown in red).";
    const first = errors.find((e) => e.node);
    if (first) openNode = first.node;
    render();
    if (first && view === "canvas" && canvas) canvas.select(first.node);
    else if (first) focusCard(first.node);
  }

  // --- Someone else saved meanwhile ------------------------------------------------------------------
  // The save was refused as stale: the answer carries what is saved now, by whom and when.
  // builder_conflicts.js says what they changed and asks what to keep; this page then stands on
  // their revision, with this person's changes on top (and saves) or without them.
  function showConflict(conflict) {
    BuilderConflicts.show(document.getElementById("builder-conflict"), {
      base: base, mine: mineNow, conflict: conflict,
      words: { el: el, summary: summary, triggerWords: triggerWords, trigger: trigger, kindLabel: kindLabel,
        stageName: stageName, ruleWords: ruleWords, shorten: shorten, branches: BRANCHES, inDoc: inDoc },
      keep: (merged) => { adopt(merged, conflict); save(); },
      discard: () => discardMine(conflict),
    });
  }
  // This page's document as it is now, its name and description as typed.
  function mineNow() {
    tidy();  // as a save would send it: no empty conditions left by a form that was opened
    const mine = Object.assign(copy(doc), { name: document.getElementById("wf-name").value, description: document.getElementById("wf-description").value });
    if (!mine.description && !base.description) delete mine.description;  // empty is none (export leaves it out)
    return mine;
  }
  // words() with `d` as the document (the words read the trigger, the fields, the labels from it).
  function inDoc(d, words) { const kept = doc; doc = d; try { return words(); } finally { doc = kept; } }
  function hideConflict() {
    const box = document.getElementById("builder-conflict");
    if (box) { box.hidden = true; box.replaceChildren(); }
  }
  function adopt(document_, conflict) {  // the page now stands on what is saved (revision and all)
    doc = document_;
    lastText = JSON.stringify(doc);
    base = copy(conflict.document);
    state.revision = conflict.revision;
    document.getElementById("wf-name").value = doc.name || "";
    document.getElementById("wf-description").value = doc.description || "";
    errors = [];
    openNode = null;
    hideConflict();
    render();
  }
  function discardMine(conflict) {
    adopt(copy(conflict.document), conflict);
    dirty = false;
    document.getElementById("save-state").textContent = "Your changes were discarded: this is the workflow as " + (conflict.by || "someone else") + " saved it.";
  }

  // A page that may only be read has no Save button and nothing to change: it only draws the flow.
  const saveButton = document.getElementById("save");
  if (state.editable && saveButton) {
    saveButton.addEventListener("click", save);
    ["wf-name", "wf-description"].forEach((id) => document.getElementById(id).addEventListener("input", changed));
    window.addEventListener("beforeunload", (event) => { if (dirty) { event.preventDefault(); event.returnValue = ""; } });
    document.querySelectorAll("form.leave-check").forEach((f) => f.addEventListener("submit", (event) => {
      if (dirty && !window.confirm("Your changes are not saved. Go on without them?")) event.preventDefault(); else dirty = false;
    }));
  }
  document.querySelectorAll("[data-view]").forEach((button) => {
    if (!CAN_DRAW && button.dataset.view === "canvas") { button.disabled = true; button.title = "The canvas could not be loaded"; }
    button.addEventListener("click", () => { view = button.dataset.view; store("crm-builder-view", view); render(); });
  });
  render();
})();
