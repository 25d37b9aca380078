"""Email delivery: each message claimed, sent and recorded on its own; unknown outcomes are
never re-sent silently; a slow provider never holds a task past its budget."""

import json
import smtplib
import socket
import threading
import time
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core import mail
from django.urls import reverse

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime import engine
from crm_automation.automation.runtime.engine import runs, walk
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.crm import email_delivery
from crm_automation.crm.models import EmailMessage
from crm_automation.workers import shutdown
from tests.conftest import make_workflow
from tests.smtp_server import ScriptedSMTP
from tests.test_engine import expire_leases
from tests.test_isolation import dispatched, won_deals

EMAIL_ONLY = [{"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Hi {{deal.title}}"}}]


def statuses() -> list[str]:
    return list(EmailMessage.objects.order_by("pk").values_list("status", flat=True))


def test_a_kill_mid_delivery_leaves_one_unknown_email_and_sends_the_rest_once(org, monkeypatch):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 4)
    run_ids = dispatched()
    real_send, calls = mail.EmailMessage.send, []

    def killed_on_the_second(self, *args, **kwargs):
        calls.append(self.subject)
        if len(calls) == 2:
            raise KeyboardInterrupt("kill -9 while the provider has the message")
        return real_send(self, *args, **kwargs)

    monkeypatch.setattr(mail.EmailMessage, "send", killed_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        engine.execute_runs(run_ids)
    assert statuses() == ["sent", "sending", "queued", "queued"]  # each outcome recorded as it happened
    monkeypatch.undo()
    expire_leases()
    sweep(fan_out=False)
    assert statuses() == ["sent", "unknown", "sent", "sent"]
    assert sorted(m.subject for m in mail.outbox) == ["Hi Deal 0", "Hi Deal 2", "Hi Deal 3"]  # none twice
    unknown = EmailMessage.objects.get(status="unknown")
    assert "may or may not have been sent" in unknown.error and unknown.attempts == 1


def test_a_slow_provider_hands_the_rest_to_another_task_instead_of_timing_out(org, monkeypatch):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 5)
    run_ids = dispatched()
    start = time.monotonic()
    clock = (start + 10 * i for i in range(1000))  # each email takes the provider ten seconds
    monkeypatch.setattr(email_delivery, "monotonic", lambda: next(clock))
    report = engine.execute_runs(run_ids, budget=30)
    monkeypatch.undo()
    assert 0 < len(mail.outbox) < 5 and report.handed_back
    assert "queued" in statuses() and "sending" not in statuses()
    handed = WorkflowRun.objects.filter(pk__in=report.handed_back)
    assert set(handed.values_list("attempts", flat=True)) == {0}  # a hand-back is not a failed attempt
    assert set(handed.values_list("lease_owner", flat=True)) == {""}
    continue_runs(report.handed_back)
    assert statuses() == ["sent"] * 5 and len(mail.outbox) == 5
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {"completed"}


def test_a_provider_that_cannot_be_reached_is_stored_as_the_real_error(org, monkeypatch):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 1)

    def unreachable(*args, **kwargs):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("django.core.mail.backends.locmem.EmailBackend.open", unreachable, raising=False)
    monkeypatch.setattr(email_delivery.mail, "get_connection", unreachable)
    engine.execute_runs(dispatched())
    email = EmailMessage.objects.get()
    assert email.status == "failed" and "could not connect to the email provider" in email.error
    assert "Connection refused" in email.error
    run = WorkflowRun.objects.get()
    assert "could not connect to the email provider: ConnectionRefusedError" in run.error


@pytest.mark.parametrize(("error", "status"), [
    (smtplib.SMTPRecipientsRefused({"x@y.z": (550, b"no such user")}), "failed"),
    (ConnectionRefusedError(111, "refused"), "failed"),
    (TimeoutError("timed out"), "unknown"),
    (smtplib.SMTPServerDisconnected("gone"), "unknown"),
])
def test_errors_say_whether_the_email_may_have_gone_out(org, monkeypatch, error, status):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 1)

    def fail(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(mail.EmailMessage, "send", fail)
    engine.execute_runs(dispatched())
    assert statuses() == [status]


def test_the_smtp_connection_has_a_timeout():
    connection = mail.get_connection("django.core.mail.backends.smtp.EmailBackend")
    assert connection.timeout == settings.EMAIL_TIMEOUT and settings.EMAIL_TIMEOUT <= 10


def test_an_unknown_email_is_resent_only_after_a_warning(client, org, owner, monkeypatch):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 1)
    monkeypatch.setattr(mail.EmailMessage, "send", lambda *a, **k: (_ for _ in ()).throw(TimeoutError("slow")))
    engine.execute_runs(dispatched())
    monkeypatch.undo()
    email = EmailMessage.objects.get()
    assert email.status == "unknown"
    client.force_login(owner)
    outbox = reverse("admin:crm_emailmessage_changelist")
    page = client.post(outbox, {"action": "resend", "_selected_action": [email.pk]}, follow=True).content.decode()
    assert "were not failed and were left alone" in page and mail.outbox == []
    warning = client.post(outbox, {"action": "resend_unknown", "_selected_action": [email.pk]}).content.decode()
    assert "may already have reached their recipients" in warning and mail.outbox == []
    client.post(outbox, {"action": "resend_unknown", "_selected_action": [email.pk], "confirm": "yes"})
    assert EmailMessage.objects.get().status == "sent" and len(mail.outbox) == 1


def test_a_viewer_cannot_resend(client, org, viewer, monkeypatch):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 1)
    monkeypatch.setattr(mail.EmailMessage, "send", lambda *a, **k: (_ for _ in ()).throw(ConnectionRefusedError()))
    engine.execute_runs(dispatched())
    monkeypatch.undo()
    client.force_login(viewer)
    email = EmailMessage.objects.get()
    response = client.post(reverse("admin:crm_emailmessage_changelist"),
                           {"action": "resend", "_selected_action": [email.pk]}, follow=True)
    assert response.status_code in (200, 403) and mail.outbox == []
    assert EmailMessage.objects.get().status == "failed"


def test_a_run_that_stops_before_sending_fails_its_queued_email_instead_of_leaving_it(org, monkeypatch):
    from crm_automation.crm.models import Deal

    make_workflow(org, actions=EMAIL_ONLY)
    (deal,) = won_deals(org, 1)
    run_ids = dispatched()
    monkeypatch.setattr(email_delivery, "_claim", lambda email: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        engine.execute_runs(run_ids)  # the email is queued; the worker dies before handing it over
    monkeypatch.undo()
    Deal.objects.filter(pk=deal.pk).delete()
    expire_leases()
    sweep(fan_out=False)
    email = EmailMessage.objects.get()
    assert email.status == "failed"
    assert email.error == "not sent because the run stopped: the triggering deal no longer exists"
    assert mail.outbox == []


def test_an_email_left_sending_by_a_killed_resend_becomes_unknown(org, settings):
    from datetime import timedelta

    from django.utils import timezone

    email = EmailMessage.objects.create(organization=org, to="a@b.co", subject="Hi", status="sending",
                                        sending_since=timezone.now() - timedelta(minutes=5))
    fresh = EmailMessage.objects.create(organization=org, to="c@d.co", subject="Hi", status="sending",
                                        sending_since=timezone.now())
    assert sweep(fan_out=False)["stale_emails"] == 1
    assert EmailMessage.objects.get(pk=email.pk).status == "unknown"
    assert EmailMessage.objects.get(pk=fresh.pk).status == "sending"  # its sender may still be at it


def test_a_stalling_organization_gets_a_slice_and_the_next_one_goes_on(org, other_org, monkeypatch):
    make_workflow(org, actions=EMAIL_ONLY)
    make_workflow(other_org, actions=EMAIL_ONLY)
    won_deals(org, 3, "Slow")  # to client@acme.example: its provider takes 10 s a message
    won_deals(other_org, 3, "Quick")
    stalled = [0.0]

    def clock() -> float:  # the time every deadline is read by: the provider's stalls included
        return time.monotonic() + stalled[0]

    monkeypatch.setattr(email_delivery, "monotonic", clock)
    for module in (runs, walk):
        monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=clock))
    monkeypatch.setattr(shutdown, "time", SimpleNamespace(monotonic=clock))
    send = mail.EmailMessage.send

    def slow_for_acme(self, *args, **kwargs):
        if self.to[0].endswith("@acme.example"):
            stalled[0] += 10
        return send(self, *args, **kwargs)

    monkeypatch.setattr(mail.EmailMessage, "send", slow_for_acme)
    run_ids = dispatched()
    slow_first = sorted(run_ids, key=lambda r: WorkflowRun.objects.get(pk=r).organization_id != org.pk)
    report = engine.execute_runs(slow_first, budget=30)
    quick = WorkflowRun.objects.filter(pk__in=report.finished, organization=other_org)
    assert quick.count() == 3  # not held up behind the stalling organization
    assert report.handed_back and set(report.handed_back) <= set(
        WorkflowRun.objects.filter(organization=org).values_list("pk", flat=True))


@pytest.mark.slow
@pytest.mark.parametrize("pipelining", [False, True], ids=["one-at-a-time", "pipelined"])
@pytest.mark.parametrize(("stall_on", "status"), [("rcpt", "failed"), ("data", "unknown")])
def test_a_real_smtp_stall_is_failed_before_the_handover_and_unknown_after(org, settings, stall_on, status,
                                                                            pipelining):
    server = ScriptedSMTP(stall_on=stall_on, pipelining=pipelining)
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 1
    try:
        email = EmailMessage.objects.create(organization=org, to="client@stall.example", subject="Hi")
        email = email_delivery.email_deliver(email_id=email.pk)
    finally:
        server.close()
    assert email.status == status
    if status == "failed":
        assert email.error.startswith("the email provider did not take it")
    else:
        assert "may or may not have been sent" in email.error


def test_the_connection_is_opened_before_a_message_is_claimed(org, monkeypatch):
    """A sender killed while connecting leaves its message queued (nothing claimed yet), and an
    unreachable provider is tried once per message, not once before and once after the claim."""
    seen, opens = [], []

    def open_and_look(self):
        opens.append(1)
        seen.append(sorted(EmailMessage.objects.values_list("status", flat=True)))
        raise ConnectionRefusedError("no provider")

    monkeypatch.setattr(mail.get_connection().__class__, "open", open_and_look)
    emails = [EmailMessage.objects.create(organization=org, to=f"c{i}@example.com", subject="Hi") for i in range(3)]
    done = email_delivery.emails_deliver(email_ids=[e.pk for e in emails])
    assert seen[0] == ["queued", "queued", "queued"]  # the first connect comes before any claim
    assert len(opens) == 3
    assert {e.status for e in done.values()} == {"failed"}
    assert all(e.error.startswith("could not connect to the email provider") for e in done.values())


@pytest.fixture
def smtp_server(tmp_path, settings):
    """The fault harness's SMTP server, in a thread: it logs each accepted message with the
    client port it came over (one port: one connection)."""
    from benchmarks.chaos.smtp_sink import SinkConfig, SinkServer

    server = SinkServer(SinkConfig(log=tmp_path / "smtp.jsonl"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.server_address[1], 2
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield SimpleNamespace(connections=lambda: [json.loads(line)["peer"]
                                               for line in (tmp_path / "smtp.jsonl").read_text().splitlines()])
    server.shutdown()
    server.server_close()
    email_delivery._kept.connection = None  # (another test's server is another key anyway)


def deliver_one(org, n: int) -> EmailMessage:
    email = EmailMessage.objects.create(organization=org, to=f"client{n}@example.com", subject=f"Hi {n}")
    return email_delivery.email_deliver(email_id=email.pk)


def test_the_next_delivery_reuses_the_smtp_connection(org, smtp_server):
    assert [deliver_one(org, n).status for n in range(3)] == ["sent"] * 3
    assert len(set(smtp_server.connections())) == 1  # one connect for three deliveries


def test_a_kept_connection_the_server_dropped_is_replaced_before_a_message_is_claimed(org, smtp_server):
    assert deliver_one(org, 1).status == "sent"
    email_delivery._kept.connection.connection.sock.shutdown(socket.SHUT_RDWR)  # as an idle timeout does
    assert deliver_one(org, 2).status == "sent"  # not "failed": the NOOP found it dead first
    assert len(set(smtp_server.connections())) == 2


def test_an_idle_or_worn_connection_is_not_reused(org, smtp_server, monkeypatch):
    monkeypatch.setattr(email_delivery, "KEEP_MESSAGES", 2)
    for n in range(3):
        assert deliver_one(org, n).status == "sent"
    monkeypatch.setattr(email_delivery, "KEEP_IDLE_SECONDS", 0.0)
    assert deliver_one(org, 3).status == "sent"
    first, second, third, fourth = smtp_server.connections()
    assert first == second != third != fourth  # two messages a connection, then idle too long


def test_a_connection_is_not_kept_after_an_uncertain_handover(org, smtp_server, monkeypatch):
    assert deliver_one(org, 1).status == "sent"
    kept = email_delivery._kept.connection
    for sends in ("unwatched_data", "unwatched_send_content"):  # (the sink offers PIPELINING: the second)
        monkeypatch.setattr(kept.connection, sends, lambda msg: (_ for _ in ()).throw(
            smtplib.SMTPServerDisconnected("gone mid-message")))
    assert deliver_one(org, 2).status == "unknown"
    assert email_delivery._kept.connection is None  # its state is unknown: closed, not kept
    monkeypatch.undo()
    assert deliver_one(org, 3).status == "sent"


def test_a_kept_connection_to_a_server_that_hangs_fails_the_message_after_one_timeout(org, smtp_server, monkeypatch):
    assert deliver_one(org, 1).status == "sent"
    opened = []
    monkeypatch.setattr(email_delivery._kept.connection.connection, "noop", lambda: (_ for _ in ()).throw(
        TimeoutError("timed out")))
    monkeypatch.setattr(mail.get_connection().__class__, "open", lambda self: opened.append(1))
    email = deliver_one(org, 2)
    assert (email.status, opened) == ("failed", [])  # not a second wait on a new connection
    assert email.error.startswith("could not connect to the email provider: TimeoutError")
