// Pages that show runs in progress update by themselves (crm_automation/web/live.py).
// The page carries a watch (`[data-live-token]`: a token and the marker of what it shows). Every
// second, while the tab is visible, the probe answers with the marker now; when it differs, the
// page is fetched again and each part marked `data-live-region` (by id) is swapped for its new
// version: no reload, the scroll, open rows and what is typed elsewhere stay. A part that holds
// the focus or typed text waits for the next change. A page with only runs' statuses to show
// (`data-live-status`, the run history) takes them from the probe's answer and fetches nothing.
// When everything watched is over, the page's last version has no watch, and the script stops.
(function () {
  "use strict";

  let timer = null;
  const watch = () => document.querySelector("[data-live-token]");
  const status = () => document.getElementById("live-status");

  function schedule(ms) { clearTimeout(timer); timer = setTimeout(tick, ms); }
  function say(words) { const s = status(); if (s) s.textContent = words; }

  async function tick() {
    const w = watch();
    if (!w) return;
    const interval = Number(w.dataset.liveInterval) || 1000;
    if (document.hidden) return;  // visibilitychange starts it again
    let answer;
    try {
      const response = await fetch(w.dataset.liveProbe + "?t=" + encodeURIComponent(w.dataset.liveToken), { credentials: "omit", cache: "no-store" });
      if (response.status === 403) { say("This page stopped updating by itself: reload it to see the latest."); return; }
      if (!response.ok) throw new Error(String(response.status));
      answer = await response.json();
    } catch (error) {
      say("Could not ask the server for changes (" + error.message + "); trying again.");
      schedule(interval * 5);
      return;
    }
    if (answer.marker !== w.dataset.liveMarker) {
      const changed = statuses(answer.runs || {});
      if (document.querySelector("[data-live-region]")) {
        const applied = await refresh(changed);
        if (!applied) { schedule(interval); return; }
      } else {  // statuses only (the run history): the probe said it all
        w.dataset.liveMarker = answer.marker;
        document.dispatchEvent(new CustomEvent("live:update", { detail: { changed: changed } }));
        if (answer.over) { w.remove(); return; }
      }
    } else if (answer.over) {
      return;
    }
    say("");
    if (watch()) schedule(interval);
  }

  // Runs' statuses shown in place (`data-live-status="<run id>"`); the ids of runs that changed.
  const seen = {};
  function statuses(runs) {
    const changed = [];
    Object.entries(runs).forEach(([id, run]) => {
      if (seen[id] !== undefined && seen[id] === run.marker) return;
      changed.push(id);
      seen[id] = run.marker;
      document.querySelectorAll('[data-live-status="' + id + '"]').forEach((badge) => {
        badge.textContent = run.label;
        badge.className = "badge " + run.status;
      });
    });
    return changed;
  }

  // True when every part could be swapped (none held the focus or typed text).
  async function refresh(changed) {
    let html;
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
      if (!response.ok) return false;
      html = await response.text();
    } catch (error) {
      return false;
    }
    const fresh = new DOMParser().parseFromString(html, "text/html");
    let all = true;
    document.querySelectorAll("[data-live-region]").forEach((part) => {
      const next = part.id ? fresh.getElementById(part.id) : null;
      if (busy(part)) { all = false; return; }
      if (!next) { if (part.dataset.liveGone) part.replaceChildren(Object.assign(document.createElement("p"), { className: "muted", textContent: part.dataset.liveGone })); return; }
      part.replaceWith(document.importNode(next, true));
    });
    const w = watch(), nextWatch = fresh.querySelector("[data-live-token]");
    if (all) {
      if (w && nextWatch) w.replaceWith(document.importNode(nextWatch, true));
      else if (w) w.remove();
    }
    document.dispatchEvent(new CustomEvent("live:update", { detail: { changed: changed || [] } }));
    return all;
  }

  function busy(part) {
    if (part.contains(document.activeElement) && document.activeElement !== document.body) return true;
    return [...part.querySelectorAll("textarea, input[type=text]")].some((input) => input.value !== input.defaultValue);
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) schedule(0); });
  if (watch()) schedule(Number(watch().dataset.liveInterval) || 1000);
})();
