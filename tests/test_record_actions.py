"""Workflows create records linked to the one they run on (a project from this deal, a contact, a
deal, a note) and delete records once an admin allowed it; each effect happens once however often
the run is delivered, and what a step deleted stays on the run's record."""

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from crm_automation.automation.definition.context import deal_dict
from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.automation.nodes import REGISTRY
from crm_automation.automation.nodes.base import ExecutionContext
from crm_automation.automation.services.workflows import workflow_allow_deletion
from crm_automation.crm.models import Contact, Deal, Lead, Note, Project, Stage
from crm_automation.crm.services import deal_move_to_stage, lead_convert
from tests.conftest import drain, make_workflow


@pytest.fixture
def deal(org, owner):
    ada = Contact.objects.create(organization=org, first_name="Ada", email="ada@example.com")
    return Deal.objects.create(organization=org, title="Roof for Ada", amount=9000, contact=ada, owner=owner,
                               stage=Stage.objects.get(organization=org, slug="new"))


def test_a_won_deal_becomes_a_project_whose_completion_starts_the_review_workflow(org, owner, deal):
    make_workflow(org, name="Kickoff", trigger_config={"to_stage": "won"}, actions=[
        {"id": "open-project", "type": "create_project", "label": "Open project", "config": {
            "name": "{{deal.title}}", "service_type": "roofing", "status": "active", "ends_in_days": 30}},
        {"id": "note", "type": "create_note", "label": "Note", "config": {
            "body": "Project {{Open project.project_id}} opened by automation"}}])
    make_workflow(org, name="Review", trigger_type="project_completed", trigger_config={}, actions=[
        {"type": "create_task", "label": "Ask",
         "config": {"title": "Ask {{trigger.contact.first_name}} for a review"}}])
    deal_move_to_stage(deal=deal, stage=Stage.objects.get(organization=org, slug="won"))
    drain()
    drain()
    project = Project.objects.get()
    assert (project.name, project.deal_id, project.contact.first_name, project.owner) == (
        "Roof for Ada", deal.pk, "Ada", owner)
    assert project.status == "active" and project.end_date is not None
    assert Note.objects.get().body == f"Project {project.pk} opened by automation"
    assert Note.objects.get().deal_id == deal.pk
    project.status = "completed"
    project.save()
    drain()
    assert project.tasks.get().title == "Ask Ada for a review"


def test_a_redelivered_step_finds_what_it_made_and_never_creates_twice(org, owner, deal):
    action = REGISTRY["create_project"]
    ctx = ExecutionContext(run_id=7, step="node:project", organization_id=org.pk, trigger_type="deal_stage_change",
                           depth=0, template_context={"deal": deal_dict(deal)}, record=deal)
    first = action.apply([(ctx, action.prepare({"name": "{{deal.title}}"}, ctx))])[0]
    assert action.existing([ctx.key, "run:8:node:x"]) == {ctx.key: {**first, "repeated_delivery": True}}
    with pytest.raises(IntegrityError), transaction.atomic():  # the unique key refuses a second one
        action.apply([(ctx, action.prepare({"name": "{{deal.title}}"}, ctx))])
    assert Project.objects.count() == 1


def test_a_converted_lead_gets_a_contact_and_a_deal_from_steps(org, owner):
    make_workflow(org, trigger_type="lead_created", trigger_config={}, actions=[
        {"type": "create_contact", "label": "New contact", "config": {"first_name": "{{lead.name}}",
                                                                     "email": "{{lead.email}}"}},
        {"type": "create_deal", "label": "New deal",
         "config": {"title": "{{lead.company}} opportunity", "amount": "1500", "owner": "owner"}}])
    Lead.objects.create(organization=org, name="Bo", email="bo@example.com", company="Bo Ltd", owner=owner)
    drain()
    contact = Contact.objects.get(first_name="Bo")
    assert contact.email == "bo@example.com" and contact.source_lead is not None
    new = Deal.objects.get(title="Bo Ltd opportunity")
    assert (new.amount, new.owner, new.stage.slug) == (1500, owner, "new")


def test_a_step_whose_record_is_not_valid_fails_with_the_reason(org, owner):
    make_workflow(org, trigger_type="lead_created", trigger_config={}, actions=[
        {"type": "create_contact", "label": "New contact", "config": {"first_name": "{{lead.name}}",
                                                                 "email": "not an address {{lead.name}}"}}])
    Lead.objects.create(organization=org, name="Cy", owner=owner)
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "failed" and "email" in run.error
    assert not Contact.objects.exists()


def test_deleting_needs_an_admin_to_allow_it_and_the_run_keeps_what_it_deleted(org, owner, teammate, deal):
    workflow = make_workflow(org, trigger_config={"to_stage": "lost"}, actions=[
        {"type": "delete_record", "label": "Delete", "config": {}}])
    lost = Stage.objects.get(organization=org, slug="lost")
    deal_move_to_stage(deal=deal, stage=lost)
    drain()
    run = WorkflowRun.objects.get()
    assert run.status == "failed" and "an admin has to allow it" in run.error
    assert Deal.objects.filter(pk=deal.pk).exists()
    with pytest.raises(PermissionDenied):
        workflow_allow_deletion(workflow_id=workflow.pk, by=teammate, allowed=True)
    client = APIClient()
    client.force_authenticate(teammate)
    assert client.post(f"/api/v1/workflows/{workflow.pk}/allow-deletion/", {"allowed": True},
                       format="json").status_code == 403
    client.force_authenticate(owner)
    allowed = client.post(f"/api/v1/workflows/{workflow.pk}/allow-deletion/", {"allowed": True}, format="json")
    assert allowed.status_code == 200 and allowed.json()["allows_deletion"] is True
    other = Deal.objects.create(organization=org, title="Gone soon", amount=10, owner=owner,
                                stage=Stage.objects.get(organization=org, slug="new"))
    deal_move_to_stage(deal=other, stage=lost)
    drain()
    assert not Deal.objects.filter(pk=other.pk).exists()
    step = WorkflowRunAction.objects.get(run__trigger_entity_id=other.pk, node_id__startswith="delete")
    assert step.result["deleted"] == "deal" and step.result["record"]["title"] == "Gone soon"


def test_unknown_settings_and_stages_are_refused_at_save(org):
    from django.core.exceptions import ValidationError
    with pytest.raises(ValidationError) as caught:
        make_workflow(org, trigger_config={"to_stage": "won"}, actions=[
            {"type": "create_deal", "label": "D", "config": {"title": "x", "stage": "nowhere", "colour": "red"}},
            {"type": "create_project", "label": "P", "config": {"name": "x", "status": "done"}},
            {"type": "delete_record", "label": "X", "config": {"record": "stage"}}])
    text = " ".join(caught.value.messages)
    assert "“nowhere” is not a stage" in text and "config.colour" in text
    assert "must be one of planned" in text and "must be one of deal, lead, contact, project" in text


def test_lead_converted_can_open_a_project_for_the_new_deal(org, owner):
    make_workflow(org, trigger_type="lead_converted", trigger_config={}, actions=[
        {"type": "create_project", "label": "P", "config": {"name": "Work for {{lead.name}}"}}])
    lead = Lead.objects.create(organization=org, name="Dee", owner=owner)
    deal = lead_convert(lead=lead)
    drain()
    project = Project.objects.get()
    assert project.deal_id == deal.pk and project.contact_id == deal.contact_id


def test_a_step_archives_the_record_once_and_the_api_and_admin_filter_and_restore_it(org, owner, teammate, deal):
    from crm_automation.crm.services import records_archive
    make_workflow(org, trigger_config={"to_stage": "lost"}, actions=[
        {"id": "archive", "type": "archive_record", "label": "Archive", "config": {}}])
    watcher = make_workflow(org, name="Watch", trigger_type="deal_updated", trigger_config={"fields": ["archived_at"]},
                            actions=[{"type": "create_task", "label": "T",
                                      "config": {"title": "{{deal.title}} archived"}}])
    deal_move_to_stage(deal=deal, stage=Stage.objects.get(organization=org, slug="lost"))
    drain()
    drain()
    deal.refresh_from_db()
    assert deal.archived_at is not None and Deal.objects.filter(pk=deal.pk).exists()
    step = WorkflowRunAction.objects.get(node_id="archive")
    assert step.result["archived"] == "deal" and step.result["already"] is False
    assert WorkflowRun.objects.filter(workflow=watcher, status="completed").count() == 1
    client = APIClient()
    client.force_authenticate(teammate)
    archived = client.get("/api/v1/deals/?archived=true").json()["results"]
    assert [d["id"] for d in archived] == [str(deal.pk)] and archived[0]["archived_at"]
    assert client.get("/api/v1/deals/?archived=false").json()["results"] == []
    assert client.get("/api/v1/deals/?archived=maybe").status_code == 400
    assert client.patch(f"/api/v1/deals/{deal.pk}/", {"archived_at": None}, format="json").status_code == 200
    deal.refresh_from_db()
    assert deal.archived_at is not None  # read-only in the API: restoring is the admin's action
    assert records_archive(model=Deal, organization_id=org.pk, ids=[deal.pk], by=teammate, archived=False) == 1
    deal.refresh_from_db()
    assert deal.archived_at is None


def test_the_admin_archives_and_restores_selected_records(org, owner, deal, client):
    client.force_login(owner)
    answer = client.post("/admin/crm/deal/", {"action": "archive_selected", "_selected_action": [str(deal.pk)]})
    assert answer.status_code == 302
    deal.refresh_from_db()
    assert deal.archived_at is not None
    listing = client.get("/admin/crm/deal/?archived=no").content.decode()
    assert deal.title not in listing
    client.post("/admin/crm/deal/", {"action": "restore_selected", "_selected_action": [str(deal.pk)]})
    deal.refresh_from_db()
    assert deal.archived_at is None


def test_the_admin_allows_a_workflow_to_delete_and_an_ops_member_cannot(org, owner, teammate, client):
    workflow = make_workflow(org, trigger_config={"to_stage": "lost"}, actions=[
        {"type": "delete_record", "label": "Delete", "config": {}}])
    client.force_login(teammate)
    client.post("/admin/automation/workflow/", {"action": "allow_deletion_selected",
                                                "_selected_action": [str(workflow.pk)]})
    workflow.refresh_from_db()
    assert workflow.allows_deletion is False
    client.force_login(owner)
    client.post("/admin/automation/workflow/", {"action": "allow_deletion_selected",
                                                "_selected_action": [str(workflow.pk)]})
    workflow.refresh_from_db()
    assert workflow.allows_deletion is True
