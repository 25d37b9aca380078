#!/usr/bin/env python
"""How long the canvas builder takes to open a 100-node workflow, against a 10-node one.

    .venv/bin/python benchmarks/canvas_open.py [--loads 7] [--keep]

In a throwaway SQLite database (/tmp/canvas_open_<pid>.sqlite3, with a temporary VAR_DIR, both
removed at the end unless --keep): one organization with its stages and an org admin (the fault
harness's data, benchmarks/chaos/data.py), and three drafts made from workflow documents with
`workflow_create_from_document`: 10 nodes (the baseline), 100 (the goal) and 201 (a trigger and
200 actions, the most a workflow may have: MAX_ACTIONS in definition/validation.py). Each is the
same shape repeated, 9 nodes at a time: a condition whose yes side creates a
task and whose no side notifies the admins (or, every other time, waits a day), both sides
meeting again at a field update; then parallel branches (a task, a notification) joined by a
merge; then an email. What is left over is a chain of tasks, notifications and waits. The
documents carry no positions, as an imported or API-made workflow: the canvas lays them out
(dagre) when it opens, once before the nodes have their size and once after.

`manage.py runserver --noreload` serves them on a free port (DEBUG, static files from the
finders: static/web/canvas/canvas.js as built), in its own process; Debian's Chromium
(/usr/bin/chromium or $CHROMIUM_PATH), driven by Playwright, logs in through /admin/login/ at
1600x1200. Then --loads fresh page loads of /crm/automation/workflows/<id>/edit/ per workflow,
each in a new tab of the logged-in browser context (its HTTP cache warm, as for a person who
opens the builder again), the sizes taking turns (each goes first in turn), after one warm-up
load each that is not counted. Times are the page's own clock, performance.now(), whose zero is
the navigation's start:

- **html**: the response's end (the server's time and the transfer; the document is in the page).
- **rendered**: the first animation frame in which there are as many `.react-flow__node` as
  the document has nodes and each is visible with a size (React Flow hides a node until it has
  measured it). An init script checks this on every frame from the page's start.
- **interactive**: Playwright clicks the last node's title as soon as it exists (after its own
  checks that it is visible and not moving, at least two frames, and its round trips: the figure
  is an upper bound), again if the form did not open; the time is when
  `#node-panel [data-form=<id>]` appeared (a MutationObserver on #node-panel).

Printed: each load's figures, the medians per size and each size ÷ 10 nodes. Then, once per
size, one keystroke in the form of its last node ("Name of this step"): from the keydown's
timestamp until that node's title on the canvas shows the new text (a MutationObserver: the DOM
changed, before the paint).
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR_DIR = Path(tempfile.mkdtemp(prefix="canvas_open_"))
DB_PATH = Path(f"/tmp/canvas_open_{os.getpid()}.sqlite3")
ENV = {"VAR_DIR": str(VAR_DIR), "DATABASE_URL": f"sqlite:///{DB_PATH}", "DJANGO_SETTINGS_MODULE": "config.settings",
       "DEBUG": "1", "AUTOMATION_NUDGE": "0", "LOG_LEVEL": "WARNING",
       "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend"}
os.environ.update(ENV)
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
PASSWORD = "bench-canvas-123"
TIMEOUT_MS = 60_000
SIZES = (10, 100, 201)  # the baseline; the goal; the most a workflow may have (a trigger and 200 actions)

# Every frame from the page's start: the first one with all nodes drawn and measured; and the
# first moment #node-panel holds a node's form.
PROBE = """
(() => {
  const marks = window.__canvasBench = { rendered: null, form: null, formId: null };
  const expected = () => { const d = document.getElementById("builder-data");
    return d ? JSON.parse(d.textContent).document.nodes.length : -1; };
  let want = null;
  const frame = () => {
    if (want === null && document.readyState !== "loading") want = expected();
    const nodes = document.querySelectorAll(".react-flow__node");
    if (want > 0 && nodes.length === want && [...nodes].every((n) =>
        n.offsetWidth > 0 && n.offsetHeight > 0 && getComputedStyle(n).visibility !== "hidden")) {
      marks.rendered = performance.now();
      return;
    }
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  document.addEventListener("DOMContentLoaded", () => {
    const panel = document.getElementById("node-panel");
    new MutationObserver(() => {
      const form = panel.querySelector("[data-form]");
      if (form && marks.form === null) { marks.form = performance.now(); marks.formId = form.dataset.form; }
    }).observe(panel, { childList: true, subtree: true });
  });
})();
"""
# One keystroke: from the keydown's timestamp until the node's title shows `wanted`, in
# window.__keystroke (ms).
KEYSTROKE = """([id, wanted]) => {
  window.__keystroke = null;
  const title = document.querySelector(`.react-flow__node[data-id="${id}"] .canvas-node-title`);
  let down = null;
  document.activeElement.addEventListener("keydown", (event) => { down = event.timeStamp; },
    { once: true, capture: true });
  const observer = new MutationObserver(() => {
    if (title.textContent !== wanted) return;
    observer.disconnect();
    window.__keystroke = performance.now() - down;
  });
  observer.observe(title, { childList: true, characterData: true, subtree: true });
}"""


# --- The documents -------------------------------------------------------------------------------
def document(name: str, size: int) -> dict:
    """`size` nodes: a trigger, the 9-node shape described above as many times as it fits, then
    a chain of tasks, notifications and waits for the rest."""
    nodes = [{"id": "trigger", "type": "workflow", "data": {
        "subtype": "chat-app", "label": "Deal moves to Won", "config": {"event": "deal_stage_change",
                                                                        "to_stage": "won"}}}]
    edges = []

    def add(node_id, subtype, label, config, after=None, handle=None):
        nodes.append({"id": node_id, "type": "workflow", "data": {"subtype": subtype, "label": label,
                                                                    "config": config}})
        for source in ([after] if isinstance(after, str) else after or []):
            edges.append({"source": source, "target": node_id, **({"sourceHandle": handle} if handle else {})})

    def tool(name_, **defaults):
        return {"toolName": name_, "defaults": defaults}

    last = "trigger"
    for i in range(1, (size - 1) // 9 + 1):
        add(f"check-{i}", "condition", f"Big deal {i}", {"combinator": "and", "rules": [
            {"field": "deal.amount", "operator": "gt", "value": 1000 * i}]}, last)
        add(f"task-{i}", "tool-call", f"Call the client {i}",
            tool("crm/create_task", title=f"Call {{{{deal.contact.first_name}}}} ({i})", assignee="owner",
                 priority="normal"))
        edges.append({"source": f"check-{i}", "target": f"task-{i}", "sourceHandle": "condition-true"})
        if i % 2:
            add(f"no-{i}", "desktop-notification", f"Tell the admins {i}",
                {"title": f"{{{{deal.title}}}} is small ({i})", "recipients": "admins"})
        else:
            add(f"no-{i}", "wait", f"Wait a day {i}", {"delayAmount": 1, "delayUnit": "days"})
        edges.append({"source": f"check-{i}", "target": f"no-{i}", "sourceHandle": "condition-false"})
        add(f"update-{i}", "tool-call", f"Raise the probability {i}",
            tool("crm/update_record", field="probability", value=min(100, 10 * i)), [f"task-{i}", f"no-{i}"])
        add(f"split-{i}", "parallel", f"Both at once {i}", {}, f"update-{i}")
        add(f"side-task-{i}", "tool-call", f"Prepare the contract {i}",
            tool("crm/create_task", title=f"Contract for {{{{deal.title}}}} ({i})", assignee="owner",
                 priority="high"), f"split-{i}", "branch-0")
        add(f"side-note-{i}", "desktop-notification", f"Tell the owner {i}",
            {"title": f"{{{{deal.title}}}} moves on ({i})", "recipients": "owner"}, f"split-{i}", "branch-1")
        add(f"join-{i}", "merge", f"Both done {i}", {"strategy": "wait-all"}, [f"side-task-{i}", f"side-note-{i}"])
        add(f"email-{i}", "tool-call", f"Write to the client {i}",
            tool("crm/send_email", to="{{deal.contact.email}}", subject=f"Next steps ({i})",
                 body="Hi {{deal.contact.first_name}}, here is what happens next."), f"join-{i}")
        last = f"email-{i}"
    for i in range(1, size - len(nodes) + 1):
        if i % 3 == 1:
            add(f"tail-{i}", "tool-call", f"Follow up {i}", tool("crm/create_task", title=f"Follow up ({i})",
                                                                  assignee="owner", priority="normal"), last)
        elif i % 3 == 2:
            add(f"tail-{i}", "desktop-notification", f"Remind the admins {i}",
                {"title": f"Follow-up {i} for {{{{deal.title}}}}", "recipients": "admins"}, last)
        else:
            add(f"tail-{i}", "wait", f"Give it time {i}", {"delayAmount": 2, "delayUnit": "hours"}, last)
        last = f"tail-{i}"
    assert len(nodes) == size
    return {"id": name.lower().replace(" ", "-"), "name": name, "nodes": nodes, "edges": edges,
            "settings": {"errorPolicy": "abort", "reenrollment": "not_while_running", "timeoutSeconds": 60}}


def make_data() -> tuple[dict[int, tuple[int, str]], str]:
    """The organization, its admin (with PASSWORD) and the drafts: {nodes: (workflow id, last node)}."""
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from benchmarks.chaos.data import make_org
    from crm_automation.automation.services.versions import workflow_create_from_document, workflow_document

    data = make_org("canvas")
    data.admin.set_password(PASSWORD)
    data.admin.save()
    made = {}
    for size in SIZES:
        doc = document(f"Canvas {size}", size)
        workflow = workflow_create_from_document(organization=data.org, by=data.admin, document=doc)
        saved = workflow_document(workflow)
        assert len(saved["nodes"]) == len(doc["nodes"]) and len(saved["edges"]) == len(doc["edges"]), saved
        made[len(doc["nodes"])] = (workflow.pk, doc["nodes"][-1]["id"])
    from django.db import connections

    connections.close_all()
    return made, data.admin.username


# --- The server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    with open(VAR_DIR / "runserver.log", "w") as log:  # (the server has its own copy of the file)
        server = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload",
                                   f"127.0.0.1:{port}"], cwd=ROOT, env={**os.environ, **ENV},
                                  stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=2).read()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                said = (VAR_DIR / "runserver.log").read_text()
                raise SystemExit(f"runserver did not answer; its log:\n{said}") from None
            time.sleep(0.2)


# --- The browser ---------------------------------------------------------------------------------
from playwright.sync_api import TimeoutError as PlaywrightTimeout  # noqa: E402 (after the settings)


def one_load(context, url: str, nodes: int, last: str) -> dict[str, float]:
    page = context.new_page()
    try:
        page.goto(url, wait_until="commit")
        node = page.locator(f'.react-flow__node[data-id="{last}"] .canvas-node-title')
        clicks = 0
        while True:
            node.click(timeout=TIMEOUT_MS)
            clicks += 1
            try:
                page.wait_for_selector(f'#node-panel [data-form="{last}"]', timeout=1000)
                break
            except PlaywrightTimeout:  # the click landed before the node settled: click again
                if clicks == 20:
                    raise SystemExit(f"{url}: a click on {last} never opened its form") from None
        page.wait_for_function("window.__canvasBench.rendered !== null", timeout=TIMEOUT_MS)
        marks = page.evaluate("""() => ({ ...window.__canvasBench,
            html: performance.getEntriesByType("navigation")[0].responseEnd,
            count: document.querySelectorAll(".react-flow__node").length })""")
        assert marks["count"] == nodes and marks["formId"] == last, marks
        return {"html": marks["html"], "rendered": marks["rendered"], "interactive": marks["form"],
                "clicks": clicks}
    finally:
        page.close()


def keystroke(context, url: str, last: str) -> float:
    page = context.new_page()
    try:
        page.goto(url)
        page.locator(f'.react-flow__node[data-id="{last}"] .canvas-node-title').click()
        field = page.locator("#node-panel .field").filter(has=page.get_by_text("Name of this step", exact=True)) \
            .locator("input").first
        field.click()
        page.keyboard.press("End")
        wanted = field.input_value() + "x"
        page.evaluate(KEYSTROKE, [last, wanted])
        page.keyboard.press("x")
        return page.wait_for_function("window.__keystroke").json_value()
    finally:
        page.close()


def measure(base: str, username: str, made: dict[int, tuple[int, str]], loads: int) -> None:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        context = browser.new_context(viewport={"width": 1600, "height": 1200})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.goto(f"{base}/admin/login/?next=/crm/automation/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        with page.expect_navigation():
            page.click("#login-form [type=submit]")
        assert "/admin/login/" not in page.url, "logging in failed"
        page.close()
        context.add_init_script(PROBE)
        urls = {n: f"{base}/crm/automation/workflows/{pk}/edit/" for n, (pk, _) in made.items()}
        sizes = sorted(made)
        for n in sizes:
            one_load(context, urls[n], n, made[n][1])  # warm-up: not counted
        figures: dict[int, list[dict[str, float]]] = {n: [] for n in sizes}
        for i in range(loads):
            for n in sizes[i % len(sizes):] + sizes[:i % len(sizes)]:  # each size goes first in turn
                load = one_load(context, urls[n], n, made[n][1])
                figures[n].append(load)
                print(f"load {i + 1} {n:>3} nodes: html {load['html']:6.0f} ms, rendered {load['rendered']:6.0f} ms, "
                      f"interactive {load['interactive']:6.0f} ms ({load['clicks']} click"
                      f"{'s' if load['clicks'] > 1 else ''})", flush=True)
        base_size, others = sizes[0], sizes[1:]
        print(f"\nmedians of {loads} loads, ms from navigation start"
              + "".join(f" | {n:>3} nodes" for n in sizes) + "".join(f" | {n} ÷ {base_size}" for n in others))
        for what in ("html", "rendered", "interactive"):
            medians = {n: statistics.median(f[what] for f in figures[n]) for n in sizes}
            print(f"{what:>43}" + "".join(f" | {medians[n]:9.0f}" for n in sizes)
                  + "".join(f" | {medians[n] / medians[base_size]:7.2f}x" for n in others))
        keys = {n: keystroke(context, urls[n], made[n][1]) for n in sizes}
        print("\none keystroke in a step's name until that node's title on the canvas shows it (once each): "
              + ", ".join(f"{keys[n]:.1f} ms ({n} nodes)" for n in sizes)
              + "; " + ", ".join(f"{n} ÷ {base_size}: {keys[n] / keys[base_size]:.2f}x" for n in others))
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database and VAR_DIR")
    args = parser.parse_args()
    if not os.access(CHROMIUM, os.X_OK):
        raise SystemExit(f"Chromium not found at {CHROMIUM}")
    server = None
    try:
        made, username = make_data()
        port = free_port()
        server = start_server(port)
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; "
              f"runserver on 127.0.0.1:{port} (pid {server.pid}), database {DB_PATH}; "
              f"workflows: " + ", ".join(f"{n} nodes = #{pk}" for n, (pk, _) in sorted(made.items())), flush=True)
        measure(f"http://127.0.0.1:{port}", username, made, args.loads)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if args.keep:
            print(f"kept: {DB_PATH}, {VAR_DIR}")
        else:
            for path in (DB_PATH, Path(f"{DB_PATH}-wal"), Path(f"{DB_PATH}-shm"), Path(f"{DB_PATH}-journal")):
                path.unlink(missing_ok=True)
            shutil.rmtree(VAR_DIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
