"""Versions and documents of workflows: export and import YAML, compare versions, roll back,
clone. Writes go through services.py (one write path): these only translate.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from crm_automation.automation.definition import documents
from crm_automation.automation.definition.validation import DEFINITION_FIELDS, validate_definition
from crm_automation.automation.models import Workflow, WorkflowStatus, WorkflowVersion
from crm_automation.automation.services.workflows import (
    editable_values,
    free_name,
    is_live,
    name_problems,
    stale,
    workflow_create,
    workflow_publish,
    workflow_transition,
    workflow_update,
)
from crm_automation.crm.models import Organization
from crm_automation.refusals import Refused, reasons


def _create_from(definition: dict, *, organization: Organization, by, name: str, description: str,
                 key: str = "") -> Workflow:
    """A new draft holding `definition` (through the one write path)."""
    fields = {name_: definition[name_] for name_ in DEFINITION_FIELDS if name_ in definition}
    return workflow_create(organization=organization, by=by, name=name, key=key, description=description,
                           actions=definition.get("actions") or [], **fields)


def _free_name(organization_id: int, wanted: str) -> str:
    """A name made for the person (an import, a template, a clone, the AI's draft): `wanted`, or
    “wanted (2)”, “(3)” … when taken, whatever the case (services.free_name)."""
    return free_name(organization_id, wanted)


def workflow_document(workflow: Workflow, version: WorkflowVersion | None = None) -> dict:
    """The workflow (as saved now, or as `version` was) as a workflow document
    (docs/product.md#documents), under the workflow's name and id as they are now. Written out
    from the compiled definition: the same text whichever database stored the document
    (PostgreSQL's jsonb gives keys back in an order of its own)."""
    definition = version.definition if version is not None else workflow.definition
    return documents.document_of(key=workflow.key, name=workflow.name, description=workflow.description,
                                 definition=definition, status=workflow.status)


def workflow_export_yaml(workflow: Workflow) -> str:
    return documents.to_yaml(workflow_document(workflow))


MAX_NESTING = 24  # a document's own structure is 6 deep; a node's config may nest MAX_DEPTH more


def _structure_problem(value) -> str | None:
    """What makes `value` no document we can store (checked without recursion: a hostile body
    must not exhaust the stack): nesting deeper than MAX_NESTING, a key that is not text (YAML
    allows `1:` or `null:` as keys), or a NUL character (PostgreSQL refuses them, in the name
    as anywhere else)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            return f"the document nests more than {MAX_NESTING} levels deep"
        if isinstance(item, str) and "\x00" in item:
            return "text may not contain NUL characters"
        if isinstance(item, dict):
            if not all(isinstance(key, str) and "\x00" not in key for key in item):
                return "every key must be text (without NUL characters)"
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return None


def _line(tree, place: str) -> int | None:
    return documents.line_of(tree, place) if tree is not None else None  # JSON bodies have no lines


def parse_document(document, organization_id: int, tree=None, *, name_of: int | None | bool = False) -> dict:
    """A workflow document (parsed JSON or YAML), checked against this organization (stages,
    members): DocumentError listing every problem with its place (and its line, when `tree`,
    the YAML node tree of the text, is given), all of them at once: the header (name, id),
    the trigger and every node's settings.

    `name_of`: the name is the person's and must be free in the organization: None for a new
    workflow, the id of the workflow being saved; False when a free name is made for them
    (an import, a template)."""
    problem = _structure_problem(document)
    if not isinstance(document, dict):
        errors = [("", "the document must be a mapping with id, name, nodes and edges")]
    elif problem:
        errors = [("", problem)]
    else:
        definition, errors = documents.definition_from(document)
        if name_of is not False and not any(place == "name" for place, _ in errors):
            errors = name_problems(organization_id, document.get("name"), exclude=name_of or None) + errors
        if definition:  # complete enough to check its trigger and nodes too
            errors += [(documents.place_in_document(where, definition), message)
                       for where, message in validate_definition(definition, organization_id)]
    if errors:
        raise documents.DocumentError([(place, message, _line(tree, place)) for place, message in errors])
    return {"document": document, "definition": definition}


def parse_yaml(text: str, organization_id: int) -> dict:
    """The document of a YAML text, checked against this organization (stages, members):
    DocumentError listing every problem with its place and line."""
    document, tree = documents.from_yaml(text)
    return parse_document(document, organization_id, tree)


@transaction.atomic
def workflow_import_yaml(*, organization: Organization, by, text: str) -> tuple[Workflow, list[str]]:
    """Create a draft from a YAML workflow document. `_status: production` / `archive` then go
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
    transitions: dict[str, list[str]] = {WorkflowStatus.ACTIVATED: ["activate"],
                                         WorkflowStatus.PAUSED: ["activate", "pause"],
                                         WorkflowStatus.ARCHIVED: ["archive"]}
    steps = transitions.get(wanted or "", [])
    for step in steps:
        try:
            with transaction.atomic():
                workflow = workflow_transition(workflow_id=workflow.pk, name=step, by=by)
        except (Refused, PermissionDenied) as exc:
            notes.append(f"it stays a draft: {' '.join(reasons(exc))}")
            break
    return workflow, notes


def workflow_create_from_document(*, organization: Organization, by, document: dict, tree=None) -> Workflow:
    """A new draft from a workflow document (the API's POST). Without an `id`, the key comes from
    the name; a taken one gets a -2, -3 … suffix. `_status` is not applied: the draft goes live
    through the transitions, which check role, definition and plan."""
    key = document.get("id") if isinstance(document, dict) else None
    if isinstance(document, dict) and key in (None, ""):
        document = {**document, "id": "workflow"}  # any valid id: the key is made from the name below
    parsed = parse_document(document, organization.pk, tree, name_of=None)
    return _create_from(parsed["definition"], organization=organization, by=by, name=document["name"].strip(),
                        key=key or "", description=str(document.get("description") or ""))


STRUCTURE = ("nodes", "edges", "settings")


def workflow_update_from_document(*, workflow_id: int, by, document: dict, tree=None,
                                  expected_revision: int | None = None) -> Workflow:
    """Change a workflow from (part of) a workflow document (the API's PATCH): the top-level
    keys given replace the current ones (`settings` key by key), the whole is checked as one
    document, and only what differs from the workflow as it is goes to `workflow_update`."""
    workflow = Workflow.objects.get(pk=workflow_id)
    if expected_revision is not None and workflow.draft_revision != expected_revision:
        # The whole document was edited from an older revision: any part of it may be stale (a
        # name or a setting as much as the nodes). Changes after this read are caught under
        # workflow_update's lock by `expected` and the revision.
        raise stale(workflow)
    current = workflow_document(workflow)
    current.pop("_status", None)
    if not isinstance(document, dict):
        raise documents.DocumentError([("", "the document must be a mapping", None)])
    merged = {**current, **{k: v for k, v in document.items() if k != "_status"}}
    if isinstance(document.get("settings"), dict):
        merged["settings"] = {**current.get("settings", {}), **document["settings"]}
    if merged.get("id") != workflow.key:
        raise documents.DocumentError([("id", f"a workflow keeps its id (“{workflow.key}”); clone it to get "
                                              "another", _line(tree, "id"))])
    new = parse_document(merged, workflow.organization_id, tree, name_of=workflow.pk)["definition"]
    changes = {}
    if merged["name"].strip() != workflow.name:
        changes["name"] = merged["name"].strip()
    if str(merged.get("description") or "") != workflow.description:
        changes["description"] = str(merged.get("description") or "")
    actions = None
    if any(key in document for key in STRUCTURE):
        # Compared with the draft, compiled from its document as `new` was, so what only looks
        # different (a label export writes anyway, an empty filter) is not written.
        old = workflow.definition
        changes.update({name: new.get(name) or {} if name == "graph" else new[name]
                        for name in DEFINITION_FIELDS if new.get(name) != old.get(name)})
        if new["actions"] != old.get("actions"):
            actions = new["actions"]
    # What was compared is what must still be there under the lock (someone may save meanwhile).
    return workflow_update(workflow_id=workflow_id, by=by, changes=changes, actions=actions,
                           expected={name: value for name, value in editable_values(workflow).items()
                                     if name in changes},
                           expected_revision=expected_revision)


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
    try:
        workflow = workflow_update(workflow_id=workflow_id, by=by, changes=changes,
                                   actions=definition.get("actions") or [])
    except ValidationError as exc:
        # The version was valid when it was saved; what no longer fits (a stage or a member since
        # removed) is the organization's state now, not the caller's input.
        raise Refused(f"Version {number} cannot be made current again as it is: {' '.join(exc.messages)}") from None
    if is_live(workflow):  # rolling back a live workflow is meant to take effect
        workflow = workflow_publish(workflow_id=workflow_id, by=by)
    return workflow


@transaction.atomic
def workflow_clone(*, workflow_id: int, by, name: str | None = None) -> Workflow:
    """A new draft with the workflow's current definition, a new name and a new id. `name` is
    the person's choice and must be free; without one the copy is “Copy of X”, “Copy of X (2)” …"""
    source = Workflow.objects.get(pk=workflow_id)
    if name is None or not str(name).strip():
        name = free_name(source.organization_id, f"Copy of {source.name}")
    return _create_from(source.definition, organization=source.organization, by=by,
                        name=name, description=source.description)
