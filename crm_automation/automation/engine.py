"""Worker step 2: execute runs, many at once, durably, idempotently and in isolation.

Runs are executed in groups: the fresh runs of one organization together (so each kind of
action writes the whole group's effects with one bulk statement), and a run that was delivered
before without finishing on its own, so a run that crashes or hangs its worker can only ever
take itself down (invariant 13). Within a group the work is cut into transactions ("segments")
that end where an external side effect must happen:

1. Claim the group's runs with a lease (see leases.py); a heartbeat keeps it while we work.
2. Each segment first locks the records the runs act on, so a record deleted meanwhile fails
   only its own run (and a delete waits for the segment instead of failing at commit).
3. Walk every run's actions of its immutable version. A step whose history says it finished is
   not executed again; for a step not yet finished, an effect that already exists under its
   (run, step) key is recorded instead of being repeated.
4. Database-only steps commit together with their history rows. History is written in a
   savepoint: failing to log never undoes or stops the work (invariant 7). An email is
   committed as a queued outbox row and delivered after the commit, one message at a time.
5. Finishing moves started → final and the workflow's counters in one transaction, guarded by
   the lease owner, so counters move exactly once however often a run is delivered.
6. When the time budget is spent, unfinished runs are handed back (released, not counted as an
   attempt) for another task to continue; when a group raises, its runs are retried one by one.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from crm_automation.automation import context, control, enrollment, leases
from crm_automation.automation.actions import REGISTRY, ActionFailed, ExecutionContext, effect_key
from crm_automation.automation.history import FINISHED_STEPS, Segment
from crm_automation.automation.models import (
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.crm.models import Deal, Lead

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


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
    failure: str = ""  # the first thing that went wrong, in words, for the run's error
    external: tuple | None = None  # (position, ctx, result) waiting for delivery after commit
    finished: bool = False
    off_path: str = ""  # a gate was false: the remaining steps are not on the path (not a failure)
    wait_until: datetime | None = None  # a wait step parks the run until then

    @property
    def steps(self) -> list[dict]:
        return self.run.version.definition["actions"]

    @property
    def stop_on_error(self) -> bool:
        return self.run.version.definition.get("error_handling") == "stop"

    @property
    def done(self) -> bool:
        return self.finished or (self.external is None and self.wait_until is None
                                 and self.position >= len(self.steps))

    @property
    def blocked(self) -> bool:
        """Waiting for a delivery after this segment, or parked by a wait step."""
        return self.external is not None or self.wait_until is not None


@dataclass
class Report:
    finished: dict[int, str] = field(default_factory=dict)
    handed_back: list[int] = field(default_factory=list)

    def merge(self, other: "Report") -> None:
        self.finished.update(other.finished)
        self.handed_back += other.handed_back


def _load_states(runs: list[WorkflowRun]) -> list[RunState]:
    events = [r.event for r in runs]
    records = context.load_records(events)
    slugs = context.stage_slugs(events)
    history: dict[int, dict] = {}
    for row in WorkflowRunAction.objects.filter(run_id__in=[r.pk for r in runs]):
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
            state.halted = (f"gave up after {MAX_ATTEMPTS} attempts: the worker stopped each time while "
                            "running this workflow")
        states.append(state)
    return states


def _lock_records(states: list[RunState]) -> None:
    """Lock the deals and leads the unfinished runs act on (in key order: no deadlocks), and
    halt the runs whose record is gone. A user's delete (services.record_delete locks first)
    then waits for this segment instead of colliding with the rows it inserts."""
    active = [s for s in states if not s.done and not s.halted and s.record is not None]
    deal_ids, lead_ids = set(), set()
    for state in active:
        if isinstance(state.record, Deal):
            deal_ids.add(state.record.pk)
        elif isinstance(state.record, Lead):
            lead_ids.add(state.record.pk)
            if state.record.converted_deal_id:
                deal_ids.add(state.record.converted_deal_id)
    present = set()
    for model, ids in ((Lead, lead_ids), (Deal, deal_ids)):  # the order record_delete locks them in
        if ids:
            present.update(model.objects.select_for_update(no_key=True).filter(pk__in=ids)
                           .order_by("pk").values_list("pk", flat=True))
    for state in active:
        gone = state.record.pk not in present or (
            isinstance(state.record, Lead) and state.record.converted_deal_id
            and state.record.converted_deal_id not in present)
        if gone:
            state.halted = f"the {state.run.trigger_entity_type} was deleted while the workflow was running"


def _context(state: RunState, position: int) -> ExecutionContext:
    run = state.run
    return ExecutionContext(run_id=run.pk, position=position, organization_id=run.organization_id,
                            trigger_type=run.trigger_type, depth=run.event.depth,
                            template_context=state.template_context, record=state.record)


def _advance(state: RunState, ok: bool) -> None:
    state.position += 1
    if not ok and state.stop_on_error:
        state.halted = f"skipped: step {state.position} failed and the workflow stops on errors"


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
    now = timezone.now()  # one clock per pass: runs that wait alike wake alike (one UPDATE parks them)
    while True:
        groups: dict[str, list] = {}
        moved = False
        for state in states:
            if state.done or state.blocked:
                continue
            position = state.position
            previous = state.history.get(position)
            moved = True
            if previous is not None and previous.status in FINISHED_STEPS:
                _read_back(state, position, previous, segment)
                continue
            if state.off_path and not state.halted:
                segment.record(state, position, StepStatus.SKIPPED, error=state.off_path, result={"off_path": True},
                               counts=False)
                state.position += 1
                continue
            if not state.halted and state.record is None:
                state.halted = f"the triggering {state.run.trigger_entity_type} no longer exists"
            elif not state.halted and time.monotonic() > state.deadline:
                timeout = state.run.version.definition.get("timeout_seconds")
                state.halted = f"the workflow's timeout of {timeout}s was reached"
            if state.halted:
                action = REGISTRY.get(state.steps[position]["type"])
                if action is not None:  # a step begun before may have made something: settle it
                    action.cancel(effect_key(state.run.pk, position), state.halted)
                segment.record(state, position, StepStatus.SKIPPED, error=state.halted)
                state.position += 1
                continue
            if control.is_control(state.steps[position]["type"]):
                _control_step(state, position, previous, segment, now)
                continue
            groups.setdefault(state.steps[position]["type"], []).append(state)
        if not moved:
            return
        for action_type, group in groups.items():
            _run_group(REGISTRY[action_type], group, segment)


def _read_back(state: RunState, position: int, previous: WorkflowRunAction, segment: Segment) -> None:
    """A step that finished in an earlier delivery: its outcome is read, never decided again."""
    if previous.status == StepStatus.SKIPPED and (previous.result or {}).get("off_path"):
        state.position += 1
        return
    state.outcomes.append(previous.status)
    if previous.status == StepStatus.FAILED and not state.failure:
        state.failure = segment.failure_text(state, position, previous.error)
    if state.steps[position]["type"] == control.CONDITION and (previous.result or {}).get("passed") is False:
        state.off_path = f"not on the path: {previous.result.get('explanation', 'the condition was false')}"
    _advance(state, previous.status != StepStatus.FAILED)


def _control_step(state: RunState, position: int, previous, segment: Segment, now: datetime) -> None:
    """Run a wait or a gate for one run (no side effect: nothing to batch or to key)."""
    step = state.steps[position]
    config = step.get("config") or {}
    if step["type"] == control.CONDITION:
        outcome = control.gate(config, state.run.trigger_type, state.template_context)
        segment.record(state, position, StepStatus.COMPLETED,
                       result={"passed": outcome.passed, "explanation": outcome.explanation})
        if not outcome.passed:
            state.off_path = f"not on the path: {outcome.explanation}"
        _advance(state, True)
        return
    if previous is not None and previous.status == StepStatus.WAITING:
        wake = datetime.fromisoformat(previous.result["wake_at"])
        if state.run.wake_at is not None:  # woken early on purpose ("go on now"): the run's time wins
            wake = min(wake, state.run.wake_at)
    else:
        try:
            wake = control.wake_time(config, state.template_context, now)
        except ActionFailed as exc:
            segment.record(state, position, StepStatus.FAILED, error=str(exc))
            _advance(state, False)
            return
    if wake <= now:
        segment.record(state, position, StepStatus.COMPLETED, result={"waited_until": wake.isoformat()},
                       new_attempt=previous is None)
        _advance(state, True)
        return
    if previous is None or previous.status != StepStatus.WAITING:
        segment.record(state, position, StepStatus.WAITING, result={"wake_at": wake.isoformat()})
    state.wait_until = wake


def _run_group(action, group: list[RunState], segment: Segment) -> None:
    started = timezone.now()
    contexts = {state.run.pk: _context(state, state.position) for state in group}
    # An effect made by an earlier delivery of the run is reused, never made again. Only a step
    # that may have begun before needs the lookup: one with a history row, or any step of a run
    # that crashed before or keeps no history (over the quota).
    maybe_begun = [contexts[s.run.pk].key for s in group
                   if s.position in s.history or s.run.attempts > 1 or s.run.history_suppressed]
    found = action.existing(maybe_begun) if maybe_begun else {}
    items = []
    for state in group:
        ctx = contexts[state.run.pk]
        if ctx.key in found:
            _settle_found(action, state, ctx, found[ctx.key], segment, started)
            continue
        try:
            items.append((state, ctx, action.prepare(state.steps[state.position].get("config") or {}, ctx)))
        except Exception as exc:  # fails this run's step only; the group goes on
            if not isinstance(exc, ActionFailed):
                logger.exception("Preparing step %s of run %s crashed", state.position, state.run.pk)
            error = str(exc) if isinstance(exc, ActionFailed) else f"internal error: {type(exc).__name__}: {exc}"
            segment.record(state, state.position, StepStatus.FAILED, error=error, ctx=ctx, started=started)
            _advance(state, False)
    if items:
        _apply_group(action, items, segment, started)


def _settle_found(action, state: RunState, ctx, result: dict, segment: Segment, started) -> None:
    if action.external:
        settled = action.settle_existing(result)
        if settled is None:  # made but not yet delivered: deliver it after this segment
            state.external = (state.position, ctx, result)
            return
        ok, result, error = settled
    else:
        ok, result, error = True, {**result, "repeated_delivery": True}, ""
    segment.record(state, state.position, StepStatus.COMPLETED if ok else StepStatus.FAILED,
                   result=result, error=error, started=started)
    _advance(state, ok)


def _deliver(states: list[RunState], segment: Segment, deadline: float) -> int:
    """Outside any transaction: hand waiting messages over, each outcome recorded as it
    happens. Those the deadline leaves unsent keep waiting (their run is handed back).
    Returns how many were settled."""
    settled = 0
    waiting: dict[str, list[RunState]] = {}
    for state in states:
        if state.external is not None:
            waiting.setdefault(state.steps[state.external[0]]["type"], []).append(state)
    for action_type, group in waiting.items():
        outcomes = REGISTRY[action_type].deliver([(s.external[1], s.external[2]) for s in group], deadline)
        for state, outcome in zip(group, outcomes, strict=True):
            if outcome is None:
                continue
            ok, result, error = outcome
            position, ctx, _ = state.external
            state.external = None
            segment.record(state, position, StepStatus.COMPLETED if ok else StepStatus.FAILED,
                           result=result, error=error, ctx=ctx, new_attempt=False)
            _advance(state, ok)
            settled += 1
    return settled


def final_status(outcomes: list[str], stop_on_error: bool) -> str:
    """completed: every step did its job; partial: some failed and the workflow continues on
    errors; failed: nothing was done, or it stopped on an error."""
    if all(o == StepStatus.COMPLETED for o in outcomes):
        return RunStatus.COMPLETED
    if stop_on_error or StepStatus.COMPLETED not in outcomes or StepStatus.SKIPPED in outcomes:
        return RunStatus.FAILED
    return RunStatus.PARTIAL


def _park(states: list[RunState], token: str) -> None:
    """Runs a wait step stopped: `waiting` until their wake-up time, holding no lease; their
    crash counter starts again when they wake (attempts count running work only)."""
    by_wake: dict[datetime, list[int]] = {}
    for state in states:
        if state.wait_until is not None and not state.finished:
            state.finished = True
            by_wake.setdefault(state.wait_until, []).append(state.run.pk)
    for wake, run_ids in by_wake.items():
        WorkflowRun.objects.filter(pk__in=run_ids, status=RunStatus.STARTED, lease_owner=token).update(
            status=RunStatus.WAITING, wake_at=wake, lease_until=None, lease_owner="", attempts=0)


def _finish(states: list[RunState], token: str) -> dict[int, str]:
    _park(states, token)
    done = [s for s in states if not s.finished and s.done]
    if not done:
        return {}
    ids = set(WorkflowRun.objects.select_for_update().filter(
        pk__in=[s.run.pk for s in done], status=RunStatus.STARTED, lease_owner=token).values_list("pk", flat=True))
    now = timezone.now()
    finished, counters, suppressed, by_outcome = {}, {}, [], {}
    for state in done:
        state.finished = True
        if state.run.pk not in ids:
            continue  # our lease expired and someone else finished it
        run = state.run
        run.status = final_status(state.outcomes, state.stop_on_error)
        run.finished_at, run.lease_until = now, None
        finished[run.pk] = run.status
        if run.status != RunStatus.COMPLETED:
            run.error = (state.failure or state.halted)[:4000]
        # An outage fails many runs with the same words: one UPDATE per (status, error).
        by_outcome.setdefault((run.status, run.error if run.status != RunStatus.COMPLETED else ""), []).append(run.pk)
        total, ok = counters.get(run.workflow_id, (0, 0))
        counters[run.workflow_id] = (total + 1, ok + (run.status == RunStatus.COMPLETED))
        if run.history_suppressed:
            suppressed.append(run.pk)
    for (status, error), run_ids in by_outcome.items():
        values = {"status": status, "finished_at": now, "lease_until": None}
        if error:
            values["error"] = error
        WorkflowRun.objects.filter(pk__in=run_ids).update(**values)
    for workflow_id, (total, ok) in sorted(counters.items()):  # one lock order: no deadlocks
        Workflow.objects.filter(pk=workflow_id).update(
            run_count=F("run_count") + total, success_count=F("success_count") + ok,
            failure_count=F("failure_count") + (total - ok), last_run_at=now)
    enrollment.release(runs=[s.run for s in done if s.run.pk in ids])
    if suppressed:
        WorkflowRun.objects.filter(pk__in=suppressed).delete()
    return finished


def _execute_group(run_ids: list[int], stop_at: float) -> Report:
    token, runs = leases.claim_runs(run_ids)
    report = Report()
    if not runs:
        return report
    with leases.heartbeat(token):
        try:
            _advance_group(runs, token, stop_at, report)
            return report
        except Exception:
            logger.exception("Executing runs %s failed", [r.pk for r in runs])
    unfinished = [r for r in runs if r.pk not in report.finished and r.pk not in report.handed_back]
    if len(runs) == 1:
        leases.back_off(token, [r.pk for r in unfinished], runs[0].attempts)  # retried later, counted
        return report
    # Something in this group broke the whole group: isolate, then retry one by one, so the run
    # that caused it fails alone and the others go on (those the budget leaves, another task).
    WorkflowRun.objects.filter(pk__in=[r.pk for r in unfinished], lease_owner=token).update(
        lease_until=None, lease_owner="")
    for run in unfinished:
        if time.monotonic() >= stop_at:
            report.handed_back.append(run.pk)
        else:
            report.merge(_execute_group([run.pk], stop_at))
    return report


def _advance_group(runs: list[WorkflowRun], token: str, stop_at: float, report: Report) -> None:
    states = _load_states(runs)
    segment = Segment()
    while True:
        with transaction.atomic():
            _lock_records(states)
            _step_all(states, segment)
            segment.flush()
            finished = _finish(states, token)
        report.finished.update(finished)  # only once committed
        waiting = [s.run.pk for s in states if s.external is not None]
        if not waiting:
            return
        if time.monotonic() >= stop_at or not _deliver(states, segment, stop_at):
            # Out of time (nothing could be sent before the deadline): another task continues.
            leases.hand_back(token, waiting)
            report.handed_back += waiting
            return


def plan_groups(run_ids: list[int]) -> list[list[int]]:
    """Fresh runs of one organization together; a run delivered before without finishing alone."""
    rows = (WorkflowRun.objects.filter(pk__in=run_ids, status=RunStatus.STARTED)
            .order_by("pk").values_list("pk", "organization_id", "attempts"))
    by_org: dict[int, list[int]] = {}
    alone = []
    for pk, org_id, attempts in rows:
        if attempts:
            alone.append([pk])
        else:
            by_org.setdefault(org_id, []).append(pk)
    return [*by_org.values(), *alone]


def execute_runs(run_ids: list[int], *, budget: float | None = None) -> Report:
    """Execute (or resume) runs within a time budget. Returns what finished and what was
    handed back unfinished (its caller queues a continuation); groups never started because
    the budget was spent are left unclaimed and are in neither list."""
    stop_at = time.monotonic() + (budget if budget is not None else settings.AUTOMATION["RUN_TIME_BUDGET"])
    report = Report()
    groups = plan_groups(run_ids)
    for i, group in enumerate(groups):
        now = time.monotonic()
        if now >= stop_at:
            report.handed_back += group
            continue
        # Other groups wait behind this one: it gets a slice, then hands back what is left.
        last = i == len(groups) - 1
        report.merge(_execute_group(group, stop_at if last else min(stop_at, now + settings.AUTOMATION[
            "GROUP_SLICE_SECONDS"])))
    return report


def execute_run(run_id: int) -> str | None:
    """Execute (or resume) one run. Returns its final status, or None if not ours to run."""
    return execute_runs([run_id]).finished.get(run_id)
