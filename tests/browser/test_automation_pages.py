"""The ops pages under /crm/automation/ in a real Chromium, used as a person would: by the roles,
labels and words on the screen. Each test checks what the page shows, then the database.

The services only set up what a test starts from (a workflow, runs, a waiting question); what the
test claims the page does, the page does. Every page's console errors, uncaught script errors and
failed responses (with their bodies) are collected by `watch` and printed when a test fails, so a
failure says what the server and the script answered.
"""

import re

import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import Workflow, WorkflowRun, WorkflowRunAction, WorkflowSchedule
from crm_automation.automation.triggers import schedules
from crm_automation.crm.models import Deal, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.browser.conftest import DESKTOP, PASSWORD, TIMEOUT_MS, logged_in, prefer_list_view
from tests.conftest import drain, make_workflow, stage
from tests.drafts import draft_actions
from tests.test_approvals import SIDES
from tests.test_graph_engine import win

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows


@pytest.fixture(autouse=True)
def _list_view(request):
    """These tests use the builder's list view (conftest.prefer_list_view)."""
    for name in ("page", "phone_page"):
        if name in request.fixturenames:
            prefer_list_view(request.getfixturevalue(name))

LIST = "/crm/automation/"
TASK_ONLY = [{"type": "create_task", "config": {"title": "Kick off {{deal.title}}", "assignee": "owner"}}]
NO_OVERFLOW = "document.documentElement.scrollWidth <= window.innerWidth + 1"
# What sticks out on the right: the outermost such elements, by a CSS path, to say where to look.
WIDEST = """() => {
  const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "")
    + (typeof e.className === "string" && e.className.trim() ? "." + e.className.trim().split(/ +/).join(".") : "");
  const path = (e) => {
    const parts = [];
    for (; e && e !== document.body; e = e.parentElement) parts.unshift(name(e));
    return parts.join(" > ");
  };
  const box = (e) => e.getBoundingClientRect();
  const out = [...document.querySelectorAll("body *")].filter((e) => box(e).right > innerWidth + 1);
  return out.filter((e) => !out.includes(e.parentElement)).slice(0, 8).map((e) =>
    `${path(e)} (right edge ${Math.round(box(e).right)} px, ${Math.round(box(e).width)} px wide)`);
}"""


# --- What the browser saw ------------------------------------------------------------------------
class Watcher:
    """Console errors, uncaught exceptions and 4xx/5xx responses of the pages it watches."""

    IGNORED = ("favicon.ico",)

    def __init__(self):
        self.console: list[str] = []
        self.page_errors: list[str] = []
        self.responses: list = []

    def on(self, page):
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))
        page.on("response", self._response)
        return page

    def _console(self, message):
        where = message.location.get("url", "")
        if message.type in ("error", "warning") and not any(i in message.text + where for i in self.IGNORED):
            self.console.append(f"{message.type}: {message.text} ({where})")

    def _response(self, response):
        if response.status < 400 or any(i in response.url for i in self.IGNORED):
            return
        try:  # now: the body is gone once the page navigates away
            body = re.sub(r"\s+", " ", response.text())
        except Exception as exc:
            body = f"(body not available: {exc})"
        self.responses.append(f"{response.request.method} {response.url} -> {response.status}: {body[:1500]}")

    def report(self) -> str:
        return "\n".join([f"console {c}" for c in self.console] + [f"pageerror {e}" for e in self.page_errors]
                         + self.responses)


@pytest.fixture
def watch():
    """watch.on(page); what it saw is printed at teardown (pytest shows it when the test fails)."""
    watcher = Watcher()
    yield watcher
    seen = watcher.report()
    if seen:
        print("What the browser saw:\n" + seen)


def say(watcher: Watcher, what: str) -> str:
    """An assertion message: what was expected, and what the browser saw."""
    seen = watcher.report()
    return what + ("\nWhat the browser saw:\n" + seen if seen else "")


def overflow(page) -> list[str]:
    """[] when nothing sticks out sideways; else how wide the page is and which elements stick out."""
    if page.evaluate(NO_OVERFLOW):
        return []
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return [f"{page.url}: the page is {width[0]} px wide in a {width[1]} px window; "
            f"sticking out: {page.evaluate(WIDEST)}"]


def is_red(color: str) -> bool:
    r, g, b = (int(x) for x in re.findall(r"\d+", color)[:3])
    return r > 120 and r > g + 50 and r > b + 50


def open_list(page, live_server, user, watcher):
    watcher.on(page)
    logged_in(page, live_server, user.username, PASSWORD, next_url=LIST)
    assert page.url == f"{live_server.url}{LIST}", say(watcher, f"the list did not open: {page.url}")
    return page


def workflow_row(page, name: str):
    return page.get_by_role("row").filter(has=page.get_by_role("link", name=name, exact=True))


# --- 1. Pause and activate from the list ----------------------------------------------------------
def flip(page, row, workflow, button: str, message: str, badge: str, status: str) -> None:
    """Press the row's Pause or Activate button: the page says so, the badge and the database follow."""
    with page.expect_navigation():
        row.get_by_role("button", name=f"{button} {workflow.name}").click()
    expect(page.get_by_role("status")).to_contain_text(message)
    expect(row.get_by_text(badge, exact=True)).to_be_visible()
    assert Workflow.objects.get(pk=workflow.pk).status == status


def test_an_admin_pauses_and_activates_a_workflow_from_the_list(page, watch, browser, live_server, org, owner, shot):
    workflow = make_workflow(org, name="Kickoff")
    open_list(page, live_server, owner, watch)
    row = workflow_row(page, "Kickoff")
    expect(row.get_by_text("Activated", exact=True)).to_be_visible()
    shot(page, "list-active")
    flip(page, row, workflow, "Pause", "“Kickoff” is paused", "Paused", "paused")
    shot(page, "paused")
    flip(page, row, workflow, "Activate", "“Kickoff” is active", "Activated", "activated")
    shot(page, "active-again")

    # Without JavaScript: the toggle is a plain POST form.
    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    context.set_default_timeout(TIMEOUT_MS)
    try:
        plain = open_list(context.new_page(), live_server, owner, watch)
        row = workflow_row(plain, "Kickoff")
        flip(plain, row, workflow, "Pause", "“Kickoff” is paused", "Paused", "paused")
        shot(plain, "paused-without-javascript")
        flip(plain, row, workflow, "Activate", "“Kickoff” is active", "Activated", "activated")
    finally:
        context.close()
    assert not watch.page_errors, say(watch, "script errors")


# --- 2. The builder, from nothing -----------------------------------------------------------------
def add_step(page, where: str, kind: str):
    """Pick `kind` in the "+ Add a step" select whose label starts with `where` (and names the
    branch handle, when there is one, as "(condition-true)")."""
    adder = page.get_by_label(re.compile("^" + re.escape(where)))
    expect(adder).to_have_count(1)
    adder.select_option(label=kind)


def field_box(page, label: str):
    """The .field around the input labelled `label`: its error and its variable picker are in it."""
    return page.locator(".field").filter(has=page.get_by_label(label, exact=True))


def test_an_admin_builds_a_branching_workflow_saves_it_and_activates_it(page, watch, live_server, org, owner, shot):
    open_list(page, live_server, owner, watch)
    with page.expect_navigation():
        page.get_by_role("link", name="New workflow").click()
    assert page.url == f"{live_server.url}{LIST}workflows/new/", say(watch, page.url)
    expect(page.get_by_role("button", name="Edit the trigger")).to_be_visible()
    shot(page, "new")

    page.get_by_label("Name", exact=True).fill("Big won deals")
    page.get_by_role("button", name="Edit the trigger").click()
    page.get_by_label("Starts when").select_option(label="Deal stage changes")
    page.get_by_label("To stage").select_option(label="Won")
    trigger_card = page.get_by_role("article").filter(has=page.get_by_role("button", name="Close the trigger"))
    expect(trigger_card).to_contain_text("Deal moves to Won")
    shot(page, "trigger")

    add_step(page, "Add a step after the trigger", "Branch: yes / no")
    page.get_by_label("Field of condition 1").select_option("deal.amount")
    page.get_by_label("Operator of condition 1").select_option(label="is greater than")
    page.get_by_label("Value of condition 1").fill("5000")
    # One human name for a variable everywhere (catalog.variable_name), its path beside it.
    expect(page.get_by_text("Continue if Deal › Amount is greater than 5000")).to_be_visible()
    field = page.get_by_label("Field of condition 1")
    expect(field.locator("option:checked")).to_have_text("Deal › Amount")
    expect(page.locator(".rule code.token")).to_have_text("deal.amount")
    shot(page, "condition")

    add_step(page, "Add a step after Check (condition-true)", "Create a task")
    expect(page.get_by_label("Task title", exact=True)).to_be_visible()
    add_step(page, "Add a step after Check (condition-false)", "Send an email")
    page.get_by_label("Subject", exact=True).fill("Welcome {{deal.title}}")
    page.get_by_label("Message", exact=True).fill("Hi {{deal.contact.first_name}}")
    shot(page, "steps")

    # The task's title is still empty: the save is refused, with the error at that field.
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status").filter(has_text="Not saved")).to_be_visible()
    title = page.get_by_label("Task title", exact=True)
    expect(title).to_be_visible()
    expect(title).to_have_attribute("aria-invalid", "true")
    error = field_box(page, "Task title").locator(".field-error")
    expect(error).to_contain_text("is required")
    assert is_red(error.evaluate("e => getComputedStyle(e).color")), error.evaluate("e => getComputedStyle(e).color")
    assert page.url == f"{live_server.url}{LIST}workflows/new/"
    assert not Workflow.objects.exists()
    shot(page, "title-required")

    title.fill("Kick off ")
    picker = field_box(page, "Task title").get_by_label("Insert a variable into the field above")
    expect(picker.locator('option[value="deal.contact.first_name"]')).to_have_text(
        "Deal › Contact › First name — {{deal.contact.first_name}}")
    field_box(page, "Task title").get_by_label("Insert a variable into the field above").select_option("deal.title")
    expect(title).to_have_value("Kick off {{deal.title}}")
    shot(page, "title-with-variable")

    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url(re.compile(r"/crm/automation/workflows/\d+/edit/"))
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()
    workflow = Workflow.objects.get(name="Big won deals")
    assert page.url.startswith(f"{live_server.url}{LIST}workflows/{workflow.pk}/edit/"), page.url
    assert workflow.status == "draft"
    shot(page, "saved")

    with page.expect_navigation():
        page.locator(".builder-bar").get_by_role("button", name="Activate", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="“Big won deals” is active")).to_be_visible()
    shot(page, "activated-in-builder")
    with page.expect_navigation():
        page.get_by_role("navigation", name="Automation").get_by_role("link", name="Workflows").click()
    expect(workflow_row(page, "Big won deals").get_by_text("Activated", exact=True)).to_be_visible()
    shot(page, "list")

    workflow.refresh_from_db()
    assert workflow.status == "activated"
    assert workflow.trigger_type == "deal_stage_change"
    assert workflow.definition["trigger_config"].get("to_stage") == "won"
    actions = {a.action_type: a for a in draft_actions(workflow)}
    assert len(draft_actions(workflow)) == 3 and set(actions) == {"condition", "create_task", "send_email"}
    assert actions["create_task"].config["title"] == "Kick off {{deal.title}}"
    assert actions["condition"].config["rules"] == [{"field": "deal.amount", "operator": "gt", "value": 5000}]
    by_handle = {e.get("sourceHandle"): e["target"] for e in workflow.definition["graph"]["edges"]}
    node_of = {a.node_id: a.action_type for a in draft_actions(workflow)}
    assert node_of[by_handle["condition-true"]] == "create_task"
    assert node_of[by_handle["condition-false"]] == "send_email"
    assert not watch.page_errors, say(watch, "script errors")


# --- 3. YAML: the error at its line ----------------------------------------------------------------
def test_a_yaml_error_names_its_line_and_nothing_is_saved(page, watch, live_server, org, owner, shot):
    workflow = make_workflow(org, name="Kickoff")
    before = Workflow.objects.get(pk=workflow.pk)
    watch.on(page)
    logged_in(page, live_server, owner.username, next_url=f"{LIST}workflows/{workflow.pk}/yaml/")
    editor = page.get_by_label(re.compile("^YAML of"))
    expect(editor).to_be_visible()
    shot(page, "yaml")

    text = editor.input_value()
    lines = text.splitlines()
    wrong = next((i for i, line in enumerate(lines) if re.fullmatch(r"\s*to_stage: won\s*", line)), None)
    assert wrong is not None, f"no `to_stage: won` in the YAML:\n{text}"
    lines[wrong] = lines[wrong].replace("won", "nowhere")
    editor.fill("\n".join(lines) + "\n")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Nothing was saved")
    expect(alert).to_contain_text(f"Line {wrong + 1}")
    expect(alert).to_contain_text("nowhere")
    shot(page, "unknown-stage")

    # A broken indentation: YAML that does not parse, named by its line too.
    lines = text.splitlines()
    bad = next(i for i, line in enumerate(lines) if line.startswith("  ") and i > 2)
    lines[bad] = " " + lines[bad].lstrip() + ": ["
    page.get_by_label(re.compile("^YAML of")).fill("\n".join(lines) + "\n")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text(f"Line {bad + 1}")
    shot(page, "bad-indentation")

    after = Workflow.objects.get(pk=workflow.pk)
    assert (after.draft_revision, after.version, after.document) == (before.draft_revision, before.version,
                                                                       before.document)
    assert not watch.page_errors, say(watch, "script errors")


# --- 4. The run history ---------------------------------------------------------------------------
def real_runs(org, owner, count: int, contact=None) -> Workflow:
    """`count` completed runs of a one-task workflow: `count` deals, each moved to Won."""
    workflow = make_workflow(org, name="Kickoff", actions=TASK_ONLY)
    for i in range(count):
        made = Deal.objects.create(organization=org, title=f"Deal {i + 1:02d}", amount=1000 + i,
                                   stage=stage(org, "proposal"), contact=contact, owner=owner)
        deal_move_to_stage(deal=made, stage=stage(org, "won"))
    drain()
    assert WorkflowRun.objects.filter(status="completed").count() == count
    return workflow


def test_the_run_history_opens_a_run_and_loads_more_in_place(page, watch, live_server, org, owner, shot):
    real_runs(org, owner, 30)
    open_list(page, live_server, owner, watch)
    runs = page.locator("details.run")
    expect(runs).to_have_count(25)
    page.evaluate("window.stillTheSamePage = true")
    shot(page, "history")

    first = runs.first
    first.locator("summary .when").click()  # (not the record's link inside the summary)
    expect(first).to_have_attribute("open", "")
    expect(first.locator(".steps")).to_contain_text("created task")
    expect(first.locator(".steps")).to_contain_text("Kick off Deal")
    first.scroll_into_view_if_needed()
    shot(page, "run-open")

    page.get_by_role("link", name="Load more").click()
    expect(runs).to_have_count(30)
    assert page.evaluate("window.stillTheSamePage === true"), "the page was reloaded"
    assert page.url == f"{live_server.url}{LIST}"
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    ids = runs.evaluate_all("rows => rows.map(r => r.id)")
    assert len(set(ids)) == 30, ids
    shot(page, "loaded-more")
    assert not watch.page_errors, say(watch, "script errors")


# --- 5. Simulate ---------------------------------------------------------------------------------
def test_a_simulation_shows_what_each_step_would_do_and_sends_nothing(page, watch, live_server, org, owner, deal,
                                                                      shot):
    workflow = make_workflow(org, name="Kickoff")  # a task, a field, an email (KICKOFF_ACTIONS)
    watch.on(page)
    logged_in(page, live_server, owner.username, next_url=f"{LIST}workflows/{workflow.pk}/simulate/")
    expect(page.get_by_role("button", name="Simulate")).to_be_visible()
    shot(page, "simulate")

    page.get_by_label(re.compile(r"^Deal\b")).select_option(label="Website (Proposal)")
    with page.expect_navigation():
        page.get_by_role("button", name="Simulate").click()
    result = page.get_by_role("region", name=re.compile("What would happen"))
    expect(result).to_be_visible()
    expect(result.get_by_role("status")).to_contain_text("Nothing was sent")
    expect(result).to_contain_text("Kick off Website")  # the task it would create
    expect(result).to_contain_text("probability: 10 → 100")  # the field's old → new value
    expect(result).to_contain_text("Welcome Website")  # the email's subject
    expect(result).to_contain_text("ada@example.com")
    shot(page, "result")

    assert not Task.objects.exists()
    assert Deal.objects.get(pk=deal.pk).probability == deal.probability
    assert not watch.page_errors, say(watch, "script errors")


# --- 6. Approvals -------------------------------------------------------------------------------
def test_an_admin_approves_a_question_in_the_inbox(page, watch, live_server, org, owner, deal, shot):
    run = win(org, deal, *SIDES)
    assert run.status == "waiting"
    watch.on(page)
    logged_in(page, live_server, owner.username, next_url=f"{LIST}approvals/")
    question = page.get_by_role("heading", name="Approve the terms of Website?")
    expect(question).to_be_visible()
    shot(page, "inbox")

    card = page.get_by_role("listitem").filter(has=question)
    card.get_by_label("Comment (optional)").fill("OK up to 10%")
    with page.expect_navigation():
        card.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("You approved “Approve the terms of Website?”")
    expect(page.get_by_role("heading", name="Approve the terms of Website?")).to_have_count(0)
    expect(page.get_by_text("Nothing waits for your answer.")).to_be_visible()
    shot(page, "approved")

    step = WorkflowRunAction.objects.get(run=run, node_id="ask")
    assert step.result["decision"] == "approved" and step.result["comment"] == "OK up to 10%", step.result
    assert step.result["answered_by"] == "owner"
    assert not watch.page_errors, say(watch, "script errors")


# --- 8. A schedule, set up in the builder, fires from the minute sweep ------------------------------
def test_an_admin_schedules_a_weekly_workflow_and_the_sweep_starts_it(page, watch, live_server, org, owner, shot):
    open_list(page, live_server, owner, watch)
    with page.expect_navigation():
        page.get_by_role("link", name="New workflow").click()
    page.get_by_label("Name", exact=True).fill("Monday review")
    page.get_by_role("button", name="Edit the trigger").click()
    page.get_by_label("Starts when").select_option(label="On a schedule")
    page.get_by_label("How often").select_option(label="Every week")
    page.get_by_label("On", exact=True).select_option(label="Monday")
    page.get_by_label("At", exact=True).fill("08:30")
    add_step(page, "Add a step after the trigger", "Create a task")
    page.get_by_label("Task title", exact=True).fill("Pipeline review")
    shot(page, "schedule")
    with page.expect_navigation():
        page.get_by_role("button", name="Save draft").click()
    with page.expect_navigation():
        page.get_by_role("button", name="Activate").click()
    expect(page.get_by_role("status").first).to_contain_text("is active")
    workflow = Workflow.objects.get(name="Monday review")
    assert workflow.definition["trigger_config"] == {"frequency": "weekly", "dayOfWeek": "monday", "time": "08:30"}
    page.goto(f"{live_server.url}{LIST}")
    expect(workflow_row(page, "Monday review")).to_contain_text("Every Monday at 08:30")
    shot(page, "listed")

    schedules.fire_due()  # the minute sweep: the first due time is next Monday, 08:30
    due = WorkflowSchedule.objects.get(workflow=workflow).next_due_at
    assert (due.weekday(), due.hour, due.minute) == (0, 8, 30)  # the demo organization's zone is UTC here
    assert schedules.fire_due(now=due) == 1
    drain()
    assert Task.objects.get().title == "Pipeline review"
    page.reload()
    expect(page.locator("details.run").first).to_contain_text("Monday review")
    shot(page, "ran")

# --- The builder's page among the workflow's other pages ---------------------------------------------
def test_the_builder_of_a_saved_workflow_links_to_its_other_pages(page, watch, live_server, org, owner, shot):
    workflow = make_workflow(org, name="Kickoff")
    open_list(page, live_server, owner, watch)
    with page.expect_navigation():
        workflow_row(page, "Kickoff").get_by_role("link", name="Kickoff", exact=True).click()
    assert page.url == f"{live_server.url}{LIST}workflows/{workflow.pk}/edit/", say(watch, page.url)
    expect(page.get_by_role("button", name="Edit the trigger")).to_be_visible()
    shot(page, "builder")
    tabs = page.get_by_role("navigation", name="Pages of Kickoff")
    expect(tabs.get_by_role("link", name="Builder")).to_have_attribute("aria-current", "page")
    with page.expect_navigation():
        tabs.get_by_role("link", name="YAML").click()
    expect(page.get_by_label(re.compile("^YAML of"))).to_be_visible()
    assert not watch.page_errors, say(watch, "script errors")


# --- 7. Phone width -------------------------------------------------------------------------------
def test_the_list_and_the_run_history_fit_a_phone(phone_page, watch, live_server, org, owner, contact, shot):
    real_runs(org, owner, 3, contact=contact)
    make_workflow(org, name="A workflow with a rather long name that has to wrap somewhere", activate=False)
    page = open_list(phone_page, live_server, owner, watch)
    too_wide = []  # checked at the end, after every screenshot
    expect(page.get_by_role("heading", name="Workflows")).to_be_visible()
    shot(page, "list")
    too_wide += overflow(page)

    run = page.locator("details.run").first
    run.locator("summary .when").click()
    expect(run.locator(".steps")).to_contain_text("created task")
    shot(page, "list-run-open")
    too_wide += overflow(page)

    page.goto(f"{live_server.url}{LIST}runs/")
    expect(page.locator("details.run")).to_have_count(3)
    shot(page, "run-history")
    too_wide += overflow(page)
    assert not too_wide, "\n".join(too_wide)
    assert not watch.page_errors, say(watch, "script errors")
