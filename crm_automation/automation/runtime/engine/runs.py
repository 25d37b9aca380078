"""Deliveries of runs: which runs go together, and for each group the loop of segments (one
transaction each), commits and deliveries, taking turns between organizations (fairness.py);
the end of each segment for each run (park, pause, finish).

Fresh runs of one organization go together, so each kind of action writes the whole group's
effects with one bulk statement; a run delivered before without finishing runs alone, so a run
that crashes or hangs its worker can only take itself down. A segment loads nothing again: it
locks the records the runs act on, advances every run as far as it can go (at most
SEGMENT_ROWS step rows or about SEGMENT_SECONDS of writing, so a loop over thousands of items
commits in pieces), writes the step rows in one statement, then parks, pauses or finishes the
runs, guarded by the lease owner, so a run's status and its workflow's counters move exactly
once however often it is delivered. External effects are delivered between segments, outside
any transaction. A group that raises is retried one run at a time.
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from crm_automation.automation import lifecycle
from crm_automation.automation.definition import context, graph
from crm_automation.automation.models import (
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.nodes.sub_workflow import child_outcome
from crm_automation.automation.ops import paused_run_alerts as alerts
from crm_automation.automation.runtime import fairness, leases, run_log
from crm_automation.automation.runtime.dispatch import Dispatched
from crm_automation.automation.runtime.engine.walk import (
    Place,
    Replay,
    Rows,
    RunState,
    StepRow,
    Walk,
    deliver,
    per_write,
    savepoints,
    step_all,
    without_savepoints,
)
from crm_automation.automation.runtime.queue import enqueue_continue
from crm_automation.bulk_insert import bulk_insert_values
from crm_automation.compiled_query import CompiledQuery, CompiledUpdate
from crm_automation.crm.models import Deal, Lead, Project
from crm_automation.workers import shutdown

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
SEGMENT_SECONDS = 1.0
SUB_WORKFLOW = "sub_workflow"
WRITTEN = ("action_type", "status", "result", "input", "error", "attempts", "position", "started_at", "finished_at")


@dataclass
class Report:
    """What a delivery did: finished runs (with their status), runs handed back unfinished (their
    caller queues a continuation), runs that stepped aside for other organizations (the watchdog
    resumes them)."""

    finished: dict[int, str] = field(default_factory=dict)
    handed_back: list[int] = field(default_factory=list)
    stepped_aside: list[int] = field(default_factory=list)

    def merge(self, other: "Report") -> None:
        self.finished.update(other.finished)
        self.handed_back += other.handed_back
        self.stepped_aside += other.stepped_aside


def execute_runs(run_ids: list[int], *, budget: float | None = None) -> Report:
    """Execute (or resume) runs within a time budget. Groups never started because the budget
    was spent are handed back unclaimed."""
    report = Report()
    for group, stop_at, more_queued, others_queued in _in_turn(plan(run_ids), budget, report.handed_back):
        report.merge(_execute_group(group, stop_at, more_queued, others_queued))
    return report


def execute_leased(dispatched: Dispatched, *, budget: float | None = None) -> Report:
    """Execute the runs a dispatch just made, leased to its token, from what it has in memory:
    no claim, no reading the runs, their records or their (empty) history back. Fresh runs of one
    organization go together, as in `plan`; groups the budget leaves are handed back."""
    report = Report()
    by_org: dict[int, list[WorkflowRun]] = {}
    for run in dispatched.runs:
        by_org.setdefault(run.organization_id, []).append(run)
    left: list[WorkflowRun] = []
    for runs, stop_at, more_queued, others_queued in _in_turn(list(by_org.items()), budget, left):
        report.merge(_run_group(dispatched.token, runs, stop_at, more_queued, others_queued, dispatched=dispatched))
    _hand_back(dispatched.token, [run.pk for run in left], report)
    return report


Item = TypeVar("Item")


def _in_turn(groups: list[tuple[int, list[Item]]], budget: float | None,
             left: list[Item]) -> Iterator[tuple[list[Item], float, bool, bool]]:
    """Each group in turn, with the task's deadline and whether others wait behind it (any, and
    other organizations'), while the budget lasts; the groups it leaves go to `left`."""
    stop_at = time.monotonic() + (budget if budget is not None else settings.AUTOMATION["RUN_TIME_BUDGET"])
    for i, (organization_id, group) in enumerate(groups):
        if shutdown.past(stop_at):
            left += group
            continue
        later = [org for org, _ in groups[i + 1:]]
        yield group, stop_at, bool(later), any(org != organization_id for org in later)


def plan(run_ids: list[int]) -> list[tuple[int, list[int]]]:
    """Groups with their organization: fresh runs of one organization together (so each kind of
    action writes the whole group's effects with one bulk statement); a run delivered before
    without finishing alone, so a run that crashes its worker can only take itself down."""
    rows = (WorkflowRun.objects.filter(pk__in=run_ids, status=RunStatus.STARTED)
            .order_by("pk").values_list("pk", "organization_id", "attempts"))
    by_org: dict[int, list[int]] = {}
    alone = []
    for pk, org_id, attempts in rows:
        if attempts:
            alone.append((org_id, [pk]))
        else:
            by_org.setdefault(org_id, []).append(pk)
    return [*by_org.items(), *alone]


def _execute_group(run_ids: list[int], stop_at: float, more_queued: bool, others_queued: bool) -> Report:
    token, runs = leases.claim_runs(run_ids)
    if not runs:
        return Report()
    return _run_group(token, runs, stop_at, more_queued, others_queued)


def _run_group(token: str, runs: list[WorkflowRun], stop_at: float, more_queued: bool, others_queued: bool,
               dispatched: Dispatched | None = None) -> Report:
    """Advance a leased group (`dispatched`: fresh runs, with what their dispatch loaded); if it
    raises, retry its runs one by one. Shadow-mode runs are walked in the simulation's sandbox."""
    report = Report()
    shadows = [run for run in runs if run.simulated]
    if shadows:
        from crm_automation.automation.services.simulation import shadow_run  # (it imports the engine)

        for run in shadows:
            report.finished[run.pk] = shadow_run(run.pk, token)
        runs = [run for run in runs if not run.simulated]
        if not runs:
            return report
    with leases.heartbeat(token):
        try:
            states = (load_states(runs) if dispatched is None else
                      load_states(runs, records=dispatched.records, slugs=dispatched.slugs, fresh=True))
            _advance_group(runs, states, token, stop_at, report, more_queued, others_queued)
            return report
        except Exception:
            logger.exception("Executing runs %s failed", [r.pk for r in runs])
    unfinished = [r for r in runs if r.pk not in report.finished and r.pk not in report.handed_back
                  and r.pk not in report.stepped_aside]
    if len(runs) == 1:
        leases.back_off(token, [r.pk for r in unfinished], runs[0].attempts)  # retried later, counted
        return report
    # Something in this group broke the whole group: isolate, then retry one by one, so the run
    # that caused it fails alone and the others go on (those the budget leaves, another task).
    WorkflowRun.objects.filter(pk__in=[r.pk for r in unfinished], lease_owner=token).update(
        lease_until=None, lease_owner="")
    for i, run in enumerate(unfinished):
        if shutdown.past(stop_at):
            report.handed_back.append(run.pk)
        else:
            report.merge(_execute_group([run.pk], stop_at, more_queued or i < len(unfinished) - 1, others_queued))
    return report


def _advance_group(runs: list[WorkflowRun], states: list[RunState], token: str, stop_at: float, report: Report,
                   more_queued: bool, others_queued: bool) -> None:
    """Step, commit and deliver until the group's runs are done or must wait, taking turns.
    `more_queued`: other groups of this task wait behind this one; `others_queued`: some of
    them are other organizations'."""
    rows: Rows = {}
    organization_id = runs[0].organization_id
    slice_end = time.monotonic() + fairness.slice_seconds()
    while True:
        try:
            with transaction.atomic(), without_savepoints():
                cut, finished = _segment(states, rows, token)
        except Replay:
            # A write failed and took the segment with it: do the segment again from the rows
            # committed so far, each write in a savepoint of its own, so the one that fails
            # fails alone (as a continuation would resume the runs).
            logger.info("A write of runs %s failed; doing their segment again write by write",
                        [s.run.pk for s in states if not s.finished], exc_info=True)
            rows.clear()
            again = load_states([s.run for s in states if not s.finished])
            for state in again:  # (a step row that failed to write in an earlier segment is not there)
                state.effects_may_exist = True
            states = [*(s for s in states if s.finished), *again]
            with transaction.atomic(), without_savepoints(False):
                cut, finished = _segment(states, rows, token)
        report.finished.update(finished)  # only once committed
        waiting = [s.run.pk for s in states if not s.finished and s.delivering]
        unfinished = [s.run.pk for s in states if not s.finished]
        if not unfinished or not (waiting or cut):
            return
        if time.monotonic() >= slice_end and not (more_queued or fairness.others_waiting(organization_id)):
            slice_end = time.monotonic() + fairness.slice_seconds()  # nobody else waits: another slice
        deadline = min(stop_at, slice_end)
        if waiting and not shutdown.past(deadline) and _give_way(states, organization_id, others_queued):
            leases.step_aside(token, waiting, fairness.step_aside_for())
            report.stepped_aside += waiting
            _hand_back(token, [pk for pk in unfinished if pk not in waiting], report)
            return
        if shutdown.past(deadline) or (waiting and not deliver(Walk(rows), states, deadline)):
            # Out of time or out of turn (a long run's segment ended, or nothing could be sent
            # before the deadline), or nothing could be sent at all: another task continues from
            # the step rows committed so far.
            _hand_back(token, unfinished, report)
            return


def _segment(states: list[RunState], rows: Rows, token: str) -> tuple[bool, dict[int, str]]:
    """One transaction's work (inside it): lock the records, step, write the step rows, finish
    the runs that are done. Returns whether the time cut it short, and the runs that ended."""
    lock_records(states)
    cut = step_all(states, rows, SEGMENT_SECONDS)
    write_rows(rows)
    return cut, finish(states, token)


def _hand_back(token: str, run_ids: list[int], report: Report) -> None:
    if run_ids:
        leases.hand_back(token, run_ids)
        report.handed_back += run_ids


def _give_way(states: list[RunState], organization_id: int, others_queued: bool) -> bool:
    """Another worker already waits on this organization's provider, and other organizations'
    work waits: a second worker there would only make them wait longer (fairness.py)."""
    kinds = set().union(*(state.delivering_kinds() for state in states))
    return fairness.delivering_elsewhere(organization_id, kinds) and (
        others_queued or fairness.others_waiting(organization_id))


# --- One segment --------------------------------------------------------------------------------
def load_states(runs: list[WorkflowRun], *, simulating: bool = False, records: dict[Any, Any] | None = None,
                slugs: dict[int, str] | None = None, fresh: bool = False) -> list[RunState]:
    """Each run's state, rebuilt from its step rows by walking its graph from the trigger.
    `records` and `slugs`: what the caller loaded already (a dispatch); `fresh`: runs made just
    now, with no step rows to read."""
    events = [r.event for r in runs]
    if records is None or any(r.trigger_entity_id not in records for r in runs if context.has_record(
            r.trigger_entity_type) or r.trigger_entity_type == context.EVENT):
        records = context.load_records(events)
    if slugs is None:
        slugs = context.stage_slugs(events)
    history: dict[int, dict[Place, StepRow]] = {}
    if not fresh:
        for run_id, node_id, token, *values in WorkflowRunAction.objects.filter(
                run_id__in=[r.pk for r in runs]).values_list("run_id", "node_id", "token", *StepRow._fields):
            history.setdefault(run_id, {})[(node_id, token)] = StepRow(*values)
    graphs: dict[int, graph.Graph] = {}
    now = time.monotonic()
    states = []
    for run in runs:
        definition = run.version.definition
        if run.version_id not in graphs:
            graphs[run.version_id] = graph.build(definition)
        loaded = records.get(run.trigger_entity_id)
        missing = loaded is None and context.has_record(run.trigger_entity_type)
        ctx = {} if missing else context.full_context(run.event, loaded, context.trigger_dict(run.event, slugs))
        record = context.acted_on(loaded)
        steps = history.get(run.pk, {})
        state = RunState(run=run, definition=definition, graph=graphs[run.version_id], record=record,
                         template_context=ctx, history=steps,
                         next_position=max((r.position for r in steps.values()), default=-1) + 1,
                         deadline=now + definition.get("timeout_seconds", 60), simulating=simulating)
        Walk({}).start(state)
        if run.attempts > MAX_ATTEMPTS:
            # Delivered again and again without finishing (a crash we cannot get past): stop
            # retrying, and say so on every remaining step instead of looping forever.
            state.halted = (f"gave up after {MAX_ATTEMPTS} attempts: the worker stopped each time while "
                            "running this workflow")
        states.append(state)
    return states


_LOCKS = {model: CompiledQuery(lambda ids, model=model: model.objects.select_for_update(no_key=True).filter(
    pk__in=ids).order_by("pk").values_list("pk"), ids=list[UUID]) for model in (Lead, Deal, Project)}


def lock_records(states: list[RunState]) -> None:
    """Lock the deals and leads the unfinished runs act on (in key order: no deadlocks), and
    halt the runs whose record is gone. A user's delete (services.record_delete locks first)
    then waits for this segment instead of colliding with the rows it inserts."""
    active = [(s, s.record) for s in states if not s.done and not s.halted and s.record is not None]
    deal_ids: set[UUID] = set()
    lead_ids: set[UUID] = set()
    project_ids: set[UUID] = set()
    for _, record in active:
        if isinstance(record, Deal):
            deal_ids.add(record.pk)
        elif isinstance(record, Lead):
            lead_ids.add(record.pk)
            if record.converted_deal_id:
                deal_ids.add(record.converted_deal_id)
        elif isinstance(record, Project):
            project_ids.add(record.pk)
    present: set[UUID] = set()
    # The order record_delete locks them in.
    for model, ids in ((Lead, lead_ids), (Deal, deal_ids), (Project, project_ids)):
        if ids:
            present.update(pk for (pk,) in _LOCKS[model].rows(ids=sorted(ids)))
    for state, record in active:
        gone = record.pk not in present or (
            isinstance(record, Lead) and record.converted_deal_id
            and record.converted_deal_id not in present)
        if gone:
            state.halted = f"the {type(record).__name__.lower()} was deleted while the workflow was running"


def write_rows(rows: Rows) -> None:
    """Write the segment's step rows in one INSERT, where a step noted again (an email going
    from running to completed) updates its row in the same statement; the runs' history then
    holds them. Writing them never blocks the work (a savepoint): if it fails, the effects
    still commit and the next delivery walks from the rows that exist."""
    entries = list(rows.values())
    rows.clear()
    if not entries:
        return
    try:
        with per_write():
            pks = bulk_insert_values(WorkflowRunAction, [
                {"run_id": state.run.pk, "node_id": place[0], "token": place[1], **values}
                for state, place, values in entries], unique_fields=["run", "node_id", "token"],
                update_fields=list(WRITTEN))
    except DatabaseError as exc:
        if not savepoints():
            raise Replay from exc
        logger.exception("Could not write run history; the actions themselves are unaffected")
        return
    for pk, (state, place, values) in zip(pks, entries, strict=True):
        state.history[place] = StepRow(pk, values["status"], values["result"], values["error"],
                                       values["attempts"], values["position"], values["started_at"])


# --- The end of a segment ----------------------------------------------------------------------
def final_status(outcomes: list[str], aborted: bool) -> str:
    """completed: every step did its job; partial: some failed and the run went on after them;
    failed: nothing was done, or a failure stopped it."""
    if all(o == StepStatus.COMPLETED for o in outcomes):
        return RunStatus.COMPLETED
    if aborted or StepStatus.COMPLETED not in outcomes or StepStatus.SKIPPED in outcomes:
        return RunStatus.FAILED
    return RunStatus.PARTIAL


def _finished(ids: list[int], token: str, status: str, now: datetime, error: str | None = None) -> Any:
    """The UPDATE that ends a run we hold (guarded by the lease), with or without an error."""
    values = {"status": status, "finished_at": now, "lease_until": None, "wake_at": None,
              "holds_enrollment": False}  # the record may enter the workflow again
    if error is not None:
        values["error"] = error
    return WorkflowRun.objects.filter(pk__in=ids, lease_owner=token, status=RunStatus.STARTED), values


# Compiled once per process (compiled_query.py): every segment that ends a run asks.
_FINISH = CompiledUpdate(_finished, ids=list[int], token=str, status=str, now=datetime)
_FINISH_FAILED = CompiledUpdate(_finished, ids=list[int], token=str, status=str, now=datetime, error=str)
_COUNT = CompiledUpdate(lambda pk, total, ok, failed, now: (Workflow.objects.filter(pk=pk), {
    "run_count": F("run_count") + total, "success_count": F("success_count") + ok,
    "failure_count": F("failure_count") + failed, "last_run_at": now}), pk=int, total=int, ok=int, failed=int,
    now=datetime)


def finish(states: list[RunState], token: str) -> dict[int, str]:
    """Park, pause or finish the runs that are done with this delivery. Returns the final
    status of each run that ended (paused included)."""
    endings: dict[str, list[tuple[RunState, datetime | None]]] = {}
    for state in states:
        kind, wake = state.ending()
        endings.setdefault(kind, []).append((state, wake))
    _park(endings.get("park", []), token)
    paused = _pause([state for state, _ in endings.get("pause", [])], token)
    done = [state for state, _ in endings.get("end", [])]
    if not done:
        return paused
    now = timezone.now()
    by_outcome: dict[tuple[str, str], list[WorkflowRun]] = {}
    for state in done:
        state.finished = True
        run = state.run
        status = final_status(state.outcomes, state.aborted)
        error = "" if status == RunStatus.COMPLETED else (state.failure or state.halted)[:4000]
        # An outage fails many runs with the same words: one UPDATE per (status, error).
        by_outcome.setdefault((status, error), []).append(run)
    # Guarded by the lease: a run whose lease expired and that someone else finished is not ours.
    ids: set[int] = set()
    for (status, error), runs in by_outcome.items():
        ours = [run.pk for run in runs]
        changed = (_FINISH_FAILED.run(ids=ours, token=token, status=status, now=now, error=error) if error
                   else _FINISH.run(ids=ours, token=token, status=status, now=now))
        if changed == len(runs):
            ids.update(ours)
        else:  # (rare) some were not ours any more: those we finished carry our token and this time
            ids.update(WorkflowRun.objects.filter(pk__in=ours, lease_owner=token, status=status, finished_at=now)
                       .values_list("pk", flat=True))
        for run in runs:
            if run.pk in ids:
                run.status, run.finished_at, run.lease_until, run.holds_enrollment = status, now, None, False
                if error:
                    run.error = error
    finished: dict[int, str] = {}
    counters: dict[int, tuple[int, int]] = {}
    suppressed: list[int] = []
    for state in done:
        run = state.run
        if run.pk not in ids:
            continue  # our lease expired and someone else finished it
        finished[run.pk] = run.status
        total, ok = counters.get(run.workflow_id, (0, 0))
        counters[run.workflow_id] = (total + 1, ok + (run.status == RunStatus.COMPLETED))
        if run.history_suppressed:
            suppressed.append(run.pk)
    for workflow_id, (total, ok) in sorted(counters.items()):  # one lock order: no deadlocks
        _COUNT.run(pk=workflow_id, total=total, ok=ok, failed=total - ok, now=now)
    ended = [s.run for s in done if s.run.pk in ids]
    wake_parents(ended)
    run_log.runs_finished(ended)
    lifecycle.runs_ended(ended)
    if suppressed:
        WorkflowRun.objects.filter(pk__in=suppressed).delete()
    return {**paused, **finished}


def _park(parked: list[tuple[RunState, datetime | None]], token: str) -> None:
    """Runs that only wait: `waiting` until their wake-up time (None: a person or a child run
    wakes them), holding no lease; their crash counter starts again when they wake (attempts
    count running work only)."""
    by_wake: dict[datetime | None, list[int]] = {}
    for state, wake in parked:
        state.finished = True
        by_wake.setdefault(wake, []).append(state.run.pk)
    for wake, run_ids in by_wake.items():
        WorkflowRun.objects.filter(pk__in=run_ids, status=RunStatus.STARTED, lease_owner=token).update(
            status=RunStatus.WAITING, wake_at=wake, lease_until=None, lease_owner="", attempts=0)


def _pause(states: list[RunState], token: str) -> dict[int, str]:
    """Runs a failed step paused: `paused` (no lease, not counted as finished) until a person
    retries the step, skips it or cancels the run; the organization's admins are told."""
    if not states:
        return {}
    ids = set(WorkflowRun.objects.select_for_update(no_key=True).filter(
        pk__in=[s.run.pk for s in states], status=RunStatus.STARTED, lease_owner=token).values_list("pk", flat=True))
    paused = []
    for state in states:
        state.finished = True
        if state.run.pk in ids:
            run = state.run
            run.error = state.paused[:4000]
            run.metadata = {**(run.metadata or {}), "pauses": (run.metadata or {}).get("pauses", 0) + 1}
            WorkflowRun.objects.filter(pk=run.pk).update(status=RunStatus.PAUSED, error=run.error, lease_until=None,
                                                         lease_owner="", attempts=0, metadata=run.metadata)
            run.status = RunStatus.PAUSED
            paused.append((run, state.paused))
    alerts.run_paused(paused)
    lifecycle.runs_ended([run for run, _ in paused])
    return {run.pk: RunStatus.PAUSED for run, _ in paused}


def wake_parents(runs: list[WorkflowRun]) -> None:
    """Sub-workflow runs that ended: their outcome goes on the parent's step (a child over the
    plan's quota keeps no history and is removed when it ends) and the parents go on."""
    children = [(r, r.parent_run_id) for r in runs if r.parent_run_id and (r.metadata or {}).get("await", True)]
    parents = sorted({parent_id for _, parent_id in children})
    if not parents:
        return
    waiting = {(row.run_id, (row.result or {}).get("child_run")): row for row in WorkflowRunAction.objects.filter(
        run_id__in=parents, action_type=SUB_WORKFLOW, status=StepStatus.WAITING)}
    for child, parent_id in children:
        row = waiting.get((parent_id, child.pk))
        outcome = child_outcome(child.pk)
        if row is not None and outcome is not None:
            row.result = {**row.result, "child_outcome": list(outcome)}
            row.save(update_fields=["result"])
    WorkflowRun.objects.filter(pk__in=parents, status=RunStatus.WAITING).update(
        status=RunStatus.STARTED, wake_at=timezone.now(), lease_until=None, lease_owner="")
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue(parents))
