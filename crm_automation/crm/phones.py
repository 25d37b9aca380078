"""Phone numbers in E.164, the one form they are compared in (the `phonenumbers` library).

A number without a country code is read in settings.PHONE_REGION (an ISO country code such as
US or DE); what cannot be read as a possible number has no E.164 form ("").
"""

import phonenumbers
from django.conf import settings


def e164(text: str | None, region: str | None = None) -> str:
    if not text or len(text) > 40:
        return ""
    try:
        number = phonenumbers.parse(text, region or settings.PHONE_REGION)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
