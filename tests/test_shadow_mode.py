"""Shadow mode: a workflow listens to real events and runs for real records, but every effect is a
preview on the run and nothing is sent or changed; its runs are shown apart and count nowhere;
switching to execute mode is one admin action that says what shadow mode saw."""

from datetime import timedelta

import pytest
from django.core import mail

from crm_automation.automation.models import LifecycleEvent, MonthlyUsage, Workflow, WorkflowDecision, WorkflowRun
from crm_automation.automation.services.shadow import summary, workflow_set_mode
from crm_automation.crm.models import Deal, EmailMessage, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import KICKOFF_ACTIONS, drain, make_workflow, stage

WAIT_THEN_KICKOFF = [{"id": "wait", "type": "wait", "label": "Two hours later",
                      "config": {"delayAmount": 2, "delayUnit": "hours"}}, *KICKOFF_ACTIONS]


@pytest.fixture
def shadowed(org, owner):
    workflow = make_workflow(org, name="Kickoff", actions=WAIT_THEN_KICKOFF, reenrollment="once")
    workflow, _ = workflow_set_mode(workflow_id=workflow.pk, by=owner, mode="shadow")
    return workflow


def won(org, deal) -> None:
    deal = Deal.objects.get(pk=deal.pk)
    if deal.stage.slug == "won":
        deal_move_to_stage(deal=deal, stage=stage(org, "proposal"))
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()


def test_a_day_of_real_events_in_shadow_mode_previews_every_effect_and_sends_nothing(org, owner, shadowed,
                                                                                     contact, time_machine):
    start = shadowed.shadow_since + timedelta(minutes=1)
    deals = [Deal.objects.create(organization=org, title=f"Deal {hour}", owner=owner, contact=contact,
                                 stage=stage(org, "new"), probability=10) for hour in range(0, 24, 3)]
    for hour, deal in zip(range(0, 24, 3), deals, strict=True):  # a change every three hours, all day
        time_machine.move_to(start + timedelta(hours=hour))
        won(org, deal)
    runs = WorkflowRun.objects.filter(workflow=shadowed)
    assert runs.count() == 8 and set(runs.values_list("status", flat=True)) == {"completed"}
    assert all(run.simulated and run.metadata["shadow"] for run in runs)
    # Nothing happened: no task, no email, no field changed, nothing in the outbox.
    assert not Task.objects.exists() and not EmailMessage.objects.exists() and not mail.outbox
    assert set(Deal.objects.values_list("probability", flat=True)) == {10}
    # Every effect is a preview on its run.
    run = runs.first()
    steps = {step.node_id: step for step in run.actions.all()}
    task_step = next(s for s in steps.values() if s.action_type == "create_task")
    email_step = next(s for s in steps.values() if s.action_type == "send_email")
    assert task_step.result["would_create_task"]["title"].startswith("Kick off Deal")
    assert email_step.result["would_send"]["to"] == contact.email
    assert email_step.result["delivery"] == "not sent: simulation"
    # The decisions say so; it counted nowhere.
    reason = WorkflowDecision.objects.filter(workflow=shadowed, outcome="matched").first().reason
    assert "shadow mode: every effect previewed, nothing sent" in reason
    shadowed.refresh_from_db()
    assert shadowed.run_count == 0
    assert not MonthlyUsage.objects.filter(organization=org).exclude(logged_runs=0).exists()
    assert not LifecycleEvent.objects.filter(type__startswith="run.").exists()
    assert summary(shadowed).runs == 8
    assert summary(shadowed).effects == {"emails": 8, "field changes": 8, "tasks": 8}


def test_switching_to_execute_says_what_shadow_mode_saw_and_then_runs_for_real(org, owner, deal, shadowed):
    won(org, deal)  # "once" per record: a shadow run must not use up the record's one time
    workflow, seen = workflow_set_mode(workflow_id=shadowed.pk, by=owner, mode="execute")
    assert workflow.mode == "execute" and seen.runs == 1
    assert seen.words() == ("In shadow mode it ran 1 time and would have made: 1 emails, 1 field changes, 1 tasks; "
                            "nothing was sent.")
    won(org, deal)
    real = WorkflowRun.objects.filter(workflow=shadowed, simulated=False).get()
    assert real.status == "waiting"  # the real run waits its two hours
    event = LifecycleEvent.objects.filter(workflow_id=shadowed.pk, type="workflow.updated").order_by("id").last()
    assert event.data["mode"] == "execute" and event.data["shadow"]["runs"] == 1


def test_shadow_runs_are_shown_apart_in_the_run_history(org, owner, deal, shadowed, client):
    won(org, deal)
    client.force_login(owner)
    page = client.get("/crm/automation/runs/").content.decode()
    assert "Shadow: nothing sent" in page
    listed = client.get("/api/v1/runs/").json()["results"]
    assert listed[0]["simulated"] is True and listed[0]["shadow"] is True


def test_only_admins_switch_modes_and_bad_modes_change_nothing(org, owner, teammate, viewer, outsider, shadowed,
                                                               client):
    for person in (teammate, viewer):
        client.force_login(person)
        assert client.get(f"/api/v1/workflows/{shadowed.pk}/mode/").json()["mode"] == "shadow"
        assert client.post(f"/api/v1/workflows/{shadowed.pk}/mode/", {"mode": "execute"},
                           content_type="application/json").status_code == 403
    client.force_login(outsider)
    assert client.get(f"/api/v1/workflows/{shadowed.pk}/mode/").status_code == 404
    assert client.post(f"/api/v1/workflows/{shadowed.pk}/mode/", {"mode": "execute"},
                       content_type="application/json").status_code == 404
    client.force_login(owner)
    bad = client.post(f"/api/v1/workflows/{shadowed.pk}/mode/", {"mode": "dry"}, content_type="application/json")
    assert bad.status_code == 400 and "mode" in bad.json()
    assert Workflow.objects.get(pk=shadowed.pk).mode == "shadow"
    done = client.post(f"/api/v1/workflows/{shadowed.pk}/mode/", {"mode": "execute"},
                       content_type="application/json")
    assert done.status_code == 200 and done.json()["mode"] == "execute"
    assert done.json()["detail"] == "In shadow mode it did not run."


def test_a_shadow_run_that_cannot_be_walked_fails_alone(org, owner, deal, shadowed, monkeypatch):
    from crm_automation.automation.services import simulation

    real = make_workflow(org, name="Real kickoff", actions=KICKOFF_ACTIONS)

    def broken(run, debug=None):
        raise RuntimeError("the record vanished under a template")

    monkeypatch.setattr(simulation, "_walk", broken)
    won(org, deal)
    shadow_run = WorkflowRun.objects.get(workflow=shadowed)
    assert shadow_run.status == "failed" and "could not be walked" in shadow_run.error
    assert shadow_run.lease_owner == ""
    assert WorkflowRun.objects.get(workflow=real).status == "completed"  # the real run beside it went on


def test_an_admin_switches_modes_on_the_workflow_list(org, owner, viewer, deal, shadowed, client):
    won(org, deal)
    client.force_login(viewer)
    assert "Execute for real" not in client.get("/crm/automation/").content.decode()
    assert client.post(f"/crm/automation/workflows/{shadowed.pk}/mode/").status_code == 403
    assert Workflow.objects.get(pk=shadowed.pk).mode == "shadow"
    client.force_login(owner)
    page = client.get("/crm/automation/").content.decode()
    assert "Execute for real" in page and ">Shadow<" in page
    done = client.post(f"/crm/automation/workflows/{shadowed.pk}/mode/", follow=True).content.decode()
    assert "executes again. In shadow mode it ran 1 time" in done
    assert Workflow.objects.get(pk=shadowed.pk).mode == "execute"
    assert "Shadow mode" in client.get("/crm/automation/").content.decode()
