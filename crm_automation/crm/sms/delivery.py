"""The SMS outbox, delivered as the email outbox is (crm/email_delivery.py): claim one message
(queued → sending, committed), hand it to the provider, record the outcome (committed). A worker
killed in between leaves at most the one message it was handing over in `sending`; the next
holder of its run marks it unknown, and it is never sent again automatically."""

import logging
from collections.abc import Iterable
from time import monotonic

from django.utils import timezone

from crm_automation.crm.models import SmsMessage, SmsSettings
from crm_automation.crm.sms.providers import SENT, UNKNOWN, provider_for
from crm_automation.workers import shutdown

logger = logging.getLogger(__name__)
Status = SmsMessage.Status
UNKNOWN_OUTCOME = ("the worker stopped while handing this SMS to the provider, so it may or may not have been "
                   "sent; it is not sent again automatically")


def _claim(message: SmsMessage) -> bool:
    now = timezone.now()
    claimed = SmsMessage.objects.filter(pk=message.pk, status=Status.QUEUED).update(
        status=Status.SENDING, sending_since=now, error="", attempts=message.attempts + 1)
    if claimed:
        message.status, message.sending_since, message.attempts = Status.SENDING, now, message.attempts + 1
    return bool(claimed)


def _record(message: SmsMessage, status: str, provider_id: str, error: str) -> None:
    """The outcome, from `sending` (or `unknown`, if someone gave up on us meanwhile: the truth wins)."""
    values: dict[str, object] = {"status": status, "error": error[:2000], "provider_id": provider_id}
    if status == Status.SENT:
        values["sent_at"] = timezone.now()
    SmsMessage.objects.filter(pk=message.pk, status__in=[Status.SENDING, Status.UNKNOWN]).update(**values)
    for name, value in values.items():
        setattr(message, name, value)


def sms_deliver(*, sms_ids: Iterable[int], deadline: float | None = None) -> dict[int, SmsMessage]:
    """Send queued messages one at a time until done or `deadline`; {id: row} of those attempted
    (the others stay queued). Call it outside a transaction: each step commits on its own."""
    ids = list(sms_ids)
    rows = SmsMessage.objects.in_bulk(ids)
    found = {s.organization_id: s for s in SmsSettings.objects.filter(
        organization_id__in={m.organization_id for m in rows.values()})}
    done: dict[int, SmsMessage] = {}
    for message in (rows[i] for i in ids if i in rows):
        if shutdown.requested() or (deadline is not None and monotonic() >= deadline):
            break
        if not _claim(message):
            done[message.pk] = SmsMessage.objects.get(pk=message.pk)  # settled, or someone else has it
            continue
        sms_settings = found.get(message.organization_id)
        if sms_settings is None:
            _record(message, Status.FAILED, "", "SMS is not set up for this organization any more")
        else:
            try:
                handed = provider_for(sms_settings).send(message, sms_settings)
            except Exception as exc:  # a bug in a provider: it may have gone out
                logger.exception("SMS %s: the provider crashed", message.pk)
                _record(message, Status.UNKNOWN, "", f"the provider crashed: {type(exc).__name__}; it may or may "
                                                     "not have been sent")
            else:
                status = {SENT: Status.SENT, UNKNOWN: Status.UNKNOWN}.get(handed.status, Status.FAILED)
                _record(message, status, handed.provider_id, handed.error)
        done[message.pk] = message
    return done


def sms_in_flight(*, organization_id: int, since) -> bool:
    return SmsMessage.objects.filter(status=Status.SENDING, organization_id=organization_id,
                                     sending_since__gte=since).exists()


def sms_mark_unknown(*, sms_id: int) -> SmsMessage:
    SmsMessage.objects.filter(pk=sms_id, status=Status.SENDING).update(status=Status.UNKNOWN, error=UNKNOWN_OUTCOME)
    return SmsMessage.objects.get(pk=sms_id)
