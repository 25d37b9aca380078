"""The email outbox: claim one message, hand it to the provider, record the outcome.

Each of the three steps commits on its own, so a worker killed at any point leaves at most the
one message it was handing over in the `sending` state; everything still `queued` was never
attempted and is safe to send later. A message found in `sending` by the next holder of its run
is marked `unknown` (it may or may not have gone out) and is never re-sent automatically.

Errors are classified by what they tell us: a refusal before or instead of accepting the
message (connection refused, recipient refused, authentication, or any error before the SMTP
DATA command) means it was not sent (`failed`, safe to resend); a timeout or dropped
connection while the provider had the message means we cannot know (`unknown`).
"""

import contextlib
import logging
import smtplib
import socket
from collections.abc import Iterable
from datetime import timedelta
from time import monotonic

from django.core import mail
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.utils import timezone

from crm_automation.crm.models import EmailMessage
from crm_automation.crm.selectors import user_has_role

logger = logging.getLogger(__name__)
Status = EmailMessage.Status

UNKNOWN_OUTCOME = ("the worker stopped while handing this email to the provider, so it may or may not have "
                   "been sent; it is not re-sent automatically (resend it only if you are sure it did not "
                   "arrive)")
# Raised when the provider refused the message, or before it was handed over: not sent.
NOT_SENT = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError,
            smtplib.SMTPHeloError, smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError,
            ConnectionRefusedError, socket.gaierror, mail.BadHeaderError, ValueError, TypeError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000] or type(exc).__name__


class Provider:
    """One lazily opened connection to the email backend, reused for a batch of messages and
    dropped after an error (the next message opens a fresh one).

    With Django's SMTP backend it also knows whether the current message reached the DATA
    command: an error before that (a recipient the server stalls on, say) means the message was
    never handed over, so it is "failed" and safe to send again, not "unknown"."""

    def __init__(self) -> None:
        self._connection = None
        self._watching = False
        self.handed_over: bool | None = None  # None: this backend cannot tell

    def open(self):
        if self._connection is None:
            connection = mail.get_connection(fail_silently=False)
            connection.open()
            self._watch_data(connection)
            self._connection = connection
        self.handed_over = False if self._watching else None
        return self._connection

    def _watch_data(self, connection) -> None:
        smtp = getattr(connection, "connection", None)
        self._watching = smtp is not None and callable(getattr(smtp, "data", None))
        if self._watching:
            data = smtp.data

            def data_and_note(msg):
                self.handed_over = True
                return data(msg)

            smtp.data = data_and_note

    def discard(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                self._connection.close()
            self._connection = None

    close = discard


def _claim(email_id: int) -> bool:
    return bool(EmailMessage.objects.filter(pk=email_id, status=Status.QUEUED).update(
        status=Status.SENDING, sending_since=timezone.now(), error="", attempts=F("attempts") + 1))


def _record(email_id: int, status: str, error: str = "") -> None:
    # From `sending`, or from `unknown` if someone gave up on us meanwhile: the truth wins.
    values = {"status": status, "error": error}
    if status == Status.SENT:
        values["sent_at"] = timezone.now()
    EmailMessage.objects.filter(pk=email_id, status__in=[Status.SENDING, Status.UNKNOWN]).update(**values)


def _message(email: EmailMessage, connection) -> mail.EmailMessage:
    return mail.EmailMessage(subject=email.subject, body=email.body, to=[email.to], connection=connection,
                             headers={"Message-ID": email.message_id})


def email_deliver(*, email_id: int, provider: Provider | None = None) -> EmailMessage:
    """Send one queued email: claim it, hand it over, record the outcome (three commits).

    Returns the row as it ends; an email in any other status than `queued` is left alone.
    Call it outside a transaction (the engine and the admin do), so each step is durable on its
    own: inside one, a crash would undo the claim and the record of a message already sent.
    """
    own = provider is None
    provider = provider or Provider()
    try:
        if not _claim(email_id):
            return EmailMessage.objects.get(pk=email_id)
        email = EmailMessage.objects.get(pk=email_id)
        try:
            connection = provider.open()
        except Exception as exc:  # could not reach the provider: nothing was handed over
            provider.discard()
            logger.warning("Email %s not sent: %s", email_id, exc)
            _record(email_id, Status.FAILED, f"could not connect to the email provider: {_describe(exc)}")
            return EmailMessage.objects.get(pk=email_id)
        try:
            _message(email, connection).send()
        except Exception as exc:
            provider.discard()
            if isinstance(exc, NOT_SENT) or provider.handed_over is False:
                logger.warning("Email %s not sent: %s", email_id, exc)
                _record(email_id, Status.FAILED, f"the email provider did not take it: {_describe(exc)}")
                return EmailMessage.objects.get(pk=email_id)
            logger.warning("Email %s outcome unknown: %s", email_id, exc)  # it had the message: we cannot know
            _record(email_id, Status.UNKNOWN, f"the email provider did not confirm it ({_describe(exc)}); "
                                              "it may or may not have been sent")
        else:
            _record(email_id, Status.SENT)
        return EmailMessage.objects.get(pk=email_id)
    finally:
        if own:
            provider.close()


def emails_deliver(*, email_ids: Iterable[int], deadline: float | None = None) -> dict[int, EmailMessage]:
    """Deliver emails one by one over one connection, until done or `deadline` (time.monotonic)
    passes. Returns {id: row} for the emails attempted; the others stay queued."""
    provider = Provider()
    done = {}
    try:
        for email_id in email_ids:
            if deadline is not None and monotonic() >= deadline:
                break
            done[email_id] = email_deliver(email_id=email_id, provider=provider)
    finally:
        provider.close()
    return done


def email_mark_unknown(*, email_id: int) -> EmailMessage:
    """A claimed email whose sender is gone: it may have been accepted by the provider, and a
    duplicate email to a client is worse than an ops user choosing to resend it."""
    EmailMessage.objects.filter(pk=email_id, status=Status.SENDING).update(
        status=Status.UNKNOWN, error=UNKNOWN_OUTCOME)
    return EmailMessage.objects.get(pk=email_id)


def emails_mark_stale_unknown(*, older_than: timedelta) -> int:
    """Emails left in `sending` longer than any live sender could take (a resend whose web
    request was killed, a worker that died outside a run): their outcome is unknown. A sender
    that is in fact still alive records the truth over this when it finishes."""
    return EmailMessage.objects.filter(status=Status.SENDING, sending_since__lt=timezone.now() - older_than).update(
        status=Status.UNKNOWN, error=UNKNOWN_OUTCOME)


def email_resend(*, email_id: int, by, include_unknown: bool = False) -> EmailMessage:
    """Send a failed email again. One whose outcome is unknown is resent only when the caller
    explicitly accepts that the recipient may get it twice (`include_unknown`). Claiming
    first means two clicks send it once."""
    email = EmailMessage.objects.get(pk=email_id)
    if by is not None and not user_has_role(by, email.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can resend emails.")
    allowed = [Status.FAILED, *([Status.UNKNOWN] if include_unknown else [])]
    if EmailMessage.objects.filter(pk=email_id, status__in=allowed).update(status=Status.QUEUED):
        return email_deliver(email_id=email_id)
    return EmailMessage.objects.get(pk=email_id)
