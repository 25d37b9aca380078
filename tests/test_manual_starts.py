"""A person starts a manual workflow from where they are: a deal, lead, contact or project page,
or the workflow list (no record), answering its declared inputs (typed, with defaults); the API
does the same; bad inputs are named at their field and start nothing."""

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.crm.models import Contact, Project, Task
from tests.conftest import make_workflow
from tests.test_web_builder import as_user

INPUTS = [{"key": "reason", "label": "Reason", "kind": "text", "required": True},
          {"key": "days", "label": "Days", "kind": "number", "default": 3},
          {"key": "urgency", "kind": "choice", "choices": ["low", "high"], "default": "low"}]
TASK = [{"type": "create_task", "label": "Follow", "config": {
    "title": "{{trigger.input.reason}} in {{trigger.input.days}} days ({{trigger.input.urgency}})"}}]


@pytest.fixture
def ada(org):
    return Contact.objects.create(organization=org, first_name="Ada", email="ada@example.com")


def test_a_contact_page_starts_a_workflow_after_asking_its_inputs(org, teammate, ada):
    workflow = make_workflow(org, trigger_type="manual_contact", trigger_config={"inputs": INPUTS}, actions=[
        {"type": "create_task", "label": "Follow", "config": {"title": "Call {{contact.first_name}}: "
                                                                       "{{trigger.input.reason}}"}}])
    client = as_user(teammate)
    page = client.get(f"/crm/automation/records/contact/{ada.pk}/").content.decode()
    assert workflow.name in page and "Run workflow" in page
    asked = client.post(f"/crm/automation/records/contact/{ada.pk}/start/", {"workflow": workflow.pk})
    assert asked.status_code == 200 and 'name="input.reason"' in asked.content.decode()
    assert 'value="3"' in asked.content.decode()  # the default, filled in
    refused = client.post(f"/crm/automation/records/contact/{ada.pk}/start/",
                          {"workflow": workflow.pk, "confirm": "1", "input.days": "soon"})
    text = refused.content.decode()
    assert refused.status_code == 400 and "Reason is required" in text and "is not a number" in text
    assert not WorkflowRun.objects.exists()
    started = client.post(f"/crm/automation/records/contact/{ada.pk}/start/",
                          {"workflow": workflow.pk, "confirm": "1", "input.reason": "Renewal"})
    assert started.status_code == 302
    continue_runs(list(WorkflowRun.objects.values_list("pk", flat=True)))
    run = WorkflowRun.objects.get()
    assert run.status == "completed", run.error
    assert Task.objects.get().title == "Call Ada: Renewal"


def test_a_project_workflow_and_a_no_record_workflow_start_through_the_api_with_inputs(org, owner, viewer):
    project = Project.objects.create(organization=org, name="Deck", owner=owner)
    on_project = make_workflow(org, name="Project", trigger_type="manual_project", trigger_config={"inputs": INPUTS},
                               actions=[{"type": "create_task", "label": "T", "config": {
                                   "title": "{{project.name}}: {{trigger.input.reason}}"}}])
    anywhere = make_workflow(org, name="Anywhere", trigger_type="manual", trigger_config={"inputs": INPUTS},
                             actions=TASK)
    client = APIClient()
    client.force_authenticate(owner)
    bad = client.post(f"/api/v1/workflows/{anywhere.pk}/trigger/", {"input": {"reason": "x", "urgency": "mid"}},
                      format="json")
    assert bad.status_code == 400 and "is not one of its choices" in str(bad.json()["input.urgency"])
    made = client.post(f"/api/v1/workflows/{anywhere.pk}/trigger/", {"input": {"reason": "Audit"}}, format="json")
    assert made.status_code == 202, made.content
    onto = client.post(f"/api/v1/workflows/{on_project.pk}/trigger/",
                       {"entity_type": "project", "entity_id": str(project.pk), "input": {"reason": "Kickoff"}},
                       format="json")
    assert onto.status_code == 202, onto.content
    continue_runs([made.json()["id"], onto.json()["id"]])
    assert set(Task.objects.values_list("title", flat=True)) == {"Audit in 3 days (low)", "Deck: Kickoff"}
    assert project.tasks.count() == 1
    client.force_authenticate(viewer)
    assert client.post(f"/api/v1/workflows/{anywhere.pk}/trigger/", {"input": {"reason": "x"}},
                       format="json").status_code == 403


def test_the_workflow_list_offers_a_start_for_workflows_on_no_record(org, teammate, viewer):
    workflow = make_workflow(org, name="Weekly check", trigger_type="manual", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "Check the pipeline"}}])
    page = as_user(teammate).get("/crm/automation/").content.decode()
    assert f"/crm/automation/start/?workflow={workflow.pk}" in page
    assert "/crm/automation/start/" not in as_user(viewer).get("/crm/automation/").content.decode()
    assert as_user(viewer).post("/crm/automation/start/", {"workflow": workflow.pk}).status_code == 403
    started = as_user(teammate).post("/crm/automation/start/", {"workflow": workflow.pk})
    assert started.status_code == 302
    continue_runs(list(WorkflowRun.objects.values_list("pk", flat=True)))
    assert Task.objects.get().title == "Check the pipeline"


def test_inputs_are_checked_where_they_are_declared_and_another_orgs_record_is_refused(org, other_org, owner):
    with pytest.raises(ValidationError) as caught:
        make_workflow(org, trigger_type="manual", trigger_config={"inputs": [
            {"key": "Bad Key", "kind": "text"}, {"key": "n", "kind": "number", "default": "many"},
            {"key": "c", "kind": "colour"}]}, actions=TASK)
    text = " ".join(caught.value.messages)
    assert "inputs[0].key" in text and "inputs[1].default" in text and "inputs[2].kind" in text
    workflow = make_workflow(org, trigger_type="manual_contact", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "x"}}])
    stranger = Contact.objects.create(organization=other_org, first_name="Eve")
    with pytest.raises(ValidationError):
        workflow_start(workflow_id=workflow.pk, by=owner, record=stranger)
    client = APIClient()
    client.force_authenticate(owner)
    answer = client.post(f"/api/v1/workflows/{workflow.pk}/trigger/",
                         {"entity_type": "contact", "entity_id": str(stranger.pk)}, format="json")
    assert answer.status_code == 400 and "No contact with this id" in str(answer.json())
