"""What a scenario expects, waiting until the workers are done, and the row it prints.

Every figure comes from the database and the fake SMTP server's log, for the organizations the
scenario owns (its `Scope`); see run.py for what each column means.
"""

import re
import time
from collections import Counter
from dataclasses import dataclass, field

from django.db.models import Max

from crm_automation.automation.models import AutomationEvent, FieldChange, WorkflowDecision, WorkflowRun
from crm_automation.crm.models import EmailMessage, Task

RECOVERY_LIMIT = 30.0
KEY_RUN = re.compile(r"^run:(\d+):node:.+$")
MESSAGE_ORG = re.compile(r"^<email-\d+\.(\d+)@crm-automation>$")


@dataclass
class Scope:
    """The organizations a scenario owns and what should happen in them."""

    org_ids: list[int]
    workflow_ids: list[int]  # every trigger in these orgs should give one run of each
    triggers: int  # stage changes the movers made: one event each is expected
    runs_per_deal: int = 1
    paused_excuses: bool = False  # a "paused" decision explains a missing run (scenario 7)


@dataclass
class Check:
    label: str
    ok: bool
    detail: str = ""


@dataclass
class Row:
    name: str
    events_lost: int = 0
    runs_missing: int = 0
    runs_doubled: int = 0
    effects_doubled: int = 0
    never_sent: int = 0
    unknown: int = 0
    unknown_limit: int | None = 0  # None: not judged (the fault itself makes outcomes unknown)
    recovery: float | None = None  # seconds from the fault to the last run finished
    recovery_limit: float | None = RECOVERY_LIMIT  # None: shown, not judged
    timed_out: bool = False  # the workers were not done within the scenario's wait
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    crashed: str = ""  # the harness could not run the scenario (its traceback's last line)

    def failures(self) -> list[str]:
        if self.crashed:
            return [f"scenario crashed: {self.crashed}"]
        found = [f"{label} = {value}" for label, value in (
            ("events lost", self.events_lost), ("runs missing", self.runs_missing),
            ("runs doubled", self.runs_doubled), ("side effects doubled", self.effects_doubled),
            ("emails never sent", self.never_sent)) if value]
        if self.unknown_limit is not None and self.unknown > self.unknown_limit:
            found.append(f"unknown emails {self.unknown} > {self.unknown_limit} killed during delivery")
        if self.timed_out:
            found.append("the workers were not done before the timeout")
        elif self.recovery_limit is not None and (self.recovery is None or self.recovery >= self.recovery_limit):
            found.append(f"recovery {self.recovery or 0:.1f} s ≥ {self.recovery_limit:.0f} s")
        found += [f"{c.label}: {c.detail}" for c in self.checks if not c.ok]
        return found

    @property
    def ok(self) -> bool:
        return not self.failures()


def wait_settled(scope: Scope, timeout: float) -> bool:
    """Until every event of the scope is processed and no run is unfinished (twice in a row,
    half a second apart), or the timeout."""
    deadline = time.monotonic() + timeout
    calm = 0
    while time.monotonic() < deadline:
        busy = (AutomationEvent.objects.filter(organization_id__in=scope.org_ids, processed_at__isnull=True).exists()
                or WorkflowRun.objects.filter(organization_id__in=scope.org_ids, status="started").exists())
        calm = 0 if busy else calm + 1
        if calm >= 2:
            return True
        time.sleep(0.25 if busy else 0.5)
    return False


def finished_count(org_ids: list[int]) -> int:
    return WorkflowRun.objects.filter(organization_id__in=org_ids).exclude(status="started").count()


def last_finish(org_ids: list[int]) -> float | None:
    value = WorkflowRun.objects.filter(organization_id__in=org_ids).aggregate(m=Max("finished_at"))["m"]
    return value.timestamp() if value else None


def _run_of(key: str | None) -> int | None:
    match = KEY_RUN.match(key or "")
    return int(match.group(1)) if match else None


def _doubled_per_run(keys: list[str | None]) -> int:
    per_run = Counter(run for run in map(_run_of, keys) if run is not None)
    return sum(count - 1 for count in per_run.values() if count > 1)


def smtp_in_scope(messages: list[dict], org_ids: list[int]) -> Counter:
    """Message-IDs the SMTP server accepted for the scope's organizations, with how often."""
    wanted = {str(o) for o in org_ids}
    found: Counter[str] = Counter()
    for message in messages:
        match = MESSAGE_ORG.match(message.get("message_id", ""))
        if match and match.group(1) in wanted:
            found[message["message_id"]] += 1
    return found


def measure(row: Row, scope: Scope, smtp_messages: list[dict]) -> Row:
    """Fill the row's columns from the database and the SMTP log."""
    orgs = scope.org_ids
    events = AutomationEvent.objects.filter(organization_id__in=orgs)
    n_events = events.count()
    unprocessed = events.filter(processed_at__isnull=True).count()
    set_aside = events.exclude(error="").count()
    row.events_lost = unprocessed + set_aside + max(0, scope.triggers - n_events)
    if n_events != scope.triggers:
        row.notes.append(f"{n_events} events for {scope.triggers} stage changes")
    if unprocessed or set_aside:
        row.notes.append(f"events: {unprocessed} never processed, {set_aside} set aside with an error")

    runs = WorkflowRun.objects.filter(organization_id__in=orgs)
    pairs = Counter(runs.values_list("event_id", "workflow_id"))
    decisions = {(e, w): o for e, w, o in WorkflowDecision.objects.filter(workflow_id__in=scope.workflow_ids)
                 .values_list("event_id", "workflow_id", "outcome")}
    missing: Counter[str] = Counter()
    excused: Counter[str] = Counter()
    for event_id in events.values_list("pk", flat=True):
        for workflow_id in scope.workflow_ids:
            if (event_id, workflow_id) in pairs:
                continue
            outcome = decisions.get((event_id, workflow_id), "no decision")
            if scope.paused_excuses and outcome == WorkflowDecision.Outcome.PAUSED:
                excused[outcome] += 1
            else:
                missing[outcome] += 1
    row.runs_missing = sum(missing.values())
    if missing:
        row.notes.append(f"runs missing by decision: {dict(missing)}")
    if excused:
        row.notes.append(f"no run, rightly (workflow paused at dispatch): {excused['paused']} events")
    per_deal = Counter(runs.filter(workflow_id__in=scope.workflow_ids)
                       .values_list("trigger_entity_id", "workflow_id"))
    row.runs_doubled = (sum(c - 1 for c in pairs.values() if c > 1)
                        + sum(c - scope.runs_per_deal for c in per_deal.values() if c > scope.runs_per_deal))
    statuses = Counter(runs.values_list("status", flat=True))
    row.notes.append(f"runs {sum(statuses.values())}: {dict(sorted(statuses.items()))}")

    emails = EmailMessage.objects.filter(organization_id__in=orgs)
    email_keys = list(emails.values_list("automation_key", flat=True))
    received = smtp_in_scope(smtp_messages, orgs)
    row.effects_doubled = (
        _doubled_per_run(list(Task.objects.filter(organization_id__in=orgs).values_list("automation_key", flat=True)))
        + _doubled_per_run(list(FieldChange.objects.filter(organization_id__in=orgs)
                                .values_list("automation_key", flat=True)))
        + _doubled_per_run(email_keys)
        + sum(c - 1 for c in received.values() if c > 1))
    if any(c > 1 for c in received.values()):
        row.notes.append(f"SMTP received {sum(c - 1 for c in received.values() if c > 1)} duplicate messages")

    by_status = Counter(emails.values_list("status", flat=True))
    with_email = {run for run in map(_run_of, email_keys) if run is not None}
    completed_without = runs.filter(status="completed").exclude(pk__in=with_email).count()
    sent_ids = {f"<email-{pk}.{org}@crm-automation>" for pk, org in
                emails.filter(status="sent").values_list("pk", "organization_id")}
    lost_in_transit = len(sent_ids - set(received))
    row.never_sent = (by_status["queued"] + by_status["sending"] + completed_without + lost_in_transit
                      + emails.filter(status="failed", attempts=0).count())
    row.unknown = by_status["unknown"]
    if row.unknown:
        unknown_ids = [f"<email-{pk}.{org}@crm-automation>" for pk, org in
                       emails.filter(status="unknown").values_list("pk", "organization_id")]
        arrived = sum(1 for m in unknown_ids if m in received)
        row.notes.append(f"unknown emails: {arrived} reached the SMTP server, {row.unknown - arrived} did not "
                         "(neither is re-sent automatically)")
    row.notes.append(f"emails {sum(by_status.values())}: {dict(sorted(by_status.items()))}; "
                     f"SMTP accepted {sum(received.values())}")
    if completed_without or lost_in_transit:
        row.notes.append(f"{completed_without} completed runs without an email; {lost_in_transit} emails "
                         "marked sent that the SMTP server never received")
    return row
