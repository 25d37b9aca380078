"""Editing a live workflow edits a draft; Publish makes it live for new triggers; runs in flight
finish on the version they started with."""

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.automation.runtime import engine
from crm_automation.automation.runtime.dispatch import claim_events, dispatch_events
from crm_automation.automation.services.workflows import (
    has_unpublished_changes,
    workflow_publish,
    workflow_transition,
    workflow_update,
)
from crm_automation.crm.models import Task
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.refusals import Refused
from tests.admin_helpers import page_form
from tests.conftest import drain, make_workflow, stage

ONLY_TASK = [{"type": "create_task", "config": {"title": "New plan for {{deal.title}}"}}]


def test_edits_of_a_live_workflow_wait_for_publish(org, owner, deal):
    wf = make_workflow(org)
    workflow_update(workflow_id=wf.pk, by=owner, actions=ONLY_TASK)
    wf.refresh_from_db()
    assert wf.version == 1 and has_unpublished_changes(wf)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert Task.objects.get().title == "Kick off Website"  # still the live version 1
    workflow_publish(workflow_id=wf.pk, by=owner)
    wf.refresh_from_db()
    assert wf.version == 2 and not has_unpublished_changes(wf)


def test_a_run_in_flight_finishes_on_its_version_after_a_publish(org, owner, deal):
    wf = make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    (run_id,) = dispatch_events(claim_events(10))
    workflow_update(workflow_id=wf.pk, by=owner, actions=ONLY_TASK)
    workflow_publish(workflow_id=wf.pk, by=owner)
    engine.execute_runs([run_id])
    assert WorkflowRun.objects.get(pk=run_id).version.number == 1
    assert Task.objects.get().title == "Kick off Website"


def test_only_admins_publish_and_only_live_workflows(org, owner, teammate):
    wf = make_workflow(org)
    workflow_update(workflow_id=wf.pk, by=owner, actions=ONLY_TASK)
    with pytest.raises(PermissionDenied, match="Only admins"):
        workflow_publish(workflow_id=wf.pk, by=teammate)
    draft = make_workflow(org, name="Draft", activate=False)
    with pytest.raises(Refused, match="activate it to make it live"):
        workflow_publish(workflow_id=draft.pk, by=owner)


def test_resuming_a_paused_workflow_does_not_publish_pending_edits(org, owner):
    wf = make_workflow(org)
    workflow_transition(workflow_id=wf.pk, name="pause", by=owner)
    workflow_update(workflow_id=wf.pk, by=owner, actions=ONLY_TASK)
    workflow_transition(workflow_id=wf.pk, name="activate", by=owner)
    wf.refresh_from_db()
    assert wf.version == 1 and has_unpublished_changes(wf)


def test_the_change_page_offers_publish_with_the_changes(client, org, owner):
    wf = make_workflow(org)
    client.force_login(owner)
    change = reverse("admin:automation_workflow_change", args=[wf.pk])
    assert "Unpublished changes" not in client.get(change).content.decode()
    assert client.post(change, page_form(client, change, description="New words")).status_code == 302
    workflow_update(workflow_id=wf.pk, by=owner, actions=ONLY_TASK)
    page = client.get(change).content.decode()
    assert "Unpublished changes" in page
    publish = reverse("admin:automation_workflow_publish", args=[wf.pk])
    preview = client.get(publish).content.decode()
    assert "Removed: <strong>Send email</strong>" in preview
    response = client.post(publish, follow=True)
    assert "is live: version 2" in response.content.decode()
    assert Workflow.objects.get(pk=wf.pk).version == 2
