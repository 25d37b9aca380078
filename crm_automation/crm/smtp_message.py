"""A message's addresses and bytes as Django's SMTP backend makes them, for less CPU.

Sending an email over a kept connection to a server on the same machine cost the worker about
0.42 ms of CPU, and most of it was not the network: Django parsed the sender's and each
recipient's address with the email package's header parser on every message (a fifth of the
time), and the email package folded each of the message's eight headers with its general
`Header` algorithm (another fifth), though nearly every header is short, plain ASCII and comes
out unchanged.

- `sanitized(address, encoding)`: Django's `sanitize_address`, remembered per (address,
  encoding). It is a function of those two alone; a workflow's emails come from one sender and
  mostly go to the same contacts. An address it refuses raises every time (errors are not kept).
- `as_bytes(message)`: `message.as_bytes(linesep="\\r\\n")`, with a header that is printable
  ASCII words separated by single spaces and fits on its line written as it is: exactly what the
  email package writes for it (tests/test_smtp_message.py checks the two against each other).
  Every other header, and the body, goes through the email package as before.
"""

import functools
import re
import smtplib
from email import generator
from email.message import Message
from email.policy import Compat32, compat32
from io import BytesIO
from typing import Any

from django.core.mail.message import sanitize_address

# Words of printable ASCII, one space between two: nothing the folding would change.
_PLAIN = re.compile(r"[!-~]+(?: [!-~]+)*")
_UNLIMITED = 1_000_000  # what the email package's Header uses when there is no line limit


class _PlainHeadersFirst(Compat32):
    """Django's policy (the email package's compat32), with the common case written directly."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (type(value) is str and name.isascii() and _PLAIN.fullmatch(value)
                and len(name) + 2 + len(value) <= (self.max_line_length or _UNLIMITED)):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _PlainHeadersFirst()


def as_bytes(message: Message) -> bytes:
    """The message as Django's SMTP backend sends it (`as_bytes(linesep="\\r\\n")`: its
    generator, with "From " lines left alone). A message with a policy of its own keeps it."""
    if message.policy is not compat32:
        return message.as_bytes(linesep="\r\n")  # type: ignore[call-arg]  # (Django's as_bytes takes it)
    out = BytesIO()
    generator.BytesGenerator(out, mangle_from_=False, policy=_POLICY).flatten(message, linesep="\r\n")
    return out.getvalue()


@functools.lru_cache(maxsize=4096)
def _sanitized(address: str, encoding: str) -> str:
    return sanitize_address(address, encoding)


def sanitized(address: Any, encoding: str) -> str:
    """`sanitize_address`, remembered for addresses given as text (a (name, address) pair is
    worked out each time)."""
    if type(address) is str:
        return _sanitized(address, encoding)
    return sanitize_address(address, encoding)


@functools.lru_cache(maxsize=4096)
def quoted(address: str) -> str:
    """smtplib's `quoteaddr` (the envelope's <address>), remembered."""
    return smtplib.quoteaddr(address)
