"""A run waiting for an SMS reply is woken when it comes (crm/sms/inbound.py sends `sms_replied`
in the reply's transaction), as an answered question wakes its run: its step then reads the reply
(nodes/send_sms.py `answered`). A run that is executing right now is not woken: it reads the reply
when it next looks, at the latest when its wait ends; nothing is lost."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm_automation.automation.models import RunStatus, WorkflowRun
from crm_automation.automation.runtime.queue import enqueue_continue


def wake_on_reply(sender: object, run_id: int, **kwargs: object) -> None:
    run = WorkflowRun.objects.select_for_update().filter(pk=run_id, status=RunStatus.WAITING).first()
    if run is None:
        return
    run.status, run.wake_at, run.lease_until, run.lease_owner = RunStatus.STARTED, timezone.now(), None, ""
    run.save(update_fields=["status", "wake_at", "lease_until", "lease_owner"])
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue([run_id]))
