"""Runs you can watch, in a real Chromium: the run's page draws the run on its graph and lights
up node by node as the run goes on, without a reload; the record's page follows its run the same
way; both stop asking once the run is over. Screenshots: VAR_DIR/screenshots/<test>/."""

import re

import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.crm.services import deal_move_to_stage
from tests.browser.conftest import PASSWORD, logged_in
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.conftest import drain, make_workflow, stage, time_passes
from tests.test_live_runs import BRANCHY, EDGES

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows


def node(page, node_id: str):
    return page.locator(f'#run-graph .react-flow__node[data-id="{node_id}"] .canvas-node')


def has(status: str):
    return re.compile(rf"\brun-{status}\b")


def test_the_run_page_lights_up_node_by_node_without_a_reload(page, watch, live_server, org, owner, deal,  # noqa: F811
                                                              shot):
    make_workflow(org, actions=BRANCHY, graph={"edges": EDGES})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get()
    watch.on(page)
    probes = []
    page.on("request", lambda request: probes.append(request.url) if "/crm/automation/live/" in request.url else None)
    logged_in(page, live_server, "owner", PASSWORD, next_url=f"/crm/automation/runs/{run.pk}/")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads

    expect(node(page, "wait")).to_have_class(has("waiting"))
    expect(node(page, "trigger")).to_have_class(has("completed"))
    expect(node(page, "big")).to_have_class(has("pending"))
    expect(node(page, "wait")).to_contain_text("Waiting")
    shot(page, "waiting", always=True)

    time_passes()
    sweep(fan_out=False)  # the wait is over: the run goes on in the worker
    expect(node(page, "thank")).to_have_class(has("completed"))
    expect(node(page, "big")).to_have_class(has("completed"))
    expect(node(page, "call")).to_have_class(has("off-path"))
    expect(page.locator(".run-summary")).to_contain_text("Completed")
    assert page.evaluate("window.sameDocument") is True, say(watch, "the page reloaded")
    page.locator('#run-graph .react-flow__node[data-id="thank"] .canvas-node-title').click()
    panel = page.locator("#run-node-panel")
    expect(panel).to_contain_text("Given (its settings for this run)")
    expect(panel.locator("dd").first).to_contain_text(f"Thank {deal.contact.first_name}")
    shot(page, "completed", always=True)

    # Over: no more asking.
    asked = len(probes)
    page.wait_for_timeout(2500)
    assert len(probes) == asked, say(watch, f"{len(probes) - asked} probes after the run was over")
    assert not watch.page_errors and not watch.console, say(watch, "script errors on the run's page")


def test_the_record_page_follows_its_run(page, watch, live_server, org, owner, deal, shot):  # noqa: F811
    make_workflow(org, actions=BRANCHY, graph={"edges": EDGES})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url=f"/crm/automation/records/deal/{deal.pk}/")
    page.evaluate("window.sameDocument = true")
    runs = page.locator("#record-runs")
    expect(runs.locator(".badge")).to_have_text("Waiting")
    time_passes()
    sweep(fan_out=False)
    expect(runs.locator(".badge")).to_have_text("Completed")
    assert page.evaluate("window.sameDocument") is True, say(watch, "the page reloaded")
    shot(page, "record-completed", always=True)
    assert not watch.page_errors and not watch.console, say(watch, "script errors on the record's page")


def test_the_run_history_updates_statuses_from_the_probe_alone(page, watch, live_server, org, owner, deal,  # noqa: F811
                                                                shot):
    make_workflow(org, actions=BRANCHY, graph={"edges": EDGES})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get()
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url="/crm/automation/")
    row = page.locator(f"#run-{run.pk}")
    expect(row.locator("summary .badge")).to_have_text("Waiting")
    row.locator("summary").click()  # its steps load when it is opened
    expect(row.locator(".steps")).to_contain_text("Give it a day")
    fetched = []
    page.on("request", lambda request: fetched.append(request.url))
    time_passes()
    sweep(fan_out=False)
    expect(row.locator("summary .badge")).to_have_text("Completed")
    expect(row.locator(".steps")).to_contain_text("Thank them")  # the open row's steps, loaded again
    pages = [url for url in fetched if "/live/" not in url and "fragment=1" not in url]
    assert pages == [], say(watch, f"the history fetched more than the probe and the open row: {pages}")
    shot(page, "history-completed", always=True)
    assert not watch.page_errors and not watch.console, say(watch, "script errors on the run history")


def test_an_approval_answered_elsewhere_leaves_the_inbox_by_itself(page, watch, live_server, org, owner,  # noqa: F811
                                                                   teammate, deal, shot):
    from crm_automation.automation.services.runs import run_answer
    from tests.test_live_debug import EDGES as ASKING_EDGES
    from tests.test_live_debug import FLOW as ASKING

    make_workflow(org, actions=ASKING, graph={"edges": ASKING_EDGES})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    time_passes()
    sweep(fan_out=False)  # past the wait: the question is asked
    run = WorkflowRun.objects.get()
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url="/crm/automation/approvals/")
    page.evaluate("window.sameDocument = true")
    card = page.locator("#approval-list .card")
    expect(card).to_have_count(1)
    expect(card).to_contain_text(f"Email {deal.title}?")
    run_answer(run_id=run.pk, by=owner, node_id="ask", decision="approved", comment="from another tab")
    expect(card).to_have_count(0)
    expect(page.locator("#approval-list")).to_contain_text("Nothing waits for your answer")
    assert page.evaluate("window.sameDocument") is True, say(watch, "the inbox reloaded")
    assert not watch.page_errors and not watch.console, say(watch, "script errors on the inbox")
