"""A workflow is stored as its document, and only as that: the draft on the workflow, each version
on the version. The definition the engine reads is compiled from it (definition/compiled.py),
once per version in a process; the columns queries need are read from it when it is written."""

import pytest
from django.core.exceptions import ValidationError

from crm_automation.automation.definition import compiled, documents
from crm_automation.automation.models import Workflow, WorkflowVersion
from crm_automation.automation.services.versions import workflow_document
from crm_automation.automation.services.workflows import workflow_create, workflow_publish, workflow_update
from tests.conftest import make_workflow

BRANCHING = {"trigger_type": "deal_stage_change", "trigger_config": {"to_stage": "won"}, "conditions": {},
             "error_handling": "continue", "reenrollment": "once", "timeout_seconds": 30,
             "actions": [{"id": "big", "type": "condition", "config": {"rules": [
                             {"field": "deal.amount", "operator": "gt", "value": 5000}]}},
                         {"id": "call", "type": "create_task", "label": "Call them", "config": {"title": "Call"}},
                         {"id": "mail", "type": "send_email", "config": {"to": "{{deal.contact.email}}",
                                                                         "subject": "Hi", "body": "Thanks"},
                          "on_error": {"policy": "retry", "maxAttempts": 3, "then": "skip"}}],
             "graph": {"trigger": {"id": "won", "label": "Won"}, "edges": [
                 {"source": "won", "target": "big"},
                 {"source": "big", "target": "call", "sourceHandle": "condition-true"},
                 {"source": "big", "target": "mail", "sourceHandle": "condition-false"}]}}


def test_the_document_is_what_is_stored_and_the_columns_come_from_it(org):
    wf = make_workflow(org, activate=False, name="Kickoff")
    saved = Workflow.objects.get(pk=wf.pk)
    shown = workflow_document(saved)
    shown.pop("_status")
    assert saved.document == shown == saved.current_version.document
    assert (saved.key, saved.name, saved.trigger_type) == (shown["id"], "Kickoff", "deal_stage_change")
    assert {f.name for f in WorkflowVersion._meta.fields} == {"id", "workflow", "number", "document", "created_by",
                                                             "created_at"}


def test_a_definition_comes_back_from_its_document_as_it_went_in(org):
    document = documents.document_of(key="branching", name="Branching", definition=BRANCHING)
    assert compiled.compile_document(document) == BRANCHING
    assert compiled.compile_document(documents.document_of(key="b", name="B", definition=BRANCHING)) == BRANCHING


def test_a_version_is_compiled_once_per_process(org):
    wf = make_workflow(org)
    first = WorkflowVersion.objects.get(pk=wf.current_version_id)
    again = WorkflowVersion.objects.get(pk=wf.current_version_id)  # another object, the same row
    kept = first.definition
    assert first is not again and again.definition is kept
    compiled.forget()
    assert WorkflowVersion.objects.get(pk=wf.current_version_id).definition is not kept


def test_a_live_workflows_edit_is_its_draft_until_published(org, owner):
    wf = make_workflow(org)
    live = wf.current_version.document
    workflow_update(workflow_id=wf.pk, by=owner, changes={"trigger_config": {"to_stage": "lost"}})
    edited = Workflow.objects.get(pk=wf.pk)
    assert edited.definition["trigger_config"] == {"to_stage": "lost"}
    assert edited.current_version.document == live and edited.current_version.definition["trigger_config"] == {
        "to_stage": "won"}
    published = workflow_publish(workflow_id=wf.pk, by=owner)
    assert published.version == 2 and published.current_version.document == edited.document


def test_two_steps_of_one_label_are_refused_at_the_second(org):
    actions = [{"type": "create_task", "label": "Follow up", "config": {"title": "One"}},
               {"type": "create_task", "label": "follow up ", "config": {"title": "Two"}}]
    with pytest.raises(ValidationError) as refused:
        workflow_create(organization=org, name="Twice", trigger_type="deal_stage_change", actions=actions)
    assert any(m.startswith("actions[1].label: is also the label of “") for m in refused.value.messages)
    assert not Workflow.objects.exists()
