"""Lifecycle events delivered to event subscriptions (docs/product.md#lifecycle-events).

Each event's deliveries are written in the event's own transaction (`deliveries_for`, called by
lifecycle.py for the organizations with subscriptions): one `WebhookDelivery` per event and
subscription that wants it, keyed `evt_<event>_sub_<subscription>` (also the Standard Webhooks
`webhook-id`, so a receiver deduplicates a retry). So a delivery exists exactly when its event
committed: none is passed over however transactions interleave, and a rolled-back change leaves
none. The deliveries are then sent outside any transaction, one at a time, as a workflow's HTTP
requests are (delivery.py: signed with the target's secret, one attempt row per try, 410 disables
the target).

A failed delivery is tried again after RETRY_AFTER[attempts] (1 min, 5 min, 30 min, 2 h, 8 h: six
tries in about 11 hours), then left failed. One left `sending` by a worker that died is tried
again after STUCK_AFTER. A pass runs after the commit of any event with deliveries
(lifecycle._fan_out) and every minute (the schedule below).
"""

import json
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from crm_automation.automation.models import LifecycleEvent
from crm_automation.automation.runtime.queue import async_task
from crm_automation.webhooks.delivery import deliveries_send
from crm_automation.webhooks.models import DeliveryStatus, EventSubscription, WebhookDelivery

logger = logging.getLogger(__name__)

DELIVER_TASK = "crm_automation.webhooks.subscriptions.deliver"
BATCH = 200  # deliveries sent per pass, at most
RETRY_AFTER = [timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
               timedelta(hours=8)]
MAX_ATTEMPTS = len(RETRY_AFTER) + 1
STUCK_AFTER = timedelta(minutes=5)


def message(event: LifecycleEvent) -> dict:
    """The body a receiver gets: Standard Webhooks' {type, timestamp, data}, plus the event's id
    (as GET /api/v1/lifecycle-events/ lists it)."""
    return {"type": event.type, "timestamp": event.occurred_at.isoformat(), "id": event.pk, "data": event.data}


def key_of(event_id: int, subscription_id: int) -> str:
    return f"evt_{event_id}_sub_{subscription_id}"


def enqueue_delivery(organization_id: int) -> None:
    async_task(DELIVER_TASK, organization_id, save=False, group="lifecycle-delivery")


def deliveries_for(events: list[LifecycleEvent]) -> int:
    """The deliveries of `events` (saved, with their ids) to their organizations' active
    subscriptions that want them, in the caller's transaction. Returns how many were written."""
    subscriptions = list(EventSubscription.objects.filter(
        organization_id__in={event.organization_id for event in events}, active=True).select_related("target"))
    rows = [WebhookDelivery(organization_id=event.organization_id, target=subscription.target,
                            subscription=subscription, automation_key=key_of(event.pk, subscription.pk),
                            run_id=event.run_id, method="POST", url=subscription.target.url,
                            body=json.dumps(message(event), separators=(",", ":"), sort_keys=True))
            for event in events for subscription in subscriptions
            if subscription.organization_id == event.organization_id and subscription.wants(event.type)]
    if rows:
        WebhookDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _due(subscription_ids: list[int], now) -> list[int]:
    """Queued deliveries, failed ones whose wait is over, and stuck ones, oldest first."""
    retry = Q()
    for attempts, wait in enumerate(RETRY_AFTER, start=1):
        retry |= Q(attempts=attempts, finished_at__lte=now - wait)
    ours = WebhookDelivery.objects.filter(subscription_id__in=subscription_ids)
    again = list(ours.filter(retry, status=DeliveryStatus.FAILED, target__active=True)
                 .values_list("pk", flat=True)[:BATCH])
    stuck = list(ours.filter(status=DeliveryStatus.SENDING, sending_since__lte=now - STUCK_AFTER)
                 .values_list("pk", flat=True)[:BATCH])
    if again:
        ours.filter(pk__in=again, status=DeliveryStatus.FAILED).update(status=DeliveryStatus.QUEUED)
    if stuck:
        ours.filter(pk__in=stuck, status=DeliveryStatus.SENDING).update(status=DeliveryStatus.QUEUED)
    return list(ours.filter(status=DeliveryStatus.QUEUED).order_by("pk").values_list("pk", flat=True)[:BATCH])


def deliver(organization_id: int | None = None, *, budget: float | None = None) -> int:
    """One pass for the organization's active subscriptions (None: everyone's). Returns how many
    deliveries were tried or settled. Call it outside a transaction."""
    deadline = time.monotonic() + (budget if budget is not None else settings.AUTOMATION["DRAIN_TIME_BUDGET"])
    subscriptions = EventSubscription.objects.filter(active=True)
    if organization_id is not None:
        subscriptions = subscriptions.filter(organization_id=organization_id)
    ids = list(subscriptions.values_list("pk", flat=True))
    if not ids:
        return 0
    done = deliveries_send(delivery_ids=_due(ids, timezone.now()), deadline=deadline)
    if done:
        logger.info("Delivered %s lifecycle event messages", len(done))
    return len(done)


def ensure_delivery_schedule(**kwargs) -> None:
    """Every minute: retries, and events no process was poked about."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(name="lifecycle-delivery", defaults={
        "func": DELIVER_TASK, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1})
