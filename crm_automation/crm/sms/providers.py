"""Who hands an SMS to the phone network: the test provider (nothing leaves the server; the demo
and the tests use it) or Twilio (its REST API, through the SSRF-guarded client).

`send` answers what became of one message: sent (with the provider's id for it), failed (the
provider refused it or nothing was handed over: safe to send again) or unknown (the provider may
have it: never sent again automatically).
"""

import base64
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings

from crm_automation.webhooks import client

SENT, FAILED, UNKNOWN = "sent", "failed", "unknown"
# The test provider's numbers that behave badly, as Twilio's test credentials' magic numbers do:
# a number that cannot take SMS (refused: failed), one whose provider never answers (unknown).
FAKE_REFUSED, FAKE_NO_ANSWER = "+15005550001", "+15005550009"


@dataclass(frozen=True)
class Handed:
    status: str
    provider_id: str = ""
    error: str = ""


def callback_url(sms_settings) -> str:
    """Where the provider reports what became of a message (crm/sms/inbound.py)."""
    return f"{settings.SITE_URL}/api/v1/sms/{sms_settings.public_id}/status/"


class FakeProvider:
    """Sends nothing: every message is "sent" at once (but the magic numbers above)."""

    def send(self, message, sms_settings) -> Handed:
        if message.to == FAKE_REFUSED:
            return Handed(FAILED, error="21614: the test provider's “not a mobile number” (+15005550001)")
        if message.to == FAKE_NO_ANSWER:
            return Handed(UNKNOWN, error="the test provider's “never answers” (+15005550009): it may or may "
                                         "not have been sent")
        return Handed(SENT, provider_id=f"SMFAKE{uuid.uuid4().hex}")


class TwilioProvider:
    """POST /2010-04-01/Accounts/{sid}/Messages.json, with a status callback to this site."""

    def send(self, message, sms_settings) -> Handed:
        sid, token = sms_settings.account_sid, sms_settings.auth_token
        if not sid or not token:
            return Handed(FAILED, error="SMS is set to Twilio but its account SID or auth token is missing")
        url = f"{settings.TWILIO_API_BASE}/2010-04-01/Accounts/{sid}/Messages.json"
        body = urlencode({"To": message.to, "From": message.from_number, "Body": message.body,
                          "StatusCallback": callback_url(sms_settings)}).encode()
        auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
        answer = client.call(method="POST", url=url, body=body, timeout=settings.SMS_TIMEOUT, headers={
            "authorization": f"Basic {auth}", "content-type": "application/x-www-form-urlencoded"})
        if answer.refused or answer.not_sent:
            return Handed(FAILED, error=f"could not reach Twilio: {answer.error}")
        if answer.status is None:  # the request went out and no answer came: Twilio may have it
            return Handed(UNKNOWN, error=f"Twilio did not answer ({answer.error}); it may or may not have been sent")
        data = answer.data if isinstance(answer.data, dict) else {}
        if 200 <= answer.status < 300 and data.get("sid"):
            return Handed(SENT, provider_id=str(data["sid"])[:64])
        why = f"{data.get('code', answer.status)}: {data.get('message') or answer.text[:300]}"
        if 400 <= answer.status < 500:  # refused: nothing was sent
            return Handed(FAILED, error=f"Twilio refused it ({why})")
        return Handed(UNKNOWN, error=f"Twilio answered {answer.status} ({why}); it may or may not have been sent")


PROVIDERS = {"fake": FakeProvider(), "twilio": TwilioProvider()}


def provider_for(sms_settings):
    return PROVIDERS[sms_settings.provider]
