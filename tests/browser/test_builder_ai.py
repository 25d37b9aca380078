"""The builder's AI steps in a real Chromium: an AI router's routes are branches drawn side by side,
each with its own "+ Add a step"; routes are added, renamed and removed (the steps of a removed
route go, the routes after it keep their steps); the draft saves without an AI provider, and the
branches come back after a reload. Screenshots in VAR_DIR/screenshots/<test>/."""

import re

import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import Workflow
from tests.browser.conftest import prefer_list_view
from tests.browser.test_automation_pages import LIST, Watcher, add_step, field_box, open_list, say
from tests.drafts import draft_actions

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows


@pytest.fixture(autouse=True)
def _list_view(request):
    """These tests use the builder's list view (conftest.prefer_list_view)."""
    for name in ("page", "phone_page"):
        if name in request.fixturenames:
            prefer_list_view(request.getfixturevalue(name))
NOT_SET_UP = "AI is not set up on this server: set AI_PROVIDER, AI_MODEL and AI_API_KEY"


@pytest.fixture
def watch():
    watcher = Watcher()
    yield watcher
    seen = watcher.report()
    if seen:
        print("What the browser saw:\n" + seen)


@pytest.fixture
def no_ai(settings):
    settings.AI = {**settings.AI, "PROVIDER": "", "MODEL": "", "API_KEY": "", "BASE_URL": ""}


def card(page, label: str):
    return page.locator("article.node-card").filter(has=page.get_by_role("heading", name=label, exact=True))


def branch(page, handle: str):
    return page.locator(f'.branch[data-handle="{handle}"]')


def test_the_builder_sorts_deals_by_an_ai_router_into_branches_saves_and_reloads(page, watch, live_server, org,
                                                                                   owner, no_ai, shot):
    open_list(page, live_server, owner, watch)
    with page.expect_navigation():
        page.get_by_role("link", name="New workflow").click()
    page.get_by_label("Name", exact=True).fill("Sorted by mood")
    page.get_by_role("button", name="Edit the trigger").click()
    page.get_by_label("To stage").select_option(label="Won")

    # "+ Add a step" has an AI group with the agent and the router.
    adder = page.get_by_label("Add a step after the trigger")
    expect(adder.locator('optgroup[label="AI"] option')).to_have_text(["AI agent", "AI router"])
    add_step(page, "Add a step after the trigger", "AI router")
    router = card(page, "AI router")
    expect(router).to_contain_text(NOT_SET_UP)  # the draft can still be built and saved
    prompt = page.get_by_label("Classification prompt", exact=True)
    prompt.fill("Is the deal ")
    field_box(page, "Classification prompt").get_by_label("Insert a variable into the field above").select_option(
        "deal.title")
    expect(prompt).to_have_value("Is the deal {{deal.title}}")
    prompt.press("End")
    prompt.type(" going well?")

    # Two routes to start with, each a branch; renamed, the branch's heading follows.
    expect(page.locator(".branch-label")).to_have_text(["positive", "negative"])
    page.get_by_label("Route 1", exact=True).fill("happy")
    page.get_by_label("Route 2", exact=True).fill("unhappy")
    expect(page.locator(".branch-label")).to_have_text(["happy", "unhappy"])
    page.get_by_role("button", name="Add a route").click()
    page.get_by_label("Route 3", exact=True).fill("unsure")
    expect(page.locator(".branch-label")).to_have_text(["happy", "unhappy", "unsure"])
    shot(page, "router-with-three-routes")

    add_step(page, "Add a step after AI router (route-1: unhappy)", "Create a task")
    page.get_by_label("Task title", exact=True).fill("Call them about {{deal.title}}")
    add_step(page, "Add a step after AI router (route-2: unsure)", "Create a task")
    title = page.get_by_label("Task title", exact=True)
    title.fill("Check: ")
    # After a router, the picker offers what it decided and why.
    picker = field_box(page, "Task title").get_by_label("Insert a variable into the field above")
    expect(picker.locator("option", has_text="{{AI router.reason}}")).to_have_count(1)
    picker.select_option("AI router.route")
    expect(title).to_have_value("Check: {{AI router.route}}")
    expect(branch(page, "route-1")).to_contain_text("Call them about")
    expect(branch(page, "route-2")).to_contain_text("Check: {{AI router.route}}")
    shot(page, "a-task-in-two-branches")

    # The "unhappy" route goes, with its step; "unsure" moves up to route-1 and keeps its step.
    router.get_by_role("button", name="Edit AI router").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Remove route 2 (unhappy)").click()
    expect(page.locator(".branch-label")).to_have_text(["happy", "unsure"])
    expect(branch(page, "route-1")).to_contain_text("Check: {{AI router.route}}")
    expect(page.get_by_text("Call them about")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("^Remove route"))).to_have_count(2)
    expect(page.get_by_role("button", name="Remove route 1 (happy)")).to_be_disabled()  # two is the least

    add_step(page, "Add a step after AI router (route-0: happy)", "Create a task")
    page.get_by_label("Task title", exact=True).fill("Ask for a review")

    # An AI agent between the router and that task: a JSON answer whose fields the task reads.
    add_step(page, "Add a step between AI router and Create task (route-0: happy)", "AI agent")
    agent = card(page, "AI agent")
    expect(agent).to_contain_text(NOT_SET_UP)
    page.get_by_label("Prompt", exact=True).fill("Write a one-line review request for {{deal.title}}")
    page.get_by_label("Output format", exact=True).select_option(label="JSON object")
    page.get_by_label("Max tokens", exact=True).fill("300")
    expect(agent).to_contain_text("Ask the model for a JSON object: “Write a one-line review request")
    shot(page, "agent-json")
    card(page, "Create task").get_by_role("button", name="Edit Create task").click()
    picker = field_box(page, "Task title").get_by_label("Insert a variable into the field above")
    expect(picker.locator("option", has_text="{{AI agent")).to_have_text(["AI agent — {{AI agent}}",
                                                                         "AI agent › <field> — {{AI agent.<field>}}"])
    page.get_by_label("Task title", exact=True).fill("Ask for a review: {{AI agent.request}}")
    shot(page, "routes-happy-and-unsure")

    # A route's label used twice: the save is refused, the error is at that route's input.
    card(page, "AI router").get_by_role("button", name="Edit AI router").click()
    page.get_by_label("Route 2", exact=True).fill("Happy")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_role("status").filter(has_text="Not saved")).to_be_visible()
    route = page.get_by_label("Route 2", exact=True)
    expect(route).to_have_attribute("aria-invalid", "true")
    expect(field_box(page, "Route 2").locator(".field-error")).to_contain_text("“Happy” is the label of another route")
    assert not Workflow.objects.exists()
    shot(page, "route-label-error")
    route.fill("unsure")

    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url(re.compile(r"/crm/automation/workflows/\d+/edit/"))
    workflow = Workflow.objects.get(name="Sorted by mood")
    assert workflow.status == "draft"
    page.reload()
    expect(page.locator(".branch-label")).to_have_text(["happy", "unsure"])
    expect(branch(page, "route-0")).to_contain_text("Ask for a review: {{AI agent.request}}")
    expect(branch(page, "route-0")).to_contain_text("Ask the model for a JSON object")
    expect(branch(page, "route-1")).to_contain_text("Check: {{AI router.route}}")
    expect(card(page, "AI router")).to_contain_text("Let the model choose: happy / unsure")
    expect(card(page, "AI router")).to_contain_text(NOT_SET_UP)
    assert page.url.startswith(f"{live_server.url}{LIST}workflows/{workflow.pk}/edit/"), page.url
    shot(page, "reloaded")

    actions = {a.node_id: a for a in draft_actions(workflow)}
    router_node = next(node for node, a in actions.items() if a.action_type == "router")
    assert actions[router_node].config == {"classificationPrompt": "Is the deal {{deal.title}} going well?", "routes": [
        {"id": "route-0", "label": "happy"}, {"id": "route-1", "label": "unsure"}]}
    agent_node = next(node for node, a in actions.items() if a.action_type == "agent")
    assert actions[agent_node].config == {"additionalPrompt": "Write a one-line review request for {{deal.title}}",
                                          "outputFormat": "json", "maxTokens": 300}
    edges = {(e["source"], e.get("sourceHandle")): e["target"] for e in workflow.definition["graph"]["edges"]}
    assert edges[(router_node, "route-0")] == agent_node
    assert actions[edges[(agent_node, None)]].config["title"] == "Ask for a review: {{AI agent.request}}"
    assert actions[edges[(router_node, "route-1")]].config["title"] == "Check: {{AI router.route}}"
    assert len(actions) == 4, "the removed route's task is gone"
    assert not watch.page_errors, say(watch, "script errors")
