"""Execution: durable, resumable, idempotent; history never blocks work."""

import time
from datetime import timedelta

import pytest
from django.core import mail
from django.db import DatabaseError
from django.utils import timezone

from crm_automation.automation.models import FieldChange, WorkflowRun, WorkflowRunAction
from crm_automation.automation.nodes import REGISTRY
from crm_automation.automation.runtime import engine, leases
from crm_automation.automation.runtime.dispatch import claim_events, dispatch_events
from crm_automation.automation.runtime.engine import runs
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.crm.models import Deal, EmailMessage, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import KICKOFF_ACTIONS as KICKOFF
from tests.conftest import drain, make_workflow, stage


def execute_run(run_id: int) -> str | None:
    """Execute (or resume) one run: its final status, or None if it was not there to run."""
    return engine.execute_runs([run_id]).finished.get(run_id)



def win(org, deal):
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))


def dispatched_run(org, deal) -> int:
    win(org, deal)
    (run_id,) = dispatch_events(claim_events(10))
    return run_id


def effects(deal):
    return (Task.objects.filter(deal=deal).count(), EmailMessage.objects.filter(deal=deal).count(),
            FieldChange.objects.filter(entity_id=deal.pk).count())


def test_the_kickoff_workflow_does_all_three_things(org, deal, owner):
    make_workflow(org)
    win(org, deal)
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "completed" and run.duration_ms is not None
    steps = list(run.actions.values_list("action_type", "status", "attempts"))
    assert steps == [("create_task", "completed", 1), ("update_field", "completed", 1), ("send_email", "completed", 1)]
    task = Task.objects.get()
    assert (task.title, task.assignee, task.deal_id) == ("Kick off Website", owner, deal.pk)
    assert Deal.objects.get(pk=deal.pk).probability == 100
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ada@example.com"]
    assert mail.outbox[0].body == "Hi Ada"


def test_a_redelivered_run_does_not_repeat_its_actions(org, deal):
    make_workflow(org)
    run_id = dispatched_run(org, deal)
    assert execute_run(run_id) == "completed"
    assert execute_run(run_id) is None  # finished: nothing to do
    WorkflowRun.objects.filter(pk=run_id).update(status="started", lease_until=None)  # redelivered
    WorkflowRunAction.objects.filter(run_id=run_id).delete()  # even with its history lost
    execute_run(run_id)
    assert effects(deal) == (1, 1, 1) and len(mail.outbox) == 1


def test_a_run_held_by_another_worker_is_left_alone(org, deal):
    make_workflow(org)
    run_id = dispatched_run(org, deal)
    assert leases.claim_runs([run_id])[1]
    assert execute_run(run_id) is None
    assert effects(deal) == (0, 0, 0)


EMAIL_FIRST = [KICKOFF[2], KICKOFF[0], KICKOFF[1]]


def expire_leases():
    WorkflowRun.objects.update(lease_until=timezone.now() - timedelta(seconds=1))


def die(*args, **kwargs):
    raise KeyboardInterrupt("worker killed")


def test_a_run_whose_worker_died_is_resumed_from_its_last_step(org, deal, monkeypatch):
    make_workflow(org, actions=EMAIL_FIRST)
    run_id = dispatched_run(org, deal)
    monkeypatch.setattr(REGISTRY["create_task"], "apply", die)
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id)  # the email went out, then the worker died
    monkeypatch.undo()
    run = WorkflowRun.objects.get(pk=run_id)
    assert run.status == "started" and len(mail.outbox) == 1
    assert sweep(fan_out=False)["resumed"] == 0  # its lease is still held
    expire_leases()
    assert sweep(fan_out=False)["resumed"] == 1
    run.refresh_from_db()
    assert run.status == "completed" and run.attempts == 2
    assert list(run.actions.values_list("status", flat=True)) == ["completed"] * 3
    assert effects(deal) == (1, 1, 1) and len(mail.outbox) == 1  # the email was not sent again


def test_an_email_interrupted_mid_send_is_reported_unknown_and_never_sent_again(org, deal, monkeypatch):
    make_workflow(org, actions=EMAIL_FIRST, error_handling="continue")
    run_id = dispatched_run(org, deal)
    monkeypatch.setattr("django.core.mail.EmailMessage.send", die)  # killed while the provider has it
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id)
    monkeypatch.undo()
    assert EmailMessage.objects.get().status == "sending"
    expire_leases()
    sweep(fan_out=False)
    run = WorkflowRun.objects.get(pk=run_id)
    email_step = run.actions.get(position=0)
    assert email_step.status == "failed" and "outcome unknown" in email_step.error
    email = EmailMessage.objects.get()
    assert email.status == "unknown" and "may or may not have been sent" in email.error and mail.outbox == []
    assert run.status == "partial" and Task.objects.count() == 1
    assert "Step 1 (Send email) failed: email outcome unknown" in run.error


def test_an_email_the_worker_never_handed_over_is_sent_once_on_resume(org, deal, monkeypatch):
    make_workflow(org, actions=EMAIL_FIRST)
    run_id = dispatched_run(org, deal)
    monkeypatch.setattr("crm_automation.crm.email_delivery._claim", die)  # died after the commit
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id)
    monkeypatch.undo()
    assert EmailMessage.objects.get().status == "queued"
    expire_leases()
    sweep(fan_out=False)
    assert WorkflowRun.objects.get(pk=run_id).status == "completed"
    assert EmailMessage.objects.get().status == "sent" and len(mail.outbox) == 1
    assert effects(deal) == (1, 1, 1)


def test_a_crash_inside_a_segment_leaves_nothing_half_done(org, deal, monkeypatch):
    make_workflow(org)
    run_id = dispatched_run(org, deal)
    monkeypatch.setattr(REGISTRY["update_field"], "apply", die)
    with pytest.raises(KeyboardInterrupt):
        execute_run(run_id)
    monkeypatch.undo()
    assert effects(deal) == (0, 0, 0) and not WorkflowRunAction.objects.exists()
    expire_leases()
    sweep(fan_out=False)
    assert effects(deal) == (1, 1, 1) and WorkflowRun.objects.get().status == "completed"


def test_stop_on_error_skips_the_rest_and_fails_the_run(org, deal):
    wf = make_workflow(org, actions=[
        {"type": "send_email", "config": {"to": "{{deal.owner.username}}", "subject": "Hi"}},
        {"type": "create_task", "config": {"title": "Never"}}])
    win(org, deal)
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "failed"
    first, second = run.actions.all()
    assert first.status == "failed" and "is not an email address" in first.error
    assert second.status == "skipped" and "step 1 failed" in second.error
    assert run.error.startswith("Step 1 (Send email) failed: the recipient “owner” is not an email address")
    wf.refresh_from_db()
    assert (wf.run_count, wf.success_count, wf.failure_count) == (1, 0, 1)


def test_continue_on_error_gives_a_partial_run(org, deal):
    make_workflow(org, error_handling="continue", actions=[
        {"type": "update_field", "config": {"field": "title", "value": "{{deal.contact.first_name}}"}},
        {"type": "update_field", "config": {"field": "amount", "value": 5}},
        {"type": "send_email", "config": {"to": "{{deal.contact.phone}}", "subject": "x"}}])
    win(org, deal)
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "partial"
    assert list(run.actions.values_list("status", flat=True)) == ["completed", "completed", "failed"]
    assert Deal.objects.get(pk=deal.pk).title == "Ada"


def test_a_provider_failure_is_recorded_on_the_email_and_the_step(org, deal, settings, monkeypatch):
    make_workflow(org)

    def refuse(self, *a, **k):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
    win(org, deal)
    drain()
    step = WorkflowRunAction.objects.get(action_type="send_email")
    assert step.status == "failed" and "smtp down" in step.error
    assert EmailMessage.objects.get().status == "failed"


def test_failing_to_write_history_does_not_block_the_actions(org, deal, monkeypatch):
    wf = make_workflow(org)

    def broken(*args, **kwargs):
        raise DatabaseError("history table unavailable")

    monkeypatch.setattr(runs, "bulk_insert_values", broken)  # the step rows' only writer, on both databases
    win(org, deal)
    drain()
    assert effects(deal) == (1, 1, 1)
    assert WorkflowRun.objects.get().status == "completed"
    wf.refresh_from_db()
    assert (wf.run_count, wf.success_count) == (1, 1)


def test_a_deleted_record_fails_the_run_with_a_reason(org, deal):
    make_workflow(org)
    run_id = dispatched_run(org, deal)
    Deal.objects.filter(pk=deal.pk).delete()
    assert execute_run(run_id) == "failed"
    run = WorkflowRun.objects.get(pk=run_id)
    assert "no longer exists" in run.error
    assert set(run.actions.values_list("status", flat=True)) == {"skipped"}


def test_unknown_template_paths_are_noted_in_the_result(org, deal):
    make_workflow(org, actions=[{"type": "create_task", "config": {"title": "Call {{deal.contact.phone}} now"}}])
    win(org, deal)
    drain()
    step = WorkflowRunAction.objects.get()
    assert step.status == "completed" and step.result["title"] == "Call  now"


def test_runs_execute_the_version_they_were_created_with(org, deal):
    from crm_automation.automation.services.workflows import workflow_update

    wf = make_workflow(org)
    run_id = dispatched_run(org, deal)
    workflow_update(workflow_id=wf.pk, actions=[{"type": "create_task", "config": {"title": "v2 only"}}])
    execute_run(run_id)
    assert Task.objects.get().title == "Kick off Website"
    assert WorkflowRun.objects.get(pk=run_id).version.number == 1


def test_a_run_that_keeps_crashing_is_given_up_after_five_attempts(org, deal, monkeypatch):
    make_workflow(org)
    run_id = dispatched_run(org, deal)
    monkeypatch.setattr(REGISTRY["create_task"], "apply", die)
    for _ in range(engine.MAX_ATTEMPTS):
        with pytest.raises(KeyboardInterrupt):
            execute_run(run_id)
        expire_leases()
    assert execute_run(run_id) == "failed"
    run = WorkflowRun.objects.get(pk=run_id)
    assert "gave up after 5 attempts" in run.error and effects(deal) == (0, 0, 0)


def test_a_run_past_its_timeout_skips_the_remaining_steps(org, deal, monkeypatch):
    make_workflow(org, timeout_seconds=5)
    run_id = dispatched_run(org, deal)
    load = runs.load_states

    def already_late(runs):  # as if the run had started 100 s ago
        states = load(runs)
        for state in states:
            state.deadline = time.monotonic() - 95
        return states

    monkeypatch.setattr(runs, "load_states", already_late)
    assert execute_run(run_id) == "failed"
    steps = WorkflowRunAction.objects.filter(run_id=run_id)
    assert {s.status for s in steps} == {"skipped"}
    assert "timeout of 5s was reached" in steps.first().error
    assert effects(deal) == (0, 0, 0)
