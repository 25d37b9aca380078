"""Re-enrollment: a record goes through a workflow again only when the workflow says so."""

import pytest
from django.utils.timezone import now as timezone_now

from crm_automation.automation.models import Enrollment, WorkflowDecision, WorkflowRun
from crm_automation.automation.runtime.dispatch import claim_events, dispatch_events
from crm_automation.automation.runtime.engine import execute_runs
from crm_automation.crm.models import Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage


def bounce(org, deal, *, drain_between: bool) -> None:
    """Won → Negotiation → Won, as a sales rep correcting a mistake does."""
    for slug in ("won", "negotiation", "won"):
        deal_move_to_stage(deal=deal, stage=stage(org, slug))
        if drain_between:
            drain()
    drain()


def test_by_default_a_record_is_not_enrolled_while_its_run_is_unfinished(org, deal):
    make_workflow(org)
    bounce(org, deal, drain_between=False)  # both wins dispatched before the first run finished
    assert WorkflowRun.objects.count() == 1 and Task.objects.count() == 1
    decision = WorkflowDecision.objects.get(outcome="already_enrolled")
    assert decision.reason.startswith("already enrolled: this deal still has an unfinished run")


def test_by_default_a_record_may_go_through_again_once_its_run_finished(org, deal):
    make_workflow(org)
    bounce(org, deal, drain_between=True)
    assert WorkflowRun.objects.count() == 2 and not WorkflowRun.objects.filter(holds_enrollment=True).exists()


def test_once_means_never_again(org, deal):
    make_workflow(org, reenrollment="once")
    bounce(org, deal, drain_between=True)
    assert WorkflowRun.objects.count() == 1 and Task.objects.count() == 1
    decision = WorkflowDecision.objects.get(outcome="already_enrolled")
    assert "enrolls a record only once" in decision.reason


def test_every_time_runs_for_every_trigger(org, deal):
    make_workflow(org, reenrollment="every_time")
    bounce(org, deal, drain_between=False)
    assert WorkflowRun.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_of_the_same_record_enroll_it_once(org, deal):
    """Two workers each hold one of the record's events: the unique enrollment decides."""
    make_workflow(org, reenrollment="once")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    first, second = claim_events(2), claim_events(10)  # two batches, as two workers would claim them
    runs = dispatch_events(first) + dispatch_events(second)
    execute_runs(runs)
    assert WorkflowRun.objects.count() == 1


@pytest.mark.parametrize(("new_policy", "runs"), [("not_while_running", 2), ("every_time", 2), ("once", 1)])
def test_changing_the_policy_applies_to_records_already_enrolled(org, deal, new_policy, runs):
    from crm_automation.automation.services.workflows import workflow_publish, workflow_update

    wf = make_workflow(org, reenrollment="once")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    workflow_update(workflow_id=wf.pk, changes={"reenrollment": new_policy})
    workflow_publish(workflow_id=wf.pk, by=None)
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert WorkflowRun.objects.count() == runs


def test_switching_to_once_remembers_who_already_went_through(org, deal):
    from crm_automation.automation.services.workflows import workflow_publish, workflow_update

    wf = make_workflow(org, reenrollment="every_time")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    workflow_update(workflow_id=wf.pk, changes={"reenrollment": "once"})
    workflow_publish(workflow_id=wf.pk, by=None)
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert WorkflowRun.objects.count() == 1


WAIT_THEN_TASK = [{"type": "wait", "config": {"delayAmount": 1, "delayUnit": "days"}},
                  {"type": "create_task", "config": {"title": "Follow up {{deal.title}}"}}]


def test_the_unfinished_run_holds_the_place_no_enrollment_row_is_written(org, deal):
    make_workflow(org, actions=WAIT_THEN_TASK)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "waiting" and run.holds_enrollment and not Enrollment.objects.exists()
    bounce(org, deal, drain_between=True)  # moved away and back while the run waits
    assert WorkflowRun.objects.count() == 1
    assert WorkflowDecision.objects.filter(outcome="already_enrolled").count() == 1


def test_when_two_dispatchers_race_the_unique_index_refuses_the_second_run(org, deal, monkeypatch):
    """Both dispatchers looked before either had inserted its run: the database decides, and the
    loser's decision says why nothing ran."""
    from crm_automation.automation.runtime import dispatch

    make_workflow(org)
    for slug in ("won", "negotiation", "won"):
        deal_move_to_stage(deal=deal, stage=stage(org, slug))
    first, second = claim_events(1), claim_events(10)
    dispatch_events(first)
    monkeypatch.setattr(dispatch, "enroll", lambda matched: matched)  # as if it looked before run 1 existed
    dispatch_events(second)
    assert WorkflowRun.objects.count() == 1
    decision = WorkflowDecision.objects.get(outcome="already_enrolled")
    assert decision.reason.startswith("already enrolled: this deal still has an unfinished run")


def test_a_cancelled_run_gives_its_place_back(org, deal):
    from crm_automation.automation.services.runs import run_cancel

    make_workflow(org, actions=WAIT_THEN_TASK)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run_cancel(run_id=WorkflowRun.objects.get().pk, by=None)
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    cancelled, again = WorkflowRun.objects.order_by("pk")
    assert cancelled.status == "cancelled" and not cancelled.holds_enrollment
    assert again.status == "waiting" and again.holds_enrollment


def test_switching_to_not_while_running_gives_the_place_to_the_earliest_unfinished_run(org, deal):
    from crm_automation.automation.services.workflows import workflow_publish, workflow_update

    wf = make_workflow(org, reenrollment="every_time", actions=WAIT_THEN_TASK)
    bounce(org, deal, drain_between=True)  # two wins: two waiting runs, neither holds a place
    assert list(WorkflowRun.objects.values_list("holds_enrollment", flat=True)) == [False, False]
    workflow_update(workflow_id=wf.pk, changes={"reenrollment": "not_while_running"})
    workflow_publish(workflow_id=wf.pk, by=None)
    first, second = WorkflowRun.objects.order_by("pk")
    assert first.holds_enrollment and not second.holds_enrollment
    bounce(org, deal, drain_between=True)
    assert WorkflowRun.objects.count() == 2  # the deal is in the workflow already


def test_a_failed_run_is_not_retried_while_another_run_holds_its_record(org, deal):
    from crm_automation.automation.services.runs import run_retry
    from crm_automation.refusals import Refused

    make_workflow(org, actions=WAIT_THEN_TASK)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    failed = WorkflowRun.objects.get()
    WorkflowRun.objects.filter(pk=failed.pk).update(status="failed", holds_enrollment=False, finished_at=timezone_now())
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()  # a second run now waits and holds the deal's place
    with pytest.raises(Refused, match="is in another run of the workflow now"):
        run_retry(run_id=failed.pk, by=None)
    failed.refresh_from_db()
    assert failed.status == "failed" and not failed.holds_enrollment  # nothing changed
