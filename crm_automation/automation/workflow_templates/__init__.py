"""Ready-made workflows: YAML workflow documents (docs/product.md#documents) next to this module,
loaded as drafts.

Each `<key>.yaml` here is a complete workflow whose `id` is its file name. Loading one goes
through `versioning.workflow_import_yaml`, the same path as an uploaded file: it is checked
against the organization (its stages, the people it assigns to) and becomes a draft the
person reviews and activates. The files are written exactly as export writes them, so a
template loaded and exported again is the same text (tests/test_workflow_templates.py).
"""

import functools
from dataclasses import dataclass
from pathlib import Path

from crm_automation import bounded_reader
from crm_automation.automation.models import Workflow
from crm_automation.automation.services.versions import workflow_import_yaml
from crm_automation.crm.models import Organization

DIRECTORY = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Template:
    key: str  # the document's id, and the file's name without .yaml
    name: str
    description: str
    text: str  # the YAML document, as shipped
    node_count: int  # the trigger included


class UnknownTemplate(LookupError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"There is no workflow template “{key}”; choose one of {', '.join(keys())}.")


def _read(path: Path) -> Template:
    text = path.read_text(encoding="utf-8")
    document, _tree = bounded_reader.read_yaml(text)
    return Template(key=document["id"], name=document["name"], description=document.get("description") or "",
                    text=text, node_count=len(document["nodes"]))


@functools.cache
def _templates() -> tuple[Template, ...]:
    # Read once per process: the files only change with a deploy.
    return tuple(_read(path) for path in sorted(DIRECTORY.glob("*.yaml")))


def available() -> list[Template]:
    """Every shipped template, by key."""
    return list(_templates())


def keys() -> list[str]:
    return [template.key for template in _templates()]


def get(key: str) -> Template:
    """The template with this key; UnknownTemplate if there is none."""
    for template in _templates():
        if template.key == key:
            return template
    raise UnknownTemplate(key)


def load(*, organization: Organization, by, key: str) -> Workflow:
    """A new draft of `organization` made from the template `key`. `by` is the person (their
    role is checked: ops or admin), or None for the system. If the organization already has a
    workflow with the template's id, the new one gets `<key>-2`, `<key>-3` …

    Raises UnknownTemplate, PermissionDenied, or DocumentError if the organization lacks
    something the template names (a stage)."""
    template = get(key)
    workflow, _notes = workflow_import_yaml(organization=organization, by=by, text=template.text)
    return workflow
