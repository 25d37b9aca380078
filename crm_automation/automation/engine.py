"""Worker step 2: execute runs, many at once, durably and idempotently.

Runs claimed together are advanced step by step as a group, so each kind of action writes
the whole group's effects with one bulk statement. The work is cut into transactions
("segments") that end where an external side effect must happen:

1. Claim the runs with a conditional UPDATE that sets a lease (owner token + expiry). A run
   whose live lease belongs to someone else is not ours: skip it.
2. Walk every run's actions of its immutable version. A step whose history says it finished is
   not executed again; on a redelivered run, a step whose effect exists (found by its
   (run, step) key) is recorded from that effect instead of being repeated.
3. Database-only steps commit together with their history rows, so an effect and its record
   can never disagree. History is written in a savepoint: failing to log never undoes or stops
   the work (invariant 7). An external step (email) commits its claimed outbox row, is
   delivered after the commit, and its outcome is recorded in the next segment.
4. Finishing moves started → final and the workflow's counters in one transaction, guarded by
   the lease owner, so counters move exactly once however often a run is delivered.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from crm_automation.automation import context
from crm_automation.automation.actions import REGISTRY, ActionFailed, ExecutionContext
from crm_automation.automation.models import RunStatus, StepStatus, Workflow, WorkflowRun, WorkflowRunAction

logger = logging.getLogger(__name__)
FINISHED_STEPS = {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED}


@dataclass
class RunState:
    run: WorkflowRun
    record: object
    template_context: dict
    deadline: float
    history: dict[int, WorkflowRunAction] = field(default_factory=dict)
    position: int = 0
    outcomes: list[str] = field(default_factory=list)
    halted: str = ""
    external: tuple | None = None  # (position, ctx, result) waiting for delivery after commit
    finished: bool = False

    @property
    def steps(self) -> list[dict]:
        return self.run.version.definition["actions"]

    @property
    def stop_on_error(self) -> bool:
        return self.run.version.definition.get("error_handling") == "stop"


class Segment:
    """History rows written at the end of one transaction."""

    def __init__(self) -> None:
        self.rows: list[tuple[RunState, int, dict]] = []

    def record(self, state: RunState, position: int, status: str, *, result=None, error="",
               ctx: ExecutionContext | None = None, started=None, new_attempt: bool = True) -> None:
        if status in FINISHED_STEPS:
            state.outcomes.append(status)
        if state.run.history_suppressed:
            return
        result = dict(result or {})
        if ctx is not None and ctx.notes:
            result["notes"] = ctx.notes
        previous = state.history.get(position)
        now = timezone.now()
        attempts = (previous.attempts if previous else 0) + (1 if new_attempt or not previous else 0)
        values = {"action_type": state.steps[position]["type"], "status": status, "result": result,
                  "error": error[:4000], "attempts": attempts,
                  "started_at": started or (previous.started_at if previous else now),
                  "finished_at": now if status in FINISHED_STEPS else None}
        self.rows.append((state, position, values))

    def flush(self) -> None:
        """Write this segment's history rows: new ones in one INSERT; a step recorded again
        (an email moving from running to completed) replaces its row (one DELETE, one INSERT)."""
        if not self.rows:
            return
        try:
            with transaction.atomic():
                latest = {(state.run.pk, position): (state, position, values)
                          for state, position, values in self.rows}
                replaced = [state.history[pos].pk for state, pos, _ in latest.values()
                            if pos in state.history and state.history[pos].pk]
                if replaced:
                    WorkflowRunAction.objects.filter(pk__in=replaced).delete()
                rows = [WorkflowRunAction(run=state.run, position=position, **values)
                        for state, position, values in latest.values()]
                WorkflowRunAction.objects.bulk_create(rows)
                for row, (state, position, _) in zip(rows, latest.values(), strict=True):
                    state.history[position] = row
        except DatabaseError:
            logger.exception("Could not write run history; the actions themselves are unaffected")
        self.rows = []


def claim_runs(run_ids: list[int]) -> tuple[str, list[WorkflowRun]]:
    """Lease the runs that are free: unfinished, and never leased or with an expired lease."""
    token = uuid.uuid4().hex
    now = timezone.now()
    lease = timedelta(seconds=settings.AUTOMATION["LEASE_SECONDS"])
    WorkflowRun.objects.filter(pk__in=run_ids, status=RunStatus.STARTED).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    ).update(lease_until=now + lease, lease_owner=token, attempts=F("attempts") + 1)
    runs = list(WorkflowRun.objects.filter(pk__in=run_ids, lease_owner=token, status=RunStatus.STARTED)
                .select_related("version", "event").order_by("pk"))
    return token, runs


def claim_run(run_id: int) -> bool:
    return bool(claim_runs([run_id])[1])


MAX_ATTEMPTS = 5


def _load_states(runs: list[WorkflowRun]) -> list[RunState]:
    events = [r.event for r in runs]
    records = context.load_records(events)
    slugs = context.stage_slugs(events)
    history: dict[int, dict] = {}
    retried = [r.pk for r in runs if r.attempts > 1 and not r.history_suppressed]
    if retried:
        for row in WorkflowRunAction.objects.filter(run_id__in=retried):
            history.setdefault(row.run_id, {})[row.position] = row
    now = time.monotonic()
    states = []
    for run in runs:
        record = records.get(run.trigger_entity_id)
        ctx = {} if record is None else context.full_context(run.event, record, context.trigger_dict(run.event, slugs))
        state = RunState(run=run, record=record, template_context=ctx, history=history.get(run.pk, {}),
                         deadline=now + run.version.definition.get("timeout_seconds", 60))
        if run.attempts > MAX_ATTEMPTS:
            # Delivered again and again without finishing (a crash we cannot get past): stop
            # retrying, and say so on every remaining step instead of looping forever.
            state.halted = f"gave up after {MAX_ATTEMPTS} attempts; the worker kept stopping mid-run"
        states.append(state)
    return states


def _context(state: RunState, position: int) -> ExecutionContext:
    run = state.run
    return ExecutionContext(run_id=run.pk, position=position, organization_id=run.organization_id,
                            trigger_type=run.trigger_type, depth=run.event.depth,
                            template_context=state.template_context, record=state.record)


def _advance(state: RunState, ok: bool) -> None:
    state.position += 1
    if not ok and state.stop_on_error:
        state.halted = f"skipped: action {state.position} failed and the workflow stops on errors"


def _apply_group(action, items: list[tuple[RunState, ExecutionContext, object]], segment: Segment, started):
    """Apply one action for many runs with bulk writes; if that fails, one by one, so a
    single bad item fails its own step and nothing else."""
    try:
        with transaction.atomic():
            results = action.apply([(ctx, prepared) for _, ctx, prepared in items])
        outcomes = [(state, ctx, True, result, "") for (state, ctx, _), result in zip(items, results, strict=True)]
    except Exception:
        outcomes = [_apply_one(action, *item) for item in items]
    for state, ctx, ok, result, error in outcomes:
        if ok and action.external:
            state.external = (state.position, ctx, result)
            segment.record(state, state.position, StepStatus.RUNNING, result=result, ctx=ctx, started=started)
        else:
            segment.record(state, state.position, StepStatus.COMPLETED if ok else StepStatus.FAILED,
                           result=result, error=error, ctx=ctx, started=started)
            _advance(state, ok)


def _apply_one(action, state, ctx, prepared):
    try:
        with transaction.atomic():
            (result,) = action.apply([(ctx, prepared)])
        return state, ctx, True, result, ""
    except ActionFailed as exc:
        return state, ctx, False, {}, str(exc)
    except Exception as exc:  # a bug or an outage: record it on the step, keep the others going
        logger.exception("Action %s of run %s crashed", ctx.position, ctx.run_id)
        return state, ctx, False, {}, f"internal error: {type(exc).__name__}: {exc}"


def _step_all(states: list[RunState], segment: Segment) -> None:
    """Advance every runnable state by one step; repeat until all wait or are done."""
    while True:
        groups: dict[str, list] = {}
        moved = False
        for state in states:
            if state.finished or state.external is not None or state.position >= len(state.steps):
                continue
            position = state.position
            previous = state.history.get(position)
            moved = True
            if previous is not None and previous.status in FINISHED_STEPS:
                state.outcomes.append(previous.status)
                _advance(state, previous.status != StepStatus.FAILED)
                continue
            if not state.halted and state.record is None:
                state.halted = f"the triggering {state.run.trigger_entity_type} no longer exists"
            elif not state.halted and time.monotonic() > state.deadline:
                timeout = state.run.version.definition.get("timeout_seconds")
                state.halted = f"the workflow's timeout of {timeout}s was reached"
            if state.halted:
                segment.record(state, position, StepStatus.SKIPPED, error=state.halted)
                state.position += 1
                continue
            groups.setdefault(state.steps[position]["type"], []).append(state)
        if not moved:
            return
        for action_type, group in groups.items():
            _run_group(REGISTRY[action_type], group, segment)


def _run_group(action, group: list[RunState], segment: Segment) -> None:
    started = timezone.now()
    contexts = {state.run.pk: _context(state, state.position) for state in group}
    retried = [contexts[s.run.pk].key for s in group if s.run.attempts > 1]
    found = action.existing(retried) if retried else {}
    items = []
    for state in group:
        ctx = contexts[state.run.pk]
        if ctx.key in found:
            ok, result, error = True, found[ctx.key], ""
            if action.external:
                ok, result, error = action.settle_existing(result)
            segment.record(state, state.position, StepStatus.COMPLETED if ok else StepStatus.FAILED,
                           result=result, error=error, started=started)
            _advance(state, ok)
            continue
        try:
            items.append((state, ctx, action.prepare(state.steps[state.position].get("config") or {}, ctx)))
        except ActionFailed as exc:
            segment.record(state, state.position, StepStatus.FAILED, error=str(exc), ctx=ctx, started=started)
            _advance(state, False)
    if items:
        _apply_group(action, items, segment, started)


def _deliver(states: list[RunState], segment: Segment) -> None:
    waiting: dict[str, list[RunState]] = {}
    for state in states:
        if state.external is not None:
            waiting.setdefault(state.steps[state.external[0]]["type"], []).append(state)
    for action_type, group in waiting.items():
        action = REGISTRY[action_type]
        outcomes = action.deliver([(s.external[1], s.external[2]) for s in group])
        for state, (ok, result, error) in zip(group, outcomes, strict=True):
            position, ctx, _ = state.external
            state.external = None
            segment.record(state, position, StepStatus.COMPLETED if ok else StepStatus.FAILED,
                           result=result, error=error, ctx=ctx, new_attempt=False)
            _advance(state, ok)


def final_status(outcomes: list[str], stop_on_error: bool) -> str:
    """completed: every step did its job; partial: some failed and the workflow continues on
    errors; failed: nothing was done, or it stopped on an error."""
    if all(o == StepStatus.COMPLETED for o in outcomes):
        return RunStatus.COMPLETED
    if stop_on_error or StepStatus.COMPLETED not in outcomes or StepStatus.SKIPPED in outcomes:
        return RunStatus.FAILED
    return RunStatus.PARTIAL


def _finish(states: list[RunState], token: str) -> dict[int, str]:
    done = [s for s in states if not s.finished and s.external is None and s.position >= len(s.steps)]
    if not done:
        return {}
    ids = list(WorkflowRun.objects.select_for_update().filter(
        pk__in=[s.run.pk for s in done], status=RunStatus.STARTED, lease_owner=token).values_list("pk", flat=True))
    now = timezone.now()
    finished, counters, suppressed, by_status = {}, {}, [], {}
    for state in done:
        state.finished = True
        if state.run.pk not in ids:
            continue  # our lease expired and someone else finished it
        run = state.run
        run.status = final_status(state.outcomes, state.stop_on_error)
        run.finished_at, run.lease_until = now, None
        finished[run.pk] = run.status
        by_status.setdefault(run.status, []).append(run.pk)
        if state.halted and (state.record is None or run.attempts > MAX_ATTEMPTS):
            run.error = state.halted
            WorkflowRun.objects.filter(pk=run.pk).update(error=run.error)
        total, ok = counters.get(run.workflow_id, (0, 0))
        counters[run.workflow_id] = (total + 1, ok + (run.status == RunStatus.COMPLETED))
        if run.history_suppressed:
            suppressed.append(run.pk)
    for status, run_ids in by_status.items():
        WorkflowRun.objects.filter(pk__in=run_ids).update(status=status, finished_at=now, lease_until=None)
    for workflow_id, (total, ok) in sorted(counters.items()):  # one lock order: no deadlocks
        Workflow.objects.filter(pk=workflow_id).update(
            run_count=F("run_count") + total, success_count=F("success_count") + ok,
            failure_count=F("failure_count") + (total - ok), last_run_at=now)
    if suppressed:
        WorkflowRun.objects.filter(pk__in=suppressed).delete()
    return finished


def execute_runs(run_ids: list[int]) -> dict[int, str]:
    """Execute (or resume) runs. Returns {run id: final status} for the runs finished here."""
    token, runs = claim_runs(run_ids)
    if not runs:
        return {}
    states = _load_states(runs)
    segment = Segment()
    finished: dict[int, str] = {}
    while True:
        with transaction.atomic():
            _step_all(states, segment)
            segment.flush()
            finished.update(_finish(states, token))
        if not any(s.external is not None for s in states):
            return finished
        _deliver(states, segment)  # outside any transaction; outcomes are written by the next segment


def execute_run(run_id: int) -> str | None:
    """Execute (or resume) one run. Returns its final status, or None if not ours to run."""
    return execute_runs([run_id]).get(run_id)
