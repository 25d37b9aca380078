// Two people editing one workflow: what the other person changed since this page opened it, and
// this person's changes re-applied on top of theirs. A three-way merge of workflow documents
// (base: what this page started from; mine: this page now; theirs: what is saved now), fact by
// fact: the name, each setting, each node's presence and each of its settings, and where each
// way out of a node leads. A fact only one side changed takes that side's value; a fact both
// changed differently is a conflict the person decides. No DOM here: builder.js shows it.
(function () {
  "use strict";

  // JSON with sorted keys: the same value written in another key order is the same fact.
  function stable(value) {
    if (Array.isArray(value)) return "[" + value.map(stable).join(",") + "]";
    if (value && typeof value === "object") {
      return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + stable(value[k])).join(",") + "}";
    }
    return JSON.stringify(value === undefined ? null : value);
  }
  const key = (...parts) => JSON.stringify(parts);
  const parts = (k) => JSON.parse(k);
  const read = (value) => value === undefined ? undefined : JSON.parse(value);
  const isObject = (v) => !!v && typeof v === "object" && !Array.isArray(v);
  const copy = (v) => JSON.parse(JSON.stringify(v));
  // Nodes with more than one way out: a step inserted before or after one cannot be chained.
  const BRANCHING = ["condition", "user-input", "loop", "parallel", "router"];

  // A document as facts: key → stable JSON. Keys: ["doc", name], ["settings", name],
  // ["node", id] (it exists), ["node", id, "node"|"data"|"config"|"defaults", name],
  // ["edge", source, handle] → the sorted targets.
  function facts(doc) {
    const found = new Map();
    const put = (k, v) => { if (v !== undefined) found.set(k, stable(v)); };
    Object.keys(doc).forEach((k) => { if (!["nodes", "edges", "settings", "_status"].includes(k)) put(key("doc", k), doc[k]); });
    Object.entries(doc.settings || {}).forEach(([k, v]) => put(key("settings", k), v));
    (doc.nodes || []).forEach((n) => {
      put(key("node", n.id), true);
      Object.entries(n).forEach(([k, v]) => { if (k !== "id" && k !== "data") put(key("node", n.id, "node", k), v); });
      const data = n.data || {};
      Object.entries(data).forEach(([k, v]) => { if (k !== "config") put(key("node", n.id, "data", k), v); });
      Object.entries(data.config || {}).forEach(([k, v]) => {
        if (k === "defaults" && isObject(v)) Object.entries(v).forEach(([d, w]) => put(key("node", n.id, "defaults", d), w));
        else put(key("node", n.id, "config", k), v);
      });
    });
    const ways = new Map();
    (doc.edges || []).forEach((e) => {
      const k = key("edge", e.source, e.sourceHandle || "");
      if (!ways.has(k)) ways.set(k, []);
      ways.get(k).push(e.target);
    });
    ways.forEach((targets, k) => put(k, targets.slice().sort()));
    return found;
  }

  const ids = (doc) => new Set((doc.nodes || []).map((n) => n.id));

  // Steps this page added whose id (or name) the other person also gave a new step: this
  // page's get another, so both steps are kept.
  function separate(base, mine, theirs) {
    const mineCopy = copy(mine);
    const old = ids(base), theirIds = ids(theirs), taken = new Set([...old, ...ids(mine), ...theirIds]);
    const theirLabels = new Set((theirs.nodes || []).map((n) => String(n.data.label || "").toLowerCase()));
    const baseLabels = new Set((base.nodes || []).map((n) => String(n.data.label || "").toLowerCase()));
    mineCopy.nodes.forEach((n) => {
      if (old.has(n.id)) return;
      if (theirIds.has(n.id)) {
        const theirsNode = theirs.nodes.find((x) => x.id === n.id);
        if (stable(theirsNode) !== stable(n)) {
          let fresh = n.id, i = 2;
          while (taken.has(fresh)) fresh = n.id + "-" + i++;
          taken.add(fresh);
          mineCopy.edges.forEach((e) => { if (e.source === n.id) e.source = fresh; if (e.target === n.id) e.target = fresh; });
          n.id = fresh;
        }
      }
      const label = String(n.data.label || "");
      if (label && theirLabels.has(label.toLowerCase()) && !baseLabels.has(label.toLowerCase())) {
        const mineLabels = new Set(mineCopy.nodes.map((x) => String(x.data.label || "").toLowerCase()));
        let fresh = label, i = 2;
        while (theirLabels.has(fresh.toLowerCase()) || mineLabels.has(fresh.toLowerCase())) fresh = label + " " + i++;
        n.data.label = fresh;
      }
    });
    return mineCopy;
  }

  // From `start`, the steps only one side added, one after the other: {last, end} where `end` is
  // the first step that is not new (null: the chain ends); null when the chain branches.
  function chainOf(side, start, isNew) {
    let current = start, last = null;
    const seen = new Set();
    while (current !== null && isNew(current)) {
      if (seen.has(current)) return null;
      seen.add(current);
      const subtype = read(side.get(key("node", current, "data", "subtype")));
      if (BRANCHING.includes(subtype)) return null;
      const ways = [...side.keys()].filter((k) => { const p = parts(k); return p[0] === "edge" && p[1] === current; });
      if (ways.length > 1) return null;
      last = current;
      const targets = ways.length ? read(side.get(ways[0])) : [];
      if (targets.length > 1) return null;
      current = targets.length ? targets[0] : null;
    }
    return last === null ? null : { last: last, end: current };
  }

  // Both sides inserted steps at the same place (after the same step, before the same next one):
  // theirs first, then mine. The facts to set; null when it is not such a case.
  function bothInserted(k, b, m, t, baseIds, mineIds, theirIds) {
    const was = read(b.get(k)) || [], mineNext = read(m.get(k)) || [], theirNext = read(t.get(k)) || [];
    if (was.length > 1 || mineNext.length !== 1 || theirNext.length !== 1) return null;
    const newInMine = (id) => mineIds.has(id) && !baseIds.has(id) && !theirIds.has(id);
    const newInTheirs = (id) => theirIds.has(id) && !baseIds.has(id) && !mineIds.has(id);
    const mineChain = chainOf(m, mineNext[0], newInMine), theirChain = chainOf(t, theirNext[0], newInTheirs);
    const end = was.length ? was[0] : null;
    if (!mineChain || !theirChain || mineChain.end !== end || theirChain.end !== end) return null;
    return { [k]: stable(theirNext), [key("edge", theirChain.last, "")]: stable([mineNext[0]]) };
  }

  /**
   * merge(base, mine, theirs) → {conflicts, notes, build(choices)}.
   * conflicts: [{id, kind: "field"|"removed"|"way", node, keys: {key: [mine, theirs]}}], each
   * decided by choices[id] = "mine" (the default) or "theirs"; notes: what was combined by
   * itself ({kind: "inserted", source, handle}); build: the merged document.
   */
  function merge(base, mine, theirs) {
    mine = separate(base, mine, theirs);
    const b = facts(base), m = facts(mine), t = facts(theirs);
    const baseIds = ids(base), mineIds = ids(mine), theirIds = ids(theirs);
    const result = new Map(), clashes = [], notes = [];
    new Set([...b.keys(), ...m.keys(), ...t.keys()]).forEach((k) => {
      const bv = b.get(k), mv = m.get(k), tv = t.get(k);
      if (mv === bv) result.set(k, tv);
      else if (tv === bv || tv === mv) result.set(k, mv);
      else clashes.push(k);
    });
    // Edges both changed because both inserted steps at one place: chained, no question.
    const left = [];
    clashes.forEach((k) => {
      const p = parts(k);
      const joined = p[0] === "edge" ? bothInserted(k, b, m, t, baseIds, mineIds, theirIds) : null;
      if (!joined) { left.push(k); return; }
      Object.entries(joined).forEach(([jk, jv]) => result.set(jk, jv));
      notes.push({ kind: "inserted", source: p[1], handle: p[2] });
    });
    // A step one side removed and the other changed: one question for the whole step (keep it
    // as they left it, or not), with the ways into and out of it.
    const conflicts = [];
    const removedBy = (id) => (baseIds.has(id) && !mineIds.has(id) && theirIds.has(id) ? "mine"
      : baseIds.has(id) && mineIds.has(id) && !theirIds.has(id) ? "theirs" : null);
    const grouped = new Map();
    left.forEach((k) => {
      const p = parts(k);
      if (p[0] === "node" && removedBy(p[1])) {
        if (!grouped.has(p[1])) grouped.set(p[1], []);
        grouped.get(p[1]).push(k);
      }
    });
    grouped.forEach((keys, id) => {
      const touching = [...new Set([...b.keys(), ...m.keys(), ...t.keys()])].filter((k) => {
        const p = parts(k);
        if (p[0] === "node") return p[1] === id;
        if (p[0] !== "edge") return false;
        return p[1] === id || [b, m, t].some((side) => (read(side.get(k)) || []).includes(id));
      });
      const shown = {};
      touching.forEach((k) => { shown[k] = [m.get(k), t.get(k)]; });
      conflicts.push({ id: "removed:" + id, kind: "removed", node: id, removedBy: removedBy(id), keys: shown });
    });
    const inGroup = new Set(conflicts.flatMap((c) => Object.keys(c.keys)));
    left.filter((k) => !inGroup.has(k)).forEach((k) => {
      const p = parts(k);
      conflicts.push({ id: k, kind: p[0] === "edge" ? "way" : "field", node: p[0] === "node" || p[0] === "edge" ? p[1] : null,
        keys: { [k]: [m.get(k), t.get(k)] } });
    });
    // (A way into or out of a removed step that both changed is decided by that step's question.)

    function build(choices) {
      const chosen = new Map(result);
      conflicts.forEach((c) => {
        const side = (choices || {})[c.id] === "theirs" ? 1 : 0;
        Object.entries(c.keys).forEach(([k, values]) => chosen.set(k, values[side]));
      });
      return rebuild(chosen, mine, theirs);
    }
    return { conflicts: conflicts, notes: notes, build: build, mine: mine };
  }

  // The document the chosen facts describe: theirs' order of nodes and edges, then mine's.
  function rebuild(chosen, mine, theirs) {
    const doc = {}, settings = {}, nodes = new Map(), defaults = new Map();
    const alive = ([k, value]) => value !== undefined;
    const entries = [...chosen.entries()].filter(alive).map(([k, value]) => [parts(k), read(value)]);
    entries.forEach(([p, v]) => {
      if (p[0] === "doc") doc[p[1]] = v;
      else if (p[0] === "settings") settings[p[1]] = v;
    });
    doc.settings = settings;
    [...(theirs.nodes || []), ...(mine.nodes || [])].forEach((n) => {
      if (!nodes.has(n.id) && chosen.get(key("node", n.id)) !== undefined) nodes.set(n.id, { node: {}, data: {}, config: {} });
    });
    entries.forEach(([p, v]) => {
      if (p[0] !== "node" || p.length < 4 || !nodes.has(p[1])) return;
      if (p[2] === "defaults") {
        if (!defaults.has(p[1])) defaults.set(p[1], {});
        defaults.get(p[1])[p[3]] = v;
      } else nodes.get(p[1])[p[2]][p[3]] = v;
    });
    doc.nodes = [...nodes.entries()].map(([id, n]) => {
      if (n.data.subtype === "tool-call" || defaults.has(id)) n.config.defaults = defaults.get(id) || {};
      // The usual order of keys: id, type, data (subtype, label, config, the rest).
      return Object.assign({ id: id }, n.node, { data: Object.assign({ subtype: n.data.subtype, label: n.data.label, config: n.config }, n.data) });
    });
    const ways = [...new Set([...(theirs.edges || []), ...(mine.edges || [])].map((e) => key("edge", e.source, e.sourceHandle || "")))];
    [...chosen.keys()].forEach((k) => { if (parts(k)[0] === "edge" && !ways.includes(k)) ways.push(k); });
    doc.edges = [];
    ways.forEach((k) => {
      const p = parts(k);
      if (!nodes.has(p[1])) return;
      (read(chosen.get(k)) || []).filter((target) => nodes.has(target)).forEach((target) => {
        doc.edges.push(p[2] ? { source: p[1], target: target, sourceHandle: p[2] } : { source: p[1], target: target });
      });
    });
    const shaped = {};  // top-level keys in the document's usual order
    ["id", "name", "description", "settings", "nodes", "edges"].forEach((k) => { if (k in doc) shaped[k] = doc[k]; });
    return Object.assign(shaped, doc);
  }

  /**
   * What changed from `before` to `after`, by kind, for words: {name: [old, new] | null,
   * description, settings: [[name, old, new]], added: [node], removed: [node],
   * changed: [{before, after, fields: [[where, name, old, new]]}], ways: [{source, handle, old, new}]}.
   * A way is listed only when it is not explained by a step added or removed.
   */
  function changes(before, after) {
    const b = facts(before), a = facts(after);
    const beforeIds = ids(before), afterIds = ids(after);
    const found = { name: null, description: null, settings: [], added: [], removed: [], changed: [], ways: [] };
    if (before.name !== after.name) found.name = [before.name, after.name];
    if ((before.description || "") !== (after.description || "")) found.description = [before.description || "", after.description || ""];
    new Set([...Object.keys(before.settings || {}), ...Object.keys(after.settings || {})]).forEach((k) => {
      const was = (before.settings || {})[k], now = (after.settings || {})[k];
      if (stable(was) !== stable(now)) found.settings.push([k, was, now]);
    });
    found.added = (after.nodes || []).filter((n) => !beforeIds.has(n.id));
    found.removed = (before.nodes || []).filter((n) => !afterIds.has(n.id));
    (after.nodes || []).filter((n) => beforeIds.has(n.id)).forEach((n) => {
      const old = before.nodes.find((x) => x.id === n.id), fields = [];
      new Set([...b.keys(), ...a.keys()]).forEach((k) => {
        const p = parts(k);
        if (p[0] !== "node" || p[1] !== n.id || p.length < 4 || b.get(k) === a.get(k)) return;
        fields.push([p[2], p[3], read(b.get(k)), read(a.get(k))]);
      });
      if (fields.length) found.changed.push({ before: old, after: n, fields: fields });
    });
    const touched = new Set([...found.added, ...found.removed].map((n) => n.id));
    new Set([...b.keys(), ...a.keys()]).forEach((k) => {
      const p = parts(k);
      if (p[0] !== "edge" || b.get(k) === a.get(k) || touched.has(p[1])) return;
      const was = read(b.get(k)) || [], now = read(a.get(k)) || [];
      if ([...was, ...now].some((id) => touched.has(id))) return;
      found.ways.push({ source: p[1], handle: p[2], old: was, new: now });
    });
    return found;
  }

  window.BuilderMerge = { merge: merge, changes: changes, stable: stable, facts: facts, parts: parts, read: read };
})();
