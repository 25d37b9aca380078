"""A workflow's draft as tests read it: the actions of its document, compiled (Workflow.definition)."""

from types import SimpleNamespace

from crm_automation.automation.definition import compiled, documents
from crm_automation.automation.models import Workflow, WorkflowVersion


def draft_actions(workflow: Workflow) -> list[SimpleNamespace]:
    """The draft's actions as saved now (the workflow is read again), in order: node_id,
    action_type, label ("" when export would write the automatic one) and config of each."""
    saved = Workflow.objects.get(pk=workflow.pk)
    return [SimpleNamespace(node_id=a["id"], action_type=a["type"], label=a.get("label", ""), config=a["config"])
            for a in saved.definition["actions"]]


def draft_action(workflow: Workflow, **match) -> SimpleNamespace:
    """The one action of the draft whose attributes are `match` (node_id=…, action_type=…)."""
    (found,) = [a for a in draft_actions(workflow) if all(getattr(a, k) == v for k, v in match.items())]
    return found


def store_around_validation(version: WorkflowVersion, definition: dict) -> None:
    """Write `definition` into a saved version as its document, past the services' validation
    and the versions' immutability (QuerySet.update), as a bug or a hand-edited row could; this
    process compiles it again (compiled.py keeps a version it has compiled)."""
    workflow = version.workflow
    document = documents.document_of(key=workflow.key, name=workflow.name, definition=definition)
    WorkflowVersion.objects.filter(pk=version.pk).update(document=document)
    compiled.forget()


def store_draft_around_validation(workflow: Workflow, definition: dict) -> None:
    """Write `definition` into the workflow's draft as its document, past the services'
    validation (QuerySet.update): what a stage or member removed since the save leaves behind."""
    document = documents.document_of(key=workflow.key, name=workflow.name, definition=definition)
    Workflow.objects.filter(pk=workflow.pk).update(document=document)
