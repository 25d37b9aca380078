"""The canvas builder in a real Chromium, by mouse: steps dragged from the palette, edges drawn
from named handles, forms filled beside the canvas; the document saved, seen the same in the YAML
tab (and a YAML save seen on the canvas), activated; a viewer gets the same canvas to read, with
no handle to edit and no script error; triggered, its run's page lights up node by node without a
reload. Screenshots of each step are written (always: they are
what the issue's reviewer looks at), VAR_DIR/screenshots/<test>/.
"""

import re

import pytest
import yaml
from playwright.sync_api import expect

from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.automation.services.versions import workflow_document
from crm_automation.crm.services import deal_move_to_stage
from tests.browser.conftest import PASSWORD, TIMEOUT_MS, logged_in
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.conftest import drain, stage, time_passes

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows

WIDE = {"width": 1600, "height": 1200}  # room for the whole flow beside the form


@pytest.fixture
def wide_page(browser):
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


class Canvas:
    """The canvas of one page, driven by the mouse."""

    def __init__(self, page):
        self.page = page

    def node(self, node_id: str):
        return self.page.locator(f'.react-flow__node[data-id="{node_id}"]')

    def box(self, locator) -> dict:
        box = locator.bounding_box()
        assert box is not None, f"{locator} is not on the screen"
        return box

    def centre(self, locator) -> tuple[float, float]:
        box = self.box(locator)
        return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    def drop(self, kind: str, x: float, y: float) -> str:
        """Drag a palette item to (x, y) on the screen; the id of the step it made (selected)."""
        area = self.box(self.page.locator(".canvas-area"))
        before = set(self.page.eval_on_selector_all(".react-flow__node", "nodes => nodes.map(n => n.dataset.id)"))
        self.page.locator(f'.canvas-palette-item[data-kind="{kind}"]').drag_to(
            self.page.locator(".canvas-area"), target_position={"x": x - area["x"], "y": y - area["y"]})
        expect(self.page.locator(".react-flow__node")).to_have_count(len(before) + 1)
        (node_id,) = set(self.page.eval_on_selector_all(".react-flow__node", "nodes => nodes.map(n => n.dataset.id)")) \
            - before
        expect(self.node(node_id)).to_have_class(re.compile(r"\bselected\b"))  # and its form is open
        expect(self.page.locator(f'#node-panel [data-form="{node_id}"]')).to_be_visible()
        return node_id

    def connect(self, source: str, handle: str | None, target: str) -> None:
        """Press on a way out of `source` and let go on the top of `target`."""
        way_out = self.node(source).locator(".react-flow__handle.source" + (
            f'[data-handleid="{handle}"]' if handle else ""))
        sx, sy = self.centre(way_out)
        tx, ty = self.centre(self.node(target).locator(".react-flow__handle.target"))
        edges = self.page.locator(".react-flow__edge").count()
        self.page.mouse.move(sx, sy)
        self.page.mouse.down()
        self.page.mouse.move((sx + tx) / 2, (sy + ty) / 2, steps=4)
        self.page.mouse.move(tx, ty, steps=4)
        self.page.mouse.up()
        expect(self.page.locator(".react-flow__edge")).to_have_count(edges + 1)

    def open(self, node_id: str) -> None:
        """Click a step: its form opens beside the canvas."""
        self.node(node_id).locator(".canvas-node-title").click()
        expect(self.page.locator(f'#node-panel [data-form="{node_id}"]')).to_be_visible()

    def field(self, label: str):
        return self.page.locator("#node-panel .field").filter(has=self.page.get_by_text(label, exact=True)).locator(
            "input, select, textarea").first


def test_an_ops_manager_builds_the_missed_call_follow_up_by_mouse(
        wide_page, watch, live_server, org, owner, viewer, deal, shot, browser):  # noqa: F811
    page = wide_page
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url="/crm/automation/workflows/new/")
    canvas = Canvas(page)
    expect(canvas.node("trigger")).to_be_visible()
    # Room for eight rows: zoomed out twice with the canvas's own controls.
    page.locator(".react-flow__controls-zoomout").click()
    page.locator(".react-flow__controls-zoomout").click()
    page.wait_for_timeout(300)
    # …and the trigger dragged back up to the top by the canvas's empty background.
    area, top = canvas.box(page.locator(".canvas-area")), canvas.box(canvas.node("trigger"))
    page.mouse.move(area["x"] + 30, area["y"] + 300)
    page.mouse.down()
    page.mouse.move(area["x"] + 30, area["y"] + 300 - (top["y"] - area["y"] - 50), steps=5)
    page.mouse.up()
    top = canvas.box(canvas.node("trigger"))
    row = top["width"] * 0.62  # a row's height: the nodes' width on screen says the zoom
    x, y, side = top["x"] + top["width"] / 2, top["y"] + 20, top["width"] * 0.6

    split = canvas.drop("parallel", x, y + row)
    canvas.connect("trigger", None, split)
    tell = canvas.drop("notify", x - side, y + 2 * row)
    call = canvas.drop("create_task", x + side, y + 2 * row)
    canvas.connect(split, "branch-0", tell)
    canvas.connect(split, "branch-1", call)  # the way out that appeared for the next branch
    join = canvas.drop("merge", x, y + 3 * row)
    canvas.connect(tell, None, join)
    canvas.connect(call, None, join)
    pause = canvas.drop("wait", x, y + 4 * row)
    canvas.connect(join, None, pause)
    check = canvas.drop("condition", x, y + 5 * row)
    canvas.connect(pause, None, check)
    again = canvas.drop("send_email", x + side, y + 6 * row)
    canvas.connect(check, "condition-false", again)
    nudge = canvas.drop("notify", x + side, y + 7 * row)
    canvas.connect(again, None, nudge)
    shot(page, "placed-and-connected", always=True)

    page.locator("#wf-name").fill("Missed call follow-up")
    canvas.open(tell)
    canvas.field("Name of this step").fill("Tell the owner")
    canvas.field("Title").fill("Missed call from {{deal.contact.first_name}}")
    canvas.field("Who").select_option("owner")
    canvas.open(call)
    canvas.field("Name of this step").fill("Call them back")
    canvas.field("Task title").fill("Call {{deal.contact.first_name}} back")
    canvas.open(pause)
    canvas.field("Wait for").fill("4")
    canvas.field("Unit").select_option("hours")
    canvas.open(check)
    canvas.field("Name of this step").fill("Did they reply")
    page.locator("#node-panel").get_by_label("Field of condition 1").select_option("deal.probability")
    page.locator("#node-panel").get_by_label("Operator of condition 1").select_option("gt")
    page.locator("#node-panel").get_by_label("Value of condition 1").fill("50")
    canvas.open(again)
    canvas.field("Name of this step").fill("Second email")
    canvas.field("Subject").fill("Sorry we missed you, {{deal.contact.first_name}}")
    canvas.field("Message").fill("When suits you for a call back?")
    canvas.open(nudge)
    canvas.field("Name of this step").fill("No reply yet")
    canvas.field("Title").fill("{{deal.contact.first_name}} has not replied")
    expect(canvas.node(check)).to_contain_text("Did they reply")
    expect(canvas.node(pause)).to_contain_text("Wait 4 hours")
    shot(page, "forms-filled", always=True)

    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url("**/edit/?saved=1")
    workflow = Workflow.objects.get(organization=org, name="Missed call follow-up")
    document = workflow_document(workflow)
    labels = {n["id"]: n["data"]["label"] for n in document["nodes"]}
    edges = {(labels[e["source"]], e.get("sourceHandle", ""), labels[e["target"]]) for e in document["edges"]}
    assert edges == {
        (labels["trigger"], "", "Parallel"), ("Parallel", "branch-0", "Tell the owner"),
        ("Parallel", "branch-1", "Call them back"), ("Tell the owner", "", "Merge"), ("Call them back", "", "Merge"),
        ("Merge", "", "Wait"), ("Wait", "", "Did they reply"), ("Did they reply", "condition-false", "Second email"),
        ("Second email", "", "No reply yet")}, say(watch, str(edges))
    assert all("position" in n for n in document["nodes"]), document["nodes"]
    wait = next(n for n in document["nodes"] if n["data"]["label"] == "Wait")
    assert wait["data"]["config"] == {"delayAmount": 4, "delayUnit": "hours"}
    shot(page, "saved", always=True)

    # The YAML tab shows the same document; a save there shows on the canvas.
    page.get_by_role("link", name="YAML", exact=True).click()
    text = page.locator("textarea[name=yaml]").input_value()
    assert yaml.safe_load(text) == {**document, "_status": "draft"}
    page.locator("textarea[name=yaml]").fill(text.replace("label: Did they reply", "label: Did they call back"))
    page.get_by_role("button", name="Save").click()
    page.get_by_role("link", name="Builder", exact=True).click()
    expect(canvas.node(check)).to_contain_text("Did they call back")
    expect(canvas.node(check)).to_contain_text("Deal › Probability")
    shot(page, "after-yaml-save", always=True)

    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".badge, .status").first).to_contain_text("Activ")
    workflow.refresh_from_db()
    assert workflow.status == "activated"
    assert not watch.page_errors and not watch.console, say(watch, "script errors while building")

    # Triggered: the run's page lights up node by node as the run goes on, without a reload.
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get(workflow=workflow)
    page.goto(f"{live_server.url}/crm/automation/runs/{run.pk}/")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

    def on_run(node_id: str, status: str) -> None:
        expect(page.locator(f'#run-graph .react-flow__node[data-id="{node_id}"] .canvas-node')).to_have_class(
            re.compile(rf"\brun-{status}\b"))

    for done in ("trigger", split, tell, call, join):
        on_run(done, "completed")
    on_run(pause, "waiting")
    on_run(check, "pending")
    shot(page, "run-waits", always=True)
    time_passes()
    sweep(fan_out=False)  # four hours later: the run goes on in the worker
    on_run(check, "completed")
    on_run(again, "completed")  # probability 10 is not over 50: "no", the second email…
    on_run(nudge, "completed")  # …and the notification
    assert page.evaluate("window.sameDocument") is True, say(watch, "the run's page reloaded")
    shot(page, "run-completed", always=True)

    # A viewer: the same canvas, nothing to drag, connect or save, each step's settings to read.
    context = browser.new_context(viewport=WIDE)
    try:
        seen = watch.on(context.new_page())
        logged_in(seen, live_server, "viewer", PASSWORD, next_url=f"/crm/automation/workflows/{workflow.pk}/edit/")
        read = Canvas(seen)
        expect(read.node(check)).to_contain_text("Did they call back")
        expect(seen.locator(".react-flow__node")).to_have_count(9)
        expect(seen.locator(".react-flow__edge")).to_have_count(9)
        expect(seen.locator(".canvas-palette, .canvas-toolbar, #save")).to_have_count(0)
        expect(seen.locator(".react-flow__node.draggable")).to_have_count(0)
        expect(seen.locator(".react-flow__handle.connectable")).to_have_count(0)
        read.node(pause).locator(".canvas-node-title").click()
        expect(seen.locator("#node-panel dl.node-settings")).to_contain_text("4")
        expect(seen.locator("#node-panel").locator("input, select, textarea, button")).to_have_count(0)
        shot(seen, "viewer-read-only", always=True)
        assert not watch.page_errors and not watch.console, say(watch, "script errors for the viewer")
    finally:
        context.close()


@pytest.mark.parametrize(("who", "status"), [("teammate", "activated"), ("owner", "archived"), ("viewer", "draft")])
def test_read_only_is_the_canvas_without_its_handles(page, watch, live_server, org, owner, teammate, viewer,  # noqa: F811
                                                      who, status):
    from crm_automation.automation.services.workflows import workflow_transition
    from tests.conftest import make_workflow

    workflow = make_workflow(org, activate=status != "draft", actions=[
        {"type": "create_task", "label": "Kickoff call", "config": {"title": "Kick off {{deal.title}}"}},
        {"type": "wait", "label": "A day", "config": {"delayAmount": 1, "delayUnit": "days"}}])
    if status == "archived":
        workflow_transition(workflow_id=workflow.pk, name="archive", by=None)
    watch.on(page)
    logged_in(page, live_server, who, PASSWORD, next_url=f"/crm/automation/workflows/{workflow.pk}/edit/")
    expect(page.locator(".react-flow__node")).to_have_count(3)
    expect(page.locator(".react-flow__edge")).to_have_count(2)
    expect(page.locator(".canvas-palette, .canvas-toolbar, #save")).to_have_count(0)
    expect(page.locator(".react-flow__node.draggable, .react-flow__handle.connectable")).to_have_count(0)
    page.locator('.react-flow__node .canvas-node-title', has_text="Kickoff call").click()
    expect(page.locator("#node-panel dl.node-settings")).to_contain_text("Kick off {{deal.title}}")
    expect(page.locator("#node-panel").locator("input, select, textarea, button")).to_have_count(0)
    page.keyboard.press("Delete")
    expect(page.locator(".react-flow__node")).to_have_count(3)  # nothing to delete either
    assert not watch.page_errors and not watch.console, say(watch, f"{who} on a {status} workflow")
