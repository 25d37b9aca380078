"""The outbox's SMTP connection sends a message's envelope (MAIL FROM, RCPT TO, DATA) in one write
when the server offers PIPELINING, reads the answers after, and hands the message over only if
they all say yes; a server that does not offer it gets one command at a time."""

import select
import socket
import threading

import pytest

from crm_automation.crm import email_delivery
from crm_automation.crm.models import EmailMessage


class ScriptedSMTP:
    """An SMTP server on 127.0.0.1, one session at a time, that notes every command and whether
    it arrived while an earlier one was still unanswered (pipelined).

    `hold`: answer nothing until DATA has arrived too (a client that waits for each answer
    then never gets one); `refuse`: recipients answered 550; `stall_rcpt`: RCPT never answered."""

    def __init__(self, *, pipelining: bool = True, hold: bool = False, refuse: frozenset[str] = frozenset(),
                 stall_rcpt: bool = False) -> None:
        self.pipelining, self.hold, self.refuse, self.stall_rcpt = pipelining, hold, refuse, stall_rcpt
        self.commands: list[str] = []
        self.pipelined: list[str] = []  # commands that came before the previous one's answer
        self.messages: list[bytes] = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(5)
        self.port = self.server.getsockname()[1]
        self.sessions: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.sessions.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        lines = _Lines(conn)
        conn.sendall(b"220 scripted ESMTP\r\n")
        held: list[bytes] = []
        accepted = False
        while line := lines.next():
            command = line.decode().strip()
            verb = command[:4].upper()
            self.commands.append(command)
            if lines.pending():
                self.pipelined.append(command)  # the next command came before this one's answer
            if verb == "EHLO":
                offers = b"250-PIPELINING\r\n" if self.pipelining else b""
                reply = b"250-scripted\r\n" + offers + b"250 SIZE 1000000\r\n"
            elif verb == "MAIL":
                reply = b"250 sender ok\r\n"
            elif verb == "RCPT":
                if self.stall_rcpt:
                    return
                address = command.split(":", 1)[1].strip("<> ")
                accepted = accepted or address not in self.refuse
                reply = b"550 no such mailbox\r\n" if address in self.refuse else b"250 recipient ok\r\n"
            elif verb == "DATA":
                reply = b"354 go ahead\r\n" if accepted else b"554 no valid recipients\r\n"
            else:
                reply = b"250 ok\r\n"
                accepted = accepted and verb != "RSET"
            if self.hold and verb in ("MAIL", "RCPT"):
                held.append(reply)
                continue
            conn.sendall(b"".join(held) + reply)
            held.clear()
            if reply.startswith(b"354"):
                body = []
                while (part := lines.next()) not in (b".\r\n", b""):
                    body.append(part[1:] if part.startswith(b".") else part)
                self.messages.append(b"".join(body))
                accepted = False
                conn.sendall(b"250 queued\r\n")

    def close(self) -> None:
        self.server.close()
        for conn in self.sessions:
            conn.close()


class _Lines:
    """A connection's lines, and whether more has arrived than the line just read."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.buffer = conn, b""

    def next(self) -> bytes:
        while b"\r\n" not in self.buffer:
            try:
                chunk = self.conn.recv(65536)
            except OSError:
                return b""
            if not chunk:
                return b""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def pending(self) -> bool:
        return bool(self.buffer) or bool(select.select([self.conn], [], [], 0)[0])


@pytest.fixture
def smtp(settings):
    made: list[ScriptedSMTP] = []

    def start(**options) -> ScriptedSMTP:
        server = ScriptedSMTP(**options)
        made.append(server)
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 2
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        return server

    yield start
    for server in made:
        server.close()
    email_delivery._kept.connection = None


def deliver(org, to: str, body: str = "Welcome aboard") -> EmailMessage:
    email = EmailMessage.objects.create(organization=org, to=to, subject="Hi", body=body)
    return email_delivery.email_deliver(email_id=email.pk)


def test_the_envelope_goes_in_one_write_when_the_server_offers_pipelining(org, smtp):
    server = smtp(hold=True)  # answers MAIL and RCPT only once DATA is in: one at a time would time out
    email = deliver(org, "ada@example.com", body="Hi Ada\n.hidden line\n..two dots")
    assert email.status == "sent", email.error
    mail_from, rcpt, data = server.commands[-3:]
    assert mail_from.startswith("MAIL FROM:") and "SIZE=" in mail_from and rcpt == "RCPT TO:<ada@example.com>"
    assert data == "DATA"
    assert {mail_from, rcpt} <= set(server.pipelined)
    body = server.messages[0].decode()
    assert "\r\nHi Ada\r\n.hidden line\r\n..two dots\r\n" in body  # dot-stuffed on the way, whole on arrival


def test_a_server_that_does_not_offer_pipelining_gets_one_command_at_a_time(org, smtp):
    server = smtp(pipelining=False)
    assert deliver(org, "ada@example.com").status == "sent"
    assert [c[:4].upper() for c in server.commands if c[:4].upper() != "EHLO"][:3] == ["MAIL", "RCPT", "DATA"]
    assert server.pipelined == []


def test_pipelining_can_be_turned_off(org, smtp, settings):
    settings.EMAIL_PIPELINING = False
    server = smtp()
    assert deliver(org, "ada@example.com").status == "sent"
    assert server.pipelined == []


def test_a_refused_recipient_fails_the_message_unsent_and_the_next_one_goes_out(org, smtp):
    server = smtp(refuse=frozenset({"gone@example.com"}))
    refused = deliver(org, "gone@example.com")
    assert refused.status == "failed"
    assert refused.error.startswith("the email provider did not take it: SMTPRecipientsRefused")
    assert server.messages == []  # DATA was refused (554): no message went out
    assert "RSET" in [c.upper() for c in server.commands]  # (the answers to the whole envelope were read before it)
    assert deliver(org, "ada@example.com").status == "sent"
    assert len(server.messages) == 1


def test_a_recipient_the_server_stalls_on_is_failed_not_unknown(org, smtp):
    """The envelope went out whole, but the message did not: it was never handed over."""
    smtp(stall_rcpt=True)
    email = deliver(org, "slow@example.com")
    assert email.status == "failed"
    assert email.error.startswith("the email provider did not take it")
