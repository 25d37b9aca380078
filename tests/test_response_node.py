"""The response node: a workflow started by an inbound webhook answers its caller with the rendered
reply when the run reaches the node in time (else 202 with the run's id, the reply kept on the run);
elsewhere the reply is recorded on the run."""

import json
import threading
import time

import pytest
from django.test import Client

from crm_automation.automation.models import WorkflowRunAction
from crm_automation.webhooks import signing
from crm_automation.webhooks.services import webhook_endpoint_create
from tests.conftest import drain, make_workflow

pytestmark = pytest.mark.django_db(transaction=True)  # the request waits while another thread runs the workflow

ANSWER = [
    {"id": "look", "type": "function", "label": "Find deals", "config": {
        "functionRef": "crm/query_deals", "args": {"limit": 5}}},
    {"id": "reply", "type": "response", "label": "Reply", "config": {
        "responseTemplate": '{"order": "{{trigger.body.order}}", "deals": {{Find deals.count}}}', "statusCode": 201}},
]


def post(client, endpoint, secret, body: dict, message_id: str):
    text = json.dumps(body)
    headers = signing.headers([secret], message_id=message_id, timestamp=int(time.time()), body=text)
    return client.post(endpoint.path, data=text, content_type="application/json",
                       **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})


def worker(seconds: float = 3.0) -> threading.Thread:
    """Plays the worker cluster: dispatches and runs what arrives, for a while."""
    def loop() -> None:
        from django.db import connection
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            drain()
            time.sleep(0.05)
        connection.close()
    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_the_caller_gets_the_reply_when_the_run_reaches_it_in_time(org, owner, settings):
    settings.WEBHOOK_RESPONSE_SECONDS = 5
    endpoint, secret = webhook_endpoint_create(organization=org, by=owner, name="Orders")
    make_workflow(org, trigger_type="webhook", trigger_config={}, actions=ANSWER)
    thread = worker()
    answer = post(Client(), endpoint, secret, {"order": "A-7"}, "msg-1")
    thread.join()
    assert answer.status_code == 201, answer.content
    assert answer["Content-Type"] == "application/json" and answer.json() == {"order": "A-7", "deals": 0}
    assert answer["X-Run-Id"]


def test_too_late_the_caller_gets_202_with_the_run_and_the_reply_stays_on_it(org, owner, settings):
    settings.WEBHOOK_RESPONSE_SECONDS = 0.2
    endpoint, secret = webhook_endpoint_create(organization=org, by=owner, name="Orders")
    make_workflow(org, trigger_type="webhook", trigger_config={}, actions=ANSWER)
    answer = post(Client(), endpoint, secret, {"order": "B-1"}, "msg-2")
    assert answer.status_code == 202 and answer.json()["status"] == "accepted"
    drain()
    step = WorkflowRunAction.objects.get(node_id="reply")
    assert step.result["response"] == '{"order": "B-1", "deals": 0}' and step.result["status"] == 201


def test_without_a_response_node_the_caller_gets_202_at_once(org, owner, settings):
    settings.WEBHOOK_RESPONSE_SECONDS = 5
    endpoint, secret = webhook_endpoint_create(organization=org, by=owner, name="Orders")
    make_workflow(org, trigger_type="webhook", trigger_config={}, actions=ANSWER[:1])
    started = time.monotonic()
    answer = post(Client(), endpoint, secret, {"order": "C-1"}, "msg-3")
    assert answer.status_code == 202 and time.monotonic() - started < 2


def test_elsewhere_the_reply_is_recorded_on_the_run(org, owner):
    from crm_automation.crm.models import Deal, Stage
    from crm_automation.crm.services import deal_move_to_stage
    make_workflow(org, actions=[{"id": "reply", "type": "response", "label": "Reply", "config": {
        "responseTemplate": "{{deal.title}} is won"}}])
    deal = Deal.objects.create(organization=org, title="Roof", owner=owner,
                               stage=Stage.objects.get(organization=org, slug="new"))
    deal_move_to_stage(deal=deal, stage=Stage.objects.get(organization=org, slug="won"))
    drain()
    step = WorkflowRunAction.objects.get(node_id="reply")
    assert step.result == {"response": "Roof is won", "status": 200, "content_type": "text/plain; charset=utf-8"}


def test_bad_settings_are_refused(org):
    from django.core.exceptions import ValidationError
    with pytest.raises(ValidationError) as caught:
        make_workflow(org, actions=[{"type": "response", "label": "R", "config": {
            "responseTemplate": "{{deal.nope}}", "statusCode": 700}}])
    text = " ".join(caught.value.messages)
    assert "statusCode: must be an HTTP status" in text and "{{deal.nope}} is not a field" in text


def test_a_reply_with_a_target_is_also_posted_there_signed_once(org, owner, settings):
    from crm_automation.crm.models import Deal, Stage
    from crm_automation.crm.services import deal_move_to_stage
    from crm_automation.webhooks.models import WebhookDelivery
    from crm_automation.webhooks.services import webhook_target_create
    from tests.http_receiver import Receiver
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    server = Receiver()
    try:
        webhook_target_create(organization=org, name="caller", url=f"http://127.0.0.1:{server.port}/replies", by=None)
        make_workflow(org, actions=[{"id": "reply", "type": "response", "label": "Reply", "config": {
            "responseTemplate": "{{deal.title}} is won", "target": "caller"}}])
        deal = Deal.objects.create(organization=org, title="Roof", owner=owner,
                                   stage=Stage.objects.get(organization=org, slug="new"))
        deal_move_to_stage(deal=deal, stage=Stage.objects.get(organization=org, slug="won"))
        drain()
        request = server.requests[0]
        assert json.loads(request["body"])["response"] == "Roof is won" and request["headers"]["webhook-signature"]
        step = WorkflowRunAction.objects.get(node_id="reply")
        assert step.status == "completed" and step.result["posted"]["delivery"] == "succeeded"
        assert WebhookDelivery.objects.count() == 1
    finally:
        server.close()
