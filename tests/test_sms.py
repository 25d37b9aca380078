"""SMS: a workflow texts the contact through the organization's provider (the test one, or Twilio's
API through a local stand-in), at most once; the provider's signed callbacks say what became of
it; STOP opts the contact out and START back in; quiet hours hold the message, durably, until
they end; a reply nobody waits for is the business event sms.received."""

import datetime as dt
from urllib.parse import parse_qs, urlencode

import pytest
from django.test import Client
from django.utils import timezone

from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.crm.models import BusinessEvent, Contact, Deal, SmsInbound, SmsMessage, SmsSettings, Stage
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.crm.sms import inbound
from crm_automation.crm.sms.providers import FAKE_NO_ANSWER, FAKE_REFUSED
from crm_automation.crm.sms.segments import length
from tests.conftest import drain, make_workflow, time_passes
from tests.http_receiver import Receiver

TEXT = [{"id": "text", "type": "send_sms", "label": "Text them", "config": {
    "to": "{{deal.contact.phone}}", "body": "Hi {{deal.contact.first_name}}, {{deal.title}} is won!"}}]
TOKEN = "test-token-123"


@pytest.fixture
def sms(org) -> SmsSettings:
    return SmsSettings.objects.create(organization=org, from_number="+15550009999", auth_token=TOKEN)


@pytest.fixture
def ada(org):
    return Contact.objects.create(organization=org, first_name="Ada", phone="(555) 010-0100")


def won(org, contact, owner=None, title="Roof"):
    deal = Deal.objects.create(organization=org, title=title, contact=contact, owner=owner,
                               stage=Stage.objects.get(organization=org, slug="new"))
    deal_move_to_stage(deal=deal, stage=Stage.objects.get(organization=org, slug="won"))
    drain()
    return deal


def signed_post(client: Client, sms_settings: SmsSettings, kind: str, fields: dict, token: str = TOKEN):
    path = f"/api/v1/sms/{sms_settings.public_id}/{kind}/"
    from django.conf import settings
    given = inbound.signature(token, settings.SITE_URL + path, fields)
    return client.post(path, urlencode(fields), content_type="application/x-www-form-urlencoded",
                       HTTP_X_TWILIO_SIGNATURE=given)


def test_lengths_are_counted_as_carriers_count_them():
    assert (length("Hi").segments, length("x" * 160).segments, length("x" * 161).segments) == (1, 1, 2)
    assert length("€" * 80).units == 160 and length("€" * 81).segments == 2  # an extension character takes two
    assert length("Grüße 😀").encoding == "ucs2" and length("y" * 71 + "😀").segments == 2


def test_a_won_deal_texts_its_contact_through_the_test_provider(org, owner, sms, ada):
    make_workflow(org, actions=TEXT)
    won(org, ada, owner)
    message = SmsMessage.objects.get()
    assert (message.to, message.from_number, message.status) == ("+15550100100", "+15550009999", "sent")
    assert message.body == "Hi Ada, Roof is won!" and message.provider_id.startswith("SMFAKE")
    assert message.contact == ada and message.segments == 1
    step = WorkflowRunAction.objects.get(node_id="text")
    assert step.status == "completed" and step.result["delivery"] == "sent"


@pytest.mark.parametrize(("number", "status", "words"), [(FAKE_REFUSED, "failed", "not a mobile number"),
                                                         (FAKE_NO_ANSWER, "unknown", "may or may not")])
def test_a_refused_sms_fails_and_one_in_doubt_is_unknown_and_never_sent_again(org, owner, sms, number, status, words):
    make_workflow(org, actions=TEXT)
    contact = Contact.objects.create(organization=org, first_name="Bo", phone=number)
    won(org, contact, owner)
    message = SmsMessage.objects.get()
    assert message.status == status and words in message.error
    run = WorkflowRun.objects.get()
    assert run.status == "failed" and words in run.error
    from crm_automation.automation.nodes import REGISTRY
    assert REGISTRY["send_sms"].retry(message.automation_key) is (status == "failed")


def test_a_message_left_sending_by_a_dead_worker_is_unknown_when_the_run_resumes(org, owner, sms, ada):
    from crm_automation.automation.nodes import REGISTRY
    make_workflow(org, actions=TEXT)
    won(org, ada, owner)
    message = SmsMessage.objects.get()
    SmsMessage.objects.filter(pk=message.pk).update(status="sending")  # as if killed mid-hand-over
    outcome = REGISTRY["send_sms"].settle_existing({"sms_id": message.pk})
    message.refresh_from_db()
    assert message.status == "unknown" and outcome is not None and outcome[0] is False


def test_twilio_gets_the_message_with_its_credentials_and_a_status_callback(org, owner, sms, ada, settings):
    server = Receiver()
    try:
        settings.TWILIO_API_BASE = f"http://127.0.0.1:{server.port}"
        settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
        SmsSettings.objects.filter(pk=sms.pk).update(provider="twilio", account_sid="AC123")
        server.reply(201, {"sid": "SM42", "status": "queued"})
        make_workflow(org, actions=TEXT)
        won(org, ada, owner)
        request = server.requests[0]
        assert request["path"] == "/2010-04-01/Accounts/AC123/Messages.json"
        form = parse_qs(request["body"])
        assert form["To"] == ["+15550100100"] and form["From"] == ["+15550009999"]
        assert form["StatusCallback"][0].endswith(f"/api/v1/sms/{sms.public_id}/status/")
        assert request["headers"]["authorization"].startswith("Basic ")
        message = SmsMessage.objects.get()
        assert (message.status, message.provider_id) == ("sent", "SM42")
        server.reply(400, {"code": 21211, "message": "The 'To' number is not valid."})
        won(org, ada, owner, title="Deck")
        refused = SmsMessage.objects.exclude(pk=message.pk).get()
        assert refused.status == "failed" and "21211" in refused.error
    finally:
        server.close()


def test_status_callbacks_are_signed_and_change_only_this_organizations_message(org, other_org, owner, sms, ada):
    make_workflow(org, actions=TEXT)
    won(org, ada, owner)
    message = SmsMessage.objects.get()
    client = Client()
    fields = {"MessageSid": message.provider_id, "MessageStatus": "delivered"}
    forged = signed_post(client, sms, "status", fields, token="not-the-token")
    assert forged.status_code == 401, forged.content
    message.refresh_from_db()
    assert message.delivery == ""
    answer = signed_post(client, sms, "status", fields)
    assert answer.status_code == 200, answer.content
    message.refresh_from_db()
    assert message.delivery == "delivered"
    theirs = SmsSettings.objects.create(organization=other_org, from_number="+15550008888", auth_token="theirs")
    assert signed_post(client, theirs, "status", {**fields, "MessageStatus": "failed"},
                       token="theirs").status_code == 200
    message.refresh_from_db()
    assert message.delivery == "delivered"  # their URL never reaches our message


def test_stop_opts_the_contact_out_and_start_back_in(org, owner, sms, ada):
    make_workflow(org, actions=TEXT)
    client = Client()
    assert signed_post(client, sms, "inbound", {"MessageSid": "SMin1", "From": "+15550100100",
                                                "Body": " stop "}).status_code == 200
    ada.refresh_from_db()
    assert ada.sms_opted_out_at is not None
    again = signed_post(client, sms, "inbound", {"MessageSid": "SMin1", "From": "+15550100100", "Body": " stop "})
    assert again.status_code == 200 and SmsInbound.objects.count() == 1  # a retry is taken once
    won(org, ada, owner)
    run = WorkflowRun.objects.get()
    assert run.status == "failed" and "asked for no more SMS" in run.error
    assert not SmsMessage.objects.exists()
    signed_post(client, sms, "inbound", {"MessageSid": "SMin2", "From": "+1 555 010 0100", "Body": "START"})
    ada.refresh_from_db()
    assert ada.sms_opted_out_at is None
    won(org, ada, owner, title="Deck")
    assert SmsMessage.objects.get().status == "sent"


def test_a_reply_nobody_waits_for_is_the_event_sms_received(org, owner, sms, ada):
    listener = make_workflow(org, name="Replies", trigger_type="event:sms.received", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "{{trigger.contact.first_name}} wrote: "
                                                                   "{{trigger.sms.body}}"}}])
    signed_post(Client(), sms, "inbound", {"MessageSid": "SMin9", "From": "+15550100100", "Body": "Is it done?"})
    drain()
    event = BusinessEvent.objects.get(name="sms.received")
    assert event.contact == ada
    assert WorkflowRun.objects.get(workflow=listener).status == "completed"
    from crm_automation.crm.models import Task
    assert Task.objects.get().title == "Ada wrote: Is it done?"


def test_quiet_hours_hold_the_message_until_they_end(org, owner, sms, ada):
    now = timezone.now().astimezone(dt.UTC)
    sms.quiet_start = (now - dt.timedelta(hours=1)).time().replace(second=0, microsecond=0)
    sms.quiet_end = (now + dt.timedelta(hours=1)).time().replace(second=0, microsecond=0)
    sms.save()
    make_workflow(org, actions=TEXT)
    won(org, ada, owner)
    run = WorkflowRun.objects.get()
    step = WorkflowRunAction.objects.get(node_id="text")
    assert run.status == "waiting" and step.status == "waiting" and "quiet hours" in step.result["waiting_for"]
    assert not SmsMessage.objects.exists()
    SmsSettings.objects.filter(pk=sms.pk).update(quiet_start=None, quiet_end=None)
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed" and SmsMessage.objects.get().status == "sent"


def test_bad_settings_are_refused_where_they_are_written(org):
    from django.core.exceptions import ValidationError
    with pytest.raises(ValidationError) as caught:
        make_workflow(org, actions=[{"type": "send_sms", "label": "T", "config": {"to": "not a phone",
                                                                                "body": "x" * 1600}}])
    text = " ".join(caught.value.messages)
    assert "is not a phone number" in text and "at most 10 SMS" in text
    bad = SmsSettings(organization=org, from_number="12", provider="twilio", account_sid="x",
                      quiet_start=dt.time(21))
    with pytest.raises(ValidationError) as caught:
        bad.full_clean()
    assert {"from_number", "account_sid", "quiet_end"} <= set(caught.value.message_dict)


def test_without_sms_settings_the_step_fails_saying_so(org, owner, ada):
    make_workflow(org, actions=TEXT)
    won(org, ada, owner)
    assert "SMS is not set up for this organization" in WorkflowRun.objects.get().error


WAIT = [{"id": "ask", "type": "send_sms", "label": "Ask", "config": {
    "to": "{{deal.contact.phone}}", "body": "Happy with {{deal.title}}? Reply YES or NO.", "wait_for_reply": True,
    "reply_timeout_hours": 48}},
        {"id": "happy", "type": "condition", "label": "Happy", "config": {"combinator": "and", "rules": [
            {"field": "Ask.reply", "operator": "contains", "value": "yes"}]}},
        {"id": "thanks", "type": "create_task", "label": "Thanks", "config": {"title": "Happy: {{Ask.reply}}"}},
        {"id": "call", "type": "create_task", "label": "Call", "config": {
            "title": "Call them (timed out: {{Ask.timed_out}})"}}]
WAIT_GRAPH = {"edges": [{"source": "trigger", "target": "ask"}, {"source": "ask", "target": "happy"},
                        {"source": "happy", "target": "thanks", "sourceHandle": "condition-true"},
                        {"source": "happy", "target": "call", "sourceHandle": "condition-false"}]}


def test_a_run_waits_for_the_reply_holding_nothing_and_goes_on_with_it(org, owner, sms, ada):
    from crm_automation.automation.runtime.tasks import continue_runs
    from crm_automation.crm.models import Task
    make_workflow(org, actions=WAIT, graph=WAIT_GRAPH)
    won(org, ada, owner)
    run = WorkflowRun.objects.get()
    step = WorkflowRunAction.objects.get(node_id="ask")
    assert run.status == "waiting" and run.lease_owner == "" and step.status == "waiting"
    assert SmsMessage.objects.get().status == "sent" and "timeout_at" in step.result
    answer = signed_post(Client(), sms, "inbound", {"MessageSid": "SMr1", "From": "+15550100100", "Body": "Yes, great"})
    assert answer.status_code == 200
    run.refresh_from_db()
    assert run.status == "started"  # woken by the reply
    continue_runs([run.pk])
    run.refresh_from_db()
    step.refresh_from_db()
    assert run.status == "completed" and step.result["reply"] == "Yes, great" and step.result["timed_out"] is False
    assert list(Task.objects.values_list("title", flat=True)) == ["Happy: Yes, great"]
    assert not BusinessEvent.objects.filter(name="sms.received").exists()  # awaited: not an event


def test_no_reply_in_time_goes_on_timed_out_and_an_older_wait_is_told_why(org, owner, sms, ada):
    from crm_automation.crm.models import Task
    make_workflow(org, actions=WAIT, graph=WAIT_GRAPH)
    won(org, ada, owner, title="Roof")
    won(org, ada, owner, title="Deck")  # a second run waits on the same contact
    older, newer = WorkflowRun.objects.order_by("pk")
    signed_post(Client(), sms, "inbound", {"MessageSid": "SMr2", "From": "+15550100100", "Body": "yes"})
    from crm_automation.automation.runtime.tasks import continue_runs
    continue_runs([newer.pk])  # woken by the reply
    time_passes()
    sweep(fan_out=False)
    older.refresh_from_db()
    newer.refresh_from_db()
    assert (older.status, newer.status) == ("completed", "completed")
    old_step = WorkflowRunAction.objects.get(run=older, node_id="ask")
    assert old_step.result["timed_out"] is True and "went to a later message" in old_step.result["no_reply_because"]
    assert WorkflowRunAction.objects.get(run=newer, node_id="ask").result["reply"] == "yes"
    assert sorted(Task.objects.values_list("title", flat=True)) == ["Call them (timed out: yes)", "Happy: yes"]


def test_a_forged_reply_wakes_nothing(org, owner, sms, ada):
    make_workflow(org, actions=WAIT, graph=WAIT_GRAPH)
    won(org, ada, owner)
    answer = signed_post(Client(), sms, "inbound", {"MessageSid": "SMr3", "From": "+15550100100", "Body": "yes"},
                         token="forged")
    assert answer.status_code == 401
    assert WorkflowRun.objects.get().status == "waiting" and SmsMessage.objects.get().replied_at is None


def test_simulate_and_debug_take_no_reply_or_the_one_typed(org, owner, sms, ada):
    from crm_automation.automation.services.simulation import Debug, debug, simulate
    workflow = make_workflow(org, actions=WAIT, graph=WAIT_GRAPH)
    deal = Deal.objects.create(organization=org, title="Roof", contact=ada, owner=owner,
                               stage=Stage.objects.get(organization=org, slug="new"))
    run = simulate(workflow_id=workflow.pk, by=owner, record=deal)
    assert run.actions.get(node_id="ask").result["timed_out"] is True
    assert run.actions.filter(node_id="call").exists() and not SmsMessage.objects.exists()
    typed = debug(workflow_id=workflow.pk, by=owner, record=deal, choices=Debug(samples={"ask": "yes please"}))
    assert typed.actions.get(node_id="ask").result["reply"] == "yes please"
    assert typed.actions.filter(node_id="thanks").exists()


def test_reply_settings_are_checked(org):
    from django.core.exceptions import ValidationError
    with pytest.raises(ValidationError) as caught:
        make_workflow(org, actions=[{"type": "send_sms", "label": "T", "config": {
            "to": "+15550100100", "body": "x", "wait_for_reply": "yes", "reply_timeout_hours": 0}}])
    text = " ".join(caught.value.messages)
    assert "wait_for_reply: must be true" in text and "reply_timeout_hours: must be a number of hours" in text


def test_a_reply_that_comes_while_its_run_is_busy_is_read_at_the_next_sweep(org, owner, sms, ada):
    """The reply arrives before the run parked (it was not woken): the sweep finds it, unread."""
    from crm_automation.crm.models import Task
    make_workflow(org, actions=WAIT, graph=WAIT_GRAPH)
    won(org, ada, owner)
    run = WorkflowRun.objects.get()
    WorkflowRun.objects.filter(pk=run.pk).update(status="started")  # as if its segment were still going
    signed_post(Client(), sms, "inbound", {"MessageSid": "SMr9", "From": "+15550100100", "Body": "yes indeed"})
    WorkflowRun.objects.filter(pk=run.pk).update(status="waiting")  # … and then parked, unaware
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert Task.objects.get().title == "Happy: yes indeed" and SmsMessage.objects.get().reply_seen


def test_hostile_callbacks_get_a_clear_4xx_and_change_nothing(org, owner, sms, ada):
    import uuid as uuid_module
    client = Client()
    unknown = client.post(f"/api/v1/sms/{uuid_module.uuid4()}/inbound/", "From=%2B1&Body=STOP&MessageSid=x",
                          content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE="x")
    assert unknown.status_code == 404
    not_form = client.post(f"/api/v1/sms/{sms.public_id}/inbound/", '{"Body": "STOP"}',
                           content_type="application/json", HTTP_X_TWILIO_SIGNATURE="x")
    assert not_form.status_code == 415
    huge = client.post(f"/api/v1/sms/{sms.public_id}/inbound/", "Body=" + "x" * 20000,
                       content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE="x")
    assert huge.status_code == 413
    long_field = signed_post(client, sms, "inbound", {"MessageSid": "SMh", "From": "+15550100100",
                                                      "Body": "STOP" + "\x00"})
    assert long_field.status_code == 400
    unsigned = client.post(f"/api/v1/sms/{sms.public_id}/inbound/", "From=%2B15550100100&Body=STOP&MessageSid=y",
                           content_type="application/x-www-form-urlencoded")
    assert unsigned.status_code == 401
    ada.refresh_from_db()
    assert ada.sms_opted_out_at is None and not SmsInbound.objects.exists()
