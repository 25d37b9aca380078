"""Worker step 2: execute runs, many at once, durably, idempotently and in isolation.

Runs are executed in groups: the fresh runs of one organization together (so each kind of
action writes the whole group's effects with one bulk statement), and a run that was delivered
before without finishing on its own, so a run that crashes or hangs its worker can only ever
take itself down (invariant 13). Within a group the work is cut into transactions ("segments")
that end where an external side effect must happen, or after SEGMENT_ROWS step rows (about a
second of writing), so that a loop over thousands of items commits in pieces:

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
   Delivering and long runs take turns between organizations (fairness.py): slices between
   segments, and stepping aside when another worker already waits on the same organization's
   provider while others' work waits.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from crm_automation.automation.definition import catalog, context, error_policy, graph
from crm_automation.automation.models import (
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.nodes import REGISTRY, ActionFailed, ExecutionContext, control, effect_key
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.nodes import function as functions
from crm_automation.automation.nodes.base import node_step
from crm_automation.automation.nodes.sub_workflow import child_outcome
from crm_automation.automation.ops import paused_run_alerts as alerts
from crm_automation.automation.runtime import enrollment, fairness, leases, run_log
from crm_automation.automation.runtime.history import FINISHED_STEPS, Segment
from crm_automation.automation.runtime.queue import enqueue_continue
from crm_automation.crm.models import Deal, Lead
from crm_automation.workers import shutdown

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
MAX_STEPS = 5_000  # step rows per run
# One transaction (a segment) writes at most this many step rows, or goes on for about this long:
# a loop over thousands of items is committed in pieces, and between pieces its worker takes turns
# with other organizations (fairness.py) as it does between the messages of a slow provider.
SEGMENT_ROWS = 2_000
SEGMENT_SECONDS = 1.0
FUNCTION = "function"
SUB_WORKFLOW = "sub_workflow"
ROUTER = "router"

Place = tuple[str, str]  # (node id, token): one step row of a run


class StepRow(NamedTuple):
    """A step row as a delivery reads it back: what the walk and history.Segment use of it, as
    plain values (a model instance per row made resuming a run of 5,000 steps five times slower)."""

    pk: int
    status: str
    result: dict
    error: str
    attempts: int
    position: int
    started_at: datetime | None


@dataclass
class RunState:
    """A run being walked. Everything here is rebuilt from the step rows on every delivery by
    walking the graph again from the trigger: finished steps are read back, never decided again
    (a condition's side, a loop's items and a merge are recorded on their rows)."""

    run: WorkflowRun
    graph: graph.Graph
    record: object
    template_context: dict
    deadline: float
    history: dict[Place, StepRow | WorkflowRunAction] = field(default_factory=dict)  # read back, or written
    next_position: int = 0
    frontier: deque = field(default_factory=deque)  # places reached, not yet handled
    queued: set = field(default_factory=set)  # places in the frontier or handed to a group
    seen: set = field(default_factory=set)  # places reached in this delivery: each runs once
    waiting: dict[Place, datetime] = field(default_factory=dict)  # wait steps not over yet
    external: dict[Place, tuple] = field(default_factory=dict)  # (ctx, result) to deliver after commit
    merges: dict[Place, set] = field(default_factory=dict)  # merge nodes waiting: the sources arrived
    loops: dict[Place, int] = field(default_factory=dict)  # loop instances running: current iteration
    loop_items: dict[Place, list] = field(default_factory=dict)
    outputs: dict[str, object] = field(default_factory=dict)  # finished nodes' results, by id and label
    outcomes: list[str] = field(default_factory=list)
    aborted: bool = False  # a step failed under the abort policy
    paused: str = ""  # a step failed under the pause policy: why (the run waits for a person)
    simulating: bool = False  # simulation.py: waits fast-forward, questions assume "approved", nothing is sent
    halted: str = ""
    failure: str = ""  # the first thing that went wrong, in words, for the run's error
    finished: bool = False
    cut: bool = False  # its segment ended early (_step_all): a loop or a merge may still go on

    @property
    def handling(self) -> str:
        """The workflow's error policy (stop | continue | pause), for steps without their own."""
        return self.run.version.definition.get("error_handling", "stop")

    @property
    def live(self) -> bool:
        return bool(self.frontier or self.queued or self.waiting or self.external or self.merges or self.loops)

    @property
    def done(self) -> bool:
        return self.finished or not self.live

    @property
    def parked(self) -> bool:
        """Only waits are left: for time, for an answer, for a sub-workflow."""
        return bool(self.waiting) and not (self.frontier or self.queued or self.external or self.cut)

    @property
    def wait_until(self) -> datetime | None:
        """When a parked run wakes: the earliest time one of its waits ends; None when they all
        wait for something else (an answer, a sub-workflow), which wakes the run itself."""
        if self.parked:
            return min((t for t in self.waiting.values() if t is not None), default=None)
        return None

    def node(self, node_id: str) -> graph.Node:
        return self.graph.nodes[node_id]

    def step(self, place: Place) -> str:
        return node_step(self.run, self.node(place[0]), place[1])

    def context_at(self, place: Place) -> dict:
        """The template values at a place: the trigger's, plus the loop's inside a loop body."""
        loop_id = self.graph.loop_of.get(place[0])
        if loop_id is None or not place[1]:
            return {**self.outputs, **self.template_context} if self.outputs else self.template_context
        instance = (loop_id, graph.parent_token(place[1]))
        index = int(place[1].rpartition(".")[2])
        items = self.loop_items.get(instance) or []
        current = items[index] if index < len(items) else None
        return {**self.outputs, **self.template_context, "loop": {"current": current, "index": index}}

    def step_input(self, place: Place) -> dict:
        """What a step got besides its configuration (in the version): its loop item."""
        loop = self.context_at(place).get("loop") if place[1] else None
        return {"loop": loop} if loop else {}

    def remember(self, place: Place, result: dict) -> None:
        """A node's output, for the templates of the nodes after it ({{Label.field}}, {{node-id}})."""
        node = self.node(place[0])
        output = result.get("output") if node.type in (FUNCTION, SUB_WORKFLOW, *catalog.AI_NODES) else result
        self.outputs[node.id] = output
        self.outputs[(node.label or node.id).casefold()] = output

    def reach(self, place: Place) -> None:
        if place not in self.seen:
            self.seen.add(place)
            self.queued.add(place)
            self.frontier.append(place)


@dataclass
class Report:
    finished: dict[int, str] = field(default_factory=dict)
    handed_back: list[int] = field(default_factory=list)
    stepped_aside: list[int] = field(default_factory=list)  # the watchdog resumes them (fairness.py)

    def merge(self, other: "Report") -> None:
        self.finished.update(other.finished)
        self.handed_back += other.handed_back
        self.stepped_aside += other.stepped_aside


def _load_states(runs: list[WorkflowRun]) -> list[RunState]:
    events = [r.event for r in runs]
    records = context.load_records(events)
    slugs = context.stage_slugs(events)
    history: dict[int, dict] = {}
    for run_id, node_id, token, *values in WorkflowRunAction.objects.filter(
            run_id__in=[r.pk for r in runs]).values_list("run_id", "node_id", "token", *StepRow._fields):
        history.setdefault(run_id, {})[(node_id, token)] = StepRow(*values)
    graphs: dict[int, graph.Graph] = {}
    now = time.monotonic()
    states = []
    for run in runs:
        if run.version_id not in graphs:
            graphs[run.version_id] = graph.build(run.version.definition)
        record = records.get(run.trigger_entity_id)
        missing = record is None and context.has_record(run.trigger_entity_type)
        ctx = {} if missing else context.full_context(run.event, record, context.trigger_dict(run.event, slugs))
        rows = history.get(run.pk, {})
        state = RunState(run=run, graph=graphs[run.version_id], record=record, template_context=ctx, history=rows,
                         next_position=max((r.position for r in rows.values()), default=-1) + 1,
                         deadline=now + run.version.definition.get("timeout_seconds", 60))
        _follow(state, (state.graph.trigger, ""), None)
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


def _context(state: RunState, place: Place) -> ExecutionContext:
    run = state.run
    return ExecutionContext(run_id=run.pk, step=state.step(place), organization_id=run.organization_id,
                            trigger_type=run.trigger_type, depth=run.event.depth,
                            template_context=state.context_at(place), record=state.record)


# --- Walking the graph --------------------------------------------------------------------------
def _follow(state: RunState, place: Place, handles: set[str] | None) -> None:
    """A step finished: reach the nodes after it (through `handles`; None: its one way out)."""
    node_id, token = place
    for handle, target in state.graph.targets(node_id, handles if handles is not None else {""}):
        if state.graph.ends_iteration(node_id, target):
            continue  # back to the loop node: this path of the iteration is over
        next_token = token
        if handle == graph.DONE:
            next_token = token  # the loop node's own token: the loop is behind us
        target_place = (target, next_token)
        if target_place in state.seen:
            continue  # a node runs once per token: the first arrival wins
        if state.node(target).type == control.MERGE and target_place not in state.history:
            state.merges.setdefault(target_place, set()).add(node_id)
            if (state.node(target).config.get("strategy") == "first"
                    or state.merges[target_place] >= set(state.graph.incoming.get(target, []))):
                state.reach(target_place)
            continue
        state.reach(target_place)


def _finished_step(state: RunState, place: Place, result: dict | None = None) -> None:
    """After a step that did its job: go on (a router: by the route it chose)."""
    if state.node(place[0]).type == ROUTER:
        _follow(state, place, {(result or {}).get("handle")})
    else:
        _follow(state, place, None)


def _fail(state: RunState, place: Place, error: str, segment: Segment, *, result: dict | None = None,
          ctx=None, started=None, new_attempt: bool = True, made_effect: bool = False) -> None:
    """A step failed: apply its error policy (error_policy.py) and record what was decided.
    `made_effect`: the step's effect exists (an email the provider refused): a retry first asks
    the action to make it ready again, which it refuses when that could repeat it."""
    node = state.node(place[0])
    previous = state.history.get(place)
    attempt = (previous.attempts if previous else 0) + (1 if new_attempt or previous is None else 0)
    retrying = (node.on_error or {}).get("policy") == "retry"
    safe = True
    if retrying and made_effect and REGISTRY.get(node.type) is not None:
        safe = REGISTRY[node.type].retry(effect_key(state.run.pk, state.step(place)))
    decision = error_policy.decide(node.on_error, state.handling, attempt=attempt, retry_safe=safe,
                                   now=timezone.now(), simulating=state.simulating)
    info = {**(result or {}), "policy": decision.policy}
    if not state.simulating:
        run_log.step_failed(state.run, node_id=place[0], action_type=node.type, attempt=attempt,
                            policy=decision.policy, error=error)
    if decision.note:
        info["decided"] = decision.note
    state.queued.discard(place)
    if decision.policy == "retry":
        info["retry_at"] = decision.retry_at.isoformat()
        segment.record(state, place, StepStatus.WAITING, result=info, error=error, ctx=ctx, started=started,
                       new_attempt=new_attempt)
        state.waiting[place] = decision.retry_at
        return
    segment.record(state, place, StepStatus.FAILED, result=info, error=error, ctx=ctx, started=started,
                   new_attempt=new_attempt)
    _after_failure(state, place, decision.policy, segment.failure_text(state, place, error))


def _after_failure(state: RunState, place: Place, policy: str, failure: str) -> None:
    """`failure`: this step's failure in words. A pause names the step that paused the run, not
    the run's first failure (an earlier step may have failed and been skipped)."""
    node = state.node(place[0])
    if policy == "skip":
        _follow(state, place, {graph.DONE} if node.type == control.LOOP else None)
    elif policy == "pause":
        state.paused = state.paused or failure
    else:
        state.aborted = True
        if not state.halted:
            state.halted = f"skipped: step {node.index + 1} failed and the workflow stops on errors"
        _follow(state, place, None)


def _walk(state: RunState, segment: Segment, now: datetime, groups: dict[str, list]) -> bool:
    """Handle the run's reached places: read back finished steps, run control steps, and hand
    action steps to `groups` (run together with other runs' steps of the same kind)."""
    moved = False
    while state.frontier:
        place = state.frontier.popleft()
        moved = True
        previous = state.history.get(place)
        node = state.node(place[0])
        if previous is not None and previous.status in FINISHED_STEPS:
            state.queued.discard(place)
            _read_back(state, place, previous, segment)
            continue
        if not state.halted and state.record is None and context.has_record(state.run.trigger_entity_type):
            state.halted = f"the triggering {state.run.trigger_entity_type} no longer exists"
        elif not state.halted and time.monotonic() > state.deadline:
            timeout = state.run.version.definition.get("timeout_seconds")
            state.halted = f"the workflow's timeout of {timeout}s was reached"
        elif not state.halted and previous is None and state.next_position >= MAX_STEPS:
            # Loops in loops could ask for a million steps: a run stops at a size a person can read.
            state.halted = f"the run reached its limit of {MAX_STEPS:,} steps"
        if state.halted:
            state.queued.discard(place)
            _skip(state, place, segment)
            continue
        if control.is_control(node.type) or node.type in (FUNCTION, questions.USER_INPUT):
            state.queued.discard(place)
            _control_step(state, place, previous, segment, now)
            continue
        if node.type == SUB_WORKFLOW and previous is not None and previous.status == StepStatus.WAITING \
                and "child_run" in (previous.result or {}):
            state.queued.discard(place)
            _child_step(state, place, previous, segment)
            continue
        if previous is not None and previous.status == StepStatus.WAITING:
            retry_at = _due(state, previous, datetime.fromisoformat(previous.result["retry_at"]))
            if retry_at > now:  # its next try is later: the run waits for it
                state.queued.discard(place)
                state.waiting[place] = retry_at
                continue
            state.waiting.pop(place, None)
            # A new try begins (counted once however many rows this segment writes for it).
            segment.record(state, place, StepStatus.RUNNING, result=previous.result, error=previous.error)
        groups.setdefault(node.type, []).append((state, place))
    if state.paused:
        # A person decides how this run goes on: what is under way elsewhere in it is picked up
        # again when it resumes (deliveries already handed over finish first).
        for pending in (state.frontier, state.queued, state.waiting, state.merges, state.loops):
            pending.clear()
    elif state.halted and state.live:
        _halt_rest(state, segment)
    return moved


def _child_step(state: RunState, place: Place, previous, segment: Segment) -> None:
    """A sub-workflow this run waits for: go on when its run has finished (it wakes us)."""
    recorded = previous.result.get("child_outcome")  # written when the child ended
    outcome = tuple(recorded) if recorded else child_outcome(previous.result["child_run"])
    if outcome is None:
        state.waiting[place] = None
        return
    status, output = outcome
    result = {**previous.result, "output": output}
    if status in (RunStatus.COMPLETED, RunStatus.PARTIAL):
        segment.record(state, place, StepStatus.COMPLETED, result=result, new_attempt=False)
        _finished_step(state, place)
    else:
        _fail(state, place, f"its run #{output['run']} {status}: {output.get('error') or 'no reason given'}",
              segment, result=result, new_attempt=False)


def _made(state: RunState, place: Place, result: dict, segment: Segment, **record) -> None:
    """A step's effect was made: it is done, unless it is a sub-workflow this run waits for."""
    state.queued.discard(place)
    if state.node(place[0]).type == SUB_WORKFLOW and state.simulating:  # not started: say so downstream
        result = {**result, "output": {"status": "not started (simulation)", "outputs": {}}}
    elif state.node(place[0]).type == SUB_WORKFLOW and result.get("await"):
        segment.record(state, place, StepStatus.WAITING, result=result, **record)
        state.waiting[place] = None
        return
    segment.record(state, place, StepStatus.COMPLETED, result=result, **record)
    _finished_step(state, place, result)


def _due(state: RunState, previous, at: datetime | None) -> datetime | None:
    """When a waiting step is due: its time, or earlier if a person said "go on now" after it began."""
    if at is None:
        return None  # it waits for a person or a sub-workflow, not for time
    woken = (state.run.metadata or {}).get("woken_at")
    if woken and previous.started_at and datetime.fromisoformat(woken) >= previous.started_at:
        return min(at, datetime.fromisoformat(woken))
    return at


def _skip(state: RunState, place: Place, segment: Segment) -> None:
    action = REGISTRY.get(state.node(place[0]).type)
    if action is not None:  # a step begun before may have made something: settle it
        action.cancel(effect_key(state.run.pk, state.step(place)), state.halted)
    segment.record(state, place, StepStatus.SKIPPED, error=state.halted)
    # What comes after it is not reached either: say so on those steps too (one level of a
    # loop: its body is not entered).
    for handle, target in state.graph.targets(place[0]):
        after = (target, place[1])
        if handle == graph.BODY or state.graph.ends_iteration(place[0], target):
            continue
        if after not in state.history and not segment.has(state, after):
            _skip(state, after, segment)


def _halt_rest(state: RunState, segment: Segment) -> None:
    """The run stops: every step under way or waiting is skipped with the reason."""
    places = list(dict.fromkeys([*state.frontier, *state.queued, *state.waiting, *state.external,
                                 *state.merges, *state.loops]))
    state.frontier.clear()
    state.queued.clear()
    state.waiting.clear()
    state.external.clear()
    state.merges.clear()
    state.loops.clear()
    for place in places:
        previous = state.history.get(place)
        if (previous is None or previous.status not in FINISHED_STEPS) and not segment.has(state, place,
                                                                                               finished=True):
            _skip(state, place, segment)


def _read_back(state: RunState, place: Place, previous: StepRow | WorkflowRunAction, segment: Segment) -> None:
    """A step that finished in an earlier delivery: its outcome is read, never decided again."""
    result = previous.result or {}
    node = state.node(place[0])
    if previous.status == StepStatus.SKIPPED:
        if result.get("continued"):  # a person skipped the failed step and let the run go on
            state.outcomes.append(StepStatus.FAILED)
            state.failure = state.failure or segment.failure_text(state, place, previous.error)
            _follow(state, place, {graph.DONE} if node.type == control.LOOP else None)
        elif not result.get("off_path"):
            state.outcomes.append(previous.status)
        return  # nothing after a skipped step runs
    state.outcomes.append(previous.status)
    if previous.status == StepStatus.COMPLETED:
        state.remember(place, result)
    if previous.status == StepStatus.FAILED:
        if not state.failure:
            state.failure = segment.failure_text(state, place, previous.error)
        policy = result.get("policy") or error_policy.WORKFLOW_POLICY.get(state.handling, "abort")
        _after_failure(state, place, policy, segment.failure_text(state, place, previous.error))
        return
    if node.type == control.CONDITION:
        _follow(state, place, {graph.TRUE if result.get("passed") else graph.FALSE})
    elif node.type == control.PARALLEL:
        _follow(state, place, {h for h, _ in state.graph.targets(place[0])})
    elif node.type == control.LOOP:
        state.loop_items[place] = result.get("items") or []
        _follow(state, place, {graph.DONE})
    else:
        _finished_step(state, place, result)


def _control_step(state: RunState, place: Place, previous, segment: Segment, now: datetime) -> None:
    """Run a control step for one run: no side effect, nothing to batch or to key."""
    node = state.node(place[0])
    config = node.config
    if node.type == control.CONDITION:
        outcome = control.gate(config, state.run.trigger_type, state.context_at(place))
        segment.record(state, place, StepStatus.COMPLETED,
                       result={"passed": outcome.passed, "explanation": outcome.explanation,
                               "handle": graph.TRUE if outcome.passed else graph.FALSE})
        _follow(state, place, {graph.TRUE if outcome.passed else graph.FALSE})
    elif node.type == control.PARALLEL:
        branches = sorted({h for h, _ in state.graph.targets(node.id)})
        segment.record(state, place, StepStatus.COMPLETED, result={"branches": branches})
        _follow(state, place, set(branches))
    elif node.type == control.MERGE:
        arrived = sorted(state.merges.pop(place, set()))
        segment.record(state, place, StepStatus.COMPLETED,
                       result={"arrived_from": arrived, "strategy": config.get("strategy", "wait-all")})
        _follow(state, place, None)
    elif node.type == control.LOOP:
        _start_loop(state, place, previous, segment)
    elif node.type == FUNCTION:
        _function_step(state, place, segment)
    elif node.type == questions.USER_INPUT:
        _question_step(state, place, previous, segment, now)
    else:
        _wait_step(state, place, previous, segment, now)


def _function_step(state: RunState, place: Place, segment: Segment) -> None:
    """An allow-listed function (a query, a date or number helper): it only reads, so a
    redelivery may call it again; its output is recorded and read back from then on."""
    started = timezone.now()
    try:
        output = functions.call(state.node(place[0]).config, organization_id=state.run.organization_id,
                                context=state.context_at(place))
    except ActionFailed as exc:
        _fail(state, place, str(exc), segment, started=started)
        return
    segment.record(state, place, StepStatus.COMPLETED, result={"output": output}, started=started)
    _finished_step(state, place)


def _question_step(state: RunState, place: Place, previous, segment: Segment, now: datetime) -> None:
    """Ask a person (questions.py): the run waits, holding nothing, until a permitted user
    answers in the admin (which wakes it) or the question times out."""
    if previous is None or previous.status != StepStatus.WAITING:
        asked = questions.ask(state.node(place[0]).config, state.context_at(place), now)
        if state.simulating:  # nobody is asked: the approved side is shown
            segment.record(state, place, StepStatus.COMPLETED,
                           result={**asked, "decision": questions.APPROVED, "simulated": "assumed approved",
                                   "answered_by": "(simulation)", "comment": "(simulated answer)"})
            _follow(state, place, {questions.APPROVED})
            return
        segment.record(state, place, StepStatus.WAITING, result=asked)
        alerts.question_asked(state.run, place, asked)
        state.waiting[place] = questions.deadline(asked)
        return
    decision = questions.decision(previous.result, _due(state, previous, questions.deadline(previous.result)), now)
    if decision is None:
        state.waiting[place] = questions.deadline(previous.result)
        return
    state.waiting.pop(place, None)
    segment.record(state, place, StepStatus.COMPLETED, result={**previous.result, "decision": decision},
                   new_attempt=False)
    if decision == questions.TIMED_OUT:  # (an answer settled its notifications when it was given)
        alerts.question_settled(state.run.pk, place[0], place[1], "no answer came in time; the run went on "
                                                                  "without one.")
    _follow(state, place, {decision})


def _start_loop(state: RunState, place: Place, previous, segment: Segment) -> None:
    if previous is not None and previous.status == StepStatus.RUNNING:
        items = (previous.result or {}).get("items") or []  # begun before: the same items
    else:
        try:
            items = control.loop_items(state.node(place[0]).config, state.context_at(place))
        except ActionFailed as exc:
            _fail(state, place, str(exc), segment)
            return
        segment.record(state, place, StepStatus.RUNNING, result={"items": items, "count": len(items)},
                       counts=False)
    state.loop_items[place] = items
    if not items:
        _end_loop(state, place, segment)
        return
    state.loops[place] = 0
    _start_iteration(state, place, 0)


def _start_iteration(state: RunState, place: Place, index: int) -> None:
    token = graph.child_token(place[1], index)
    for _, target in state.graph.targets(place[0], {graph.BODY}):
        state.reach((target, token))


def _end_loop(state: RunState, place: Place, segment: Segment) -> None:
    state.loops.pop(place, None)
    items = state.loop_items.get(place) or []
    segment.record(state, place, StepStatus.COMPLETED, result={"items": items, "count": len(items)},
                   new_attempt=False)
    _follow(state, place, {graph.DONE})


def _busy_within(state: RunState, token: str, *, merges: bool = True) -> bool:
    """Whether work at or below `token` (an iteration, or "" for the whole run) is under way.
    Merges waiting are passive (they go on only when something arrives): a merge does not
    wait for another merge."""
    places = [*state.frontier, *state.queued, *state.waiting, *state.external, *state.loops]
    if merges:
        places += list(state.merges)
    return any(graph.within(t, token) for _, t in places)


def _settle(state: RunState, segment: Segment) -> bool:
    """When a run's reached steps are all handled: let merges whose other branches will not come
    go on, and start a loop's next iteration (or what follows the loop) once one is over."""
    if state.done or state.halted:
        return False
    for place in sorted(state.merges, key=lambda p: -len(p[1])):
        if not _busy_within(state, place[1], merges=False):
            state.reach(place)  # wait-all, but nothing else can arrive: go on with what came
            return True
    for place, index in sorted(state.loops.items(), key=lambda item: -len(item[0][1])):
        if _busy_within(state, graph.child_token(place[1], index)):
            continue
        if index + 1 < len(state.loop_items.get(place) or []):
            state.loops[place] = index + 1
            _start_iteration(state, place, index + 1)
        else:
            _end_loop(state, place, segment)
        return True
    return False


def _wait_step(state: RunState, place: Place, previous, segment: Segment, now: datetime) -> None:
    config = state.node(place[0]).config
    if previous is not None and previous.status == StepStatus.WAITING:
        wake = _due(state, previous, datetime.fromisoformat(previous.result["wake_at"]))
    else:
        try:
            wake = control.wake_time(config, state.context_at(place), now)
        except ActionFailed as exc:
            _fail(state, place, str(exc), segment)
            return
    if state.simulating and wake > now:  # fast-forwarded: the time it would wait is shown
        segment.record(state, place, StepStatus.COMPLETED, result={"would_wait_until": wake.isoformat()})
        _finished_step(state, place)
        return
    if wake <= now:
        state.waiting.pop(place, None)
        segment.record(state, place, StepStatus.COMPLETED, result={"waited_until": wake.isoformat()},
                       new_attempt=previous is None)
        _finished_step(state, place)
        return
    if previous is None or previous.status != StepStatus.WAITING:
        segment.record(state, place, StepStatus.WAITING, result={"wake_at": wake.isoformat()})
    state.waiting[place] = wake


def _apply_group(action, items: list[tuple[RunState, Place, ExecutionContext, object]], segment: Segment,
                 started):
    """Apply one action for many runs with bulk writes; if that fails, one by one, so a
    single bad item fails its own step and nothing else."""
    try:
        with transaction.atomic():
            results = action.apply([(ctx, prepared) for _, _, ctx, prepared in items])
        outcomes = [(state, place, ctx, True, result, "")
                    for (state, place, ctx, _), result in zip(items, results, strict=True)]
    except Exception:
        outcomes = [_apply_one(action, *item) for item in items]
    for state, place, ctx, ok, result, error in outcomes:
        if ok and action.external:
            state.external[place] = (ctx, result)
            segment.record(state, place, StepStatus.RUNNING, result=result, ctx=ctx, started=started)
        elif ok:
            _made(state, place, result, segment, ctx=ctx, started=started)
        else:
            _fail(state, place, error, segment, result=result, ctx=ctx, started=started)


def _apply_one(action, state, place, ctx, prepared):
    try:
        with transaction.atomic():
            (result,) = action.apply([(ctx, prepared)])
        return state, place, ctx, True, result, ""
    except ActionFailed as exc:
        return state, place, ctx, False, {}, str(exc)
    except Exception as exc:  # a bug or an outage: record it on the step, keep the others going
        logger.exception("Step %s of run %s crashed", ctx.step, ctx.run_id)
        return state, place, ctx, False, {}, f"internal error: {type(exc).__name__}: {exc}"


def _step_all(states: list[RunState], segment: Segment, seconds: float | None = None) -> bool:
    """Advance every run as far as it can go in this segment: until each one is done, waits
    for a delivery after the commit, or waits for time to pass. With `seconds`, the segment
    also ends once it has written SEGMENT_ROWS step rows or has been writing for `seconds`
    (reading finished steps back does not count: every segment makes progress): a run of
    thousands of steps is committed in pieces, so no transaction holds its records' locks for
    long and its worker can take turns between pieces (_advance_group). Returns True when it
    stopped early with work left."""
    now = timezone.now()  # one clock per pass: runs that wait alike wake alike (one UPDATE parks them)
    writing_since = None
    for state in states:
        state.cut = False
    while True:
        if seconds is not None and segment.rows:
            writing_since = writing_since or time.monotonic()
            if len(segment.rows) >= SEGMENT_ROWS or time.monotonic() - writing_since >= seconds:
                # Between passes every action group has run: what is left is in the runs'
                # frontiers (and loops, merges), which the next segment walks on from, or which
                # a new delivery rebuilds from the step rows this segment commits. A run whose
                # only other work is a wait is not parked yet: its loop may have iterations left.
                for state in states:
                    state.cut = not state.finished
                return True
        groups: dict[str, list] = {}
        moved = False
        for state in states:
            if not state.finished:
                moved |= _walk(state, segment, now, groups)
        for action_type, group in groups.items():
            _run_group(REGISTRY[action_type], group, segment)
        if groups or moved:
            continue
        if not any([_settle(state, segment) for state in states if not state.finished]):
            return False


def _run_group(action, group: list[tuple[RunState, Place]], segment: Segment) -> None:
    group = [(s, p) for s, p in group if p in s.queued]  # not those of a run halted meanwhile
    if not group:
        return
    started = timezone.now()
    contexts = {(state.run.pk, place): _context(state, place) for state, place in group}
    # An effect made by an earlier delivery of the run is reused, never made again. Only a step
    # that may have begun before needs the lookup: one with a history row, or any step of a run
    # that crashed before or keeps no history (over the quota).
    maybe_begun = [contexts[(s.run.pk, p)].key for s, p in group
                   if p in s.history or s.run.attempts > 1 or s.run.history_suppressed]
    found = action.existing(maybe_begun) if maybe_begun else {}
    items = []
    for state, place in group:
        ctx = contexts[(state.run.pk, place)]
        if ctx.key in found:
            _settle_found(action, state, place, ctx, found[ctx.key], segment, started)
            continue
        try:
            items.append((state, place, ctx, action.prepare(state.node(place[0]).config, ctx)))
        except Exception as exc:  # fails this run's step only; the group goes on
            if not isinstance(exc, ActionFailed):
                logger.exception("Preparing step %s of run %s crashed", ctx.step, state.run.pk)
            error = str(exc) if isinstance(exc, ActionFailed) else f"internal error: {type(exc).__name__}: {exc}"
            _fail(state, place, error, segment, ctx=ctx, started=started)
    if items:
        _apply_group(action, items, segment, started)


def _settle_found(action, state: RunState, place: Place, ctx, result: dict, segment: Segment, started) -> None:
    if action.external:
        settled = action.settle_existing(result)
        if settled is None:  # made but not yet delivered: deliver it after this segment
            state.external[place] = (ctx, result)
            return
        ok, result, error = settled
    else:
        ok, result, error = True, {**result, "repeated_delivery": True}, ""
    if not ok:
        _fail(state, place, error, segment, result=result, started=started, made_effect=True)
        return
    _made(state, place, result, segment, started=started)


def _deliver(states: list[RunState], segment: Segment, deadline: float) -> int:
    """Outside any transaction: hand waiting messages over, each outcome recorded as it
    happens. Those the deadline leaves unsent keep waiting (their run is handed back).
    Returns how many were settled."""
    settled = 0
    waiting: dict[str, list[tuple[RunState, Place]]] = {}
    for state in states:
        for place in state.external:
            waiting.setdefault(state.node(place[0]).type, []).append((state, place))
    for action_type, group in waiting.items():
        outcomes = REGISTRY[action_type].deliver([s.external[p] for s, p in group], deadline)
        for (state, place), outcome in zip(group, outcomes, strict=True):
            if outcome is None:
                continue
            ok, result, error = outcome
            ctx, _ = state.external.pop(place)
            if ok:
                state.queued.discard(place)
                segment.record(state, place, StepStatus.COMPLETED, result=result, ctx=ctx, new_attempt=False)
                _finished_step(state, place, result)
            else:
                _fail(state, place, error, segment, result=result, ctx=ctx, new_attempt=False, made_effect=True)
            settled += 1
    return settled


def final_status(outcomes: list[str], aborted: bool) -> str:
    """completed: every step did its job; partial: some failed and the run went on after them;
    failed: nothing was done, or a failure stopped it."""
    if all(o == StepStatus.COMPLETED for o in outcomes):
        return RunStatus.COMPLETED
    if aborted or StepStatus.COMPLETED not in outcomes or StepStatus.SKIPPED in outcomes:
        return RunStatus.FAILED
    return RunStatus.PARTIAL


def _park(states: list[RunState], token: str) -> None:
    """Runs that only wait for time: `waiting` until their wake-up time, holding no lease; their
    crash counter starts again when they wake (attempts count running work only)."""
    by_wake: dict[datetime | None, list[int]] = {}
    for state in states:
        wake = state.wait_until
        if state.parked and not state.finished and not state.halted and not state.paused:
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
    ids = set(WorkflowRun.objects.select_for_update().filter(
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
            paused.append((run, state.paused))
    alerts.run_paused(paused)
    return {run.pk: RunStatus.PAUSED for run, _ in paused}


def wake_parents(runs: list[WorkflowRun]) -> None:
    """Sub-workflow runs that ended: their outcome goes on the parent's step (a child over the
    plan's quota keeps no history and is removed when it ends) and the parents go on."""
    children = [r for r in runs if r.parent_run_id and (r.metadata or {}).get("await", True)]
    parents = sorted({r.parent_run_id for r in children})
    if not parents:
        return
    waiting = {(row.run_id, (row.result or {}).get("child_run")): row for row in WorkflowRunAction.objects.filter(
        run_id__in=parents, action_type=SUB_WORKFLOW, status=StepStatus.WAITING)}
    for child in children:
        row = waiting.get((child.parent_run_id, child.pk))
        outcome = child_outcome(child.pk)
        if row is not None and outcome is not None:
            row.result = {**row.result, "child_outcome": list(outcome)}
            row.save(update_fields=["result"])
    WorkflowRun.objects.filter(pk__in=parents, status=RunStatus.WAITING).update(
        status=RunStatus.STARTED, wake_at=timezone.now(), lease_until=None, lease_owner="")
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue(parents))


def _finish(states: list[RunState], token: str) -> dict[int, str]:
    _park(states, token)
    paused = _pause([s for s in states if not s.finished and s.done and s.paused], token)
    done = [s for s in states if not s.finished and s.done]
    if not done:
        return paused
    ids = set(WorkflowRun.objects.select_for_update().filter(
        pk__in=[s.run.pk for s in done], status=RunStatus.STARTED, lease_owner=token).values_list("pk", flat=True))
    now = timezone.now()
    finished, counters, suppressed, by_outcome = {}, {}, [], {}
    for state in done:
        state.finished = True
        if state.run.pk not in ids:
            continue  # our lease expired and someone else finished it
        run = state.run
        run.status = final_status(state.outcomes, state.aborted)
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
        values = {"status": status, "finished_at": now, "lease_until": None, "wake_at": None}
        if error:
            values["error"] = error
        WorkflowRun.objects.filter(pk__in=run_ids).update(**values)
    for workflow_id, (total, ok) in sorted(counters.items()):  # one lock order: no deadlocks
        Workflow.objects.filter(pk=workflow_id).update(
            run_count=F("run_count") + total, success_count=F("success_count") + ok,
            failure_count=F("failure_count") + (total - ok), last_run_at=now)
    enrollment.release(runs=[s.run for s in done if s.run.pk in ids])
    wake_parents([s.run for s in done if s.run.pk in ids])
    run_log.runs_finished([s.run for s in done if s.run.pk in ids])
    if suppressed:
        WorkflowRun.objects.filter(pk__in=suppressed).delete()
    return {**paused, **finished}


def _execute_group(run_ids: list[int], stop_at: float, more_queued: bool, others_queued: bool) -> Report:
    token, runs = leases.claim_runs(run_ids)
    report = Report()
    if not runs:
        return report
    with leases.heartbeat(token):
        try:
            _advance_group(runs, token, stop_at, report, more_queued, others_queued)
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


def _advance_group(runs: list[WorkflowRun], token: str, stop_at: float, report: Report, more_queued: bool,
                   others_queued: bool) -> None:
    """Step, commit and deliver until the group's runs are done or must wait, taking turns
    (fairness.py). `more_queued`: other groups of this task wait behind this one;
    `others_queued`: some of them are other organizations'."""
    states = _load_states(runs)
    segment = Segment()
    organization_id = runs[0].organization_id
    slice_end = time.monotonic() + fairness.slice_seconds()
    while True:
        with transaction.atomic():
            _lock_records(states)
            cut = _step_all(states, segment, SEGMENT_SECONDS)
            segment.flush()
            finished = _finish(states, token)
        report.finished.update(finished)  # only once committed
        waiting = [s.run.pk for s in states if s.external and not s.finished]
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
        if shutdown.past(deadline) or (waiting and not _deliver(states, segment, deadline)):
            # Out of time or out of turn (a long run's segment ended, or nothing could be sent
            # before the deadline), or nothing could be sent at all: another task continues from
            # the step rows committed so far.
            _hand_back(token, unfinished, report)
            return


def _hand_back(token: str, run_ids: list[int], report: Report) -> None:
    if run_ids:
        leases.hand_back(token, run_ids)
        report.handed_back += run_ids


def _give_way(states: list[RunState], organization_id: int, others_queued: bool) -> bool:
    """Another worker already waits on this organization's provider, and other organizations'
    work waits: a second worker there would only make them wait longer (fairness.py)."""
    kinds = {state.node(place[0]).type for state in states for place in state.external}
    return fairness.delivering_elsewhere(organization_id, kinds) and (
        others_queued or fairness.others_waiting(organization_id))


def plan_groups(run_ids: list[int]) -> list[list[int]]:
    """Fresh runs of one organization together; a run delivered before without finishing alone."""
    return [group for _, group in _plan(run_ids)]


def _plan(run_ids: list[int]) -> list[tuple[int, list[int]]]:
    """plan_groups with each group's organization."""
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


def execute_runs(run_ids: list[int], *, budget: float | None = None) -> Report:
    """Execute (or resume) runs within a time budget. Returns what finished and what was
    handed back unfinished (its caller queues a continuation), and what stepped aside for other
    organizations (the watchdog resumes it); groups never started because the budget was spent
    are handed back unclaimed."""
    stop_at = time.monotonic() + (budget if budget is not None else settings.AUTOMATION["RUN_TIME_BUDGET"])
    report = Report()
    groups = _plan(run_ids)
    for i, (organization_id, group) in enumerate(groups):
        if shutdown.past(stop_at):
            report.handed_back += group
            continue
        later = [org for org, _ in groups[i + 1:]]
        report.merge(_execute_group(group, stop_at, more_queued=bool(later),
                                    others_queued=any(org != organization_id for org in later)))
    return report


def execute_run(run_id: int) -> str | None:
    """Execute (or resume) one run. Returns its final status, or None if not ours to run."""
    return execute_runs([run_id]).finished.get(run_id)
