"""The owner builds "Deal moves to Won → text the contact and wait for the reply → reply contains
yes → post to Slack" on the canvas by mouse, in a real Chromium; saves and activates it. A won
deal texts its contact (the test provider) and the run waits, holding nothing; the reply "Yes,
great work" wakes it, the condition says yes and the post reaches Slack (a local stand-in); the
run's page shows the reply and the run completed. Without a reply in time the run goes the No
way and its page says no reply came. Screenshots: VAR_DIR/screenshots/<test>/.
"""

import json

import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.crm.models import Contact, Deal, SmsMessage, SmsSettings
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.crm.sms import inbound
from crm_automation.webhooks.models import ChatChannel
from tests.browser.conftest import PASSWORD, logged_in
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.browser.test_canvas_builder import Canvas, wide_page  # noqa: F401 (the fixture)
from tests.browser.test_records_and_starts import below_the_trigger, save_and_activate
from tests.conftest import drain, stage, time_passes
from tests.http_receiver import Receiver

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows

NAME = "Won: ask, then tell Slack"
ASK = "Ask"  # the SMS step's name: later steps read its reply as {{Ask.reply}}
QUESTION = "Happy with the work? Reply YES or NO"
POST = "Happy client: {{deal.title}}"
PHONE = "+1 555 010 0100"


@pytest.fixture
def slack(settings, org):
    """A local stand-in for Slack's incoming webhook, and the organization's channel "wins" to it."""
    server = Receiver()
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the stand-in is local: allowed explicitly
    ChatChannel.objects.create(organization=org, name="wins", kind="slack",
                               webhook_url=f"http://127.0.0.1:{server.port}/services/T1/B1/secret-part")
    yield server
    server.close()


@pytest.fixture
def sms(org) -> SmsSettings:
    return SmsSettings.objects.create(organization=org, from_number="+15550009999", auth_token="test-token-123")


@pytest.fixture
def roof(org, owner) -> Deal:
    client = Contact.objects.create(organization=org, first_name="Ada", last_name="Lovelace", phone=PHONE)
    return Deal.objects.create(organization=org, title="Roof at Ada's", amount=8000, contact=client, owner=owner,
                               stage=stage(org, "proposal"))


def build(page, live_server, org, watcher, shot):
    """Deal moves to Won → Ask (SMS, waits up to a minute) → reply contains yes → Yes: post to Slack."""
    logged_in(page, live_server, "owner", PASSWORD, next_url="/crm/automation/workflows/new/")
    canvas = Canvas(page)
    page.locator("#wf-name").fill(NAME)
    canvas.open("trigger")
    canvas.field("Starts when").select_option(label="Deal stage changes")
    canvas.field("To stage").select_option(label="Won")
    expect(canvas.node("trigger")).to_contain_text("Deal moves to Won")

    ask = below_the_trigger(canvas, "send_sms")
    expect(page.locator("#node-panel .node-kind")).to_have_text("Send an SMS")
    canvas.field("Name of this step").fill(ASK)
    to = canvas.field("To (a phone number)")
    expect(to).to_have_value("{{deal.contact.phone}}")  # a deal's contact, offered for a deal's trigger
    to.fill("{{deal.contact.phone}}")
    canvas.field("Message").fill(QUESTION)
    expect(page.locator("#node-panel [data-sms-length]")).to_have_text("36 characters, 1 SMS (GSM-7)")
    page.locator("#node-panel").get_by_label("Wait for the reply", exact=False).check()
    hint = page.locator("#node-panel label.tick")
    expect(hint).to_contain_text("{{Ask.reply}}")
    wait = canvas.field("Wait up to (hours)")
    expect(wait).to_have_value("48")
    wait.fill("0.0167")
    expect(canvas.node(ask)).to_contain_text("then wait up to 0.0167 h for the reply")

    low = canvas.box(canvas.node(ask))
    x, y = low["x"] + low["width"] / 2, low["y"] + low["height"] + 140
    check = canvas.drop("condition", x, y)
    canvas.connect(ask, None, check)
    post = canvas.drop("post_slack", x - 140, y + 220)
    canvas.connect(check, "condition-true", post)

    canvas.open(post)
    canvas.field("Name of this step").fill("Tell the team")
    channel = canvas.field("Channel")
    expect(channel.locator('option[value="wins"]')).to_have_text("wins (Slack)")
    channel.select_option("wins")
    canvas.field("Message").fill(POST)
    expect(canvas.node(post)).to_contain_text("Post to Slack wins: “Happy client: {{deal.title}}”")

    canvas.open(check)
    canvas.field("Name of this step").fill("Said yes")
    panel = page.locator("#node-panel")
    field = panel.get_by_label("Field of condition 1")  # a new condition starts with one rule
    shot(page, "condition-fields", always=True)
    # What a person expects: the SMS step before it offers its reply to test, as its variables are offered.
    offered = field.locator("option").all_text_contents()
    assert field.locator(f'option[value="{ASK}.reply"]').count() == 1, say(
        watcher, f"the condition's field select does not offer the SMS step's reply ({ASK}.reply); it offers "
                 f"{offered}")
    field.select_option(f"{ASK}.reply")
    panel.get_by_label("Operator of condition 1").select_option("contains")
    panel.get_by_label("Value of condition 1").fill("yes")
    expect(canvas.node(check)).to_contain_text("Ask › Reply contains \"yes\"")
    shot(page, "built", always=True)

    workflow = save_and_activate(page, org, NAME, watcher)
    steps = {a["type"]: a for a in workflow.definition["actions"]}
    sms_config = steps["send_sms"]["config"]
    assert sms_config["to"] == "{{deal.contact.phone}}" and sms_config["body"] == QUESTION, say(watcher, str(steps))
    assert sms_config["wait_for_reply"] is True and float(sms_config["reply_timeout_hours"]) == 0.0167, say(
        watcher, str(sms_config))
    assert steps["condition"]["config"]["rules"] == [{"field": "Ask.reply", "operator": "contains", "value": "yes"}], \
        say(watcher, str(steps["condition"]))
    assert steps["post_slack"]["config"]["channel"] == "wins", say(watcher, str(steps["post_slack"]))
    shot(page, "active", always=True)
    return workflow, {"ask": ask, "check": check, "post": post}


def won_and_asked(org, deal: Deal, workflow) -> WorkflowRun:
    """The deal moves to Won: the contact is texted and the run waits for the reply."""
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    message = SmsMessage.objects.get(organization=org)
    assert (message.to, message.body, message.status) == ("+15550100100", QUESTION, "sent"), message
    run = WorkflowRun.objects.get(workflow=workflow)
    step = WorkflowRunAction.objects.get(run=run, node_id__in=workflow_node_ids(workflow, "send_sms"))
    assert run.status == "waiting" and step.status == "waiting", (run.status, step.status, run.error)
    return run


def workflow_node_ids(workflow, kind: str) -> list[str]:
    return [a["id"] for a in workflow.definition["actions"] if a["type"] == kind]


def test_a_yes_by_sms_is_posted_to_slack(wide_page, watch, live_server, org, owner, sms, roof, slack,  # noqa: F811
                                         shot):
    page = wide_page
    watch.on(page)
    workflow, ids = build(page, live_server, org, watch, shot)
    run = won_and_asked(org, roof, workflow)
    assert not slack.requests, slack.requests

    inbound.receive(sms, {"MessageSid": "SMreply1", "From": "+15550100100", "Body": "Yes, great work"})
    run.refresh_from_db()
    assert run.status == "started", run.status  # woken by the reply
    continue_runs([run.pk])
    run.refresh_from_db()
    assert run.status == "completed", (run.status, run.error)
    assert [r["path"] for r in slack.requests] == ["/services/T1/B1/secret-part"], slack.requests
    posted = json.loads(slack.requests[0]["body"])
    assert "Happy client: Roof at Ada's" in posted["text"], posted
    check = WorkflowRunAction.objects.get(run=run, node_id=ids["check"])
    assert check.result.get("passed") is True, check.result

    page.goto(f"{live_server.url}/crm/automation/runs/{run.pk}/")
    expect(page.locator(".run-summary")).to_contain_text("Completed")
    steps = page.locator(".step-list")
    expect(steps).to_contain_text(f"texted +15550100100: “{QUESTION}”")
    expect(steps).to_contain_text("they replied “Yes, great work”")
    expect(steps).to_contain_text("posted to Slack wins")
    shot(page, "run-completed", always=True)
    assert not watch.page_errors and not watch.console, say(watch, "script errors")


def test_no_reply_in_time_goes_the_no_way(wide_page, watch, live_server, org, owner, sms, roof, slack,  # noqa: F811
                                          shot):
    page = wide_page
    watch.on(page)
    workflow, ids = build(page, live_server, org, watch, shot)
    run = won_and_asked(org, roof, workflow)

    time_passes()  # the minute is over
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed", (run.status, run.error)
    ask = WorkflowRunAction.objects.get(run=run, node_id=ids["ask"])
    assert ask.result.get("timed_out") is True, ask.result
    check = WorkflowRunAction.objects.get(run=run, node_id=ids["check"])
    assert check.result.get("passed") is False, check.result
    assert not WorkflowRunAction.objects.filter(run=run, node_id=ids["post"]).exists()
    assert not slack.requests, slack.requests

    page.goto(f"{live_server.url}/crm/automation/runs/{run.pk}/")
    expect(page.locator(".run-summary")).to_contain_text("Completed")
    steps = page.locator(".step-list")
    expect(steps).to_contain_text("; no reply (")  # words.py: "no reply (<why>)"; send_sms.py says why
    expect(steps).to_contain_text("came in time)")
    expect(steps.locator(".step", has_text="Said yes")).to_contain_text("— no (")
    expect(steps).not_to_contain_text("posted to Slack")
    shot(page, "run-no-reply", always=True)
    assert not watch.page_errors and not watch.console, say(watch, "script errors")
