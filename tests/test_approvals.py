"""User-input nodes (approval gates): the run waits for a permitted person's answer in the admin,
goes on by the approved / rejected side, or by timed-out when nobody answers in time."""

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.automation.services.runs import run_answer
from crm_automation.crm.models import Notification, Task
from crm_automation.refusals import Refused
from tests.conftest import time_passes
from tests.test_graph_engine import edge, task, win

ASK: dict[str, Any] = {"id": "ask", "type": "user_input", "label": "Approval", "config": {
    "promptText": "Approve the terms of {{deal.title}}?", "timeoutAmount": 2, "timeoutUnit": "days"}}
SIDES = ([ASK, task("yes", "Send {{deal.title}} terms ({{Approval.comment}})"), task("no", "Rework terms"),
          task("late", "Nobody answered")],
         [edge("trigger", "ask"), edge("ask", "yes", "approved"), edge("ask", "no", "rejected"),
          edge("ask", "late", "timed-out")])


@pytest.fixture
def asked(org, deal, owner, teammate, viewer):
    run = win(org, deal, *SIDES)
    assert run.status == "waiting" and run.wake_at is not None  # the timeout is its wake-up time
    step = run.actions.get(node_id="ask")
    assert step.status == "waiting" and step.result["prompt"] == "Approve the terms of Website?"
    return run


def test_the_people_who_may_answer_are_told(asked, owner):
    note = Notification.objects.get()  # admins only (the default role): not the ops member
    assert note.user == owner and note.title == "A workflow asks you: Approve the terms of Website?"
    assert note.link == reverse("admin:automation_workflowrun_answer", args=[asked.pk])


def test_an_admin_approves_in_the_admin_and_the_run_goes_on_by_that_side(client, asked, owner):
    client.force_login(owner)
    page = client.get(reverse("admin:automation_workflowrun_answer", args=[asked.pk]))
    assert "Approve the terms of Website?" in page.content.decode()
    client.post(reverse("admin:automation_workflowrun_answer", args=[asked.pk]),
                {"node_id": "ask", "token": "", "decision": "approved", "comment": "OK up to 10%"})
    continue_runs([asked.pk])
    asked.refresh_from_db()
    assert asked.status == "completed"
    assert list(Task.objects.values_list("title", flat=True)) == ["Send Website terms (OK up to 10%)"]
    step = asked.actions.get(node_id="ask")
    assert step.result["decision"] == "approved" and step.result["answered_by"] == "owner"


def test_a_rejection_takes_the_rejected_side(asked, owner):
    run_answer(run_id=asked.pk, by=owner, node_id="ask", decision="rejected")
    continue_runs([asked.pk])
    assert list(Task.objects.values_list("title", flat=True)) == ["Rework terms"]


def test_people_without_the_role_cannot_answer(asked, teammate, viewer, outsider, client):
    for person in (teammate, viewer, outsider):
        with pytest.raises(PermissionDenied):
            run_answer(run_id=asked.pk, by=person, node_id="ask", decision="approved")
    client.force_login(outsider)  # another tenant's run: not even the page
    assert client.get(reverse("admin:automation_workflowrun_answer", args=[asked.pk])).status_code in (302, 403, 404)
    assert WorkflowRun.objects.get().status == "waiting" and not Task.objects.exists()


def test_an_answer_counts_once(asked, owner):
    run_answer(run_id=asked.pk, by=owner, node_id="ask", decision="approved")
    with pytest.raises(Refused, match="no open question"):
        run_answer(run_id=asked.pk, by=owner, node_id="ask", decision="rejected")


def test_no_answer_in_time_takes_the_timed_out_side(asked):
    time_passes()
    sweep(fan_out=False)
    asked.refresh_from_db()
    assert asked.status == "completed" and list(Task.objects.values_list("title", flat=True)) == ["Nobody answered"]


def test_a_question_without_a_timeout_waits_for_the_answer_alone(org, deal, owner):
    run = win(org, deal, [{**ASK, "config": {"promptText": "OK?", "role": "ops"}}, task("yes", "Yes")],
              [edge("trigger", "ask"), edge("ask", "yes", "approved")])
    assert run.status == "waiting" and run.wake_at is None  # no wake-up time: nothing polls for it
    assert sweep(fan_out=False)["resumed"] == 0
    run_answer(run_id=run.pk, by=owner, node_id="ask", decision="approved")
    continue_runs([run.pk])
    assert Task.objects.get().title == "Yes"


@pytest.mark.parametrize(("config", "message"), [
    ({}, "promptText: is required"),
    ({"promptText": "x", "role": "viewer"}, "role: must be one of admin, ops"),
    ({"promptText": "x", "timeoutAmount": 0}, "timeoutAmount: must be a whole number"),
    ({"promptText": "{{deal.nope}}"}, "not a field"),
])
def test_bad_questions_are_refused(org, config, message):
    from tests.conftest import make_workflow

    with pytest.raises(ValidationError, match=message):
        make_workflow(org, actions=[{**ASK, "config": config}], graph={"edges": [edge("trigger", "ask")]},
                      activate=False)


def test_after_an_answer_a_later_wait_resumes_on_the_answered_side(org, deal, owner):
    """The answer is read back on every later delivery: a run that waits after it goes on by
    the side that was chosen, not nowhere."""
    wait = {"id": "pause", "type": "wait", "config": {"delayAmount": 1, "delayUnit": "days"}}
    run = win(org, deal, [ASK, wait, task("yes", "Send terms"), task("no", "Rework terms")],
              [edge("trigger", "ask"), edge("ask", "pause", "approved"), edge("pause", "yes"),
               edge("ask", "no", "rejected")])
    run_answer(run_id=run.pk, by=owner, node_id="ask", decision="approved")
    continue_runs([run.pk])
    run.refresh_from_db()
    assert run.status == "waiting" and run.actions.get(node_id="pause").status == "waiting"
    time_passes(pk=run.pk)
    sweep()
    run.refresh_from_db()
    assert run.status == "completed"
    assert list(Task.objects.values_list("title", flat=True)) == ["Send terms"]
