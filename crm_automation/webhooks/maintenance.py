"""Housekeeping: receipts of inbound messages are kept WEBHOOK_RECEIPT_DAYS days.

A receipt's job is to refuse a replayed webhook-id; a message older than the timestamp tolerance
(5 minutes) is refused by its timestamp anyway, so older receipts only serve the admin's
"what came in" list. The run a message started keeps its payload in the outbox event.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from crm_automation.webhooks.models import WebhookReceipt

logger = logging.getLogger(__name__)

PRUNE_TASK = "crm_automation.webhooks.maintenance.prune_receipts"
BATCH = 5000  # rows per DELETE: short statements, no long lock on the table


def prune_receipts(days: int | None = None) -> int:
    """Delete receipts older than `days` (default: the setting). Returns how many went."""
    days = settings.WEBHOOK_RECEIPT_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    removed = 0
    while True:
        batch = list(WebhookReceipt.objects.filter(received_at__lt=cutoff).order_by()
                     .values_list("pk", flat=True)[:BATCH])
        if not batch:
            break
        removed += WebhookReceipt.objects.filter(pk__in=batch).delete()[0]
    if removed:
        logger.info("Pruned %s webhook receipts older than %s days", removed, days)
    return removed


def ensure_prune_schedule(**kwargs) -> None:
    """Once a day on any cluster: created once, idempotently (like the automation sweep)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name="webhooks-prune-receipts",
        defaults={"func": PRUNE_TASK, "schedule_type": Schedule.DAILY, "repeats": -1},
    )
