"""Records made by workflows and workflows started by hand, in a real Chromium, as people use them.

The owner builds "Deal won → Create a project" on the canvas by mouse (the palette's Records
group) and a won deal gets its project; builds "Log a visit", started by a person on a project
with declared inputs, and runs it from the project's page (the inputs asked first, a missing
one said at its field); edits a deal's own fields on its page (a wrong value said at its field,
nothing saved); and simulates an `invoice.overdue` workflow with the event's data edited as JSON.
Screenshots: VAR_DIR/screenshots/<test>/.
"""

import json
import re

import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.crm.models import CustomField, Deal, Note, Project
from crm_automation.crm.services import deal_move_to_stage
from tests.browser.conftest import PASSWORD, logged_in
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.browser.test_canvas_builder import Canvas, wide_page  # noqa: F401 (the fixture)
from tests.conftest import drain, make_workflow, stage

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows

NEW = "/crm/automation/workflows/new/"
RECORDS = ["Create a project", "Create a contact", "Create a deal", "Add a note", "Archive a record", "Delete a record"]
VISIT_INPUTS = [
    {"key": "visited_on", "label": "Visited on", "kind": "date", "required": True},
    {"key": "outcome", "label": "Outcome", "kind": "choice", "choices": ["on track", "delayed"], "default": "on track"},
]


def record_url(live_server, kind: str, pk) -> str:
    return f"{live_server.url}/crm/automation/records/{kind}/{pk}/"


def refused_forms(console: list[str]) -> list[str]:
    """Console lines other than Chromium's note of a form answered 400 on purpose (a value refused)."""
    return [line for line in console if "status of 400" not in line]


def below_the_trigger(canvas: Canvas, kind: str) -> str:
    """Drop a palette item under the trigger and connect the trigger's way out to it."""
    top = canvas.box(canvas.node("trigger"))
    made = canvas.drop(kind, top["x"] + top["width"] / 2, top["y"] + top["height"] + 160)
    canvas.connect("trigger", None, made)
    return made


def save_and_activate(page, org, name: str, watcher) -> Workflow:
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url("**/edit/?saved=1")
    workflow = Workflow.objects.get(organization=org, name=name)
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".badge, .status").first).to_contain_text("Activ")
    workflow.refresh_from_db()
    assert workflow.status == "activated", say(watcher, workflow.status)
    return workflow


def test_deal_won_creates_a_project_built_by_mouse_from_the_records_group(wide_page, watch, live_server, org,  # noqa: F811
                                                                           owner, deal, shot):
    page = wide_page
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url=NEW)
    canvas = Canvas(page)
    page.locator("#wf-name").fill("Deal won → project")
    canvas.open("trigger")
    canvas.field("Starts when").select_option(label="Deal stage changes")
    canvas.field("To stage").select_option(label="Won")
    expect(canvas.node("trigger")).to_contain_text("Deal moves to Won")

    records = page.locator(".canvas-palette-group").filter(
        has=page.locator(".canvas-palette-title", has_text=re.compile(r"^Records$")))
    expect(records.locator(".canvas-palette-item")).to_have_text(RECORDS)
    project = below_the_trigger(canvas, "create_project")
    expect(page.locator("#node-panel .node-kind")).to_have_text("Create a project")
    canvas.field("Project name").fill("{{deal.title}}")
    canvas.field("Status").select_option(label="Active")
    expect(canvas.node(project)).to_contain_text("Create the project “{{deal.title}}” (active)")
    shot(page, "built", always=True)

    workflow = save_and_activate(page, org, "Deal won → project", watch)
    step = next(a for a in workflow.definition["actions"] if a["type"] == "create_project")
    assert step["config"]["name"] == "{{deal.title}}" and step["config"]["status"] == "active", say(watch, str(step))
    shot(page, "active", always=True)

    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    made = list(Project.objects.filter(organization=org).values_list("name", "deal_id", "contact_id", "status"))
    assert made == [("Website", deal.pk, deal.contact_id, "active")], made
    run = WorkflowRun.objects.get(workflow=workflow)
    assert run.status == "completed", (run.status, run.error)

    # The project's page links back to the deal that sold it.
    page.goto(record_url(live_server, "project", Project.objects.get(organization=org).pk))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Website")
    expect(page.locator("dl.fields").get_by_role("link", name="Website")).to_have_attribute(
        "href", f"/crm/automation/records/deal/{deal.pk}/")
    shot(page, "project-page", always=True)
    assert not watch.page_errors and not watch.console, say(watch, "script errors while building")


def test_a_visit_is_logged_on_a_project_by_hand_with_its_inputs(wide_page, watch, live_server, org, owner,  # noqa: F811
                                                                 contact, shot):
    page = wide_page
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url=NEW)
    canvas = Canvas(page)
    page.locator("#wf-name").fill("Log a visit")
    canvas.open("trigger")
    starts = canvas.field("Starts when")
    expect(starts.locator('option[value="manual_project"]')).to_have_text("Started by a person on a project")
    starts.select_option("manual_project")
    inputs = canvas.field("Inputs asked before it starts (JSON list, optional)")
    inputs.fill(json.dumps(VISIT_INPUTS, indent=2))
    expect(page.locator("#node-panel")).not_to_contain_text("Not valid JSON")

    note = below_the_trigger(canvas, "create_note")
    expect(page.locator("#node-panel .node-kind")).to_have_text("Add a note")
    body = canvas.field("Note")
    variables = body.locator("xpath=..").get_by_label("Insert a variable into the field above")
    for key in ("visited_on", "outcome"):  # the declared inputs are offered as variables
        expect(variables.locator(f'option[value="trigger.input.{key}"]')).to_have_count(1)
    body.fill("Visit {{trigger.input.visited_on}}: {{trigger.input.outcome}}")
    expect(canvas.node(note)).to_contain_text("Note: “Visit {{trigger.input.visited_on}}")
    shot(page, "built", always=True)
    workflow = save_and_activate(page, org, "Log a visit", watch)
    assert workflow.trigger_type == "manual_project", say(watch, workflow.trigger_type)
    assert workflow.definition["trigger_config"].get("inputs") == VISIT_INPUTS, say(watch, str(workflow.definition))

    site = Project.objects.create(organization=org, name="Roof at Ada's", contact=contact, owner=owner)
    page.goto(record_url(live_server, "project", site.pk))
    start = page.locator("section", has=page.get_by_role("heading", name="Run workflow…"))
    start.get_by_label("Workflow").select_option(label="Log a visit")
    with page.expect_navigation():
        start.get_by_role("button", name="Run it now").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Start “Log a visit”")
    visited = page.get_by_label("Visited on")
    outcome = page.get_by_label("Outcome")
    expect(visited).to_have_attribute("type", "date")
    expect(visited).to_have_value("")
    expect(outcome).to_have_value("on track")
    expect(outcome.locator("option")).to_have_text(["Choose…", "on track", "delayed"])
    shot(page, "inputs-asked", always=True)

    with page.expect_navigation():
        page.get_by_role("button", name="Start it now").click()
    expect(visited).to_have_attribute("aria-invalid", "true")
    visited_box = page.locator(".field").filter(has=visited)
    expect(visited_box.locator(".field-error")).to_contain_text("is required")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was started")
    expect(outcome).to_have_value("on track")  # what was chosen is kept
    assert not WorkflowRun.objects.filter(workflow=workflow).exists(), say(watch, "a run started without its date")
    shot(page, "date-missing", always=True)

    visited.fill("2026-03-14")
    with page.expect_navigation():
        page.get_by_role("button", name="Start it now").click()
    run = WorkflowRun.objects.get(workflow=workflow)
    assert page.url.endswith(f"/crm/automation/runs/{run.pk}/"), say(watch, page.url)
    expect(page.locator("body")).to_contain_text(f"Started “Log a visit” (run #{run.pk})")
    continue_runs(list(WorkflowRun.objects.filter(workflow=workflow).values_list("pk", flat=True)))
    notes = list(Note.objects.filter(organization=org).values_list("project_id", "body"))
    assert notes == [(site.pk, "Visit 2026-03-14: on track")], notes
    page.goto(f"{live_server.url}/crm/automation/runs/{run.pk}/")
    expect(page.locator(".run-summary")).to_contain_text("Completed")
    shot(page, "run-completed", always=True)
    assert not watch.page_errors and not refused_forms(watch.console), say(watch, "script errors")


def test_a_deals_own_fields_are_edited_on_its_page(page, watch, live_server, org, owner, deal, shot):  # noqa: F811
    CustomField.objects.create(organization=org, entity="deal", key="tier", label="Tier", kind="choice",
                               choices=["gold", "silver"], position=0)
    CustomField.objects.create(organization=org, entity="deal", key="budget", label="Budget", kind="money",
                               position=1)
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url=f"/crm/automation/records/deal/{deal.pk}/")
    fields = page.locator("dl.fields")
    expect(fields).to_contain_text("Tier")
    page.get_by_text("Edit your fields", exact=True).click()
    page.get_by_label("Tier").select_option("gold")
    budget = page.get_by_label("Budget")
    budget.press_sequentially("abc")
    expect(budget).to_have_value("")  # Chromium keeps letters out of a number input
    # What the browser takes but the server refuses: a budget with too many zeros.
    budget.press_sequentially("10000000000000000")
    shot(page, "typed")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()
    budget_box = page.locator(".field").filter(has=page.get_by_label("Budget"))
    expect(budget_box.locator(".field-error")).to_contain_text("Budget")
    expect(page.get_by_label("Budget")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Tier")).to_have_value("gold")  # what was typed is kept to fix
    assert Deal.objects.get(pk=deal.pk).custom == {}, say(watch, "saved although the budget was refused")
    shot(page, "refused", always=True)

    page.get_by_label("Budget").fill("1200.5")
    with page.expect_navigation():
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("body")).to_contain_text("Saved.")
    assert Deal.objects.get(pk=deal.pk).custom == {"tier": "gold", "budget": "1200.50"}, say(watch, "not saved")
    expect(fields.locator("dt", has_text="Budget").locator("xpath=following-sibling::dd[1]")).to_have_text("1200.50")
    expect(fields.locator("dt", has_text="Tier").locator("xpath=following-sibling::dd[1]")).to_have_text("gold")
    shot(page, "saved", always=True)
    assert not watch.page_errors and not refused_forms(watch.console), say(watch, "script errors")


def test_simulate_an_overdue_invoice_with_its_data_edited(page, watch, live_server, org, owner, contact,  # noqa: F811
                                                          shot):
    workflow = make_workflow(org, trigger_type="event:invoice.overdue", trigger_config={}, actions=[
        {"type": "send_email", "label": "Remind", "config": {
            "to": "{{trigger.contact.email}}", "subject": "Invoice {{trigger.invoice.number}} is overdue",
            "body": "x"}}])
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url=f"/crm/automation/workflows/{workflow.pk}/edit/")
    with page.expect_navigation():
        page.get_by_role("navigation", name=re.compile("^Pages of")).get_by_role("link", name="Simulate").click()
    record = page.get_by_label("Contact", exact=True)
    expect(record.locator("option")).to_contain_text(["Ada Lovelace (ada@example.com)"])
    record.select_option(label="Ada Lovelace (ada@example.com)")
    sample = page.get_by_label(re.compile(r"^The event's data"))
    data = json.loads(sample.input_value())
    assert set(data["invoice"]) >= {"number", "amount_due"}, say(watch, str(data))
    data["invoice"]["number"] = "INV-42"
    sample.fill(json.dumps(data, indent=2))
    shot(page, "sample")
    page.get_by_role("button", name="Simulate", exact=True).click()
    preview = page.locator(".simulation .preview-box")
    expect(preview).to_contain_text("Invoice INV-42 is overdue")
    expect(preview).to_contain_text("ada@example.com")
    expect(page.locator(".simulation")).to_contain_text("Nothing was sent and nothing changed.")
    shot(page, "simulated", always=True)

    data["invoice"]["amount_due"] = "lots"
    page.get_by_label(re.compile(r"^The event's data")).fill(json.dumps(data, indent=2))
    with page.expect_navigation():
        page.get_by_role("button", name="Simulate", exact=True).click()
    shot(page, "bad-amount", always=True)
    errors = page.locator("#simulate-errors")
    expect(errors).to_contain_text("data.invoice.amount_due")  # where in the data, as the webhook's 400 names it
    expect(errors).to_contain_text("is not a number")
    expect(page.locator(".simulation")).to_have_count(0)
    assert not watch.page_errors and not refused_forms(watch.console), say(watch, "script errors")
