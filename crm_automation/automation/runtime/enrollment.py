"""Re-enrollment: whether a record may go through a workflow again (Workflow.reenrollment).

- "not while running": the run itself holds the record's place (`WorkflowRun.holds_enrollment`,
  unique per workflow and record while set, cleared by the UPDATE that ends the run): no row is
  written or deleted for it. Dispatch skips records a run holds already and a second event of
  one record in the same batch; when two workers dispatch events of one record at once, the
  unique index refuses the second run at its INSERT and the dispatch records that (`refused`).
- "once": an Enrollment row, unique per (workflow, record), kept for ever: the database, not a
  check-then-insert, decides between two workers.

When a workflow's policy changes, its rows and runs are brought in line with the new policy, so
no record stays blocked by a rule that no longer applies.
"""

from typing import Any
from uuid import UUID

from crm_automation.automation import lifecycle
from crm_automation.automation.models import (
    AutomationEvent,
    Enrollment,
    RunStatus,
    Workflow,
    WorkflowDecision,
    WorkflowRun,
)
from crm_automation.bulk_insert import bulk_insert
from crm_automation.compiled_query import CompiledQuery

Policy = Workflow.Reenrollment
Outcome = WorkflowDecision.Outcome
# What dispatch matched: the event, the workflow it starts, the decision to record, the run's metadata.
Matched = tuple[AutomationEvent, Workflow, WorkflowDecision, dict[str, Any]]
UNFINISHED = (RunStatus.STARTED, RunStatus.WAITING, RunStatus.PAUSED)


def policy_of(workflow: Workflow) -> str:
    version = workflow.current_version
    assert version is not None, "only a workflow with a version is matched"
    policy: str = version.definition.get("reenrollment", Policy.EVERY_TIME)
    return policy


def holds(workflow: Workflow) -> bool:
    """Whether a run of this workflow holds its record's place until it ends."""
    return policy_of(workflow) == Policy.NOT_WHILE_RUNNING


# Compiled once per process (compiled_query.py): every dispatch of a workflow that holds its records asks.
_HELD = CompiledQuery(lambda workflows, records: WorkflowRun.objects.filter(
    holds_enrollment=True, workflow_id__in=workflows, trigger_entity_id__in=records).values_list(
    "workflow_id", "trigger_entity_id"), workflows=list[int], records=list[UUID])


def enroll(matched: list[Matched]) -> list[Matched]:
    """Keep the matched (event, workflow, decision, metadata) items that may enroll their
    record; the others get the decision "already enrolled"."""
    once = [Enrollment(workflow=wf, entity_id=event.entity_id, event_id=event.pk)
            for event, wf, _, _ in matched if policy_of(wf) == Policy.ONCE]
    exclusive = [(wf.pk, event.entity_id) for event, wf, _, _ in matched if holds(wf)]
    owners: dict[tuple[int, UUID], int] = {}
    if once:
        # One insert order for every worker (no lock-order deadlocks between two dispatches).
        once.sort(key=lambda row: (row.workflow_id, str(row.entity_id), row.event_id))
        Enrollment.objects.bulk_create(once, ignore_conflicts=True)
        # Two plain IN lists (a superset, filtered here) plan far cheaper than 50 OR'ed pairs.
        owners.update({(w, e): ev for w, e, ev in Enrollment.objects.filter(
            workflow_id__in={r.workflow_id for r in once}, entity_id__in={r.entity_id for r in once},
        ).values_list("workflow_id", "entity_id", "event_id")})
    held: set[tuple[int, UUID]] = set()
    if exclusive:
        held = set(_HELD.rows(workflows=[w for w, _ in exclusive], records=[e for _, e in exclusive]))
    kept = []
    for item in sorted(matched, key=lambda m: m[0].pk):  # a record's earlier event goes first
        event, wf, decision, _ = item
        key = (wf.pk, event.entity_id)
        if holds(wf):
            if key not in held:
                held.add(key)  # a later event of the same record in this batch waits its turn
                kept.append(item)
                continue
        elif owners.get(key, event.pk) == event.pk:
            kept.append(item)
            continue
        refuse(decision, event, wf)
    return kept


def refuse(decision: WorkflowDecision, event: AutomationEvent, workflow: Workflow) -> None:
    """The decision for a record the workflow does not take now."""
    decision.outcome = Outcome.ALREADY_ENROLLED
    if policy_of(workflow) == Policy.ONCE:
        decision.reason = (f"already enrolled: this {event.entity_type} went through the workflow before "
                           "and it enrolls a record only once")
    else:
        decision.reason = (f"already enrolled: this {event.entity_type} still has an unfinished run of "
                           "the workflow (started by an earlier change)")


def insert_runs(items: list[tuple[WorkflowRun, WorkflowDecision]]) -> list[WorkflowRun]:
    """Insert the matched runs, each with its decision. The unique enrollment index may refuse a
    run whose record another worker's run holds (it came first): its decision then says "already
    enrolled". Made runs get their pk (a run is one per event and workflow). Returns the runs
    made, in pk order."""
    bulk_insert([run for run, _ in items], ignore_conflicts=True, match_on=("event_id", "workflow_id", "status"))
    made = []
    for run, decision in items:
        if run.pk is not None:
            made.append(run)
        elif run.holds_enrollment:
            refuse(decision, run.event, run.workflow)
    made.sort(key=lambda run: run.pk)
    lifecycle.runs_started(made)
    return made


def adopt_policy(*, workflow_id: int, policy: str) -> None:
    """Bring a workflow's enrollment rows and runs in line with its new policy."""
    rows = Enrollment.objects.filter(workflow_id=workflow_id)
    runs = WorkflowRun.objects.filter(workflow_id=workflow_id)
    runs.filter(holds_enrollment=True).update(holds_enrollment=False)
    if policy != Policy.ONCE:
        rows.delete()
    if policy == Policy.EVERY_TIME:
        return
    if policy == Policy.NOT_WHILE_RUNNING:
        # The earliest unfinished run of each record holds its place.
        first: dict[UUID, int] = {}
        for pk, entity_id in runs.filter(status__in=UNFINISHED).order_by("pk").values_list("pk", "trigger_entity_id"):
            first.setdefault(entity_id, pk)
        runs.filter(pk__in=first.values()).update(holds_enrollment=True)
        return
    seen: dict[UUID, int] = {}  # once: every record that went through stays enrolled
    for entity_id, event_id in runs.order_by("pk").values_list("trigger_entity_id", "event_id"):
        seen.setdefault(entity_id, event_id)
    Enrollment.objects.bulk_create(
        [Enrollment(workflow_id=workflow_id, entity_id=e, event_id=ev) for e, ev in seen.items()],
        ignore_conflicts=True)
