"""Django's SMTP backend, sending each message's envelope in one write (ESMTP PIPELINING, RFC 2920).

smtplib waits for the server's answer to MAIL FROM, then to each RCPT TO, then to DATA, before
it sends the message: four round trips a message. A server that offers PIPELINING (Postfix and
Exim do by default, as do many providers' SMTP endpoints) lets a client send MAIL FROM, the RCPT
TOs and DATA together and read their answers after: two round trips a message. With a server
20 ms away that is 40 ms less per email; with one on the same machine, two wake-ups fewer for
the worker and the server.

The message itself (what follows DATA's 354) goes only once every answer has been read, so
"handed over" means the same as before: a refusal or a stall in the envelope leaves the message
not sent (email_delivery.Provider watches `send_content`). A server that does not offer
PIPELINING, any MAIL/RCPT options or a message given as text (Django gives bytes) gets smtplib's
own exchange. `EMAIL_PIPELINING=0` turns it off.

The outbox (email_delivery.py) opens its connections here when EMAIL_BACKEND is Django's SMTP
backend; other mail (password resets, admin errors) goes through Django's backend unchanged.
"""

import contextlib
import re
import smtplib
import socket
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend

from crm_automation.crm import smtp_message

DJANGO_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
_LEADING_DOT = re.compile(rb"(?m)^\.")
CRLF = b"\r\n"
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # (Linux only)


class PipeliningSMTP(smtplib.SMTP):
    """smtplib.SMTP with a PIPELINING `sendmail`: the same arguments, the same return value (the
    refused recipients) and the same exceptions as smtplib's."""

    def sendmail(self, from_addr, to_addrs, msg, mail_options=(), rcpt_options=()):
        self.ehlo_or_helo_if_needed()
        if (mail_options or rcpt_options or isinstance(msg, str) or not self.does_esmtp
                or not self.has_extn("pipelining") or not settings.EMAIL_PIPELINING):
            return super().sendmail(from_addr, to_addrs, msg, mail_options, rcpt_options)
        if isinstance(to_addrs, str):
            to_addrs = [to_addrs]
        size = f" SIZE={len(msg)}" if self.has_extn("size") else ""
        envelope = [f"MAIL FROM:{smtp_message.quoted(from_addr)}{size}",
                    *(f"RCPT TO:{smtp_message.quoted(to)}" for to in to_addrs), "DATA"]
        if any("\r" in line or "\n" in line for line in envelope):
            raise ValueError("prohibited newline characters in an SMTP command")
        self.send("".join(f"{line}\r\n" for line in envelope))

        # The answers, in order. A 421 means the server is closing: nothing more will come.
        code, resp = self._answer()
        if code == 421:
            self.close()
            raise smtplib.SMTPSenderRefused(code, resp, from_addr)
        refused: dict[str, tuple[int, bytes]] = {}
        for to in to_addrs:
            rcpt_code, rcpt_resp = self._answer()
            if rcpt_code not in (250, 251):
                refused[to] = (rcpt_code, rcpt_resp)
            if rcpt_code == 421:
                self.close()
                raise smtplib.SMTPRecipientsRefused(refused)
        data_code, data_resp = self._answer()
        failure: Exception | None = (
            smtplib.SMTPSenderRefused(code, resp, from_addr) if code != 250
            else smtplib.SMTPRecipientsRefused(refused) if len(refused) == len(to_addrs)
            else smtplib.SMTPDataError(data_code, data_resp) if data_code != 354 else None)
        if failure is not None:
            if data_code == 354:  # a server that took DATA anyway gets an empty message's end (RFC 2920)
                self.send(b"." + CRLF)
                self.getreply()
            self._end_transaction(data_code)
            raise failure
        code, resp = self.send_content(msg)
        if code != 250:
            self._end_transaction(code)
            raise smtplib.SMTPDataError(code, resp)
        return refused

    def _end_transaction(self, code: int) -> None:
        """After a refusal, as smtplib does: a server closing (421) is left; else RSET."""
        if code == 421:
            self.close()
        else:
            self._rset()  # type: ignore[attr-defined]  # (smtplib's own, not in the stubs)

    def _answer(self) -> tuple[int, bytes]:
        """The next answer to the envelope. Each one is acknowledged at once (Linux): a server
        that writes its answers one by one with Nagle's algorithm on holds the second until the
        first is acknowledged, and a delayed acknowledgement waits up to 40 ms. Against such a
        server (benchmarks/chaos/smtp_sink.py) a run's email hop took 54 ms without this and
        12 ms with it."""
        if _QUICKACK is not None and self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        return self.getreply()

    def send_content(self, msg: bytes) -> tuple[int, bytes]:
        """The message after DATA's 354, dot-stuffed and ended (the handover), and the answer."""
        content = _LEADING_DOT.sub(b"..", msg)
        if not content.endswith(CRLF):
            content += CRLF
        self.send(content + b"." + CRLF)
        return self.getreply()


class PipeliningSMTPSSL(PipeliningSMTP, smtplib.SMTP_SSL):
    pass


class EmailBackend(DjangoSMTPBackend):
    """Django's SMTP backend (the same settings and behaviour) over the connections above, its
    addresses and bytes made by smtp_message.py (the same result, for less CPU)."""

    @property
    def connection_class(self):
        return PipeliningSMTPSSL if self.use_ssl else PipeliningSMTP

    def _send(self, email_message: mail.EmailMessage) -> bool:
        # Django 5.2's `_send`, with smtp_message's `sanitized` and `as_bytes` in place of
        # `sanitize_address` and `message.as_bytes(linesep="\r\n")`.
        if not email_message.recipients():
            return False
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        from_email = smtp_message.sanitized(email_message.from_email, encoding)
        recipients = [smtp_message.sanitized(addr, encoding) for addr in email_message.recipients()]
        message = email_message.message()
        try:
            # (send_messages opened the connection before calling this, as in Django)
            self.connection.sendmail(  # type: ignore[union-attr]
                from_email, recipients, smtp_message.as_bytes(message))
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
            return False
        return True


def get_connection(**kwargs: Any) -> Any:
    """`mail.get_connection()`, with this backend in place of Django's SMTP backend."""
    if settings.EMAIL_BACKEND == DJANGO_SMTP_BACKEND:
        return EmailBackend(**kwargs)
    return mail.get_connection(**kwargs)
