"""Cancel, retry from the failed steps, let a waiting run go on now: never a side effect twice."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils import timezone

from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.automation.services.runs import run_cancel, run_retry, run_wake_now, runs_retry_failed
from crm_automation.crm.models import Deal, EmailMessage, Task
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.refusals import Refused
from tests.conftest import drain, make_workflow, stage
from tests.test_waits_and_gates import FOLLOW_UP, proposal_sent

RUNS = reverse("admin:automation_workflowrun_changelist")


def failed_email_run(org, deal, monkeypatch):
    """The kickoff (task, probability, email) with the email provider down."""
    wf = make_workflow(org)
    monkeypatch.setattr(mail.EmailMessage, "send", lambda *a, **k: (_ for _ in ()).throw(ConnectionRefusedError()))
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    monkeypatch.undo()
    return wf, WorkflowRun.objects.get()


def test_retry_runs_only_the_failed_step_and_counts_the_run_once(org, deal, owner, monkeypatch):
    wf, run = failed_email_run(org, deal, monkeypatch)
    assert run.status == "failed" and EmailMessage.objects.get().status == "failed"
    run_retry(run_id=run.pk, by=owner)
    continue_runs([run.pk])  # what the retry's nudge queues
    run.refresh_from_db()
    assert run.status == "completed" and run.error == ""
    assert Task.objects.count() == 1 and EmailMessage.objects.count() == 1 and len(mail.outbox) == 1
    assert EmailMessage.objects.get().status == "sent"
    wf.refresh_from_db()
    assert (wf.run_count, wf.success_count, wf.failure_count) == (1, 1, 0)


def test_a_run_whose_email_outcome_is_unknown_is_not_retried(org, deal, owner, monkeypatch):
    _, run = failed_email_run(org, deal, monkeypatch)
    EmailMessage.objects.update(status="unknown")
    with pytest.raises(Refused, match="may already have reached its recipient"):
        run_retry(run_id=run.pk, by=owner)
    assert WorkflowRun.objects.get(pk=run.pk).status == "failed" and mail.outbox == []


def test_bulk_retry_of_failed_runs_since_an_outage(org, contact, owner, monkeypatch):
    wf = make_workflow(org, actions=[{"type": "send_email", "config": {"to": "a@b.co", "subject": "Hi"}}])
    monkeypatch.setattr(mail.EmailMessage, "send", lambda *a, **k: (_ for _ in ()).throw(ConnectionRefusedError()))
    for i in range(3):
        deal_move_to_stage(deal=Deal.objects.create(organization=org, title=f"D{i}", stage=stage(org, "proposal"),
                                                    contact=contact), stage=stage(org, "won"))
    drain()
    monkeypatch.undo()
    WorkflowRun.objects.filter(pk=WorkflowRun.objects.order_by("pk").first().pk).update(
        started_at=timezone.now() - timedelta(days=2))  # before the outage: left alone
    retried, problems = runs_retry_failed(workflow_id=wf.pk, by=owner, since=timezone.now() - timedelta(hours=1))
    assert (retried, problems) == (2, [])
    continue_runs(list(WorkflowRun.objects.filter(status="started").values_list("pk", flat=True)))
    assert sorted(WorkflowRun.objects.values_list("status", flat=True)) == ["completed", "completed", "failed"]


def test_cancel_a_waiting_run(org, deal, owner):
    run = proposal_sent(org, deal)
    cancelled = run_cancel(run_id=run.pk, by=owner)
    assert cancelled.status == "cancelled" and "cancelled by owner" in cancelled.error
    steps = list(cancelled.actions.order_by("position").values_list("status", flat=True))
    assert steps == ["skipped", "skipped", "skipped"]
    run.refresh_from_db()
    WorkflowRun.objects.filter(pk=run.pk).update(wake_at=timezone.now() - timedelta(seconds=1))
    sweep(fan_out=False)
    assert not Task.objects.exists() and WorkflowRun.objects.get(pk=run.pk).status == "cancelled"
    assert Workflow.objects.get().run_count == 0  # neither a success nor a failure


def test_cancelling_stops_a_queued_email(org, deal, owner, monkeypatch):
    from crm_automation.crm import email_delivery

    make_workflow(org, actions=[{"type": "send_email", "config": {"to": "a@b.co", "subject": "Hi"}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    monkeypatch.setattr(email_delivery, "_claim", lambda email: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        drain()
    monkeypatch.undo()
    run = WorkflowRun.objects.get()
    WorkflowRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    run_cancel(run_id=run.pk, by=owner)
    email = EmailMessage.objects.get()
    assert email.status == "failed" and "cancelled by owner" in email.error and mail.outbox == []


def test_a_run_held_by_a_worker_is_not_cancelled(org, deal, owner):
    run = proposal_sent(org, deal)
    WorkflowRun.objects.filter(pk=run.pk).update(status="started", lease_until=timezone.now() + timedelta(seconds=9),
                                                 lease_owner="worker")
    with pytest.raises(Refused, match="executing right now"):
        run_cancel(run_id=run.pk, by=owner)


def test_go_on_now_ends_the_wait(org, deal, owner):
    run = proposal_sent(org, deal)
    run_wake_now(run_id=run.pk, by=owner)
    sweep(fan_out=False)
    assert WorkflowRun.objects.get(pk=run.pk).status == "completed" and Task.objects.count() == 1


def test_viewers_and_outsiders_change_no_run(org, deal, viewer, outsider):
    run = proposal_sent(org, deal)
    for person in (viewer, outsider):
        with pytest.raises(PermissionDenied):
            run_cancel(run_id=run.pk, by=person)


def test_the_run_list_has_the_controls_and_a_records_runs(client, org, deal, owner):
    run = proposal_sent(org, deal)
    client.force_login(owner)
    page = client.get(RUNS + f"?trigger_entity_id={deal.pk}").content.decode()
    assert "Let selected waiting runs go on now" in page and f"/automation/workflowrun/{run.pk}/" in page
    response = client.post(RUNS, {"action": "cancel_runs", "_selected_action": [run.pk]}, follow=True)
    assert "1 run(s) cancelled" in response.content.decode()
    deal_page = client.get(reverse("admin:crm_deal_change", args=[deal.pk])).content.decode()
    assert f"?trigger_entity_id={deal.pk}" in deal_page


def test_the_workflow_filter_names_only_the_persons_workflows(client, org, other_org, owner):
    make_workflow(other_org, name="Rival secret flow", actions=FOLLOW_UP[2:])
    client.force_login(owner)
    assert "Rival secret flow" not in client.get(RUNS).content.decode()
