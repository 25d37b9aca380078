"""Receiving a webhook: verify it, refuse replays, and record it as an event (the outbox).

`webhook_receive` checks, in this order, and refuses with a status and a message that says
which check failed (nothing is recorded then):

1. the endpoint exists (404) and is enabled (403);
2. the body is at most WEBHOOK_MAX_BODY bytes (413) and declared as JSON (415);
3. the Standard Webhooks headers are there (400), the timestamp is within 5 minutes (401), and
   the signature is the current secret's or, during a rotation's grace period, the previous
   one's (401);
4. the endpoint's organization is on a plan that includes automation (403, code `plan`: Free
   does not; checked after the signature, so only the sender learns it);
5. the body is UTF-8 JSON (400), at most 64 containers deep, that a database can store (no
   NaN, no NUL characters);
6. its webhook-id was not received before (409).

Then, in one transaction, a receipt (unique per endpoint and webhook-id: the database settles
two deliveries of one message racing each other) and an AutomationEvent of kind "webhook" whose
payload carries the body, so a workflow reads `{{trigger.body.order.id}}`.
"""

import re
import time
from collections.abc import Mapping

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from crm_automation import bounded_reader
from crm_automation.automation import plans
from crm_automation.automation.runtime.outbox import record_changes
from crm_automation.crm import business_events
from crm_automation.crm.changes import RecordChange
from crm_automation.webhooks import signing
from crm_automation.webhooks.models import WebhookEndpoint, WebhookReceipt

WEBHOOK = "webhook"  # the trigger (catalog.LATER_TRIGGERS until runs without a record exist)
MAX_DEPTH = 64
MAX_MESSAGE_ID = 255
MESSAGE_ID = re.compile(r"[\x21-\x7e]+")
TIMESTAMP = re.compile(r"[0-9]{1,12}")


class Refused(Exception):
    """Why a message was refused: an HTTP status, a stable code and a sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def max_body() -> int:
    return settings.WEBHOOK_MAX_BODY


def _endpoint(public_id) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(public_id=public_id).select_related("organization").first()
    if endpoint is None:
        raise Refused(404, "unknown_endpoint", f"there is no webhook endpoint {public_id}; check the URL")
    if not endpoint.active:
        raise Refused(403, "endpoint_disabled", f"webhook endpoint {public_id} is disabled; an administrator "
                                                "can enable it")
    return endpoint


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    found = {name: (headers.get(name) or "").strip() for name in ("webhook-id", "webhook-timestamp",
                                                                 "webhook-signature")}
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise Refused(400, "missing_headers", f"missing header{'s' if len(missing) > 1 else ''} "
                                              f"{', '.join(missing)} (Standard Webhooks)")
    if len(found["webhook-id"]) > MAX_MESSAGE_ID:
        raise Refused(400, "bad_headers", f"webhook-id is longer than {MAX_MESSAGE_ID} characters")
    if not MESSAGE_ID.fullmatch(found["webhook-id"]):
        raise Refused(400, "bad_headers", "webhook-id may only contain printable ASCII characters, no spaces")
    if not TIMESTAMP.fullmatch(found["webhook-timestamp"]):
        raise Refused(400, "bad_headers", "webhook-timestamp must be a Unix time in whole seconds")
    sent = int(found["webhook-timestamp"])
    age = int(time.time()) - sent
    if age > signing.TOLERANCE_SECONDS:
        raise Refused(401, "timestamp_too_old", f"webhook-timestamp is {age} s old; messages older than 5 minutes "
                                                "are refused (replay protection): sign when you send, and check "
                                                "the sender's clock")
    if -age > signing.TOLERANCE_SECONDS:
        raise Refused(401, "timestamp_in_future", f"webhook-timestamp is {-age} s in the future; more than 5 "
                                                  "minutes ahead is refused: check the sender's clock")
    return found


def _parse(text: str):
    """The body, read by the bounded reader: at most MAX_DEPTH containers deep (`[[…]]` 64 times;
    one more is refused, whatever is inside), finite numbers, no NUL or unpaired surrogates."""
    limits = bounded_reader.Limits(max_bytes=max_body(), max_depth=MAX_DEPTH,
                                   max_nodes=bounded_reader.PAYLOAD.max_nodes, what="the body")
    try:
        return bounded_reader.read_json(text, limits)
    except bounded_reader.InputRefused as exc:
        raise Refused(400, "not_json", f"the body cannot be used: {exc}") from None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _verified(public_id, headers: Mapping[str, str], body: bytes, content_type: str):
    """Checks 1 to 5 of the module's docstring: the endpoint, its headers and the parsed body."""
    endpoint = _endpoint(public_id)
    if len(body) > max_body():
        raise Refused(413, "too_large", f"the body is larger than {max_body() // 1024} KB")
    if not _is_json(content_type):
        raise Refused(415, "not_json", f"send JSON with Content-Type: application/json (got "
                                       f"“{content_type[:100] or 'none'}”)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "not_json", "the body is not UTF-8 text, so it is not JSON") from None
    found = _headers(headers)
    if not signing.verified(endpoint.valid_secrets(), body=text, headers=found):
        raise Refused(401, "bad_signature", "the webhook-signature does not match: sign “<webhook-id>.<webhook-"
                                            "timestamp>.<body>” with the endpoint's secret (HMAC-SHA256, base64, "
                                            "as v1,<signature>)")
    if not plans.includes_automation(endpoint.organization.plan):
        raise Refused(403, "plan", plans.refusal(endpoint.organization))
    return endpoint, found, _parse(text)


def _replayed(endpoint: WebhookEndpoint, message_id: str) -> Refused:
    earlier = WebhookReceipt.objects.filter(endpoint=endpoint, message_id=message_id).first()
    if earlier is None:
        raise IntegrityError(f"webhook {message_id} was refused by the database")
    return Refused(409, "replayed", f"message {message_id} was already received at "
                                    f"{earlier.received_at:%Y-%m-%d %H:%M:%S} UTC; it is not processed twice")


def webhook_receive(*, public_id, headers: Mapping[str, str], body: bytes, content_type: str) -> WebhookReceipt:
    """Verify and record one inbound message (see the module's docstring); Refused if not."""
    endpoint, found, data = _verified(public_id, headers, body, content_type)
    try:
        with transaction.atomic():
            receipt = WebhookReceipt.objects.create(organization_id=endpoint.organization_id, endpoint=endpoint,
                                                    message_id=found["webhook-id"], size=len(body))
            payload = {"endpoint": str(endpoint.public_id), "endpoint_name": endpoint.name,
                       "webhook_id": found["webhook-id"], "body": data}
            record_changes(sender=WebhookReceipt, changes=[RecordChange(
                kind=WEBHOOK, organization_id=endpoint.organization_id, entity_type=WEBHOOK,
                entity_id=receipt.pk, payload=payload)])
    except IntegrityError:
        raise _replayed(endpoint, found["webhook-id"]) from None
    return receipt


class EventRefused(Refused):
    """A signed message whose event does not pass its declaration: each place and its problem."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(400, "invalid_event", "; ".join(f"{place}: {' '.join(m)}" for place, m in errors.items()))
        self.errors = errors


def event_receive(*, public_id, headers: Mapping[str, str], body: bytes, content_type: str):
    """Verify one message as webhook_receive does, and take its body as another system's business
    event (crm/business_events.py: `{"type": "invoice.overdue", "contact": {"phone": …}, "data":
    {…}}`). The receipt and the event commit together: a refused event leaves no receipt, so the
    sender may fix it and send it again with the same webhook-id. Returns (BusinessEvent, created)."""
    endpoint, found, data = _verified(public_id, headers, body, content_type)
    try:
        with transaction.atomic():
            WebhookReceipt.objects.create(organization_id=endpoint.organization_id, endpoint=endpoint,
                                          message_id=found["webhook-id"], size=len(body))
            return business_events.event_receive(organization_id=endpoint.organization_id, body=data,
                                                 source=f"webhook:{endpoint.name}")
    except ValidationError as exc:
        raise EventRefused(exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}) from None
    except IntegrityError:
        raise _replayed(endpoint, found["webhook-id"]) from None
