"""The outbox's SMTP connection sends a message's envelope (MAIL FROM, RCPT TO, DATA) in one write
when the server offers PIPELINING, reads the answers after, and hands the message over only if
they all say yes; a server that does not offer it gets one command at a time."""

import pytest

from crm_automation.crm import email_delivery
from crm_automation.crm.models import EmailMessage
from tests.smtp_server import ScriptedSMTP


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


# A stall on RCPT (failed: never handed over) or after the message (unknown), pipelined or not:
# tests/test_email_delivery.py, test_a_real_smtp_stall_is_failed_before_the_handover_and_unknown_after.
