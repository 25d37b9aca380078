"""The http/request node: a signed request to a webhook target, delivery as data (one attempt row
per try), 410 disables the target, redirects and timeouts fail, retries through the node's error
policy, and the SSRF guard refuses every private or odd destination without connecting."""

import json
import socket
import threading
import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from standardwebhooks import Webhook

from crm_automation.automation.definition import documents
from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.crm.models import Deal, Task
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.webhooks import client as http_client
from crm_automation.webhooks import guard
from crm_automation.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookTarget
from crm_automation.webhooks.services import webhook_target_create, webhook_target_rotate
from tests.conftest import drain, make_workflow, stage, time_passes
from tests.http_receiver import Receiver
from tests.test_graph_engine import edge, task, win


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the test server is local: allowed explicitly
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def target(org, receiver):
    made, secret = webhook_target_create(organization=org, name="billing",
                                         url=f"http://127.0.0.1:{receiver.port}/hooks", by=None)
    made.plain_secret = secret
    return made


def hook(**config) -> dict:
    node: dict[str, Any] = {"id": "hook", "type": "http_request", "label": "Notify billing",
            "config": {"target": "billing", "body": {"deal": "{{trigger.deal}}", "note": "Won {{deal.title}}"}}}
    node["config"].update(config.pop("config", {}))
    return {**node, **config}


def flow(**config):
    return [hook(**config), task("after", "Invoice {{Notify billing.body.id}} ({{Notify billing.status}})")], [
        edge("trigger", "hook"), edge("hook", "after")]


def test_a_signed_request_is_sent_and_the_answer_is_the_nodes_output(org, deal, receiver, target):
    receiver.reply(201, {"id": "inv_42"})
    run = win(org, deal, *flow())
    assert run.status == "completed", run.error
    (request,) = receiver.requests
    assert request["method"] == "POST" and request["path"] == "/hooks"
    assert request["headers"]["webhook-id"] == f"run:{run.pk}:node:hook"
    assert request["headers"]["content-type"] == "application/json"
    # The receiver verifies it with the secret it was given, as any Standard Webhooks library does.
    Webhook(target.plain_secret).verify(request["body"], request["headers"])
    sent = json.loads(request["body"])
    assert sent["note"] == "Won Website" and sent["deal"]["title"] == "Website" and sent["deal"]["stage"] == "won"
    assert Task.objects.get(title__startswith="Invoice").title == "Invoice inv_42 (201)"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_json) == ("succeeded", 1, {"id": "inv_42"})
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code == 201 and attempt.succeeded and attempt.address == "127.0.0.1"
    assert attempt.response_body == '{"id": "inv_42"}' and attempt.duration_ms >= 0
    step = run.actions.get(node_id="hook")
    assert step.result["body"] == {"id": "inv_42"} and step.result["status"] == 201


def test_deliveries_and_their_attempts_show_in_the_admin(client, org, owner, deal, receiver, target):
    receiver.reply(500, "boom")
    run = win(org, deal, *flow())
    client.force_login(owner)
    assert "boom" not in client.get("/admin/webhooks/webhookdelivery/").content.decode()  # the list stays short
    page = client.get(f"/admin/webhooks/webhookdelivery/{WebhookDelivery.objects.get().pk}/change/")
    assert page.status_code == 200 and "boom" in page.content.decode() and f"run #{run.pk}" in page.content.decode()
    assert client.get("/admin/webhooks/webhooktarget/").status_code == 200


def test_methods_headers_and_a_text_answer(org, deal, receiver, target):
    receiver.reply(200, "ok, noted")
    run = win(org, deal, [hook(config={"method": "PUT", "url": f"http://127.0.0.1:{receiver.port}/hooks/deals/1",
                                       "headers": {"X-Source": "crm {{deal.title}}"}}),
                          task("after", "Said {{Notify billing.body}}")],
              [edge("trigger", "hook"), edge("hook", "after")])
    assert run.status == "completed", run.error
    (request,) = receiver.requests
    assert (request["method"], request["path"]) == ("PUT", "/hooks/deals/1")
    assert request["headers"]["x-source"] == "crm Website"
    assert Task.objects.get(title__startswith="Said").title == "Said ok, noted"


def test_410_gone_disables_the_target(org, deal, receiver, target):
    receiver.reply(410, "unsubscribed")
    run = win(org, deal, *flow())
    assert run.status == "failed" and "410 Gone" in run.actions.get(node_id="hook").error
    target.refresh_from_db()
    assert not target.active and "410 Gone" in target.disabled_reason
    assert WebhookAttempt.objects.get().status_code == 410
    # The next run sends nothing: the step says the target is disabled.
    second = make_workflow(org, name="Again", actions=[hook()], trigger_type="deal_created", trigger_config={})
    Deal.objects.create(organization=org, title="Next", amount=1, stage=deal.stage)
    drain()
    step = second.runs.get().actions.get(node_id="hook")
    assert step.status == "failed" and "is disabled" in step.error and len(receiver.requests) == 1


def test_a_redirect_is_a_failure_and_is_not_followed(org, deal, receiver, target):
    receiver.reply(302, "", {"location": f"http://127.0.0.1:{receiver.port}/elsewhere"})
    run = win(org, deal, *flow())
    step = run.actions.get(node_id="hook")
    assert run.status == "failed" and "redirects are not followed" in step.error and "/elsewhere" in step.error
    assert len(receiver.requests) == 1 and WebhookDelivery.objects.get().status == "failed"


@pytest.mark.slow
def test_a_slow_receiver_times_out(org, deal, receiver, target, settings):
    settings.WEBHOOK_TIMEOUT = 1
    receiver.reply(200, {"late": True}, delay=3)
    started = time.monotonic()
    run = win(org, deal, *flow())
    assert time.monotonic() - started < 3
    assert run.status == "failed" and "timed out" in run.actions.get(node_id="hook").error
    attempt = WebhookAttempt.objects.get()
    assert attempt.status_code is None and "timed out" in attempt.error and 900 <= attempt.duration_ms < 2500


def test_a_failed_request_is_retried_by_the_nodes_error_policy_under_the_same_webhook_id(org, deal, receiver,
                                                                                          target):
    receiver.reply(503, "busy")
    receiver.reply(200, {"id": "inv_7"})
    run = win(org, deal, *flow(on_error={"policy": "retry", "maxAttempts": 3, "baseSeconds": 1}))
    step = run.actions.get(node_id="hook")
    assert run.status == "waiting" and step.status == "waiting" and "503" in step.error
    assert "try 2 of 3" in step.result["decided"]
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed" and Task.objects.get(title__startswith="Invoice").title == "Invoice inv_7 (200)"
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == f"run:{run.pk}:node:hook"
    assert [a.status_code for a in WebhookAttempt.objects.order_by("number")] == [503, 200]
    assert WebhookDelivery.objects.get().attempts == 2


def test_a_rotated_target_signs_with_both_secrets_during_the_grace(org, deal, receiver, target):
    _, new = webhook_target_rotate(target_id=target.pk, by=None)
    win(org, deal, *flow())
    (request,) = receiver.requests
    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    for secret in (target.plain_secret, new):  # a receiver still on the old secret, or already on the new one
        Webhook(secret).verify(request["body"], request["headers"])


def test_the_node_is_checked_when_the_workflow_is_saved(org, target):
    def refused(config, says):
        with pytest.raises(ValidationError, match=says):
            make_workflow(org, activate=False, actions=[hook(config=config)])

    refused({"target": "nope"}, "is not a webhook target of this organization; use one of billing")
    refused({"headers": {"Authorization": "Bearer x"}}, "credentials belong in a webhook target")
    refused({"url": "http://127.0.0.1:1/other"}, "must be the URL of target")
    refused({"method": "GET"}, "a GET request has no body")
    refused({"method": "TRACE"}, "must be one of POST, GET")
    refused({"body": {"x": "{{deal.nope}}"}}, r"deal.nope\}\} is not a field")
    refused({"url": "http://2130706433/hooks"}, "unusual spelling of an IP address")


def test_a_document_with_an_http_request_node_round_trips(org, target):
    workflow = make_workflow(org, activate=False, actions=[hook(config={"method": "PATCH"})])
    document = documents.document_of(key="x", name="x", definition=workflow.current_version.definition)
    node = document["nodes"][1]
    assert node["data"]["config"]["toolName"] == "http/request"
    assert node["data"]["config"]["defaults"]["method"] == "PATCH"
    definition, errors = documents.definition_from(document)
    assert not errors and definition["actions"][0]["type"] == "http_request"


# --- The SSRF guard -----------------------------------------------------------------------------
FAKE_DNS = {"evil.test": ["127.0.0.1"], "metadata.test": ["169.254.169.254"], "mixed.test": ["93.184.216.34",
                                                                                            "10.0.0.7"],
            "v6.test": ["::1"]}


@pytest.fixture
def no_connections(monkeypatch):
    """Any connection attempt fails the test; names resolve from FAKE_DNS only."""
    def connect(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    def resolve(host, port, *args, **kwargs):
        if host not in FAKE_DNS:
            raise socket.gaierror(f"unknown host {host}")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in FAKE_DNS[host]]

    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.1:8000/admin", "loopback"),
    ("http://localhost/", "could not be resolved"),  # not in FAKE_DNS; really it is loopback
    ("http://evil.test/", "resolves to 127.0.0.1, which is a loopback"),
    ("http://metadata.test/latest/meta-data", "link-local"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fd00:ec2::254]/", "private"),
    ("http://mixed.test/", "resolves to 10.0.0.7, which is a private"),
    ("http://v6.test/", "loopback"),
    ("http://10.0.0.5/", "private"),
    ("http://172.16.3.4/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "not a public address"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://[::1]/", "loopback"),
    ("http://[fe80::1]/", "link-local"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "private"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    ("http://[::ffff:93.184.216.34]/", "IPv4-mapped"),
    ("http://[64:ff9b::7f00:1]/", "embeds an IPv4"),
    ("http://[2002:7f00:1::1]/", "embeds an IPv4"),
    ("http://2130706433/", "unusual spelling"),
    ("http://0x7f.1/", "unusual spelling"),
    ("http://017700000001/", "unusual spelling"),
    ("http://127.1/", "unusual spelling"),
    ("http://0/", "unusual spelling"),
    ("http://0177.0.0.1/", "is not a URL"),
    ("http://user:pw@93.184.216.34/", "user name or password"),
    ("ftp://93.184.216.34/", "only http and https"),
    ("file:///etc/passwd", "only http and https"),
    ("http://ex%61mple.com/", "not a valid host name"),
])
def test_the_guard_refuses_without_connecting(no_connections, settings, url, says):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    answer = http_client.call(method="POST", url=url, headers={}, body=b"{}", timeout=1)
    assert answer.refused and answer.status is None and says in answer.error, answer.error


def test_the_guard_lets_public_addresses_through_and_the_allow_list_in(no_connections, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["evil.test"]
    assert guard.destination("https://93.184.216.34/x").address == "93.184.216.34"
    assert guard.destination("http://EVIL.test./x").address == "127.0.0.1"  # allowed, and still pinned


def test_a_step_to_a_private_address_fails_with_the_reason_and_sends_nothing(org, deal, receiver, target, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []  # the test server is loopback: now it may not be called
    run = win(org, deal, *flow())
    step = run.actions.get(node_id="hook")
    assert run.status == "failed" and "refused" in step.error and "loopback" in step.error
    assert receiver.requests == [] and "loopback" in WebhookAttempt.objects.get().error


def test_the_connection_goes_to_the_address_that_was_checked(org, deal, receiver, monkeypatch, settings):
    """A name is resolved once, checked, and the connection goes to that address (no second lookup
    that a rebinding DNS server could answer differently); Host and the path stay the URL's."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["hooks.test"]
    lookups = []
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        lookups.append(host)
        if host == "hooks.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    webhook_target_create(organization=org, name="billing", url=f"http://hooks.test:{receiver.port}/in", by=None)
    run = win(org, deal, *flow())
    assert run.status == "completed", run.error
    (request,) = receiver.requests
    assert request["headers"]["host"] == f"hooks.test:{receiver.port}" and request["path"] == "/in"
    assert lookups.count("hooks.test") == 1


@pytest.mark.slow
def test_a_receiver_that_drips_its_answer_is_cut_off_at_the_deadline(receiver):
    """The time limit is for the whole request, not per read."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def drip():
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(40):
            try:
                conn.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
            time.sleep(0.1)
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    started = time.monotonic()
    answer = http_client.call(method="GET", url=f"http://127.0.0.1:{port}/", headers={}, body=None, timeout=1)
    assert "timed out" in answer.error and time.monotonic() - started < 2
    listener.close()


def test_a_deleted_target_fails_the_step_and_names_it(org, deal, receiver, target):
    make_workflow(org, actions=[hook()])
    WebhookTarget.objects.all().delete()
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "failed" and "“billing” no longer exists" in run.actions.get(node_id="hook").error
    assert receiver.requests == []
