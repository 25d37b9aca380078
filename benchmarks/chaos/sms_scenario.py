"""Scenario 10: kill -9 of a worker while SMS are handed to the provider, with replies arriving
while it is dead.

A Twilio stand-in (a thread of the harness: an HTTP server taking 0.3 s per message, recording
each one before it answers, as a provider commits before it confirms) serves a cluster whose
organization sends through "Twilio". Each deal won texts its own contact and waits for the reply.
Once a few messages went through, the worker holding a connection to the stand-in is frozen and
killed; from then on the harness answers every message the stand-in got (crm/sms/inbound.py, as
the provider's webhook would), while the cluster recovers. Judged: no message sent twice, at most
one in an unknown state per killed worker, every reply reaching its waiting run (none lost), and
the usual events/runs columns."""

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from benchmarks.chaos.checks import Check, Row, Scope, last_finish, measure
from benchmarks.chaos.data import add_workflow, make_org
from benchmarks.chaos.harness import Harness, describe_kills
from benchmarks.chaos.procs import remote_ports
from benchmarks.chaos.scenarios import settle
from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.crm.models import Contact, SmsMessage, SmsSettings, Task
from crm_automation.crm.sms import inbound

DELAY = 0.3
TEXT_AND_WAIT = [
    {"id": "text", "type": "send_sms", "label": "Text", "config": {
        "to": "{{deal.contact.phone}}", "body": "Is {{deal.title}} going well? Reply YES or NO",
        "wait_for_reply": True, "reply_timeout_hours": 1}},
    {"id": "note", "type": "create_task", "label": "Reply", "config": {"title": "{{deal.title}}: {{Text.reply}}"}},
]


class TwilioStandIn:
    """Records each message (To, Body) and answers 201 with its sid after DELAY seconds."""

    def __init__(self, delay: float = DELAY) -> None:
        self.messages: list[dict] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                form = {k: v[0] for k, v in parse_qs(body).items()}
                sid = f"SMCHAOS{len(stand_in.messages)}"
                stand_in.messages.append({"sid": sid, "to": form.get("To"), "body": form.get("Body")})
                time.sleep(delay)
                data = json.dumps({"sid": sid, "status": "queued"}).encode()
                self.send_response(201)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the worker sending it was killed mid-request (the scenario's point)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _texting_worker(cluster, stand_in: TwilioStandIn, min_sent: int = 3, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(stand_in.messages) >= min_sent:
            for pid in cluster.worker_pids():
                if stand_in.port in remote_ports(pid):
                    return pid
        time.sleep(0.01)
    raise RuntimeError("no worker was handing an SMS over")


def kill_mid_sms(h: Harness) -> list[Row]:
    tag, n = "s10", h.size(30, 16)
    row = Row("10 kill -9 worker mid-SMS, replies during the kill (0.3 s/msg)")
    stand_in = TwilioStandIn()
    cluster = None
    try:
        data = make_org("kill-sms", deals=n, contacts=n)  # one contact per deal: one reply per waiting run
        for i, contact in enumerate(Contact.objects.filter(organization=data.org).order_by("pk")):
            Contact.objects.filter(pk=contact.pk).update(phone=f"+1555010{i:04d}", phone_e164=f"+1555010{i:04d}")
        sms = SmsSettings.objects.create(organization=data.org, provider="twilio", account_sid="ACchaos",
                                         auth_token="chaos-token", from_number="+15550009999")
        wf = add_workflow(data, "Text and wait", actions=TEXT_AND_WAIT)
        env = h.env(broker="orm", TWILIO_API_BASE=f"http://127.0.0.1:{stand_in.port}",
                    WEBHOOK_ALLOWED_HOSTS="127.0.0.1", SMS_TIMEOUT="5")
        h.move(env, data, tag)
        cluster = h.cluster(env, tag)
        kill = cluster.freeze_and_kill(_texting_worker(cluster, stand_in), stand_in.port)
        row.checks.append(Check("killed while handing an SMS over", kill.in_delivery, kill.title))
        row.unknown_limit = int(kill.in_delivery)
        describe_kills(row, [kill])
        row.notes.append(f"at the kill: {len(stand_in.messages)} SMS taken by the stand-in")
        replied = _reply_while_recovering(sms, stand_in, n, h.wait)
        scope = Scope([data.pk], [wf.pk], triggers=n)
        settle(row, scope, kill.at, h.wait)
        # A reply that came while its run was busy is read at the next sweep (at most a minute).
        deadline = time.monotonic() + max(h.wait, 90)
        while WorkflowRun.objects.filter(organization_id=data.pk, status="waiting").exists() \
                and time.monotonic() < deadline:
            time.sleep(1)
        row.recovery = max(0.0, (last_finish([data.pk]) or kill.at) - kill.at)
        measure(row, scope, [])
        _measure_sms(row, data.pk, stand_in, replied)
    finally:
        if cluster is not None:
            cluster.stop()
        stand_in.stop()
    return [row]


def _reply_while_recovering(sms: SmsSettings, stand_in: TwilioStandIn, n: int, timeout: float) -> set[str]:
    """Answer every message the stand-in took, as the contacts would, until all n are answered
    (or the timeout: a message in an unknown state may never come)."""
    replied: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(replied) < n and time.monotonic() < deadline:
        for message in list(stand_in.messages):
            if message["to"] not in replied:
                inbound.receive(sms, {"MessageSid": f"IN{message['sid']}", "From": message["to"],
                                      "Body": f"yes from {message['to']}"})
                replied.add(message["to"])
        time.sleep(0.2)
    return replied


def _measure_sms(row: Row, org_id: int, stand_in: TwilioStandIn, replied: set[str]) -> None:
    """The SMS columns: what measure() judged of emails does not apply here."""
    row.notes = [note for note in row.notes if "email" not in note.lower() and not note.startswith("SMTP")]
    messages = SmsMessage.objects.filter(organization_id=org_id)
    by_status = Counter(messages.values_list("status", flat=True))
    taken = Counter(m["to"] for m in stand_in.messages)
    row.effects_doubled = sum(c - 1 for c in taken.values() if c > 1) + sum(
        c - 1 for c in Counter(messages.values_list("automation_key", flat=True)).values() if c > 1)
    row.unknown = by_status["unknown"]
    sent_not_taken = messages.filter(status="sent").exclude(to__in=list(taken)).count()
    row.never_sent = by_status["queued"] + by_status["sending"] + sent_not_taken
    waited = WorkflowRunAction.objects.filter(run__organization_id=org_id, node_id="text", status="completed")
    got = sum(1 for result in waited.values_list("result", flat=True) if (result or {}).get("reply"))
    lost = messages.filter(status="sent", replied_at__isnull=True).count()
    sent = by_status["sent"]
    row.checks.append(Check("no reply lost", lost == 0 and got == sent,
                            f"{got} runs read their reply, of {sent} SMS sent; {lost} sent SMS without a reply"))
    row.checks.append(Check("each reply's run went on with it",
                            Task.objects.filter(organization_id=org_id).count() == got,
                            f"{Task.objects.filter(organization_id=org_id).count()} tasks for {got} replies"))
    row.notes.append(f"SMS {sum(by_status.values())}: {dict(sorted(by_status.items()))}; the stand-in took "
                     f"{sum(taken.values())}; replies sent {len(replied)}")
