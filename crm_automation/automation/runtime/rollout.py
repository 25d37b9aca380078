"""Which version a record runs while a workflow's new version rolls out (docs/product.md#gradual-rollout).

A record's bucket is a hash of the workflow and the record, 0-99: the same record always lands in
the same bucket, so while the share only grows a record that ran the new version keeps running it.
The rollout comes with the workflow (`select_related("rollout__version")`): no read per run.
"""

import hashlib
from typing import Any

from crm_automation.automation.models import Rollout, Workflow, WorkflowVersion

OPEN = (Rollout.Status.ACTIVE, Rollout.Status.HELD)


def bucket(workflow_id: int, entity_id: Any) -> int:
    digest = hashlib.sha256(f"{workflow_id}:{entity_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100


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
