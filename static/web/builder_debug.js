// Live Debug, beside the builder's canvas: pick a deal or lead (searched by name), press Debug,
// and the workflow's saved version walks it in the simulation's sandbox on the server
// (crm_automation/web/views/debugging.py). The steps light up on the canvas one after another;
// the walk stops at a wait (fast-forward it), a question (answer it) or an AI node (type the
// answer the model would give), and each step's intercepted effect is listed: nothing is sent
// and no record changes. builder.js opens it and draws the statuses it reports (`show`).
(function () {
  "use strict";

  const STEP_MS = 350;  // how long each step stays lit as "running" in the replay

  function start(options) {
    const el = options.el, panel = options.panel;
    let record = null, run = null, shown = 0, busy = false;
    const choices = { fast_forward: [], answers: {}, samples: {} };
    const statuses = {};
    const log = el("ol", { class: "debug-log", "aria-label": "What each step did (intercepted)" });
    const stops = el("div", { class: "debug-stops", "aria-live": "polite" });
    const note = el("p", { class: "hint", role: "status", "aria-live": "polite" });
    const results = el("ul", { class: "debug-results" });
    const search = el("input", { type: "search", placeholder: "Search " + options.entity + "s by name…", "aria-label": "Find the " + options.entity + " to debug on", autocomplete: "off" });
    const picked = el("p", { class: "debug-picked" });
    const go = el("button", { type: "button", class: "primary", disabled: true, onclick: () => run_(true), text: "Debug" });
    const askModel = el("input", { type: "checkbox", id: "debug-ask-model" });
    const modelChoice = options.aiConfigured ? el("div", { class: "field" }, el("label", { class: "tick", for: "debug-ask-model" }, askModel,
      " Ask the AI model at AI steps (it costs tokens; their count and cost are shown). Otherwise you type its answer.")) : null;
    const close = el("button", { type: "button", onclick: () => { options.show({}); options.onClose(); }, text: "Close debug" });

    panel.replaceChildren(...[
      el("p", { class: "node-kind", text: "Live debug" }),
      el("h2", { text: "Run it on a " + options.entity + ", safely" }),
      el("p", { class: "hint", text: "The real engine walks the saved workflow on the " + options.entity + " you choose, in a sandbox: emails, tasks, field changes and webhook calls are shown, never made; no record changes. AI steps take the answer you type (or, if you tick it below, ask the model). The debug run is kept to read and is never counted." }),
      el("div", { class: "field" }, search), results, picked, modelChoice,
      el("div", { class: "node-tools" }, go, close), note, stops, log].filter(Boolean));

    let timer = null;
    search.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(find, 250); });
    find();

    async function find() {
      const url = options.searchUrl + "?type=" + encodeURIComponent(options.entity) + "&q=" + encodeURIComponent(search.value);
      let found = [];
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        found = (await response.json()).results || [];
      } catch (error) {
        note.textContent = "The search failed (" + error.message + ").";
        return;
      }
      results.replaceChildren(...found.map((r) => el("li", {}, el("button", { type: "button", class: "link", "data-record": r.id,
        onclick: () => { record = r; picked.textContent = "On: " + r.title + (r.detail ? " (" + r.detail + ")" : ""); go.disabled = false; },
        text: r.title + (r.detail ? " — " + r.detail : "") }))));
      if (!found.length) results.replaceChildren(el("li", { class: "muted", text: "No " + options.entity + " matches." }));
    }

    async function run_(fresh) {
      if (busy || !record) return;
      busy = true;
      go.disabled = true;
      if (fresh) {
        run = null; shown = 0; choices.fast_forward = []; choices.answers = {}; choices.samples = {};
        log.replaceChildren(); stops.replaceChildren();
        Object.keys(statuses).forEach((k) => delete statuses[k]);
        options.nodeIds().forEach((id) => { statuses[id] = { status: "pending", statusWords: "Pending" }; });
        options.show(statuses);
        note.textContent = "Saving, then debugging…";
        if (!(await options.saveFirst())) { note.textContent = "Debug needs the workflow saved: fix what the save says, then debug again."; busy = false; go.disabled = false; return; }
      }
      note.textContent = "Running in the sandbox…";
      let answer;
      try {
        const response = await fetch(options.debugUrl, { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": options.csrf() },
          body: JSON.stringify(Object.assign({ record: { type: options.entity, id: record.id }, continuing: run, ask_model: askModel.checked }, choices)) });
        answer = await response.json();
        if (!response.ok) throw new Error(answer.error || String(response.status));
      } catch (error) {
        note.textContent = "Debug refused: " + error.message;
        busy = false; go.disabled = false;
        return;
      }
      run = answer.run;
      await replay(answer);
      busy = false;
      go.disabled = false;
    }

    async function replay(answer) {
      const entry = (step) => el("li", { class: "debug-step " + step.status, "data-node": step.node },
        el("strong", { text: step.label }), " — " + (step.words || step.status), step.error ? el("span", { class: "error-text", text: " " + step.error }) : null);
      log.replaceChildren(...answer.steps.slice(0, shown).map(entry));  // (a wait passed since reads so now)
      const fresh = answer.steps.slice(shown);
      for (const step of fresh) {
        statuses[step.node] = { status: "running", statusWords: "Running" };
        options.show(statuses);
        await new Promise((resolve) => setTimeout(resolve, STEP_MS));
        const node = answer.nodes.find((n) => n.id === step.node) || {};
        statuses[step.node] = { status: step.status === "completed" ? "completed" : node.status || step.status, statusWords: node.statusWords || step.status };
        options.show(statuses);
        log.append(entry(step));
      }
      shown = answer.steps.length;
      answer.nodes.forEach((n) => { statuses[n.id] = { status: n.status, statusWords: n.statusWords }; });
      options.show(statuses);
      stops.replaceChildren(...answer.stopped.map(stopControls));
      const link = el("a", { href: answer.url, target: "_blank", rel: "noopener", text: "the debug run" });
      note.replaceChildren(answer.status === "waiting" ? "Stopped: see below. " : "Done (" + answer.status + "). ", "Version " + answer.version + " ran; read ", link, ".");
    }

    function stopControls(stop) {
      const box = el("div", { class: "debug-stop", "data-stop": stop.node });
      if (stop.kind === "wait") {
        box.append(el("p", { text: "“" + stop.label + "” waits" + (stop.until ? " until " + stop.until : "") + "." }),
          el("button", { type: "button", class: "primary", onclick: () => { choices.fast_forward.push(stop.node); run_(false); }, text: "Fast-forward the wait" }));
      } else if (stop.kind === "question") {
        box.append(el("p", { text: "“" + stop.label + "” asks: " + stop.prompt }),
          el("button", { type: "button", class: "primary", onclick: () => { choices.answers[stop.node] = "approved"; run_(false); }, text: "Approve" }), " ",
          el("button", { type: "button", class: "danger", onclick: () => { choices.answers[stop.node] = "rejected"; run_(false); }, text: "Reject" }));
      } else {
        const input = stop.kind === "router"
          ? el("select", { "aria-label": "The route the model would choose at " + stop.label }, ...stop.routes.map((r) => el("option", { value: r, text: r })))
          : el("textarea", { rows: 3, "aria-label": "The answer the model would give at " + stop.label });
        box.append(el("p", { text: "“" + stop.label + "” would ask the AI model: type the answer it would give." }), input,
          el("button", { type: "button", class: "primary", onclick: () => { choices.samples[stop.node] = input.value; run_(false); }, text: "Use this answer" }));
      }
      return box;
    }
  }

  window.BuilderDebug = { start: start };
})();
