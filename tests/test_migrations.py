"""Deploying the graph engine over runs in flight: a linear workflow's run begun before it (one
step done, one to go) finishes after the migration on the same version, reading the done step
back and keeping the old effect keys, so nothing is made twice."""

import uuid

import pytest

from tests.migration_steps import migrate_to, migrate_to_latest

BEFORE = [("automation", "0006_run_cancelled"), ("crm", "0002_email_unknown_outcome")]


@pytest.mark.django_db(transaction=True)
def test_a_run_in_flight_at_the_deploy_finishes_on_its_version_with_its_old_keys():
    old = migrate_to(BEFORE)
    Org, Stage, Deal = (old.get_model("crm", m) for m in ("Organization", "Stage", "Deal"))
    Task = old.get_model("crm", "Task")
    Workflow, Version = old.get_model("automation", "Workflow"), old.get_model("automation", "WorkflowVersion")
    Event, Run = old.get_model("automation", "AutomationEvent"), old.get_model("automation", "WorkflowRun")
    Step = old.get_model("automation", "WorkflowRunAction")
    org = Org.objects.create(name="Old", slug="old", plan="pro")
    won = Stage.objects.create(organization=org, slug="won", name="Won", is_won=True)
    deal = Deal.objects.create(id=uuid.uuid4(), organization=org, title="Legacy", stage=won, amount=1)
    definition = {"trigger_type": "deal_stage_change", "trigger_config": {"to_stage": "won"}, "conditions": {},
                  "error_handling": "stop", "reenrollment": "every_time", "timeout_seconds": 60, "actions": [
                      {"id": "create-task", "type": "create_task", "config": {"title": "First"}},
                      {"id": "create-task-2", "type": "create_task", "config": {"title": "Second"}}]}
    workflow = Workflow.objects.create(organization=org, name="Legacy", key="legacy", trigger_type="deal_stage_change",
                                       status="activated", version=1)
    version = Version.objects.create(workflow=workflow, number=1, definition=definition)
    event = Event.objects.create(organization=org, kind="deal_stage_change", entity_type="deal", entity_id=deal.pk,
                                 payload={"to_stage_id": won.pk})
    run = Run.objects.create(organization=org, workflow=workflow, version=version, event=event,
                             trigger_type="deal_stage_change", trigger_entity_type="deal", trigger_entity_id=deal.pk,
                             status="started", attempts=1)
    Task.objects.create(organization=org, title="First", deal=deal, automation_key=f"run:{run.pk}:step:0")
    Step.objects.create(run=run, position=0, action_type="create_task", status="completed",
                        result={"title": "First"})
    # A worker made the second task, then died before its step row was written.
    Task.objects.create(organization=org, title="Second", deal=deal, automation_key=f"run:{run.pk}:step:1")

    migrate_to_latest()

    from crm_automation.automation.models import WorkflowRun, WorkflowVersion
    from crm_automation.automation.runtime.engine import execute_runs
    from crm_automation.crm.models import Task as TaskNow

    run_now = WorkflowRun.objects.get(pk=run.pk)
    assert run_now.legacy_keys and run_now.actions.get().node_id == "create-task"
    assert WorkflowVersion.objects.get(pk=version.pk).document["nodes"][1]["id"] == "create-task"
    execute_runs([run.pk])
    run_now.refresh_from_db()
    assert run_now.status == "completed"
    assert sorted(TaskNow.objects.values_list("title", flat=True)) == ["First", "Second"]  # none twice
    assert run_now.actions.get(node_id="create-task-2").result.get("repeated_delivery") is True
