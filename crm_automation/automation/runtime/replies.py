"""A run waiting for an SMS reply is woken when it comes (crm/sms/inbound.py sends `sms_replied`
in the reply's transaction), as an answered question wakes its run: its step then reads the reply
(nodes/send_sms.py `answered`). A run that is executing right now is not woken: it reads the reply
when it next looks: the sweep (every minute, and whenever the watchdog sees work nobody does)
wakes the waiting runs with a reply their step has not read (`wake_replied_runs`); nothing is
lost."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm_automation.automation.models import RunStatus, WorkflowRun
from crm_automation.automation.runtime.queue import enqueue_continue
from crm_automation.crm.models import SmsMessage


def wake_on_reply(sender: object, run_id: int, **kwargs: object) -> None:
    run = WorkflowRun.objects.select_for_update(no_key=True).filter(pk=run_id, status=RunStatus.WAITING).first()
    if run is None:
        return
    run.status, run.wake_at, run.lease_until, run.lease_owner = RunStatus.STARTED, timezone.now(), None, ""
    run.save(update_fields=["status", "wake_at", "lease_until", "lease_owner"])
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue([run_id]))


def wake_replied_runs() -> list[int]:
    """Waiting runs with a reply their step has not read (it came while they were busy): woken.
    One look at the few replied, unread messages (a partial index)."""
    replied = SmsMessage.objects.filter(replied_at__isnull=False, reply_seen=False, run_id__isnull=False)
    run_ids = list(WorkflowRun.objects.filter(pk__in=replied.values("run_id"), status=RunStatus.WAITING)
                   .values_list("pk", flat=True)[:500])
    if run_ids:
        WorkflowRun.objects.filter(pk__in=run_ids, status=RunStatus.WAITING).update(
            status=RunStatus.STARTED, wake_at=timezone.now(), lease_until=None, lease_owner="")
    return run_ids

