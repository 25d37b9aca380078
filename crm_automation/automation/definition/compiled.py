"""A workflow's definition, compiled from its document: the one place the stored shape becomes
the form the engine, dispatch and validation read.

The document (documents.py, the YAML/JSON format people edit) is what the database stores: a
workflow's draft in `Workflow.document`, each version in `WorkflowVersion.document`. The
definition (trigger type and settings, conditions, settings, actions, graph) is derived from it
here and never stored. A version never changes, so a process compiles each one once; the
dictionaries handed out are shared, and nobody changes them.
"""

from crm_automation.automation.definition import documents

MAX_KEPT = 2_000  # versions a process keeps compiled (a few KB each)
_versions: dict[tuple[int, object], dict] = {}


class NotCompilable(ValueError):
    """A stored document that is not a workflow: the services never write one."""


def compile_document(document: dict) -> dict:
    """The definition of a stored (already validated) document."""
    definition, errors = documents.definition_from(document) if isinstance(document, dict) else ({}, [])
    if not definition:
        raise NotCompilable("; ".join(documents.describe((place, message, None)) for place, message in errors)
                            or "not a workflow document")
    return definition


def of_version(version) -> dict:
    """The definition of a saved version, compiled once per process. Keyed by id and creation
    time: a SQLite database may give a deleted version's id to a new one."""
    if version.pk is None:
        return compile_document(version.document)
    key = (version.pk, version.created_at)
    definition = _versions.get(key)
    if definition is None:
        if len(_versions) >= MAX_KEPT:
            _versions.clear()
        definition = _versions[key] = compile_document(version.document)
    return definition


def of_draft(workflow) -> dict:
    """The definition of a workflow's draft, compiled once per `document` it is given."""
    kept = workflow.__dict__.get("_compiled_draft")
    if kept is None or kept[0] is not workflow.document:
        kept = workflow.__dict__["_compiled_draft"] = (workflow.document, compile_document(workflow.document))
    return kept[1]


def forget() -> None:
    """Drop what this process compiled: for a test that writes a version around the services."""
    _versions.clear()
