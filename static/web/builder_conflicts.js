// Someone else saved the workflow while this page was editing it (builder.js's save was refused
// as stale): say who and when, list what they changed since this page opened it, and ask, for
// each thing both changed, whose to keep; then builder.js keeps this person's changes on top of
// theirs (builder_merge.js) and saves, or discards them. Words come from builder.js (`words`),
// so a step is described here as on its card.
(function () {
  "use strict";
  let w = null;  // builder.js's words: el, summary, triggerWords, trigger, kindLabel, stageName, ruleWords, shorten, branches, inDoc
  const el = (...args) => w.el(...args);
  const inDoc = (d, words) => w.inDoc(d, words);
  const trigger = () => w.trigger();
  const triggerWords = () => w.triggerWords();
  const summary = (n) => w.summary(n);
  const kindLabel = (n) => w.kindLabel(n);
  const stageName = (slug) => w.stageName(slug);
  const ruleWords = (rule) => w.ruleWords(rule);
  const shorten = (text, limit) => w.shorten(text, limit);

  const SETTINGS = {
    errorPolicy: ["When a step fails", { abort: "Stop the run", skip: "Skip the step and go on", pause: "Pause the run and tell the admins" }],
    reenrollment: ["A record may go through it", { not_while_running: "again, but not while its last run is unfinished", once: "only once, ever", every_time: "every time the trigger fires" }],
    timeoutSeconds: ["Time limit of a step", {}],
  };
  const FIELD_WORDS = { label: "name", title: "task title", assignee: "assigned to", due_in_days: "due in (days)", priority: "priority",
    to: "to", subject: "subject", body: "message", field: "field", value: "new value", rules: "conditions", combinator: "match",
    delayAmount: "wait for", delayUnit: "unit", until: "wait until", promptText: "question", role: "who answers",
    timeoutAmount: "answer within", timeoutUnit: "unit", recipients: "who", workflowId: "workflow", event: "starts when",
    from_stage: "from stage", to_stage: "to stage", stage: "stage", conditions: "only when", additionalPrompt: "prompt",
    classificationPrompt: "classification prompt", routes: "routes", outputFormat: "output format", maxTokens: "max tokens",
    onError: "when it fails", subtype: "kind of step", toolName: "kind of step" };
  const fieldWords = (name) => FIELD_WORDS[name] || String(name).replace(/([a-z])([A-Z])/g, "$1 $2").replace(/[_-]/g, " ").toLowerCase();
  const labelIn = (d, id) => { const n = (d.nodes || []).find((x) => x.id === id); return n ? (n === inDoc(d, trigger) ? "the trigger" : "“" + n.data.label + "”") : "“" + id + "”"; };
  const named = (d, n) => n === inDoc(d, trigger) ? "the trigger" : "“" + n.data.label + "” (" + kindLabel(n) + ")";
  function valueWords(d, name, value) {
    if (value === undefined || value === null) return "not set";
    if (["from_stage", "to_stage", "stage"].includes(name)) return stageName(value);
    if (name === "rules" && Array.isArray(value)) return inDoc(d, () => value.map(ruleWords).join("; ")) || "none";
    if (name === "conditions" && value && Array.isArray(value.rules)) return inDoc(d, () => value.rules.map(ruleWords).join("; ")) || "none";
    if (SETTINGS[name]) return SETTINGS[name][1][value] || String(value);
    if (typeof value === "string") return value ? "“" + shorten(value, 60) + "”" : "empty";
    return typeof value === "object" ? shorten(JSON.stringify(value), 60) : String(value);
  }
  const targetsIn = (d, ids) => ids.length ? ids.map((id) => labelIn(d, id)).join(" and ") : "nothing (the flow ends there)";
  // "after “Check” (Yes)": a way out of a step, in the words its branch has on the page.
  function wayIn(d, source, handle) {
    if (!handle) return "after " + labelIn(d, source);
    const n = (d.nodes || []).find((x) => x.id === source);
    const branch = (w.branches[n ? n.data.subtype : ""] || []).find(([h]) => h === handle);
    return "after " + labelIn(d, source) + " (" + (branch ? branch[1] : handle) + ")";
  }

  // What changed from `before` to `after`, one sentence each.
  function changeWords(before, after) {
    const found = BuilderMerge.changes(before, after), said = [];
    if (found.name) said.push("Renamed the workflow from “" + found.name[0] + "” to “" + found.name[1] + "”");
    if (found.description) said.push(found.description[1] ? "Changed the description to “" + shorten(found.description[1], 80) + "”" : "Removed the description");
    found.settings.forEach(([name, was, now]) => said.push((SETTINGS[name] || [fieldWords(name)])[0] + ": " + valueWords(after, name, was) + " → " + valueWords(after, name, now)));
    found.added.forEach((n) => said.push("Added " + named(after, n) + ": " + inDoc(after, () => summary(n))));
    found.removed.forEach((n) => said.push("Removed " + named(before, n)));
    found.changed.forEach((change) => {
      if (change.after === inDoc(after, trigger)) {
        const was = inDoc(before, triggerWords), now = inDoc(after, triggerWords);
        if (was !== now) { said.push("Changed the trigger from “" + was + "” to “" + now + "”"); return; }
      }
      said.push("Changed " + named(after, change.after) + ": " + change.fields.map(([, name, was, now]) =>
        name === "label" ? "renamed from “" + was + "” to “" + now + "”" : fieldWords(name) + " " + valueWords(before, name, was) + " → " + valueWords(after, name, now)).join("; "));
    });
    found.ways.forEach((w) => said.push("What comes " + wayIn(after, w.source, w.handle) + ": now " + targetsIn(after, w.new) + " (was " + targetsIn(before, w.old) + ")"));
    return said;
  }

  // One thing both changed: where it is, and each side in words.
  function conflictWords(c, mine, theirs, who) {
    if (c.kind === "removed") {
      const n = (c.removedBy === "mine" ? theirs : mine).nodes.find((x) => x.id === c.node);
      const step = named(c.removedBy === "mine" ? theirs : mine, n);
      return c.removedBy === "mine"
        ? { where: "You removed " + step + "; " + who + " changed it.", mine: "remove it", theirs: "keep it, as " + who + " left it" }
        : { where: who + " removed " + step + "; you changed it.", mine: "keep it, with your changes", theirs: "remove it" };
    }
    const key = Object.keys(c.keys)[0], p = BuilderMerge.parts(key), [m, t] = c.keys[key].map(BuilderMerge.read);
    if (p[0] === "edge") return { where: "What comes " + wayIn(theirs, p[1], p[2]), mine: targetsIn(mine, m || []), theirs: targetsIn(theirs, t || []) };
    if (p[0] === "doc") return { where: "The workflow's " + fieldWords(p[1]), mine: valueWords(mine, p[1], m), theirs: valueWords(theirs, p[1], t) };
    if (p[0] === "settings") return { where: (SETTINGS[p[1]] || [fieldWords(p[1])])[0], mine: valueWords(mine, p[1], m), theirs: valueWords(theirs, p[1], t) };
    const n = theirs.nodes.find((x) => x.id === p[1]) || mine.nodes.find((x) => x.id === p[1]);
    return { where: named(theirs.nodes.includes(n) ? theirs : mine, n) + ", " + fieldWords(p[3]), mine: valueWords(mine, p[3], m), theirs: valueWords(theirs, p[3], t) };
  }

  function show(box, options) {
    const conflict = options.conflict, theirs = conflict.document, who = conflict.by || "Someone else";
    delete theirs._status;
    const merged = BuilderMerge.merge(options.base, options.mine(), theirs), choices = {};
    const said = changeWords(options.base, theirs);
    const choice = (c, i) => {
      const words = conflictWords(c, merged.mine, theirs, who);
      const option = (side, text) => {
        const radio = el("input", { type: "radio", name: "conflict-" + i, value: side, checked: side === "mine" });
        radio.addEventListener("change", () => { choices[c.id] = side; });
        return el("label", { class: "tick" }, radio, " " + text);
      };
      return el("div", { class: "conflict-choice", "data-conflict": c.id }, el("p", { text: words.where }),
        option("mine", "Keep mine: " + words.mine), option("theirs", "Use " + who + "'s: " + words.theirs));
    };
    box.replaceChildren(
      el("h2", { id: "conflict-title", text: who + " saved this workflow while you were editing it" }),
      el("p", { text: "They saved it on " + conflict.at + ". Your changes are not saved yet, and they are still here." }),
      el("h3", { text: "What " + who + " changed" }),
      el("ul", { class: "conflict-changes" }, (said.length ? said : ["Nothing that changes the flow."]).map((line) => el("li", { text: line }))),
      ...merged.notes.map((note) => el("p", { text: "You both added steps " + wayIn(theirs, note.source, note.handle) + ": theirs come first, then yours." })),
      merged.conflicts.length
        ? el("fieldset", { class: "conflict-choices" }, el("legend", { text: "You both changed " + (merged.conflicts.length === 1 ? "this" : "these") + ": whose to keep?" }), merged.conflicts.map(choice))
        : el("p", { text: "None of their changes touch yours: keeping yours keeps theirs too." }),
      el("div", { class: "conflict-actions" },
        // Merged again at the click: what the person changed while reading the panel is kept too.
        el("button", { type: "button", class: "primary", onclick: () => options.keep(BuilderMerge.merge(options.base, options.mine(), theirs).build(choices)), text: "Keep my changes" }),
        el("button", { type: "button", onclick: options.discard, text: "Discard mine" })));
    box.hidden = false;
    box.focus();
  }

  // show(box, {base, mine(), conflict, words, keep(document), discard()}): fill and show the panel.
  window.BuilderConflicts = { show: (box, options) => { w = options.words; show(box, options); } };
})();
