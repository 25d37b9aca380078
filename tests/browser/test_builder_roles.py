"""The builder for everyone who opens it, in a real Chromium: people who may change the workflow
get the editing controls; people who may only read it (a viewer, an ops member on a live
workflow, anyone on an archived one) get the flow with each step's settings in words and no
control to change it. No page throws a script error or logs one to the console (the read-only
page was once blank: builder.js attached a listener to a Save button it does not have).
"""

import re

import pytest
from playwright.sync_api import expect

from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.webhooks.services import webhook_target_create
from tests.browser.conftest import PASSWORD, logged_in, prefer_list_view
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.conftest import make_workflow

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows


@pytest.fixture(autouse=True)
def _list_view(request):
    """These tests use the builder's list view (conftest.prefer_list_view)."""
    for name in ("page", "phone_page"):
        if name in request.fixturenames:
            prefer_list_view(request.getfixturevalue(name))

TASK = {"type": "create_task", "label": "Kickoff call",
        "config": {"title": "Kick off {{deal.title}}", "assignee": "owner", "due_in_days": 2, "priority": "high"}}
WAIT = {"type": "wait", "label": "Give them time", "config": {"delayAmount": 1, "delayUnit": "days"}}
EMAIL = {"type": "send_email", "label": "Welcome mail", "config": {
    "to": "{{deal.contact.email}}", "subject": "Welcome aboard", "body": "Hi {{deal.contact.first_name}}"}}

LONG = ("The deal {{deal.title}} is won: thank everyone who worked on it, book the kickoff with the client's "
        "team, and make sure the handover notes reach the delivery team before the end of the week")
NOTE = {"type": "notify", "label": "Tell everyone", "config": {"title": LONG, "recipients": "members"}}
HOOK = {"type": "http_request", "label": "Tell billing", "config": {"target": "billing", "method": "PUT"}}


def workflow_in(org, status: str):
    webhook_target_create(organization=org, name="billing", url="https://billing.example.com/hooks", by=None)
    workflow = make_workflow(org, name=f"Onboarding ({status})", activate=status != "draft",
                             actions=[TASK, WAIT, EMAIL, NOTE, HOOK])
    if status == "archived":
        workflow = workflow_transition(workflow_id=workflow.pk, name="archive", by=None)
    return workflow


SAVE = re.compile(r"^Save (draft|changes)$")
# (who, the workflow's status, may they change it)
CASES = [
    ("owner", "activated", True),
    ("owner", "archived", False),
    ("teammate", "draft", True),
    ("teammate", "activated", False),
    ("viewer", "draft", False),
    ("viewer", "activated", False),
]


@pytest.mark.parametrize(("who", "status", "editable"), CASES, ids=[f"{w}-{s}" for w, s, _ in CASES])
def test_the_builder_shows_the_flow_to_every_role_without_a_script_error(
        request, page, watch, live_server, org, owner, teammate, viewer, who, status, editable, shot,  # noqa: F811
        settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["billing.example.com"]
    workflow = workflow_in(org, status)
    watch.on(page)
    url = f"/crm/automation/workflows/{workflow.pk}/edit/"
    logged_in(page, live_server, who, PASSWORD, next_url=url)
    assert page.url == f"{live_server.url}{url}", say(watch, page.url)

    trigger = page.locator("article.node-card.trigger")
    expect(trigger).to_contain_text("Deal moves to Won")
    cards = page.locator("article.node-card")
    expect(cards).to_have_count(6)  # the trigger and five steps, drawn in order
    task = cards.filter(has_text="Kickoff call")
    expect(task).to_contain_text("Create task “Kick off {{deal.title}}” for the record's owner, due in 2 days, "
                                 "high priority")
    expect(cards.filter(has_text="Give them time")).to_contain_text("Wait 1 day")
    expect(cards.filter(has_text="Welcome mail")).to_contain_text("Email {{deal.contact.email}}: “Welcome aboard”")
    expect(cards.filter(has_text="Tell billing")).to_contain_text("PUT to billing.example.com")  # the target's host
    # A long sentence is cut at a word, with an ellipsis; the whole of it is the tooltip.
    said = cards.filter(has_text="Tell everyone").locator(".node-summary")
    whole = f"Notify everyone in the organization: “{LONG}”"
    expect(said).to_have_attribute("title", whole)
    shown = said.inner_text()
    assert shown.endswith("…") and whole.startswith(shown[:-1]) and whole[len(shown) - 1] == " ", shown
    shot(page, f"{who}-{status}")

    if editable:
        expect(page.get_by_role("button", name=SAVE)).to_be_visible()
        expect(page.get_by_role("button", name="Edit Kickoff call")).to_be_visible()
        expect(page.locator("dl.node-settings")).to_have_count(0)
    else:
        expect(page.get_by_text("You can read this workflow but not change it")).to_be_visible()
        expect(page.get_by_role("button", name=SAVE)).to_have_count(0)
        expect(page.locator(".node-tools, select.add-step")).to_have_count(0)
        expect(page.locator("#flow").locator("input, select, textarea, button")).to_have_count(0)
        # Every setting, read back as text under its label.
        settings = task.locator("dl.node-settings")
        expect(settings.locator("dt", has_text="Task title")).to_be_visible()
        expect(settings.locator("dd", has_text="Kick off {{deal.title}}")).to_be_visible()
        expect(settings.locator("dt", has_text="Due in (days)")).to_be_visible()
        expect(settings.locator("dt", has_text="Assign to")).to_be_visible()
        expect(settings.locator("dd", has_text="High")).to_be_visible()
        mail = cards.filter(has_text="Welcome mail")
        body = mail.locator("dl.node-settings dd", has_text="Hi {{deal.contact.first_name}}")
        expect(body).to_be_visible()
        expect(trigger.locator("dl.node-settings dd", has_text="Won")).to_be_visible()
    assert not watch.page_errors and not watch.console, say(watch, f"{who} on a {status} workflow: script errors")
