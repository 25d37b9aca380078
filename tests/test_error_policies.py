"""Per-node error policies: retry with backoff (never an email whose outcome is unknown), skip and
go on, pause and ask a person (retry, skip or cancel), abort; and the workflow's default."""

from datetime import datetime

import pytest
from django.core import mail

from crm_automation.automation.definition import error_policy
from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.automation.services.runs import run_cancel, run_resume
from crm_automation.crm.models import EmailMessage, Notification, Task
from crm_automation.refusals import Refused
from tests.conftest import time_passes
from tests.test_graph_engine import edge, task, win

EMAIL = {"id": "email", "type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Hi"}}


def provider(monkeypatch, *errors):
    """The email provider raises these errors in turn, then accepts."""
    pending = list(errors)

    def send(self, *args, **kwargs):
        if pending:
            raise pending.pop(0)
        mail.outbox.append(self)
        return 1

    monkeypatch.setattr(mail.EmailMessage, "send", send)


def flow(on_error=None, **kwargs):
    email = {**EMAIL, **({"on_error": on_error} if on_error else {})}
    return [email, task("after", "After")], [edge("trigger", "email"), edge("email", "after")]


def test_retry_waits_with_backoff_then_succeeds(org, deal, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"), ConnectionRefusedError(111, "refused"))
    run = win(org, deal, *flow({"policy": "retry", "maxAttempts": 4, "baseSeconds": 5, "factor": 5}))
    step = run.actions.get(node_id="email")
    assert run.status == "waiting" and step.status == "waiting" and step.attempts == 1
    assert "refused" in step.error and step.result["policy"] == "retry" and "try 2 of 4" in step.result["decided"]
    first_wait = (datetime.fromisoformat(step.result["retry_at"]) - step.started_at).total_seconds()
    assert 3 <= first_wait <= 8  # 5 s ± 20 % jitter, in whole seconds
    time_passes()
    sweep(fan_out=False)
    step = run.actions.get(node_id="email")  # (a step's row is written anew as it changes)
    run.refresh_from_db()
    assert run.status == "waiting" and step.attempts == 2 and "try 3 of 4" in step.result["decided"]
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed" and len(mail.outbox) == 1 and EmailMessage.objects.get().status == "sent"
    assert run.actions.get(node_id="email").attempts == 3 and Task.objects.get().title == "After"


def test_an_email_whose_outcome_is_unknown_is_never_retried(org, deal, monkeypatch):
    provider(monkeypatch, TimeoutError("timed out"))
    run = win(org, deal, *flow({"policy": "retry", "maxAttempts": 3, "then": "abort"}))
    step = run.actions.get(node_id="email")
    assert run.status == "failed" and step.status == "failed" and step.result["policy"] == "abort"
    assert "it may already have had its effect" in step.result["decided"]
    assert EmailMessage.objects.get().status == "unknown" and run.actions.get(node_id="after").status == "skipped"


def test_retries_run_out_then_the_fallback_applies(org, deal, monkeypatch):
    provider(monkeypatch, *[ConnectionRefusedError(111, "refused")] * 2)
    run = win(org, deal, *flow({"policy": "retry", "maxAttempts": 2, "baseSeconds": 1, "then": "skip"}))
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    step = run.actions.get(node_id="email")
    assert step.status == "failed" and step.result["decided"] == "gave up after 2 tries"
    assert run.status == "partial" and Task.objects.get().title == "After"  # skipped, and went on


def test_skip_goes_on_and_abort_stops(org, deal, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"))
    run = win(org, deal, *flow({"policy": "skip"}))
    assert run.status == "partial" and Task.objects.count() == 1


def test_the_workflows_policy_applies_to_steps_without_their_own(org, deal, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"))
    run = win(org, deal, *flow(), error_handling="continue")
    assert run.status == "partial" and run.actions.get(node_id="email").result["policy"] == "skip"


@pytest.fixture
def paused(org, deal, owner, monkeypatch):
    provider(monkeypatch, ConnectionRefusedError(111, "refused"))
    run = win(org, deal, *flow({"policy": "pause"}))
    assert run.status == "paused" and "Step 1" in run.error and not Task.objects.exists()
    return run


def test_pause_notifies_the_admins_once(paused, owner):
    note = Notification.objects.get()
    assert note.user == owner and f"Run #{paused.pk}" in note.title and "refused" in note.body
    assert sweep(fan_out=False)["resumed"] == 0 and WorkflowRun.objects.get().status == "paused"


def test_a_paused_run_is_retried_by_a_person(paused, owner):
    run_resume(run_id=paused.pk, by=owner, how="retry")
    continue_runs([paused.pk])
    paused.refresh_from_db()
    assert paused.status == "completed" and len(mail.outbox) == 1 and Task.objects.count() == 1


def test_a_paused_run_is_skipped_past_by_a_person(paused, owner):
    run_resume(run_id=paused.pk, by=owner, how="skip")
    continue_runs([paused.pk])
    paused.refresh_from_db()
    assert paused.status == "partial" and not mail.outbox and Task.objects.count() == 1
    step = paused.actions.get(node_id="email")
    assert step.status == "skipped" and step.result["skipped_by"] == "owner"


def test_a_paused_run_can_be_cancelled_and_a_viewer_cannot_resume(paused, viewer, owner):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        run_resume(run_id=paused.pk, by=viewer, how="retry")
    assert run_cancel(run_id=paused.pk, by=owner).status == "cancelled"
    with pytest.raises(Refused, match="not paused"):
        run_resume(run_id=paused.pk, by=owner, how="retry")


@pytest.mark.parametrize(("on_error", "place"), [
    ({"policy": "later"}, "on_error.policy"),
    ({"policy": "retry", "maxAttempts": 50}, "on_error.maxAttempts"),
    ({"policy": "skip", "factor": 2}, "on_error.factor"),
    ({"policy": "retry", "then": "retry"}, "on_error.then"),
])
def test_bad_policies_are_refused_with_the_place(on_error, place):
    assert error_policy.validate(on_error)[0][0] == place


def test_the_standard_webhooks_retry_schedule():
    from datetime import UTC, datetime

    rule = {"policy": "retry", "schedule": "standard-webhooks", "then": "pause"}
    assert error_policy.validate(rule) == []
    now = datetime(2026, 1, 1, tzinfo=UTC)
    waits = []
    for attempt in range(1, 11):
        decision = error_policy.decide(rule, "stop", attempt=attempt, retry_safe=True, now=now)
        waits.append(None if decision.retry_at is None else (decision.retry_at - now).total_seconds())
    expected = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    assert all(w is not None and 0.8 * e <= w <= 1.2 * e + 2
               for w, e in zip(waits[:9], expected, strict=True))
    last = error_policy.decide(rule, "stop", attempt=10, retry_safe=True, now=now)
    assert waits[9] is None and last.policy == "pause"
    assert error_policy.validate({"policy": "retry", "schedule": [0]})[0][0] == "on_error.schedule"
