"""Workers are shared between organizations when one has a slow provider (fairness.py): a
group delivers in slices and goes on only while nobody else waits, and runs step aside when
another worker already waits on their organization's provider while others' work waits."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core import mail
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, RunStatus, WorkflowRun
from crm_automation.automation.runtime import engine, fairness
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.automation.runtime.watchdog import Watch
from crm_automation.crm.models import EmailMessage
from crm_automation.webhooks.models import WebhookDelivery
from tests.conftest import make_workflow
from tests.test_engine import expire_leases
from tests.test_isolation import dispatched, won_deals

EMAIL_ONLY = [{"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Hi {{deal.title}}"}}]


@pytest.fixture
def slow_provider(monkeypatch):
    """Each message takes the provider 0.15 s; slices are 0.2 s, so a slice holds two messages."""
    monkeypatch.setitem(settings.AUTOMATION, "GROUP_SLICE_SECONDS", 0.2)
    send = mail.EmailMessage.send

    def slow(self, *args, **kwargs):
        time.sleep(0.15)
        return send(self, *args, **kwargs)

    monkeypatch.setattr(mail.EmailMessage, "send", slow)


def another_worker_sending(org, seconds_ago: float = 1) -> EmailMessage:
    return EmailMessage.objects.create(organization=org, to="x@stall.example", subject="Stalled", status="sending",
                                       sending_since=timezone.now() - timedelta(seconds=seconds_ago))


def waiting_change(org) -> None:
    """A change of `org` that no worker has claimed yet."""
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 1, "Waiting")


def test_the_last_group_hands_back_at_the_end_of_its_slice_when_another_organization_waits(
        org, other_org, slow_provider):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 4)
    run_ids = dispatched()
    waiting_change(other_org)
    report = engine.execute_runs(run_ids, budget=30)
    assert 1 <= len(report.finished) <= 3 and report.handed_back  # a slice, not the 30 s budget
    assert set(report.finished) | set(report.handed_back) == set(run_ids)
    handed = WorkflowRun.objects.filter(pk__in=report.handed_back)
    assert {(r.status, r.lease_owner, r.attempts) for r in handed} == {(RunStatus.STARTED, "", 0)}
    assert EmailMessage.objects.filter(status="queued").count() == len(report.handed_back)


def test_the_last_group_keeps_its_worker_while_nobody_else_waits(org, slow_provider):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 4)
    report = engine.execute_runs(dispatched(), budget=30)
    assert len(report.finished) == 4 and not report.handed_back  # slice after slice
    assert len(mail.outbox) == 4


def test_runs_step_aside_while_another_worker_waits_on_their_provider_and_others_wait(org, other_org):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 2)
    run_ids = dispatched()
    stalled = another_worker_sending(org)
    waiting_change(other_org)
    before = timezone.now()
    report = engine.execute_runs(run_ids)
    assert sorted(report.stepped_aside) == sorted(run_ids) and not report.finished and not report.handed_back
    assert mail.outbox == []  # no second worker waiting on the same provider
    for run in WorkflowRun.objects.filter(pk__in=run_ids):
        assert (run.status, run.lease_owner, run.attempts) == (RunStatus.STARTED, "", 0)
        assert before + timedelta(seconds=1.5) < run.lease_until < timezone.now() + timedelta(seconds=2.5)
    assert EmailMessage.objects.filter(status="queued").count() == 2

    # The other organization's change is taken; the stalled message is settled; the pause ends:
    # the watchdog sees the lapsed leases and the sweep delivers the emails, each once.
    EmailMessage.objects.filter(pk=stalled.pk).update(status="failed")
    assert not Watch().work_is_stuck()  # still pausing: not a dead worker
    expire_leases()
    assert Watch().work_is_stuck()
    sweep(fan_out=False)
    assert WorkflowRun.objects.filter(pk__in=run_ids, status=RunStatus.COMPLETED).count() == 2
    assert sorted(m.subject for m in mail.outbox) == ["Hi Deal 0", "Hi Deal 1", "Hi Waiting 0"]


def test_a_later_group_of_the_same_task_counts_as_waiting(org, other_org):
    make_workflow(org, actions=EMAIL_ONLY)
    make_workflow(other_org, actions=EMAIL_ONLY)
    won_deals(org, 1, "Slow")
    won_deals(other_org, 1, "Quick")
    run_ids = dispatched()
    another_worker_sending(org)
    report = engine.execute_runs(sorted(run_ids))
    slow, quick = (WorkflowRun.objects.get(organization=o, pk__in=run_ids) for o in (org, other_org))
    assert report.stepped_aside == [slow.pk] and report.finished == {quick.pk: RunStatus.COMPLETED}
    assert [m.subject for m in mail.outbox] == ["Hi Quick 0"]


def test_nothing_steps_aside_when_nobody_else_waits(org):
    """One organization's burst on its own gets every worker, whatever the others are sending."""
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 2)
    another_worker_sending(org)
    report = engine.execute_runs(dispatched())
    assert len(report.finished) == 2 and not report.stepped_aside and len(mail.outbox) == 2


def test_a_message_left_sending_by_a_dead_worker_holds_nothing_back(org, other_org):
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 1)
    run_ids = dispatched()
    another_worker_sending(org, seconds_ago=settings.AUTOMATION["LEASE_SECONDS"] + 5)
    waiting_change(other_org)
    assert len(engine.execute_runs(run_ids).finished) == 1


def test_claimed_events_and_the_organization_s_own_do_not_count_as_waiting(org, other_org):
    won_deals(org, 1)
    assert not fairness.others_waiting(org.pk)  # its own change
    won_deals(other_org, 1)
    assert fairness.others_waiting(org.pk)
    AutomationEvent.objects.update(claimed_until=timezone.now() + timedelta(seconds=30))  # a worker has it
    assert not fairness.others_waiting(org.pk)


def test_a_webhook_in_flight_counts_like_an_email(org, other_org):
    assert not fairness.delivering_elsewhere(org.pk, {"http_request"})
    WebhookDelivery.objects.create(organization=org, method="POST", url="https://hooks.example/x", status="sending",
                                   sending_since=timezone.now())
    assert fairness.delivering_elsewhere(org.pk, {"http_request"})
    assert not fairness.delivering_elsewhere(other_org.pk, {"http_request", "send_email"})
    assert not fairness.delivering_elsewhere(org.pk, {"create_task"})


def test_resumed_runs_of_one_organization_do_not_step_aside_for_each_other(org):
    """After a kill -9 mid-delivery, the dead worker's message is still `sending` and its runs
    are resumed one per group: they are the same organization's, so nobody else waits."""
    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 3)
    run_ids = dispatched()
    WorkflowRun.objects.filter(pk__in=run_ids).update(attempts=1)  # delivered before: each alone
    another_worker_sending(org)
    report = engine.execute_runs(run_ids)
    assert len(report.finished) == 3 and not report.stepped_aside and len(mail.outbox) == 3


def test_a_drain_claims_one_organization_s_events_at_a_time_oldest_first(org, other_org):
    from crm_automation.automation.runtime.dispatch import claim_events

    won_deals(org, 2)
    won_deals(other_org, 2)
    won_deals(org, 1, "Later")
    first = claim_events(100, fair=True)
    assert {e.organization_id for e in first} == {org.pk}
    assert len(first) == AutomationEvent.objects.filter(organization=org).count()  # "Later" too
    second = claim_events(100, fair=True)
    assert {e.organization_id for e in second} == {other_org.pk}
    assert claim_events(100, fair=True) == []


def test_a_drain_turns_to_the_organizations_no_worker_is_busy_with(org, other_org):
    from crm_automation.automation.runtime.dispatch import claim_events

    make_workflow(org, actions=EMAIL_ONLY)
    won_deals(org, 1)
    (busy_run,) = dispatched()
    WorkflowRun.objects.filter(pk=busy_run).update(lease_owner="another-worker",
                                                   lease_until=timezone.now() + timedelta(seconds=15))
    won_deals(org, 2, "Older")  # older than the other organization's change, but a worker serves org
    won_deals(other_org, 1)
    assert {e.organization_id for e in claim_events(100, fair=True)} == {other_org.pk}
    assert {e.organization_id for e in claim_events(100, fair=True)} == {org.pk}  # nobody else waits: taken


def test_a_drain_hears_whether_other_organizations_wait_with_its_claim(org, other_org):
    from crm_automation.automation.runtime.dispatch import claim_fairly

    won_deals(org, 2)
    won_deals(other_org, 1)
    events, others = claim_fairly(100, ask_others=True)
    assert {e.organization_id for e in events} == {org.pk} and others is True
    assert len(events) == AutomationEvent.objects.filter(organization=org).count()  # (its contacts' events too)
    assert [e.pk for e in events] == sorted(e.pk for e in events)
    assert all(e.claimed_until is not None and e.claimed_until > timezone.now() for e in events)
    assert set(AutomationEvent.objects.filter(claimed_until__isnull=False).values_list("pk", flat=True)) == {
        e.pk for e in events}
    events, others = claim_fairly(100, ask_others=True)
    assert {e.organization_id for e in events} == {other_org.pk} and others is False
    assert claim_fairly(100, ask_others=True) == ([], False)
    assert claim_fairly(100, ask_others=False) == ([], None)

