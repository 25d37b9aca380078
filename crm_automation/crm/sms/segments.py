"""How long an SMS is, as carriers count it (GSM 03.38).

A text whose characters are all in the GSM 7-bit alphabet travels as GSM-7: 160 characters in
one message, 153 per part when it is split (the rest carries the joining header); the extension
characters (€ [ ] { } …) take two. Any other character (an emoji, a curly quote, most accents)
makes the whole text UCS-2: 70 characters, 67 per part, an emoji outside the BMP taking two.
The builder shows the same count (static/web/builder.js `smsLength`).
"""

from dataclasses import dataclass

GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENDED = set("^{}\\[~]|€\f")
MAX_SEGMENTS = 10


@dataclass(frozen=True)
class Length:
    encoding: str  # "gsm7" or "ucs2"
    units: int  # characters as the encoding counts them
    segments: int

    def __str__(self) -> str:
        kind = "GSM-7" if self.encoding == "gsm7" else "Unicode (UCS-2)"
        return f"{self.units} characters, {self.segments} SMS ({kind})"


def length(text: str) -> Length:
    if all(c in GSM_BASIC or c in GSM_EXTENDED for c in text):
        units = sum(2 if c in GSM_EXTENDED else 1 for c in text)
        single, part, encoding = 160, 153, "gsm7"
    else:
        units = sum(2 if ord(c) > 0xFFFF else 1 for c in text)
        single, part, encoding = 70, 67, "ucs2"
    segments = 1 if units <= single else -(-units // part)
    return Length(encoding, units, segments)
