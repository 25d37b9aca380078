"""Live Debug in a real Chromium, by mouse: from the canvas, find a deal by name, press Debug; the
steps light up one after another, the walk stops at the wait until it is fast-forwarded and at
the question until it is answered, each intercepted effect is listed, and the database is the
same afterwards (no task, no email, no field changed, no event). Screenshots of each step."""

import re

import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.crm.models import Deal, EmailMessage, Task
from tests.browser.conftest import PASSWORD, logged_in
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.browser.test_canvas_builder import wide_page  # noqa: F401 (the fixture)
from tests.conftest import make_workflow
from tests.test_live_debug import EDGES, FLOW

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows


def world() -> tuple:
    # (The debug run keeps the event it pretends came in, processed already: no other.)
    return (Task.objects.count(), EmailMessage.objects.count(), AutomationEvent.objects.exclude(
            runs__simulated=True).count(),
            list(Deal.objects.order_by("pk").values_list("pk", "probability", "stage_id", "updated_at")))


def lit(page, node_id: str, status: str):
    return expect(page.locator(f'.react-flow__node[data-id="{node_id}"] .canvas-node')).to_have_class(
        re.compile(rf"\brun-{status}\b"))


def test_live_debug_lights_up_the_path_fast_forwards_the_wait_and_changes_nothing(
        wide_page, watch, live_server, org, owner, deal, shot):  # noqa: F811
    page = wide_page
    workflow = make_workflow(org, actions=FLOW, graph={"edges": EDGES})
    before = world()
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url=f"/crm/automation/workflows/{workflow.pk}/edit/")
    page.get_by_role("button", name="Debug", exact=True).click()
    panel = page.locator("#node-panel")
    panel.get_by_role("searchbox").fill(deal.title[:4])
    panel.locator(f'[data-record="{deal.pk}"]').click()
    expect(panel).to_contain_text(f"On: {deal.title}")
    expect(panel).not_to_contain_text("null")  # no AI provider here: no model choice, nothing in its place
    panel.get_by_role("button", name="Debug", exact=True).click()

    lit(page, "first-task", "completed")
    lit(page, "pause", "waiting")
    lit(page, "ask", "pending")
    expect(panel.locator(".debug-log")).to_contain_text("would create task")
    shot(page, "stopped-at-the-wait", always=True)

    panel.get_by_role("button", name="Fast-forward the wait").click()
    lit(page, "pause", "completed")
    lit(page, "ask", "waiting")
    expect(panel.locator(".debug-stop")).to_contain_text(f"Email {deal.title}?")
    shot(page, "stopped-at-the-question", always=True)

    panel.get_by_role("button", name="Approve").click()
    lit(page, "mail", "completed")
    lit(page, "raise", "completed")
    log = panel.locator(".debug-log")
    expect(log.locator("li")).to_have_count(5)
    expect(log).to_contain_text(f"About {deal.title}")  # the email it would send…
    expect(log).to_contain_text("would email")  # …intercepted: shown, not sent
    expect(log).to_contain_text("80")  # the field change it would make
    expect(panel).to_contain_text("Done (completed)")
    shot(page, "debugged", always=True)

    assert world() == before, say(watch, "the debug changed the database")
    run = WorkflowRun.objects.get()
    assert run.simulated and run.metadata["debug"] and run.status == "completed"
    panel.get_by_role("button", name="Close debug").click()
    expect(page.locator(".canvas-node.run-completed")).to_have_count(0)
    assert not watch.page_errors and not watch.console, say(watch, "script errors while debugging")
