"""Action configs are validated when saved, naming the field; executed values are type-checked."""

import pytest
from django.core.exceptions import ValidationError

from crm_automation.automation.definition.validation import validate_action
from crm_automation.automation.models import AutomationEvent, FieldChange, WorkflowRunAction
from crm_automation.crm.models import Deal, Lead, Task
from crm_automation.crm.services import deal_move_to_stage, lead_convert
from tests.conftest import drain, make_workflow, stage


def errors(action_type, config, org, trigger="deal_stage_change"):
    return validate_action(action_type, config, trigger_type=trigger, organization_id=org.pk)


@pytest.mark.parametrize(("action_type", "config", "where", "message"), [
    ("send_email", {"subject": "x"}, "config.to", "is required"),
    ("send_email", {"to": "not-an-email", "subject": "x"}, "config.to", "not an email address"),
    ("send_email", {"to": "{{deal.secret}}", "subject": "x"}, "config.to", "not a field this trigger provides"),
    ("send_email", {"to": "a@b.co", "subject": "x", "cc": "y"}, "config.cc", "unknown setting"),
    ("create_task", {"title": ""}, "config.title", "is required"),
    ("create_task", {"title": "x", "due_in_days": -1}, "config.due_in_days", "0 to 3650"),
    ("create_task", {"title": "x", "priority": "asap"}, "config.priority", "must be one of"),
    ("create_task", {"title": "x", "assignee": "stranger"}, "config.assignee", "not a member"),
    ("update_field", {"field": "organization", "value": 1}, "config.field", "cannot be updated"),
    ("update_field", {"field": "probability", "value": 101}, "config.value", "0 to 100"),
    ("update_field", {"field": "amount", "value": "lots"}, "config.value", "not a number"),
    ("update_field", {"field": "close_date", "value": "31/12/2026"}, "config.value", "not a date"),
    ("update_field", {"field": "stage", "value": "heaven"}, "config.value", "not a stage"),
    ("update_field", {"field": "amount", "value": "{{deal.title}}"}, "config.value", "only allowed for text"),
    ("fly", {}, "type", "unknown action"),
])
def test_bad_configs_are_refused_with_the_field_named(org, action_type, config, where, message):
    found = errors(action_type, config, org)
    assert found, config
    assert found[0][0] == where and message in found[0][1]


def test_valid_configs_pass(org, owner):
    assert errors("create_task", {"title": "Call {{deal.contact.first_name}}", "due_in_days": 3,
                                  "priority": "high", "assignee": "owner"}, org) == []
    assert errors("create_task", {"title": "x", "assignee": "owner"}, org) == []
    assert errors("update_field", {"field": "status", "value": "qualified"}, org, "lead_created") == []
    assert errors("update_field", {"field": "deal.probability", "value": 90}, org, "lead_converted") == []


def test_creating_a_workflow_with_a_bad_action_changes_nothing(org):
    from crm_automation.automation.models import Workflow

    with pytest.raises(ValidationError, match=r"actions\[1\].config.value"):
        make_workflow(org, activate=False, actions=[
            {"type": "create_task", "config": {"title": "ok"}},
            {"type": "update_field", "config": {"field": "probability", "value": "high"}}])
    assert not Workflow.objects.exists()


def test_create_task_sets_due_date_priority_and_assignee(org, deal, teammate):
    make_workflow(org, actions=[{"type": "create_task", "config": {
        "title": "Follow up", "description": "{{deal.title}} won", "due_in_days": 3,
        "priority": "urgent", "assignee": "teammate"}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    task = Task.objects.get()
    assert (task.priority, task.assignee, task.description) == ("urgent", teammate, "Website won")
    assert task.due_date is not None and task.deal == deal


def test_update_field_records_old_and_new_values(org, deal):
    make_workflow(org, actions=[{"type": "update_field", "config": {"field": "amount", "value": "99.5"}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    change = FieldChange.objects.get()
    assert (change.field, change.old_value, change.new_value) == ("amount", "12000.00", "99.50")


def test_update_field_on_stage_fires_a_caused_event(org, deal):
    make_workflow(org, actions=[{"type": "update_field", "config": {"field": "stage", "value": "negotiation"}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    caused = AutomationEvent.objects.order_by("id").last()
    assert caused.depth == 1 and caused.caused_by_run_id is not None
    assert Deal.objects.get(pk=deal.pk).stage.slug == "negotiation"


def test_update_field_on_a_converted_lead_and_its_deal(org, lead):
    make_workflow(org, trigger_type="lead_converted", trigger_config={}, actions=[
        {"type": "update_field", "config": {"field": "company", "value": "Renamed Co"}},
        {"type": "update_field", "config": {"field": "deal.probability", "value": 50}}])
    deal = lead_convert(lead=lead)
    drain()
    assert Lead.objects.get(pk=lead.pk).company == "Renamed Co"
    assert Deal.objects.get(pk=deal.pk).probability == 50


def test_a_templated_value_that_renders_wrong_fails_the_step(org, deal):
    make_workflow(org, actions=[{"type": "update_field", "config": {
        "field": "title", "value": "{{deal.title}}" + "x" * 250}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    step = WorkflowRunAction.objects.get()
    assert step.status == "failed" and "at most 200 characters" in step.error
    assert Deal.objects.get(pk=deal.pk).title == "Website"
