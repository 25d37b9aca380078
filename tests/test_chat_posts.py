"""Slack and Teams posts: a workflow posts to one of the organization's channels (an incoming
webhook or, for Slack, a bot token and a channel); the URL and token are the channel's, encrypted,
never in a workflow or a delivery's record; each try is recorded, a refusal fails the step and the
error policy retries it under the same key."""

import json

import pytest
from django.core.exceptions import ValidationError

from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.webhooks.models import ChatChannel, WebhookAttempt, WebhookDelivery
from tests.conftest import drain, make_workflow
from tests.http_receiver import Receiver


def deal_won(org, owner):
    from crm_automation.crm.models import Deal, Stage
    from crm_automation.crm.services import deal_move_to_stage
    deal = Deal.objects.create(organization=org, title="Website", amount=12000, owner=owner,
                               stage=Stage.objects.get(organization=org, slug="new"))
    deal_move_to_stage(deal=deal, stage=Stage.objects.get(organization=org, slug="won"))
    drain()
    return deal


POST = [{"id": "post", "type": "post_slack", "label": "Tell sales", "config": {
    "channel": "sales-wins", "title": "Won", "text": "{{deal.title}} is won ({{deal.amount}})"}}]


@pytest.fixture
def receiver(settings):
    server = Receiver()
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the stand-in is local: allowed explicitly
    settings.SLACK_API_BASE = f"http://127.0.0.1:{server.port}"
    yield server
    server.close()


def channel(org, receiver, kind="slack", **values) -> ChatChannel:
    values.setdefault("webhook_url", f"http://127.0.0.1:{receiver.port}/services/T1/B1/secret-part")
    return ChatChannel.objects.create(organization=org, name="sales-wins" if kind == "slack" else "ops", kind=kind,
                                      **values)


def test_a_won_deal_is_posted_to_slack_through_its_incoming_webhook(org, owner, receiver):
    made = channel(org, receiver, username="CRM")
    make_workflow(org, actions=POST)
    deal_won(org, owner)
    request = receiver.requests[0]
    assert request["path"] == "/services/T1/B1/secret-part"
    assert json.loads(request["body"]) == {"text": "*Won*\nWebsite is won (12000.00)", "username": "CRM"}
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "succeeded" and delivery.channel == made
    assert "secret-part" not in delivery.url and "secret-part" not in json.dumps(
        WorkflowRunAction.objects.get(node_id="post").result)
    assert WebhookAttempt.objects.get().succeeded
    stored = ChatChannel.objects.filter(pk=made.pk).values_list("webhook_url", flat=True)
    assert made.webhook_url.endswith("secret-part")  # read back decrypted …
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_url FROM webhooks_chatchannel WHERE id = %s", [made.pk])
        assert "secret-part" not in cursor.fetchone()[0]  # … and encrypted at rest
    assert list(stored)


def test_a_slack_bot_posts_with_its_token_and_a_refusal_fails_the_step(org, owner, receiver):
    channel(org, receiver, webhook_url="", bot_token="xoxb-123", slack_channel="C0123")
    make_workflow(org, actions=POST)
    receiver.reply(200, {"ok": False, "error": "channel_not_found"})
    deal_won(org, owner)
    request = receiver.requests[0]
    assert request["path"] == "/api/chat.postMessage" and request["headers"]["authorization"] == "Bearer xoxb-123"
    assert json.loads(request["body"])["channel"] == "C0123"
    run = WorkflowRun.objects.get()
    assert run.status == "failed" and "channel_not_found" in run.error


def test_teams_gets_a_message_card_and_retries_follow_the_policy(org, owner, receiver):
    channel(org, receiver, kind="teams")
    make_workflow(org, actions=[{"id": "post", "type": "post_teams", "label": "Tell ops",
                                 "on_error": {"policy": "retry", "maxAttempts": 2, "baseSeconds": 1},
                                 "config": {"channel": "ops", "text": "{{deal.title}} won"}}])
    receiver.reply(503, "busy")
    deal_won(org, owner)
    card = json.loads(receiver.requests[0]["body"])
    assert card["@type"] == "MessageCard" and card["text"] == "Website won"
    step = WorkflowRunAction.objects.get(node_id="post")
    assert step.status == "waiting" and "retry_at" in step.result  # tried again later, same delivery
    from crm_automation.automation.runtime.tasks import sweep
    from tests.conftest import time_passes
    time_passes()
    sweep(fan_out=False)
    assert WebhookDelivery.objects.count() == 1 and WebhookAttempt.objects.count() == 2
    assert WorkflowRun.objects.get().status == "completed"


def test_channels_are_named_and_checked_at_save(org, other_org, receiver):
    ChatChannel.objects.create(organization=other_org, name="sales-wins", kind="slack", webhook_url="https://x.test/")
    with pytest.raises(ValidationError) as caught:
        make_workflow(org, actions=POST + [{"type": "post_teams", "label": "T", "config": {"channel": "ops",
                                                                                            "text": "x" * 3001}}])
    text = " ".join(caught.value.messages)
    assert "“sales-wins” is not a Slack channel of this organization" in text  # theirs is not ours
    assert "“ops” is not a Microsoft Teams channel" in text and "at most 3000 characters" in text


def test_the_admin_writes_credentials_and_never_shows_them(org, owner, client):
    client.force_login(owner)
    answer = client.post("/admin/webhooks/chatchannel/add/", {
        "organization": org.pk, "name": "alerts", "kind": "slack", "new_webhook_url": "https://hooks.slack.com/x/y",
        "slack_channel": "", "username": "", "active": "on"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    made = ChatChannel.objects.get(name="alerts")
    assert made.webhook_url == "https://hooks.slack.com/x/y"
    page = client.get(f"/admin/webhooks/chatchannel/{made.pk}/change/").content.decode()
    assert "hooks.slack.com/x/y" not in page
    refused = client.post("/admin/webhooks/chatchannel/add/", {
        "organization": org.pk, "name": "bot", "kind": "slack", "new_bot_token": "xoxb-1", "active": "on"})
    assert refused.status_code == 200 and "a bot posts to a channel" in refused.content.decode()


def test_only_an_organizations_admins_set_its_sms_and_chat_credentials(org, other_org, teammate, viewer, outsider,
                                                                      client):
    from crm_automation.crm.models import SmsSettings
    theirs = ChatChannel.objects.create(organization=other_org, name="theirs", kind="slack",
                                        webhook_url="https://hooks.slack.com/x")
    for who in (teammate, viewer):
        client.force_login(who)
        added = client.post("/admin/webhooks/chatchannel/add/", {
            "organization": org.pk, "name": "x", "kind": "slack", "new_webhook_url": "https://hooks.slack.com/y",
            "active": "on"})
        assert added.status_code == 403
        sms = client.post("/admin/crm/smssettings/add/", {"organization": org.pk, "provider": "fake",
                                                          "from_number": "+15550100"})
        assert sms.status_code == 403
    client.force_login(outsider)  # an admin, of another organization
    assert client.get(f"/admin/webhooks/chatchannel/{theirs.pk}/change/").status_code == 200  # (theirs is theirs)
    client.force_login(teammate)
    assert client.get(f"/admin/webhooks/chatchannel/{theirs.pk}/change/").status_code in (302, 403, 404)
    huge = {"organization": org.pk, "name": "big", "kind": "teams", "new_webhook_url": "https://x.test/" + "a" * 100000,
            "active": "on"}
    assert client.post("/admin/webhooks/chatchannel/add/", huge).status_code in (400, 403)
    assert not ChatChannel.objects.filter(organization=org).exists() and not SmsSettings.objects.exists()
