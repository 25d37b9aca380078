"""The cycle check: a workflow that would start itself in a circle through others (a stage move
that triggers a workflow that moves the stage back, sub-workflows calling each other) cannot go
live; a guarded circle (a condition, or records through only once) can, when acknowledged."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.workflows import workflow_publish, workflow_transition, workflow_update
from crm_automation.refusals import Refused
from tests.conftest import make_workflow


def mover(org, name, on, to, **kwargs):
    return make_workflow(org, name=name, trigger_config={"to_stage": on}, activate=False, actions=[
        {"type": "update_field", "config": {"field": "stage", "value": to}}], **kwargs)


def activate(workflow, **kwargs):
    return workflow_transition(workflow_id=workflow.pk, name="activate", by=None, **kwargs)


def test_two_workflows_moving_a_deal_back_and_forth_are_refused_with_the_circle(org):
    forth = mover(org, "Forth", "proposal", "negotiation")
    back = mover(org, "Back", "negotiation", "proposal")
    activate(forth)
    with pytest.raises(Refused) as refused:
        activate(back)
    text = " ".join(refused.value.messages)
    assert "it would start itself in a circle: Back → Forth → Back" in text and "Nothing in that circle" in text
    assert Workflow.objects.get(pk=back.pk).status == "draft"
    with pytest.raises(Refused):
        activate(back, acknowledge_cycle=True)  # an unguarded circle cannot be acknowledged


def test_a_guarded_circle_goes_live_when_acknowledged(org):
    guarded = {"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt", "value": 100000}]}
    activate(mover(org, "Forth", "proposal", "negotiation", conditions=guarded))
    back = mover(org, "Back", "negotiation", "proposal")
    with pytest.raises(Refused, match="acknowledge the cycle"):
        activate(back)
    assert activate(back, acknowledge_cycle=True).status == "activated"


def test_unrelated_stage_moves_are_no_circle(org):
    activate(mover(org, "To negotiation", "proposal", "negotiation"))
    assert activate(mover(org, "To won", "negotiation", "won")).status == "activated"
    assert activate(make_workflow(org, name="Updated", trigger_type="deal_updated", activate=False,
                                  trigger_config={"fields": ["amount"]},
                                  actions=[{"type": "create_task", "config": {"title": "x"}}])).status == "activated"


def test_sub_workflows_calling_each_other_are_a_circle(org):
    ping = make_workflow(org, name="Ping", trigger_type="manual_deal", trigger_config={}, activate=False,
                         actions=[{"type": "create_task", "config": {"title": "ping"}}])
    pong = make_workflow(org, name="Pong", trigger_type="manual_deal", trigger_config={}, activate=False,
                         actions=[{"type": "sub_workflow", "config": {"workflowId": ping.key}}])
    activate(pong)
    workflow_update(workflow_id=ping.pk, actions=[{"type": "sub_workflow", "config": {"workflowId": pong.key}}])
    with pytest.raises(Refused, match="Ping → Pong → Ping"):
        activate(ping)


def test_publishing_an_edit_that_closes_a_circle_is_refused(org, owner):
    activate(mover(org, "Forth", "proposal", "negotiation"))
    back = mover(org, "Back", "negotiation", "won")
    activate(back)
    workflow_update(workflow_id=back.pk, by=owner, actions=[{"type": "update_field",
                                                             "config": {"field": "stage", "value": "proposal"}}])
    with pytest.raises(Refused, match="circle: Back → Forth → Back"):
        workflow_publish(workflow_id=back.pk, by=owner)


def test_the_api_and_the_pages_take_the_acknowledgement(org, owner):
    guarded = {"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt", "value": 100000}]}
    activate(mover(org, "Forth", "proposal", "negotiation", conditions=guarded))
    back = mover(org, "Back", "negotiation", "proposal")
    api = APIClient()
    api.force_authenticate(owner)
    refused = api.post(f"/api/v1/workflows/{back.pk}/activate/", {}, format="json")
    assert refused.status_code == 409 and "acknowledge the cycle" in refused.json()["detail"]
    page = Client()
    page.force_login(owner)
    assert "go live anyway" in page.get(f"/crm/automation/workflows/{back.pk}/publish/").content.decode()
    page.post(f"/crm/automation/workflows/{back.pk}/toggle/", {"acknowledge_cycle": "1"})
    assert Workflow.objects.get(pk=back.pk).status == "activated"
