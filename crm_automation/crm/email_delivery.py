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
import os
import smtplib
import socket
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from django.conf import settings
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.core.mail.backends.smtp import EmailBackend as SMTPBackend
from django.db import connections, router
from django.utils import timezone

from crm_automation.compiled_query import CompiledQuery, updated_rows
from crm_automation.crm import smtp_pipelining
from crm_automation.crm.models import EmailMessage
from crm_automation.crm.selectors import user_has_role
from crm_automation.workers import shutdown

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


# A connection to an SMTP server outlives the delivery that opened it, in this thread, for the
# next one: a single change's email then skips the connect, greeting, STARTTLS and login (with a
# real provider, tens of milliseconds of round trips and a TLS handshake). It is checked with a
# NOOP before any message is claimed, and not reused once idle or worn (servers drop idle
# connections and cap the messages per connection).
KEEP_IDLE_SECONDS = 30.0
KEEP_MESSAGES = 50


class _Kept(threading.local):
    connection: Any = None
    key: tuple = ()
    pid = 0
    idle_since = 0.0
    messages = 0


_kept = _Kept()


def _backend_key() -> tuple:
    """What a kept connection was opened with: another backend or server means a new one."""
    return (settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_HOST_USER,
            settings.EMAIL_HOST_PASSWORD, settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL, settings.EMAIL_TIMEOUT)


def _close_quietly(connection) -> None:
    with contextlib.suppress(Exception):  # closing a broken connection may fail too
        connection.close()


def _take_kept() -> tuple[Any, int]:
    """(the connection this thread kept, its messages so far) if it still answers; else (None, 0).
    Raises TimeoutError if the server does not answer at all."""
    connection, _kept.connection = _kept.connection, None
    if connection is None:
        return None, 0
    if _kept.pid != os.getpid():  # inherited through a fork: the parent's socket, not ours to use or close
        return None, 0
    if (_kept.key != _backend_key() or monotonic() - _kept.idle_since > KEEP_IDLE_SECONDS
            or _kept.messages >= KEEP_MESSAGES):
        _close_quietly(connection)
        return None, 0
    try:
        answer = connection.connection.noop()[0]
    except TimeoutError:  # the server hangs: a new connection would too (one timeout per message at most)
        _close_quietly(connection)
        raise
    except Exception:  # noqa: BLE001 (dropped by the server: a new one is opened)
        answer = None
    if answer != 250:
        _close_quietly(connection)
        return None, 0
    return connection, _kept.messages


def _keep(connection, messages: int) -> None:
    if _kept.connection is not None:  # (a delivery inside a delivery: keep one)
        _close_quietly(_kept.connection)
    _kept.connection, _kept.key, _kept.pid = connection, _backend_key(), os.getpid()
    _kept.idle_since, _kept.messages = monotonic(), messages


class Provider:
    """One lazily opened connection to the email backend, reused for a batch of messages and
    dropped after an error (the next message opens a fresh one). An SMTP connection is kept
    for this thread's next delivery when the batch ends cleanly (`_keep`).

    With Django's SMTP backend it also knows whether the current message itself started going
    out (after DATA, or after a pipelined envelope's answers): an error before that (a
    recipient the server stalls on, say) means the message was never handed over, so it is
    "failed" and safe to send again, not "unknown"."""

    def __init__(self) -> None:
        self._connection = None
        self._watching = False
        self._messages = 0  # sent over this connection, its earlier deliveries included
        self.handed_over: bool | None = None  # None: this backend cannot tell
        self.open_error: Exception | None = None  # the last connect (before a claim) failed: why

    def open(self):
        if self._connection is None:
            connection, self._messages = _take_kept()
            if connection is None:
                connection = smtp_pipelining.get_connection(fail_silently=False)
                connection.open()
            self._watch_data(connection)
            self._connection = connection
        self.handed_over = False if self._watching else None
        return self._connection

    def _watch_data(self, connection) -> None:
        """Note when the message itself starts going out: smtplib's `data` (DATA, then the
        message), or `send_content` (the message after a pipelined envelope's DATA)."""
        smtp = getattr(connection, "connection", None)
        self._watching = smtp is not None and callable(getattr(smtp, "data", None))
        if smtp is None or not self._watching:
            return
        for name in ("data", "send_content"):
            if not callable(getattr(smtp, name, None)):
                continue
            unwatched = f"unwatched_{name}"
            send = getattr(smtp, unwatched, getattr(smtp, name))  # a kept connection: not wrapped twice
            setattr(smtp, unwatched, send)
            setattr(smtp, name, self._noting_handover(send))

    def _noting_handover(self, send):
        def send_and_note(msg):
            self.handed_over = True
            self._messages += 1
            return send(msg)

        return send_and_note

    def discard(self) -> None:
        if self._connection is not None:
            _close_quietly(self._connection)
            self._connection = None

    def close(self) -> None:
        """The batch ended normally (an error while sending discarded the connection already):
        keep an SMTP connection for the next one."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if isinstance(connection, SMTPBackend) and connection.connection is not None:
            _keep(connection, self._messages)
        else:
            _close_quietly(connection)


# --- State changes: the hot path, one plain statement each (as the outbox insert) ---------------
# A message costs one round trip and one commit: its outcome and the next message's claim are
# one UPDATE. The ORM's CASE expressions cost more to compile than the database took to run them.

_TABLE = EmailMessage._meta.db_table
_CLAIM = (f"UPDATE {_TABLE} SET status = %s, sending_since = %s, error = '', attempts = attempts + 1 "
          f"WHERE id = %s AND status = %s")
_RECORD = (f"UPDATE {_TABLE} SET status = %s, error = %s, sent_at = COALESCE(%s, sent_at) "
           f"WHERE id = %s AND status IN (%s, %s)")
_RECORD_AND_CLAIM = (
    f"UPDATE {_TABLE} SET "
    f"status = CASE WHEN id = %s THEN %s ELSE %s END, "
    f"error = CASE WHEN id = %s THEN %s ELSE '' END, "
    f"sent_at = CASE WHEN id = %s THEN COALESCE(%s, sent_at) ELSE sent_at END, "
    f"sending_since = CASE WHEN id = %s THEN %s ELSE sending_since END, "
    f"attempts = CASE WHEN id = %s THEN attempts + 1 ELSE attempts END "
    f"WHERE (id = %s AND status IN (%s, %s)) OR (id = %s AND status = %s)")


def _execute(sql: str, params: list) -> int:
    connection = connections[router.db_for_write(EmailMessage)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def _when(value):
    connection = connections[router.db_for_write(EmailMessage)]
    return EmailMessage._meta.get_field("sent_at").get_db_prep_value(value, connection)


def _updated(sql: str, params: list, *, only: int | None = None) -> list[EmailMessage]:
    """The rows a claim changed (UPDATE … RETURNING): a delivery reads no message beforehand."""
    return updated_rows(EmailMessage, sql, params, using=router.db_for_write(EmailMessage), only=only)


def _claim(email_id: int) -> EmailMessage | None:
    """queued → sending: once committed, a crash leaves this one message unknown. Returns the
    claimed row; None if the message is not queued (someone else has it, or it is settled)."""
    claimed = _updated(_CLAIM, [Status.SENDING, _when(timezone.now()), email_id, Status.QUEUED])
    return claimed[0] if claimed else None


def _record(email: EmailMessage, status: str, error: str = "", *, then_claim: int | None = None
            ) -> EmailMessage | None:
    """Write a message's outcome and, in the same statement, claim the next one. Returns the
    claimed row of `then_claim`, if it was claimed. The outcome is written from `sending`, or
    from `unknown` if someone gave up on us meanwhile: the truth wins."""
    now = timezone.now()
    sent_at = _when(now) if status == Status.SENT else None
    mine = [email.pk, Status.SENDING, Status.UNKNOWN]
    email.status, email.error = status, error
    if status == Status.SENT:
        email.sent_at = now
    if then_claim is None:
        _execute(_RECORD, [status, error, sent_at, *mine])
        return None
    nxt = then_claim
    rows = _updated(_RECORD_AND_CLAIM, [
        email.pk, status, Status.SENDING, email.pk, error, email.pk, sent_at, nxt, _when(now), nxt,
        *mine, nxt, Status.QUEUED], only=nxt)
    return rows[0] if rows else None


def _message(email: EmailMessage, connection) -> mail.EmailMessage:
    return mail.EmailMessage(subject=email.subject, body=email.body, to=[email.to], connection=connection,
                             headers={"Message-ID": email.message_id})


def _log_reason(exc: Exception) -> str:
    """What a log line says of a provider's error: its kind and code, never its text (a provider's
    answer can quote the recipient or the message). The full reason is on the email's row."""
    code = getattr(exc, "smtp_code", None) or getattr(exc, "errno", None)
    return f"{type(exc).__name__}" + (f" {code}" if code else "")


def _hand_over(email: EmailMessage, provider: Provider) -> tuple[str, str]:
    """Give one claimed message to the provider: (status, error). No database work."""
    try:
        if provider.open_error is not None:  # the connect before the claim failed: not tried twice
            failure, provider.open_error = provider.open_error, None
            raise failure
        connection = provider.open()
    except Exception as exc:  # could not reach the provider: nothing was handed over
        provider.discard()
        logger.warning("Email %s not sent: %s", email.pk, _log_reason(exc))
        return Status.FAILED, f"could not connect to the email provider: {_describe(exc)}"
    try:
        _message(email, connection).send()
    except Exception as exc:
        provider.discard()
        if isinstance(exc, NOT_SENT) or provider.handed_over is False:
            logger.warning("Email %s not sent: %s", email.pk, _log_reason(exc))
            return Status.FAILED, f"the email provider did not take it: {_describe(exc)}"
        logger.warning("Email %s outcome unknown: %s", email.pk, _log_reason(exc))  # it had the message
        return Status.UNKNOWN, (f"the email provider did not confirm it ({_describe(exc)}); "
                                "it may or may not have been sent")
    return Status.SENT, ""


def _connect_first(provider: Provider) -> None:
    """Have the connection open before a message is claimed, so that a sender killed while
    connecting leaves the message queued, not "outcome unknown": only a claimed message whose
    sender already holds the connection can be in doubt. A failure is kept for the hand-over,
    which records it on the message without connecting a second time."""
    try:
        provider.open()
    except Exception as exc:  # noqa: BLE001 (recorded on the message the hand-over is for)
        provider.discard()
        provider.open_error = exc


def email_deliver(*, email_id: int) -> EmailMessage:
    """Send one queued email: claim it, hand it over, record the outcome.

    Returns the row as it ends; an email in any other status than `queued` is left alone.
    Call it outside a transaction (the engine and the admin do), so each step is durable on its
    own: inside one, a crash would undo the claim and the record of a message already sent.
    """
    return emails_deliver(email_ids=[email_id]).get(email_id) or EmailMessage.objects.get(pk=email_id)


# Compiled once per process (compiled_query.py): every delivery step of the engine asks it.
_IN_FLIGHT = CompiledQuery(lambda organization, since: EmailMessage.objects.filter(
    status=Status.SENDING, organization_id=organization, sending_since__gte=since).values_list("pk")[:1],
    organization=int, since=datetime)


def emails_deliver(*, email_ids: Iterable[int], deadline: float | None = None) -> dict[int, EmailMessage]:
    """Deliver emails one at a time over one connection, until done or `deadline` passes.

    Each message is claimed (committed), handed over, and its outcome written by the same
    statement that claims the next one: one round trip and one commit per message, and never
    more than one message in `sending` at any instant. Returns {id: row} for the emails
    attempted; the others stay queued.
    """
    waiting = list(email_ids)
    done: dict[int, EmailMessage] = {}

    def in_time() -> bool:
        return not shutdown.requested() and (deadline is None or monotonic() < deadline)

    def not_claimed(email_id: int) -> None:
        """Someone else has it, or it is settled (or it does not exist: left out)."""
        row = EmailMessage.objects.filter(pk=email_id).first()
        if row is not None:
            done[email_id] = row

    def claim_next() -> EmailMessage | None:
        while waiting and in_time():
            email_id = waiting.pop(0)
            if (email := _claim(email_id)) is not None:
                return email
            not_claimed(email_id)
        return None

    provider = Provider()
    try:
        _connect_first(provider)
        current = claim_next()
        while current is not None:
            status, error = _hand_over(current, provider)
            following = waiting.pop(0) if waiting and in_time() else None
            if following is not None:
                _connect_first(provider)
            claimed = _record(current, status, error, then_claim=following)
            done[current.pk] = current
            if following is not None and claimed is None:
                not_claimed(following)
            current = claimed or claim_next()
    except BaseException:  # (a stop mid-conversation too): the connection's state is unknown
        provider.discard()
        raise
    provider.close()
    return done


def emails_in_flight(*, organization_id: int, since) -> bool:
    """Whether one of the organization's emails is being handed to the provider right now (an
    indexed look at the few `sending` rows; one claimed before `since` is a sender that died)."""
    return bool(_IN_FLIGHT.rows(organization=organization_id, since=since))


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
