"""Versions and documents of workflows: export and import YAML, compare versions, roll back,
clone. Writes go through services.py (one write path): these only translate.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from crm_automation.automation import documents
from crm_automation.automation.definitions import DEFINITION_FIELDS, definition_of, validate_definition
from crm_automation.automation.models import Workflow, WorkflowStatus, WorkflowVersion
from crm_automation.automation.services import (
    is_live,
    workflow_create,
    workflow_publish,
    workflow_transition,
    workflow_update,
)
from crm_automation.crm.models import Organization


def _create_from(definition: dict, *, organization: Organization, by, name: str, description: str,
                 key: str = "") -> Workflow:
    """A new draft holding `definition` (through the one write path)."""
    fields = {name_: definition[name_] for name_ in DEFINITION_FIELDS if name_ in definition}
    return workflow_create(organization=organization, by=by, name=name, key=key, description=description,
                           actions=definition.get("actions") or [], **fields)


def _free_name(organization_id: int, wanted: str) -> str:
    """`wanted`, or “wanted (2)”, “(3)” … when the organization has a workflow of that name: two
    workflows of one name could not be told apart in lists and filters."""
    taken = set(Workflow.objects.filter(organization_id=organization_id, name__startswith=wanted[:190])
                .values_list("name", flat=True))
    name, n = wanted, 2
    while name in taken:
        name, n = f"{wanted[:190]} ({n})", n + 1
    return name


def workflow_document(workflow: Workflow, version: WorkflowVersion | None = None) -> dict:
    """The workflow (as saved now, or as `version` was) in the seed-001 format."""
    definition = version.definition if version is not None else definition_of(workflow)
    return documents.document_of(key=workflow.key, name=workflow.name, description=workflow.description,
                                 definition=definition, status=workflow.status)


def workflow_export_yaml(workflow: Workflow) -> str:
    return documents.to_yaml(workflow_document(workflow))


def parse_yaml(text: str, organization_id: int) -> dict:
    """The document of a YAML text, checked against this organization (stages, members):
    DocumentError listing every problem with its place and line."""
    document, tree = documents.from_yaml(text)
    definition, errors = documents.definition_from(document)
    if not errors:
        errors = [(documents.place_in_document(where, definition), message)
                  for where, message in validate_definition(definition, organization_id)]
    if errors:
        raise documents.DocumentError([(place, message, documents.line_of(tree, place))
                                       for place, message in errors])
    return {"document": document, "definition": definition}


@transaction.atomic
def workflow_import_yaml(*, organization: Organization, by, text: str) -> tuple[Workflow, list[str]]:
    """Create a draft from a seed-001 YAML document. `_status: production` / `archive` then go
    through the normal transitions and their checks; what they refuse is reported, and the
    draft stays. Returns the workflow and notes for the person."""
    parsed = parse_yaml(text, organization.pk)
    document, definition = parsed["document"], parsed["definition"]
    name = _free_name(organization.pk, document["name"].strip())
    workflow = _create_from(definition, organization=organization, by=by, name=name,
                            key=document["id"], description=str(document.get("description") or ""))
    notes = []
    if name != document["name"].strip():
        notes.append(f"a workflow is already called “{document['name'].strip()}”, so this one is “{name}”")
    if workflow.key != document["id"]:
        notes.append(f"the id “{document['id']}” is taken in this organization, so this one is “{workflow.key}”")
    wanted = documents.STATUS_IN.get(document.get("_status") or "draft")
    steps = {WorkflowStatus.ACTIVATED: ["activate"], WorkflowStatus.PAUSED: ["activate", "pause"],
             WorkflowStatus.ARCHIVED: ["archive"]}.get(wanted, [])
    for step in steps:
        try:
            with transaction.atomic():
                workflow = workflow_transition(workflow_id=workflow.pk, name=step, by=by)
        except (ValidationError, PermissionDenied) as exc:
            notes.append(f"it stays a draft: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
            break
    return workflow, notes


def versions_compare(workflow: Workflow, old: int, new: int) -> dict:
    """What changed from version `old` to version `new` of a workflow."""
    found = {v.number: v for v in workflow.versions.filter(number__in=[old, new])}
    missing = [n for n in (old, new) if n not in found]
    if missing:
        raise ValidationError(f"This workflow has no version {missing[0]}.")
    return documents.compare(workflow_document(workflow, found[old]), workflow_document(workflow, found[new]))


@transaction.atomic
def workflow_rollback(*, workflow_id: int, by, number: int) -> Workflow:
    """Make version `number`'s definition current again, as a new version: history is never
    rewritten. The person needs the right to edit the workflow, as for any change."""
    workflow = Workflow.objects.get(pk=workflow_id)
    version = workflow.versions.filter(number=number).first()
    if version is None:
        raise ValidationError(f"This workflow has no version {number}.")
    definition = version.definition
    changes = {name: definition[name] for name in DEFINITION_FIELDS if name in definition}
    changes["graph"] = definition.get("graph") or {}  # a chain version has none: the chain comes back
    workflow = workflow_update(workflow_id=workflow_id, by=by, changes=changes, actions=definition.get("actions") or [])
    if is_live(workflow):  # rolling back a live workflow is meant to take effect
        workflow = workflow_publish(workflow_id=workflow_id, by=by)
    return workflow


@transaction.atomic
def workflow_clone(*, workflow_id: int, by, name: str | None = None) -> Workflow:
    """A new draft with the workflow's current definition, a new name and a new id."""
    source = Workflow.objects.get(pk=workflow_id)
    return _create_from(definition_of(source), organization=source.organization, by=by,
                        name=name or f"Copy of {source.name}"[:200], description=source.description)
