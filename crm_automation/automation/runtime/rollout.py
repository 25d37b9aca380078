"""Which version a record runs while a workflow's new version rolls out (docs/product.md#gradual-rollout).

A record's bucket is a hash of the workflow and the record, 0-99: the same record always lands in
the same bucket, so while the share only grows a record that ran the new version keeps running it.
The rollout comes with the workflow (`select_related("rollout__version")`): no read per run.
"""

import hashlib
from typing import Any

from crm_automation.automation.models import AutomationEvent, Rollout, Workflow, WorkflowVersion
from crm_automation.crm import changes

OPEN = (Rollout.Status.ACTIVE, Rollout.Status.HELD)


def bucket(workflow_id: int, entity_id: Any) -> int:
    digest = hashlib.sha256(f"{workflow_id}:{entity_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


def record_of(event: AutomationEvent) -> Any:
    """The id that names the record an event's run is about, as a start by hand names it: another
    system's event by the record it links (a project, deal or lead first, else its contact), every
    other event by its own entity id. (A business event's own id is new each time: bucketing on it
    would move a record between versions.)"""
    if event.entity_type != "event":
        return event.entity_id
    links = (event.payload or {}).get("links") or {}
    for kind in ("project", "deal", "lead"):
        if links.get(kind):
            return links[kind]
    if links.get("contact"):
        return changes.stand_in("contact", links["contact"])
    return event.entity_id


def version_for(workflow: Workflow, entity_id: Any) -> tuple[WorkflowVersion | None, str]:
    """The version the record runs, and what a decision says about it ("" when no rollout)."""
    rollout = workflow.rollout if workflow.rollout_id else None
    if rollout is None or rollout.status not in OPEN:
        return workflow.current_version, ""
    if bucket(workflow.pk, entity_id) < rollout.percent:
        return rollout.version, f"on version {rollout.version.number}, inside its {rollout.percent} % rollout"
    previous = workflow.current_version
    number = previous.number if previous is not None else "?"
    return previous, (f"on version {number}: outside the {rollout.percent} % rollout of version "
                      f"{rollout.version.number}")
