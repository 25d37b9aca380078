"""Wait steps park a run durably until its time; "continue only if" steps end it when the record
no longer fits, deciding on the record as it is after the wait."""

from datetime import timedelta

import pytest
from django.utils import timezone

from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.automation.runtime.tasks import sweep, wake_due_runs
from crm_automation.automation.runtime.watchdog import Watch
from crm_automation.crm.models import Deal, EmailMessage, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage, time_passes

FOLLOW_UP = [
    {"type": "wait", "config": {"delayAmount": 24, "delayUnit": "hours"}},
    {"type": "condition", "config": {"rules": [{"field": "deal.stage", "operator": "eq", "value": "proposal"}]}},
    {"type": "create_task", "config": {"title": "Chase {{deal.title}}", "priority": "urgent"}},
]


def proposal_sent(org, deal, actions=FOLLOW_UP):
    make_workflow(org, trigger_config={"to_stage": "proposal"}, actions=actions)
    deal.stage = stage(org, "qualified")
    deal.save()
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "proposal"))
    drain()
    return WorkflowRun.objects.get()


def test_a_wait_parks_the_run_without_a_lease(org, deal):
    run = proposal_sent(org, deal)
    assert run.status == "waiting" and run.lease_owner == "" and run.lease_until is None and run.attempts == 0
    assert timezone.now() + timedelta(hours=23) < run.wake_at < timezone.now() + timedelta(hours=25)
    step = run.actions.get(position=0)
    assert step.status == "waiting" and step.result["wake_at"] == run.wake_at.isoformat()
    assert sweep(fan_out=False)["resumed"] == 0 and not Task.objects.exists()  # not yet
    assert not Watch().work_is_stuck()


def test_after_the_wait_the_gate_decides_on_the_record_as_it_is_now(org, deal):
    run = proposal_sent(org, deal)
    time_passes()
    assert Watch().work_is_stuck()  # the watchdog sees a wait that is over
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed" and Task.objects.get().title == "Chase Website"
    assert list(run.actions.values_list("status", flat=True)) == ["completed", "completed", "completed"]
    assert run.actions.get(position=1).result["passed"] is True


def test_a_false_gate_ends_the_run_as_completed_and_says_why(org, deal):
    run = proposal_sent(org, deal)
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))  # won meanwhile
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed" and not Task.objects.exists()
    gate = run.actions.get(node_id="condition")
    assert gate.result["passed"] is False and gate.result["explanation"].startswith("condition “Deal › Stage")
    assert not run.actions.filter(node_id="create-task").exists()  # not on the path taken
    assert run.workflow.success_count == 1


def test_a_decided_gate_is_read_back_not_decided_again(org, deal, monkeypatch):
    from crm_automation.crm import email_delivery

    run = proposal_sent(org, deal, actions=[*FOLLOW_UP[:2], {"type": "send_email", "config": {
        "to": "{{deal.contact.email}}", "subject": "Still thinking about {{deal.title}}?"}}])
    time_passes()
    monkeypatch.setattr(email_delivery, "_claim", lambda email: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        sweep(fan_out=False)  # the gate passed and was committed with the queued email; then killed
    monkeypatch.undo()
    assert WorkflowRunAction.objects.get(run=run, position=1).result["passed"] is True
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))  # would be false now
    WorkflowRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    sweep(fan_out=False)
    assert EmailMessage.objects.get().status == "sent"  # the recorded decision stands
    assert WorkflowRun.objects.get(pk=run.pk).status == "completed"


def test_waiting_until_a_date_field_with_an_offset(org, deal):
    deal.close_date = (timezone.localdate() + timedelta(days=10))
    deal.save()
    run = proposal_sent(org, deal, actions=[
        {"type": "wait", "config": {"until": "{{deal.close_date}}", "offsetAmount": -1, "offsetUnit": "days"}},
        {"type": "create_task", "config": {"title": "Close tomorrow"}}])
    expected = timezone.make_aware(timezone.datetime.combine(deal.close_date, timezone.datetime.min.time()))
    assert run.wake_at == expected - timedelta(days=1)


def test_a_missing_date_fails_the_wait_with_a_reason(org, deal):
    run = proposal_sent(org, deal, actions=[
        {"type": "wait", "config": {"until": "{{deal.close_date}}"}},
        {"type": "create_task", "config": {"title": "Never"}}])
    assert run.status == "failed" and "the deal has no close date, so there is no date to wait for" in run.error


def test_a_wait_of_zero_goes_straight_on(org, deal):
    run = proposal_sent(org, deal, actions=[{"type": "wait", "config": {"delayAmount": 0, "delayUnit": "days"}},
                                            {"type": "send_email", "config": {"to": "a@b.co", "subject": "Hi"}}])
    assert run.status == "completed" and EmailMessage.objects.get().status == "sent"


def test_waiting_runs_are_woken_by_one_query_however_many(org, deal, django_assert_max_num_queries):
    proposal_sent(org, deal)
    time_passes()
    with django_assert_max_num_queries(2):  # select the due ones, flip them to started
        assert len(wake_due_runs()) == 1


@pytest.mark.parametrize(("config", "message"), [
    ({"delayAmount": -1, "delayUnit": "hours"}, "0 or more"),
    ({"delayAmount": 2, "delayUnit": "weeks"}, "must be one of seconds"),
    ({"delayAmount": 400, "delayUnit": "days"}, "at most 366 days"),
    ({"until": "{{deal.title}}"}, "must be one date (or date and time) field"),
])
def test_bad_waits_are_refused(org, config, message):
    from crm_automation.automation.definition.validation import validate_action

    errors = validate_action("wait", config, trigger_type="deal_stage_change", organization_id=org.pk)
    assert message in errors[0][1]
