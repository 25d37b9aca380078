"""What an SMS provider sends back, in Twilio's wire format (form fields, signed with the
account's auth token: `X-Twilio-Signature` is base64 HMAC-SHA1 of the URL it called followed by
every field name and value in name order).

- A status callback (MessageSid, MessageStatus) writes the provider's word on the message
  (`delivery`: delivered, undelivered, failed …), for the organization whose URL it came to only.
- An inbound message (MessageSid, From, To, Body): STOP, UNSUBSCRIBE, CANCEL, END, QUIT, STOPALL
  or OPTOUT opt the sender's contacts out (later SMS to them are refused with that reason);
  START, UNSTOP, YES or OPTIN opt them back in (from someone opted out: otherwise "YES" is a
  reply); anything else is a reply. Each inbound message is
  taken once (its MessageSid is unique per organization): a provider's retry changes nothing.
  A reply nobody waits for becomes the business event `sms.received`, which can start workflows.
"""

import base64
import contextlib
import hashlib
import hmac
from collections.abc import Mapping

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone

from crm_automation.crm.models import Contact, SmsInbound, SmsMessage, SmsSettings
from crm_automation.crm.phones import e164

STOP_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "OPT-OUT"}
START_WORDS = {"START", "UNSTOP", "YES", "OPTIN", "OPT-IN"}
MAX_FIELD = 2000


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def signature(token: str, url: str, fields: Mapping[str, str]) -> str:
    signed = url + "".join(f"{name}{fields[name]}" for name in sorted(fields))
    return base64.b64encode(hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def _settings(public_id) -> SmsSettings:
    found = SmsSettings.objects.filter(public_id=public_id).select_related("organization").first()
    if found is None:
        raise Refused(404, "unknown_endpoint", "there is no SMS endpoint here; check the URL")
    return found


def verified(public_id, url: str, fields: Mapping[str, str], given: str) -> SmsSettings:
    """The organization's SMS settings, once the signature is the one its token makes."""
    sms_settings = _settings(public_id)
    if not sms_settings.auth_token:
        raise Refused(403, "no_token", "this organization's SMS settings have no auth token to check signatures")
    for name, value in fields.items():
        if len(value) > MAX_FIELD or "\x00" in value:
            raise Refused(400, "bad_field", f"{name[:40]} is too long or holds a NUL character")
    expected = signature(sms_settings.auth_token, url, fields)
    if not given or not hmac.compare_digest(expected, given):
        raise Refused(401, "bad_signature", "the X-Twilio-Signature does not match this URL and these fields")
    return sms_settings


def status_callback(sms_settings: SmsSettings, fields: Mapping[str, str]) -> int:
    """The provider's word on one of the organization's messages; how many rows it changed."""
    sid, state = fields.get("MessageSid", ""), fields.get("MessageStatus", "")
    if not sid or not state:
        raise Refused(400, "missing_fields", "a status callback has MessageSid and MessageStatus")
    error = fields.get("ErrorCode", "")
    values = {"delivery": state[:20]}
    if error:
        values["error"] = f"the provider reports {state} (error {error[:20]})"
    return SmsMessage.objects.filter(organization_id=sms_settings.organization_id, provider_id=sid).update(**values)


def keyword(body: str) -> str:
    """"stop" for an opt-out, "start" for an opt-in, "" for anything else (a reply)."""
    word = body.strip().upper().rstrip(".!")
    return "stop" if word in STOP_WORDS else "start" if word in START_WORDS else ""


@transaction.atomic
def receive(sms_settings: SmsSettings, fields: Mapping[str, str]) -> SmsInbound:
    """Take one inbound message (see the module's docstring); the same MessageSid again is the
    first one, unchanged."""
    sid, sender, body = fields.get("MessageSid", ""), fields.get("From", ""), fields.get("Body", "")
    number = e164(sender)
    if not sid or not number:
        raise Refused(400, "missing_fields", "an inbound message has MessageSid and a From number")
    org_id = sms_settings.organization_id
    contacts = Contact.objects.filter(organization_id=org_id, phone_e164=number)
    kind = keyword(body)
    if kind == "start" and not contacts.filter(sms_opted_out_at__isnull=False).exists():
        kind = ""  # "YES" from someone who never opted out answers a question: a reply
    try:
        with transaction.atomic():
            inbound = SmsInbound.objects.create(organization_id=org_id, provider_id=sid[:64], from_number=number,
                                                body=body[:MAX_FIELD], kind=kind or SmsInbound.Kind.REPLY)
    except IntegrityError:  # the provider sent it again: taken once
        return SmsInbound.objects.get(organization_id=org_id, provider_id=sid[:64])
    if kind == "stop":
        for contact in contacts.filter(sms_opted_out_at__isnull=True):
            contact.sms_opted_out_at = timezone.now()
            contact.save(update_fields=["sms_opted_out_at"])
    elif kind == "start":
        for contact in contacts.exclude(sms_opted_out_at__isnull=True):
            contact.sms_opted_out_at = None
            contact.save(update_fields=["sms_opted_out_at"])
    elif not _awaited_reply(inbound):
        _unawaited_reply(inbound, contacts.order_by("pk").first())
    return inbound


# Sent (in the reply's transaction) with the id of the run whose message got a reply: automation
# wakes it (automation/runtime/replies.py). The CRM never imports automation.
sms_replied = Signal()


def _awaited_reply(inbound: SmsInbound) -> bool:
    """Give a reply to the most recent of the organization's messages to that number that waits
    for one; the older ones waiting are told why they got none. False when none waits."""
    waiting = list(SmsMessage.objects.select_for_update(no_key=True).filter(
        organization_id=inbound.organization_id, to=inbound.from_number, reply_by__isnull=False,
        replied_at__isnull=True, reply_by__gt=timezone.now()).order_by("-created_at", "-pk"))
    if not waiting:
        return False
    latest, *older = waiting
    latest.reply, latest.replied_at = inbound.body, timezone.now()
    latest.save(update_fields=["reply", "replied_at"])
    for message in older:
        message.no_reply_because = (f"the contact's reply went to a later message to them (SMS {latest.pk}, run "
                                    f"{latest.run_id}): a reply goes to the most recent one waiting")[:300]
        message.save(update_fields=["no_reply_because"])
    if latest.run_id is not None:
        sms_replied.send(sender=SmsMessage, run_id=latest.run_id)
    return True


def _unawaited_reply(inbound: SmsInbound, contact: Contact | None) -> None:
    """A reply no run waits for: the business event sms.received (its workflows may start)."""
    from crm_automation.crm.business_events import event_send

    with contextlib.suppress(ValidationError):  # (a body the event refuses: the reply is still kept)
        event_send(organization_id=inbound.organization_id, name="sms.received", source="sms",
                   idempotency_key=f"sms:{inbound.provider_id}", links={"contact": contact.pk} if contact else {},
                   data={"sms": {"body": inbound.body, "from_number": inbound.from_number}})
