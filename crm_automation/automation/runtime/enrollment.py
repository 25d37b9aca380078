"""Re-enrollment: whether a record may go through a workflow again (Workflow.reenrollment).

A record enrolled in a workflow that does not take it again holds an Enrollment row, unique per
(workflow, record): the database, not a check-then-insert, decides when two workers dispatch
events of the same record at once. "Not while running" rows are removed when the run finishes;
"once" rows stay. When a workflow's policy changes, its rows are brought in line with the new
policy, so no record stays blocked by a rule that no longer applies.
"""

from collections.abc import Iterable
from typing import Any
from uuid import UUID

from crm_automation.automation.models import (
    AutomationEvent,
    Enrollment,
    RunStatus,
    Workflow,
    WorkflowDecision,
    WorkflowRun,
)

Policy = Workflow.Reenrollment
Outcome = WorkflowDecision.Outcome
# What dispatch matched: the event, the workflow it starts, the decision to record, the run's metadata.
Matched = tuple[AutomationEvent, Workflow, WorkflowDecision, dict[str, Any]]


def policy_of(workflow: Workflow) -> str:
    version = workflow.current_version
    assert version is not None, "only a workflow with a version is matched"
    policy: str = version.definition.get("reenrollment", Policy.EVERY_TIME)
    return policy


def enroll(matched: list[Matched]) -> list[Matched]:
    """Keep the matched (event, workflow, decision, metadata) items that may enroll their
    record; the others get the decision "already enrolled"."""
    wanted = []
    for event, wf, _, _ in matched:
        policy = policy_of(wf)
        if policy != Policy.EVERY_TIME:
            wanted.append(Enrollment(workflow=wf, entity_id=event.entity_id, event_id=event.pk,
                                     until_finished=policy == Policy.NOT_WHILE_RUNNING))
    if not wanted:
        return matched
    # One insert order for every worker (no lock-order deadlocks between two dispatches).
    wanted.sort(key=lambda row: (row.workflow_id, str(row.entity_id), row.event_id))
    Enrollment.objects.bulk_create(wanted, ignore_conflicts=True)
    # Two plain IN lists (a superset, filtered here) plan far cheaper than 50 OR'ed pairs.
    holders = {(w, e): ev for w, e, ev in Enrollment.objects.filter(
        workflow_id__in={r.workflow_id for r in wanted}, entity_id__in={r.entity_id for r in wanted},
    ).values_list("workflow_id", "entity_id", "event_id")}
    kept = []
    for item in matched:
        event, wf, decision, _ = item
        if holders.get((wf.pk, event.entity_id), event.pk) == event.pk:
            kept.append(item)
            continue
        decision.outcome = Outcome.ALREADY_ENROLLED
        if policy_of(wf) == Policy.ONCE:
            decision.reason = (f"already enrolled: this {event.entity_type} went through the workflow before "
                               "and it enrolls a record only once")
        else:
            decision.reason = (f"already enrolled: this {event.entity_type} still has an unfinished run of "
                               "the workflow (started by an earlier change)")
    return kept


def release(*, runs: Iterable[WorkflowRun]) -> None:
    """Runs finished: their records may enter "not while running" workflows again."""
    if not runs:
        return
    pairs = {(run.workflow_id, run.event_id) for run in runs}
    rows = Enrollment.objects.filter(until_finished=True, workflow_id__in={w for w, _ in pairs},
                                     event_id__in={e for _, e in pairs})
    ids = [pk for pk, w, e in rows.values_list("pk", "workflow_id", "event_id") if (w, e) in pairs]
    if ids:
        Enrollment.objects.filter(pk__in=ids).delete()


def adopt_policy(*, workflow_id: int, policy: str) -> None:
    """Bring a workflow's enrollment rows in line with its new policy."""
    rows = Enrollment.objects.filter(workflow_id=workflow_id)
    if policy == Policy.EVERY_TIME:
        rows.delete()
        return
    runs = WorkflowRun.objects.filter(workflow_id=workflow_id)
    unfinished = runs.filter(status=RunStatus.STARTED).values_list("event_id", flat=True)
    if policy == Policy.NOT_WHILE_RUNNING:
        rows.exclude(event_id__in=unfinished).delete()
        rows.update(until_finished=True)
        return
    rows.update(until_finished=False)  # once: every record that went through stays enrolled
    seen: dict[UUID, int] = {}
    for entity_id, event_id in runs.order_by("pk").values_list("trigger_entity_id", "event_id"):
        seen.setdefault(entity_id, event_id)
    Enrollment.objects.bulk_create(
        [Enrollment(workflow_id=workflow_id, entity_id=e, event_id=ev, until_finished=False)
         for e, ev in seen.items()], ignore_conflicts=True)
