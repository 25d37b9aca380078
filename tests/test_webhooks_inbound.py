"""Inbound webhooks: endpoints managed by admins (the secret shown once, rotated with a grace
period), and POST /api/v1/hooks/<id>/ verified the Standard Webhooks way. A refused message
(bad signature, old timestamp, replay, too large, not JSON, unknown or disabled endpoint) gets a
4xx that says which, and nothing is recorded."""

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient
from standardwebhooks import Webhook

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.webhooks.models import WebhookEndpoint, WebhookReceipt
from crm_automation.webhooks.services import webhook_endpoint_create, webhook_endpoint_rotate
from tests.conftest import drain

ORDER = {"order": {"id": "ord_1", "total": 42.5, "lines": [{"sku": "A"}]}}


@pytest.fixture
def hook(org):
    endpoint, secret = webhook_endpoint_create(organization=org, name="Shop", by=None)
    return endpoint, secret


def signed(secret: str, body, *, msg_id: str = "msg_1", at: float | None = None) -> dict:
    """The headers a Standard Webhooks sender puts on `body` (as the sender's library makes them)."""
    text = body if isinstance(body, str) else json.dumps(body)
    when = datetime.fromtimestamp(at if at is not None else time.time(), tz=UTC)
    signature = Webhook(secret).sign(msg_id=msg_id, timestamp=when, data=text)
    return {"HTTP_WEBHOOK_ID": msg_id, "HTTP_WEBHOOK_TIMESTAMP": str(int(when.timestamp())),
            "HTTP_WEBHOOK_SIGNATURE": signature}


def post(endpoint, body, headers, content_type="application/json", client=None):
    text = body if isinstance(body, str | bytes) else json.dumps(body)
    return (client or APIClient()).post(f"/api/v1/hooks/{endpoint.public_id}/", data=text,
                                        content_type=content_type, **headers)


def nothing_recorded() -> bool:
    return not AutomationEvent.objects.exists() and not WebhookReceipt.objects.exists()


def test_a_signed_message_is_accepted_and_becomes_a_webhook_event(hook):
    endpoint, secret = hook
    response = post(endpoint, ORDER, signed(secret, ORDER))
    assert response.status_code == 202, response.content
    receipt = WebhookReceipt.objects.get()
    assert response.json() == {"status": "accepted", "id": str(receipt.pk), "webhook_id": "msg_1"}
    event = AutomationEvent.objects.get()
    assert (event.kind, event.entity_type, event.entity_id, event.organization_id) == (
        "webhook", "webhook", receipt.pk, endpoint.organization_id)
    assert event.payload == {"endpoint": str(endpoint.public_id), "endpoint_name": "Shop", "webhook_id": "msg_1",
                             "body": ORDER, "source": "api"}
    drain()  # dispatched like any event: nothing listens yet, nothing breaks
    event.refresh_from_db()
    assert event.processed_at is not None and event.error == "" and not WorkflowRun.objects.exists()


def test_it_needs_no_session_and_no_csrf_token(hook, owner):
    endpoint, secret = hook
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    assert post(endpoint, ORDER, signed(secret, ORDER), client=client).status_code == 202


def test_a_wrong_signature_is_refused(hook):
    endpoint, secret = hook
    other = Webhook("whsec_" + "A" * 43 + "=").sign("msg_1", datetime.now(tz=UTC), json.dumps(ORDER))
    for signature in (other, "v1,bm90IGEgc2lnbmF0dXJl", "v1,@@@", "garbage", "v2," + other[3:]):
        response = post(endpoint, ORDER, {**signed(secret, ORDER), "HTTP_WEBHOOK_SIGNATURE": signature})
        assert response.status_code == 401 and response.json()["code"] == "bad_signature", signature
    tampered = {**ORDER, "order": {"id": "ord_2"}}
    response = post(endpoint, tampered, signed(secret, ORDER))
    assert response.status_code == 401 and "does not match" in response.json()["detail"]
    assert nothing_recorded()


def test_an_old_or_future_timestamp_is_refused(hook):
    endpoint, secret = hook
    old = post(endpoint, ORDER, signed(secret, ORDER, at=time.time() - 6 * 60))
    assert old.status_code == 401 and old.json()["code"] == "timestamp_too_old"
    assert "older than 5 minutes" in old.json()["detail"]
    future = post(endpoint, ORDER, signed(secret, ORDER, at=time.time() + 6 * 60))
    assert future.status_code == 401 and future.json()["code"] == "timestamp_in_future"
    assert post(endpoint, ORDER, signed(secret, ORDER, at=time.time() - 4 * 60)).status_code == 202


def test_a_replayed_message_is_refused_and_recorded_once(hook):
    endpoint, secret = hook
    headers = signed(secret, ORDER)
    assert post(endpoint, ORDER, headers).status_code == 202
    again = post(endpoint, ORDER, headers)
    assert again.status_code == 409 and again.json()["code"] == "replayed"
    assert "msg_1 was already received" in again.json()["detail"]
    assert AutomationEvent.objects.count() == 1 and WebhookReceipt.objects.count() == 1
    assert post(endpoint, ORDER, signed(secret, ORDER, msg_id="msg_2")).status_code == 202


def test_an_oversized_body_is_refused_before_it_is_read(hook, settings):
    settings.WEBHOOK_MAX_BODY = 1024
    endpoint, secret = hook
    big = {"blob": "x" * 2000}
    response = post(endpoint, big, signed(secret, big))
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert "larger than 1 KB" in response.json()["detail"] and nothing_recorded()


@pytest.mark.parametrize(("body", "content_type", "status", "says"), [
    ("order=1", "application/x-www-form-urlencoded", 415, "Content-Type: application/json"),
    ("{not json", "application/json", 400, "not valid JSON"),
    ('{"total": NaN}', "application/json", 400, "NaN is not a number JSON can hold"),
    ('{"total": 1e999}', "application/json", 400, "the number 1e999 is too large"),
    ('{"name": "a\\u0000b"}', "application/json", 400, "name: contains a NUL character"),
    ('{"name": "\\ud800"}', "application/json", 400, "name: contains an unpaired surrogate"),
    ("[" * 5000 + "]" * 5000, "application/json", 400, "nests more than 64 levels deep"),
])
def test_a_body_that_is_not_json_is_refused(hook, body, content_type, status, says):
    endpoint, secret = hook
    response = post(endpoint, body, signed(secret, body), content_type=content_type)
    assert response.status_code == status and says in response.json()["detail"]
    assert nothing_recorded()


def test_a_body_that_is_not_utf8_is_refused(hook):
    endpoint, secret = hook
    response = post(endpoint, b'{"a": "\xff"}', signed(secret, "{}"))
    assert response.status_code == 400 and "not UTF-8" in response.json()["detail"] and nothing_recorded()


def test_missing_or_malformed_headers_are_named(hook):
    endpoint, secret = hook
    headers = signed(secret, ORDER)
    response = post(endpoint, ORDER, {k: v for k, v in headers.items() if k != "HTTP_WEBHOOK_SIGNATURE"})
    assert response.status_code == 400 and response.json()["detail"] == (
        "missing header webhook-signature (Standard Webhooks)")
    response = post(endpoint, ORDER, {**headers, "HTTP_WEBHOOK_TIMESTAMP": "yesterday"})
    assert response.status_code == 400 and "Unix time" in response.json()["detail"]
    response = post(endpoint, ORDER, {**headers, "HTTP_WEBHOOK_ID": "x" * 300})
    assert response.status_code == 400 and "longer than 255" in response.json()["detail"]
    for bad in ("msg 1", "msg\x001", "méssage"):
        response = post(endpoint, ORDER, {**headers, "HTTP_WEBHOOK_ID": bad})
        assert response.status_code == 400 and "printable ASCII" in response.json()["detail"]
    for bad in ("1_700_000_000", "-5", "1e9"):
        response = post(endpoint, ORDER, {**headers, "HTTP_WEBHOOK_TIMESTAMP": bad})
        assert response.status_code == 400 and "Unix time" in response.json()["detail"]
    assert nothing_recorded()


def test_an_unknown_or_disabled_endpoint_refuses(hook):
    endpoint, secret = hook
    ghost = WebhookEndpoint(public_id="00000000-0000-4000-8000-000000000000")
    unknown = post(ghost, ORDER, signed(secret, ORDER))
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_endpoint"
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(active=False)
    disabled = post(endpoint, ORDER, signed(secret, ORDER))
    assert disabled.status_code == 403 and "disabled" in disabled.json()["detail"]
    assert nothing_recorded()


def test_both_secrets_verify_during_a_rotations_grace_then_only_the_new_one(hook):
    endpoint, old = hook
    _, new = webhook_endpoint_rotate(endpoint_id=endpoint.pk, by=None, grace_hours=24)
    assert new != old
    assert post(endpoint, ORDER, signed(old, ORDER, msg_id="a")).status_code == 202
    assert post(endpoint, ORDER, signed(new, ORDER, msg_id="b")).status_code == 202
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(previous_valid_until=datetime.now(tz=UTC) - timedelta(
        seconds=1))
    assert post(endpoint, ORDER, signed(old, ORDER, msg_id="c")).status_code == 401
    _, newest = webhook_endpoint_rotate(endpoint_id=endpoint.pk, by=None, grace_hours=0)
    assert post(endpoint, ORDER, signed(new, ORDER, msg_id="d")).status_code == 401
    assert post(endpoint, ORDER, signed(newest, ORDER, msg_id="e")).status_code == 202


# --- Managing endpoints over the API ------------------------------------------------------------
def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_an_admin_creates_rotates_and_deletes_an_endpoint_and_sees_the_secret_once(org, owner):
    client = as_user(owner)
    created = client.post("/api/v1/webhook-endpoints/", {"name": "Shop"}, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["secret"].startswith("whsec_") and data["url"].endswith(f"/api/v1/hooks/{data['id']}/")
    assert data["secret_hint"] == "whsec_…" + data["secret"][-4:]
    listed = client.get("/api/v1/webhook-endpoints/").json()["results"]
    assert [e["name"] for e in listed] == ["Shop"] and "secret" not in listed[0]
    assert "secret" not in client.get(f"/api/v1/webhook-endpoints/{data['id']}/").json()
    rotated = client.post(f"/api/v1/webhook-endpoints/{data['id']}/rotate/", {"grace_hours": 2}, format="json")
    assert rotated.status_code == 200 and rotated.json()["secret"] != data["secret"]
    assert rotated.json()["previous_valid_until"] is not None
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.valid_secrets() == [rotated.json()["secret"], data["secret"]]
    assert client.patch(f"/api/v1/webhook-endpoints/{data['id']}/", {"active": False},
                        format="json").json()["active"] is False
    duplicate = client.post("/api/v1/webhook-endpoints/", {"name": "Shop"}, format="json")
    assert duplicate.status_code == 400 and "already used" in str(duplicate.json())
    assert client.delete(f"/api/v1/webhook-endpoints/{data['id']}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()


def test_only_admins_manage_endpoints_and_outsiders_find_nothing(hook, teammate, viewer, outsider):
    endpoint, _ = hook
    detail = f"/api/v1/webhook-endpoints/{endpoint.public_id}/"
    for user in (teammate, viewer):
        client = as_user(user)
        assert client.get("/api/v1/webhook-endpoints/").status_code == 403
        assert client.post("/api/v1/webhook-endpoints/", {"name": "Mine"}, format="json").status_code == 403
        assert client.post(detail + "rotate/").status_code == 403
        assert client.delete(detail).status_code == 403
    stranger = as_user(outsider)  # an admin, of another organization
    assert stranger.get("/api/v1/webhook-endpoints/").json()["results"] == []
    assert stranger.get(detail).status_code == 404
    assert stranger.post(detail + "rotate/").status_code == 404
    assert stranger.delete(detail).status_code == 404
    assert WebhookEndpoint.objects.get().secret == endpoint.secret
    assert APIClient().get("/api/v1/webhook-endpoints/").status_code in (401, 403)


# --- The admin ----------------------------------------------------------------------------------
def test_an_admin_adds_an_endpoint_in_the_admin_and_sees_its_secret_once(client, org, owner, teammate):
    client.force_login(owner)
    response = client.post("/admin/webhooks/webhookendpoint/add/", {"organization": org.pk, "name": "Forms"},
                           follow=True)
    endpoint = WebhookEndpoint.objects.get()
    shown = [str(m) for m in response.context["messages"]]
    assert any(endpoint.secret in m and "not shown again" in m for m in shown)
    page = client.get(f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert endpoint.secret not in page and endpoint.secret_hint in page and endpoint.path in page
    listing = client.get("/admin/webhooks/webhookendpoint/").content.decode()
    assert "Forms" in listing and endpoint.secret not in listing
    rotated = client.post("/admin/webhooks/webhookendpoint/", {"action": "rotate", "_selected_action": [endpoint.pk]},
                          follow=True)
    endpoint.refresh_from_db()
    assert any(endpoint.secret in str(m) for m in rotated.context["messages"])
    assert endpoint.previous_secret and endpoint.previous_valid_until
    client.force_login(teammate)  # ops: webhooks are for admins
    assert client.get("/admin/webhooks/webhookendpoint/").status_code == 403


def test_received_messages_are_listed_in_the_admin(client, hook, owner):
    endpoint, secret = hook
    post(endpoint, ORDER, signed(secret, ORDER))
    client.force_login(owner)
    assert "msg_1" in client.get("/admin/webhooks/webhookreceipt/").content.decode()


def test_a_signed_webhook_runs_the_workflows_listening_to_its_endpoint(hook, org):
    from django.core.exceptions import ValidationError

    from crm_automation.crm.models import Task
    from tests.conftest import make_workflow

    endpoint, secret = hook
    big = {"id": "big", "type": "condition", "config": {"rules": [
        {"field": "trigger.body.order.total", "operator": "gt", "value": 40}]}}
    task = {"id": "t", "type": "create_task",
            "config": {"title": "Ship {{trigger.body.order.id}} ({{trigger.endpoint_name}})"}}
    edges = [{"source": "trigger", "target": "big"}, {"source": "big", "target": "t", "sourceHandle": "condition-true"}]
    make_workflow(org, name="Orders", trigger_type="webhook", trigger_config={"endpoint": str(endpoint.public_id)},
                  actions=[big, task], graph={"edges": edges})
    make_workflow(org, name="Other endpoint", trigger_type="webhook",
                  trigger_config={"endpoint": "00000000-0000-0000-0000-000000000000"},
                  actions=[{**task, "config": {"title": "Never"}}])
    assert post(endpoint, ORDER, signed(secret, ORDER)).status_code == 202
    drain()
    assert list(Task.objects.values_list("title", flat=True)) == ["Ship ord_1 (Shop)"]
    assert WorkflowRun.objects.get(workflow__name="Orders").status == "completed"
    with pytest.raises(ValidationError, match="no deal, lead or project to update"):
        make_workflow(org, name="Bad", trigger_type="webhook", trigger_config={},
                      actions=[{"type": "update_field", "config": {"field": "probability", "value": 1}}])
