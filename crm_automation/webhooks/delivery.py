"""Outbound deliveries: claim one, send it, record the try (one attempt row per try).

Like the email outbox, each part commits on its own and runs outside the engine's transactions:
a worker killed mid-request leaves the delivery `sending`; the next holder of its run sends it
again under the same webhook-id, which receivers use to deduplicate (Standard Webhooks).

Outcomes: 2xx succeeded; a redirect is a failure (it is not followed: the URL should be the final
one); 410 Gone fails and disables the target (the receiver asked us to stop); any other status,
a timeout or a refused address fails. Retrying is the node's error policy (error_policy.py).
"""

import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm_automation.webhooks import guard, signing
from crm_automation.webhooks.client import Answer, call
from crm_automation.webhooks.models import ChatChannel, DeliveryStatus, WebhookAttempt, WebhookDelivery, WebhookTarget
from crm_automation.workers import shutdown

Status = DeliveryStatus
ATTEMPT_TEXT = 2_000  # of a response body, on its attempt row
OUTPUT_TEXT = 10_000  # of a response body, in the node's output


def result_of(delivery: WebhookDelivery) -> dict:
    """The step's result: the node's output ({{Label.status}}, {{Label.body}}, {{Label.body.id}})."""
    result = {"delivery_id": delivery.pk, "webhook_id": delivery.automation_key, "method": delivery.method,
              "url": delivery.url, "delivery": delivery.status, "attempts": delivery.attempts}
    if delivery.status in (Status.SUCCEEDED, Status.FAILED) and delivery.attempts:
        result["status"] = delivery.response_status
        result["body"] = delivery.response_json if delivery.response_json is not None else delivery.response_body
    return result


def _claim(delivery_id: int) -> bool:
    return bool(WebhookDelivery.objects.filter(pk=delivery_id, status=Status.QUEUED).update(
        status=Status.SENDING, sending_since=timezone.now()))


def _settle(delivery: WebhookDelivery, status: str, error: str) -> None:
    """A delivery that ends without a try (its target is gone or disabled)."""
    WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
        status=status, error=error, finished_at=timezone.now())


def _failure(answer: Answer, target: WebhookTarget) -> str:
    if answer.error:
        return answer.error
    status = answer.status
    assert status is not None, "an answer without an error has a status"
    if 200 <= status < 300:
        return ""
    if 300 <= status < 400:
        where = f" to {answer.location}" if answer.location else ""
        return f"the receiver answered {status} (a redirect{where}); redirects are not followed: use the final URL"
    if status == 410:
        return f"the receiver answered 410 Gone: target “{target.name}” is now disabled (enable it to send again)"
    snippet = " ".join(answer.text.split())[:200]
    return f"the receiver answered {status}" + (f": {snippet}" if snippet else "")


@transaction.atomic
def _record(delivery: WebhookDelivery, target: WebhookTarget, answer: Answer, started) -> None:
    error = _failure(answer, target)
    if answer.status == 410:
        WebhookTarget.objects.filter(pk=target.pk, active=True).update(
            active=False, disabled_at=timezone.now(),
            disabled_reason=f"the receiver answered 410 Gone to {delivery.url} (delivery {delivery.pk})"[:500])
    _record_try(delivery, answer, started, error)


@transaction.atomic
def _record_try(delivery: WebhookDelivery, answer: Answer, started, error: str) -> None:
    """One attempt row, and the delivery's outcome."""
    number = WebhookAttempt.objects.filter(delivery=delivery).count() + 1
    WebhookAttempt.objects.create(
        delivery=delivery, number=number, started_at=started, duration_ms=answer.duration_ms,
        address=answer.address, status_code=answer.status, response_body=answer.text[:ATTEMPT_TEXT],
        error=error, succeeded=not error)
    # The truth wins: written from `sending`, or from `queued` if a resumed run gave up on us.
    WebhookDelivery.objects.filter(pk=delivery.pk, status__in=[Status.SENDING, Status.QUEUED]).update(
        status=Status.FAILED if error else Status.SUCCEEDED, error=error, attempts=number,
        response_status=answer.status, response_body=answer.text[:OUTPUT_TEXT],
        response_json=answer.data if isinstance(answer.data, dict | list) else None, finished_at=timezone.now())


def _under(url: str, base: str) -> bool:
    try:
        return guard.within(guard.parse(url), guard.parse(base))
    except guard.Refused:
        return True  # the guard refuses it when it is tried, with its reason, on the attempt row


def chat_request(channel: ChatChannel) -> tuple[str, dict[str, str]]:
    """Where a post to the channel goes and the credentials it carries: Slack's API with the bot
    token, or the channel's incoming webhook URL (itself the credential)."""
    if channel.kind == ChatChannel.Kind.SLACK and channel.bot_token:
        return f"{settings.SLACK_API_BASE}/api/chat.postMessage", {"authorization": f"Bearer {channel.bot_token}"}
    return channel.webhook_url, {}


def _chat_failure(answer: Answer) -> str:
    """Slack's API answers 200 with {"ok": false, "error": …} when it refuses a post."""
    if answer.error or answer.status is None or not 200 <= answer.status < 300:
        return answer.error or f"the chat service answered {answer.status}: {' '.join(answer.text.split())[:200]}"
    if isinstance(answer.data, dict) and answer.data.get("ok") is False:
        return f"Slack refused the post: {answer.data.get('error', 'no reason given')}"
    return ""


def _send_chat(delivery: WebhookDelivery) -> None:
    channel = delivery.channel
    if channel is None or not channel.active:
        _settle(delivery, Status.FAILED, "its chat channel was deleted or disabled")
        return
    url, headers = chat_request(channel)
    if not url:
        _settle(delivery, Status.FAILED, f"chat channel “{channel.name}” has no webhook URL or bot token")
        return
    started = timezone.now()
    answer = call(method="POST", url=url, body=delivery.body.encode(), timeout=settings.WEBHOOK_TIMEOUT,
                  headers={**headers, "content-type": "application/json"})
    # The webhook URL is the channel's secret: what is kept of the try never quotes it.
    answer.error = answer.error.replace(url, f"<{channel.name}'s URL>")
    _record_try(delivery, answer, started, _chat_failure(answer))


def _send(delivery: WebhookDelivery) -> None:
    if delivery.channel_id is not None:
        _send_chat(delivery)
        return
    target = delivery.target
    if target is None:
        _settle(delivery, Status.FAILED, "its webhook target was deleted, so there is no secret to sign with")
        return
    if not target.active:
        why = target.disabled_reason or "by a person"
        _settle(delivery, Status.FAILED, f"webhook target “{target.name}” is disabled: {why}")
        return
    if not _under(delivery.url, target.url):
        _settle(delivery, Status.FAILED,
                f"{delivery.url} is not under the URL of target “{target.name}” ({target.url})")
        return
    body = delivery.body if delivery.method not in ("GET", "DELETE") else ""
    headers = {**delivery.headers,
               **signing.headers(target.valid_secrets(), message_id=delivery.automation_key,
                                 timestamp=int(time.time()), body=body)}
    if body:
        headers["content-type"] = "application/json"
    started = timezone.now()
    answer = call(method=delivery.method, url=delivery.url, headers=headers,
                  body=body.encode() if body else None, timeout=settings.WEBHOOK_TIMEOUT)
    _record(delivery, target, answer, started)


def deliveries_send(*, delivery_ids: list[int], deadline: float | None = None) -> dict[int, WebhookDelivery]:
    """Send queued deliveries one at a time until done or `deadline` (monotonic) passes. Call it
    outside a transaction. Returns {id: row} for those tried or found settled; the others (not
    reached before the deadline, or being sent by someone else) are left out."""
    done = {}
    for delivery_id in delivery_ids:
        if shutdown.past(deadline):
            break
        if _claim(delivery_id):
            _send(WebhookDelivery.objects.select_related("target", "channel").get(pk=delivery_id))
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        if delivery.status in (Status.SUCCEEDED, Status.FAILED):
            done[delivery_id] = delivery
    return done
