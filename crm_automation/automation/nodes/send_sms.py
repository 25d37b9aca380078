"""Send an SMS (`crm/send_sms`): `to` (a template, usually {{trigger.contact.phone}}) and `body`;
with `wait_for_reply: true` the step then waits (the run holding nothing, woken by the reply) up
to `reply_timeout_hours` (48 by default) for the contact's answer: {{Send SMS.reply}} is its text,
or null with {{Send SMS.timed_out}} true when none came (crm/sms/inbound.py matches a reply to
the most recent message waiting for that number).

The message is an outbox row committed with the run's other steps and delivered after the commit
by crm/sms/delivery.py (at most once: a message whose outcome is unknown is never sent again).
Refused before anything is queued: SMS not set up, a number that is not one, a contact who replied
STOP. In the organization's quiet hours the step waits (the run holds nothing) for the next
allowed minute and is done then.
"""

from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone

from crm_automation.automation.nodes.base import ActionFailed, ExecutionContext, NotYet, Result
from crm_automation.automation.nodes.create_records import run_contact
from crm_automation.automation.nodes.create_task import linked_deal, linked_lead, linked_project
from crm_automation.automation.nodes.outbox import OutboxAction
from crm_automation.crm.models import Contact, Organization, SmsMessage, SmsSettings
from crm_automation.crm.phones import e164
from crm_automation.crm.sms.delivery import sms_deliver, sms_in_flight, sms_mark_unknown
from crm_automation.crm.sms.segments import MAX_SEGMENTS, length

Status = SmsMessage.Status
DEFAULT_WAIT_HOURS, MIN_WAIT_HOURS, MAX_WAIT_HOURS = 48, 1 / 60, 720


def quiet_until(sms_settings: SmsSettings, now: datetime, zone: str) -> datetime | None:
    """The end of the quiet hours `now` falls in (the organization's time zone), else None."""
    start, end = sms_settings.quiet_start, sms_settings.quiet_end
    if start is None or end is None:
        return None
    local = now.astimezone(ZoneInfo(zone))
    clock = local.time().replace(tzinfo=None)
    inside = start <= clock < end if start < end else (clock >= start or clock < end)
    if not inside:
        return None
    day = local.date() if clock < end else local.date() + timedelta(days=1)
    return datetime.combine(day, time(end.hour, end.minute), tzinfo=ZoneInfo(zone))


class SendSms(OutboxAction):
    type = "send_sms"
    label = "Send SMS"
    model, id_key, what = SmsMessage, "sms_id", "SMS"
    required = ("to", "body")
    optional = ("wait_for_reply", "reply_timeout_hours")
    templated = ("to", "body")

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        to, body = config.get("to"), config.get("body")
        if isinstance(to, str) and to and "{{" not in to and not e164(to):
            errors.append(("config.to", f"“{to[:40]}” is not a phone number (write it with its country code)"))
        if isinstance(body, str) and "{{" not in body and length(body).segments > MAX_SEGMENTS:
            errors.append(("config.body", f"is {length(body)}; at most {MAX_SEGMENTS} SMS"))
        if not isinstance(config.get("wait_for_reply", False), bool):
            errors.append(("config.wait_for_reply", "must be true (wait for the contact's reply) or false"))
        hours = config.get("reply_timeout_hours")
        if hours is not None and (isinstance(hours, bool) or not isinstance(hours, int | float)
                                  or not MIN_WAIT_HOURS <= hours <= MAX_WAIT_HOURS):
            errors.append(("config.reply_timeout_hours", f"must be a number of hours from {MIN_WAIT_HOURS:.3f} "
                                                         f"(a minute) to {MAX_WAIT_HOURS} (30 days)"))
        elif hours is not None and not config.get("wait_for_reply"):
            errors.append(("config.reply_timeout_hours", "is how long to wait for a reply: set wait_for_reply too"))
        return errors

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> SmsMessage:
        sms_settings = SmsSettings.objects.filter(organization_id=ctx.organization_id).first()
        if sms_settings is None:
            raise ActionFailed("SMS is not set up for this organization: an admin sets the sender in the admin "
                               "(SMS settings); nothing was sent")
        raw = ctx.render("to", config["to"]).strip()
        number = e164(raw)
        if not number:
            why = ctx.why_empty(config["to"]) if not raw else None
            raise ActionFailed(f"{why}, so there is no number to text" if why else
                               f"“{raw[:40]}” is not a phone number; nothing was sent")
        body = ctx.render("body", config["body"]).strip()
        if not body:
            raise ActionFailed("the message rendered empty; nothing was sent")
        size = length(body)
        if size.segments > MAX_SEGMENTS:
            raise ActionFailed(f"the message is {size}; at most {MAX_SEGMENTS} SMS: nothing was sent")
        contact = run_contact(ctx)
        if contact is None or contact.phone_e164 != number:
            contact = Contact.objects.filter(organization_id=ctx.organization_id, phone_e164=number).order_by(
                "pk").first()
        if contact is not None and contact.sms_opted_out_at is not None:
            raise ActionFailed(f"{contact} asked for no more SMS (replied STOP on "
                               f"{contact.sms_opted_out_at:%Y-%m-%d}); SMS to them are refused until they reply "
                               "START; nothing was sent")
        if not ctx.simulating:
            zone = Organization.objects.filter(pk=ctx.organization_id).values_list("time_zone", flat=True).first()
            until = quiet_until(sms_settings, timezone.now(), zone or "UTC")
            if until is not None:
                raise NotYet(until, f"the organization's quiet hours ({sms_settings.quiet_start:%H:%M}–"
                                    f"{sms_settings.quiet_end:%H:%M}): it is sent at {until:%H:%M}")
        record = ctx.record
        reply_by = None
        if config.get("wait_for_reply"):
            hours = config.get("reply_timeout_hours", DEFAULT_WAIT_HOURS)
            reply_by = timezone.now() + timedelta(seconds=round(hours * 3600))
        return SmsMessage(organization_id=ctx.organization_id, to=number, from_number=sms_settings.from_number,
                          body=body, segments=size.segments, encoding=size.encoding, contact=contact,
                          deal=linked_deal(record), lead=linked_lead(record), project=linked_project(record),
                          status=Status.QUEUED, automation_key=ctx.key, run_id=ctx.run_id, reply_by=reply_by)

    @staticmethod
    def _result(message: SmsMessage) -> Result:
        result: Result = {"sms_id": message.pk, "to": message.to, "body": message.body, "segments": message.segments}
        if message.reply_by is not None:
            result["reply_by"] = message.reply_by.isoformat()
        return result

    def awaiting(self, result: Result) -> datetime | None:
        return datetime.fromisoformat(result["reply_by"]) if result.get("reply_by") else None

    def answered(self, result: Result, *, over: bool) -> Result | None:
        """The reply, once it came; when the wait is over without one, `timed_out` and, when
        another run's message took the contact's reply, why none came here."""
        message = SmsMessage.objects.filter(pk=int(result.get("sms_id") or 0)).first()
        if message is not None and message.replied_at is not None:
            if not message.reply_seen:
                SmsMessage.objects.filter(pk=message.pk).update(reply_seen=True)
            return {**result, "reply": message.reply, "timed_out": False, "replied_at": message.replied_at.isoformat()}
        if not over:
            return None
        why = message.no_reply_because if message is not None and message.no_reply_because else \
            "none came in time"
        return {**result, "reply": None, "timed_out": True, "no_reply_because": why}

    def apply(self, items: list[tuple[ExecutionContext, SmsMessage]]) -> list[Result]:
        return [self._result(m) for m in SmsMessage.objects.bulk_create([message for _, message in items])]

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {m.automation_key: self._result(m) for m in SmsMessage.objects.filter(automation_key__in=keys)
                if m.automation_key is not None}

    def mark_unknown(self, pk: int) -> Any:
        return sms_mark_unknown(sms_id=pk)

    def deliver_rows(self, ids: list[int], deadline: float | None) -> dict[int, Any]:
        return sms_deliver(sms_ids=ids, deadline=deadline)

    def in_flight_rows(self, organization_id: int, since: datetime) -> bool:
        return sms_in_flight(organization_id=organization_id, since=since)
