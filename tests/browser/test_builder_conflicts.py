"""Two people editing one workflow in the builder at once, in a real Chromium (two browser
contexts, each with its page: two tabs of two people). The second save is refused as stale; the
page says who saved meanwhile and when, lists what they changed, and offers to keep this
person's changes on top of theirs (asking, for what both changed, whose to keep) or to discard
them. Nothing typed is lost until the person chooses."""

import re

import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.versions import workflow_document
from tests.browser.conftest import DESKTOP, LIST_VIEW, PASSWORD, TIMEOUT_MS, logged_in, prefer_list_view
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.conftest import make_workflow
from tests.drafts import draft_action, draft_actions

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows


@pytest.fixture(autouse=True)
def _list_view(request):
    """These tests use the builder's list view (conftest.prefer_list_view)."""
    for name in ("page", "phone_page"):
        if name in request.fixturenames:
            prefer_list_view(request.getfixturevalue(name))

TASK = {"id": "kickoff", "type": "create_task", "label": "Kickoff call",
        "config": {"title": "Kick off {{deal.title}}", "assignee": "owner"}}
WAIT = {"id": "pause", "type": "wait", "label": "Give them time", "config": {"delayAmount": 1, "delayUnit": "days"}}
EMAIL = {"id": "welcome", "type": "send_email", "label": "Welcome mail",
         "config": {"to": "{{deal.contact.email}}", "subject": "Welcome aboard", "body": "Hi"}}
SAVE = re.compile(r"^Save (draft|changes)$")


def unexpected(console: list[str]) -> list[str]:
    """Console errors other than Chromium's note of the refused save itself (a 409 answer)."""
    return [line for line in console if "status of 409" not in line]


@pytest.fixture
def two_tabs(browser, live_server, watch):  # noqa: F811
    """open(username, path): a page of its own browser context (its own login), watched."""
    contexts = []

    def open_as(username: str, path: str):
        context = browser.new_context(viewport=DESKTOP)
        context.add_init_script(LIST_VIEW)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = watch.on(context.new_page())
        logged_in(page, live_server, username, PASSWORD, next_url=path)
        assert page.url == f"{live_server.url}{path}", say(watch, page.url)
        return page

    yield open_as
    for context in contexts:
        context.close()


def edit(page, step: str, label: str, value: str) -> None:
    """Open the step's form (if closed) and type `value` into the input labelled `label`."""
    opener = page.get_by_role("button", name=f"Edit {step}")
    if opener.count():
        opener.click()
    page.get_by_label(label, exact=True).fill(value)


def save(page):
    page.get_by_role("button", name=SAVE).click()


def card(page, label: str):
    return page.locator("article.node-card").filter(has=page.get_by_role("heading", name=label, exact=True))


def test_two_people_save_the_same_workflow_and_the_second_keeps_theirs_and_hers(
        two_tabs, watch, live_server, org, owner, teammate, shot):  # noqa: F811
    workflow = make_workflow(org, name="Onboarding", activate=False, actions=[TASK, WAIT, EMAIL])
    path = f"/crm/automation/workflows/{workflow.pk}/edit/"
    theirs, mine = two_tabs("teammate", path), two_tabs("owner", path)

    # The teammate changes the task's title and the wait, renames the wait, and saves first.
    edit(theirs, "Kickoff call", "Task title", "Call {{deal.title}}")
    edit(theirs, "Give them time", "Wait for", "2")
    theirs.get_by_label("Name of this step", exact=True).fill("Two days")
    save(theirs)
    expect(theirs.get_by_role("status")).to_contain_text("Saved the draft")

    # The owner, on the page opened before, changes the same title and the email's subject.
    edit(mine, "Kickoff call", "Task title", "Meet {{deal.title}}")
    edit(mine, "Welcome mail", "Subject", "Hello there")
    save(mine)
    panel = mine.locator("#builder-conflict")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading", level=2)).to_have_text("teammate saved this workflow while you were editing it")
    expect(panel).to_contain_text(re.compile(r"They saved it on \d+ \w+ \d{4}, \d\d:\d\d:\d\d"))
    changes = panel.locator(".conflict-changes li")
    expect(changes.filter(has_text="Changed “Kickoff call” (Create a task): task title “Kick off {{deal.title}}” "
                                   "→ “Call {{deal.title}}”")).to_have_count(1)
    expect(changes.filter(has_text="Changed “Two days” (Wait): renamed from “Give them time” to “Two days”; "
                                   "wait for 1 → 2")).to_have_count(1)
    expect(changes).to_have_count(2)
    # Both changed the task's title: the page asks whose to keep (theirs or mine, mine first).
    choice = panel.locator(".conflict-choice")
    expect(choice).to_have_count(1)
    expect(choice).to_contain_text("“Kickoff call” (Create a task), task title")
    expect(choice.get_by_label("Keep mine: “Meet {{deal.title}}”")).to_be_checked()
    expect(choice.get_by_label("Use teammate's: “Call {{deal.title}}”")).not_to_be_checked()
    # Nothing typed is lost meanwhile: the owner's edits are still on the page.
    expect(card(mine, "Welcome mail")).to_contain_text("Hello there")
    shot(mine, "conflict")

    panel.get_by_role("button", name="Keep my changes").click()
    expect(mine.get_by_role("status")).to_contain_text("Saved the draft")
    expect(panel).to_be_hidden()
    expect(card(mine, "Two days")).to_contain_text("Wait 2 days")  # theirs, now on this page too
    shot(mine, "kept")
    saved = Workflow.objects.get(pk=workflow.pk)
    configs = {a.node_id: (a.label, a.config) for a in draft_actions(saved)}
    assert configs["kickoff"][1]["title"] == "Meet {{deal.title}}"  # mine, where both changed it
    assert configs["welcome"][1]["subject"] == "Hello there"  # mine
    assert configs["pause"] == ("Two days", {"delayAmount": 2, "delayUnit": "days"})  # theirs
    assert saved.edited_by == owner

    # Now the teammate's page is the stale one: this time the person takes the other's title
    # where both changed it, and keeps their own other change.
    edit(theirs, "Kickoff call", "Task title", "Ring {{deal.title}}")
    edit(theirs, "Two days", "Wait for", "3")
    save(theirs)
    panel = theirs.locator("#builder-conflict")
    expect(panel.get_by_role("heading", level=2)).to_have_text("Olive saved this workflow while you were editing it")
    changed = panel.locator(".conflict-changes li")
    expect(changed.filter(has_text="subject “Welcome aboard” → “Hello there”")).to_have_count(1)
    panel.get_by_label("Use Olive's: “Meet {{deal.title}}”").check()
    panel.get_by_role("button", name="Keep my changes").click()
    expect(theirs.get_by_role("status")).to_contain_text("Saved the draft")
    saved = Workflow.objects.get(pk=workflow.pk)
    configs = {a.node_id: a.config for a in draft_actions(saved)}
    assert configs["kickoff"]["title"] == "Meet {{deal.title}}" and configs["pause"]["delayAmount"] == 3
    assert configs["welcome"]["subject"] == "Hello there"
    assert not watch.page_errors and not unexpected(watch.console), say(watch, "script errors")


def test_discarding_ones_changes_shows_the_saved_workflow_and_saves_nothing(
        two_tabs, watch, live_server, org, owner, teammate, shot):  # noqa: F811
    workflow = make_workflow(org, name="Onboarding", activate=False, actions=[TASK, WAIT, EMAIL])
    path = f"/crm/automation/workflows/{workflow.pk}/edit/"
    theirs, mine = two_tabs("teammate", path), two_tabs("owner", path)

    # They add a step after the email and rename the workflow.
    theirs.get_by_label("Add a step after Welcome mail").select_option(label="Wait")
    theirs.get_by_label("Name", exact=True).fill("Onboarding, with a pause")
    save(theirs)
    expect(theirs.get_by_role("status")).to_contain_text("Saved the draft")
    revision = Workflow.objects.get(pk=workflow.pk).draft_revision

    mine.get_by_role("button", name="Remove Give them time").click()
    save(mine)
    panel = mine.locator("#builder-conflict")
    changes = panel.locator(".conflict-changes li")
    renamed = "Renamed the workflow from “Onboarding” to “Onboarding, with a pause”"
    expect(changes.filter(has_text=renamed)).to_have_count(1)
    expect(changes.filter(has_text="Added “Wait” (Wait): Wait 1 day")).to_have_count(1)
    expect(panel).to_contain_text("None of their changes touch yours")
    expect(card(mine, "Give them time")).to_have_count(0)  # the removal is still on this page
    panel.get_by_role("button", name="Discard mine").click()
    expect(panel).to_be_hidden()
    expect(mine.get_by_role("status")).to_contain_text("Your changes were discarded")
    expect(card(mine, "Give them time")).to_have_count(1)
    expect(card(mine, "Wait")).to_contain_text("Wait 1 day")
    expect(mine.get_by_label("Name", exact=True)).to_have_value("Onboarding, with a pause")
    shot(mine, "discarded")
    saved = Workflow.objects.get(pk=workflow.pk)
    assert saved.draft_revision == revision and len(draft_actions(saved)) == 4  # nothing was saved

    # The page now stands on the saved revision: its next save goes through.
    edit(mine, "Welcome mail", "Subject", "Hello there")
    save(mine)
    expect(mine.get_by_role("status")).to_contain_text("Saved the draft")
    assert draft_action(workflow, node_id="welcome").config["subject"] == "Hello there"
    assert not watch.page_errors and not unexpected(watch.console), say(watch, "script errors")


def test_both_adding_a_step_at_the_same_place_keeps_both_steps(two_tabs, watch, live_server, org, owner, teammate):  # noqa: F811
    workflow = make_workflow(org, name="Onboarding", activate=False, actions=[TASK, WAIT, EMAIL])
    path = f"/crm/automation/workflows/{workflow.pk}/edit/"
    theirs, mine = two_tabs("teammate", path), two_tabs("owner", path)
    theirs.get_by_label("Add a step after Welcome mail").select_option(label="Create a task")
    theirs.get_by_label("Task title", exact=True).fill("Their task")
    save(theirs)
    expect(theirs.get_by_role("status")).to_contain_text("Saved the draft")
    mine.get_by_label("Add a step after Welcome mail").select_option(label="Create a task")
    mine.get_by_label("Task title", exact=True).fill("My task")
    save(mine)
    panel = mine.locator("#builder-conflict")
    expect(panel).to_contain_text("You both added steps after “Welcome mail”: theirs come first, then yours.")
    panel.get_by_role("button", name="Keep my changes").click()
    expect(mine.get_by_role("status")).to_contain_text("Saved the draft")
    saved = Workflow.objects.get(pk=workflow.pk)
    titles = [a.config.get("title") for a in draft_actions(saved) if a.action_type == "create_task"]
    assert sorted(titles) == ["Kick off {{deal.title}}", "My task", "Their task"]
    labels = {a.label: a.node_id for a in draft_actions(saved)}
    edges = {(e["source"], e["target"]) for e in workflow_document(saved)["edges"]}
    # Theirs first, then mine (whose name was taken: it became “Create task 2”).
    assert {("welcome", labels["Create task"]), (labels["Create task"], labels["Create task 2"])} <= edges
    assert not watch.page_errors and not unexpected(watch.console), say(watch, "script errors")
