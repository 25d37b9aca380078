"""Walking runs' graphs within one segment.

`RunState` is a run being walked: where its work is, what its steps said, what it will end as.
Everything in it is rebuilt from the step rows on every delivery by walking the graph again
from the trigger: finished steps are read back, never decided again (a condition's side, a
loop's items and a merge are recorded on their rows). Where the work is lives in a few
collections that must agree with each other (a place reached is queued until handled; a place
handed to a provider is queued until delivered; ...): they change only through its methods.

`Walk` reads finished steps back, runs flow nodes inline, hands tool calls to groups, applies
error policies, and notes every step row in the segment's row buffer (a plain dict the segment
writes at its end). It is what a node sees of the engine (nodes/flow.py `Steps`).

Tool-call steps (send an email, update a field, create a task, an HTTP request, an AI node, a
sub-workflow, a notification) run together for every run of the segment that reached one of
the same kind: each action prepares every run's item, then writes them all with bulk
statements; an effect an earlier delivery made under its (run, node, token) key is reused,
never made again. External effects are delivered after the commit (`deliver`), one at a time.
"""

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, overload

from django.db import transaction
from django.utils import timezone

from crm_automation.automation.definition import catalog, context, error_policy, graph
from crm_automation.automation.definition.graph import Node
from crm_automation.automation.definition.templating import rendered_settings
from crm_automation.automation.models import RunStatus, StepStatus, WorkflowRun
from crm_automation.automation.nodes import REGISTRY, ActionFailed, ExecutionContext, effect_key
from crm_automation.automation.nodes import loop_orchestrator as orchestrator
from crm_automation.automation.nodes.base import Action, NotYet, Result, step_name
from crm_automation.automation.nodes.control import FLOW
from crm_automation.automation.nodes.loop import Loop
from crm_automation.automation.nodes.sub_workflow import child_outcome
from crm_automation.automation.runtime import run_log
from crm_automation.crm.models import Deal, Lead

Place = tuple[str, str]  # (node id, token): one step row of a run
logger = logging.getLogger(__name__)
FINISHED_STEPS = {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED}
SETTLED_STEPS = {*FINISHED_STEPS, StepStatus.WAITING}  # what the step was given is known by then
OUTPUT_NODES = ("function", "sub_workflow", *catalog.AI_NODES)  # their output is result["output"]


class StepRow(NamedTuple):
    """A step row as a delivery reads it back, as plain values (a model instance per row made
    resuming a run of 5,000 steps five times slower)."""

    pk: int
    status: str
    result: dict[str, Any]
    error: str
    attempts: int
    position: int
    started_at: datetime | None


@dataclass(eq=False)
class RunState:
    run: WorkflowRun
    definition: dict[str, Any]  # the version's, read once
    graph: graph.Graph
    record: Deal | Lead | None
    template_context: dict[str, Any]
    deadline: float
    history: dict[Place, StepRow] = field(default_factory=dict)  # read back, or written by this delivery
    next_position: int = 0
    simulating: bool = False  # waits fast-forward, questions assume "approved", nothing is sent
    # Live debug (services/simulation.py): the waits that fast-forward (None: every one, as in a
    # simulation; else those named, and the run stops at the others) and the answers a person
    # gave to questions (others stop the run, as a real question does).
    fast_forward: frozenset[str] | None = None
    answers: dict[str, str] = field(default_factory=dict)
    # What the run has come to.
    outputs: dict[str, object] = field(default_factory=dict)  # finished nodes' results, by id and label
    outcomes: list[str] = field(default_factory=list)
    loop_items: dict[Place, list[Any]] = field(default_factory=dict)
    # ask-orchestrator loops: the model's decision after each iteration, as read or asked
    loop_decisions: dict[tuple[Place, int], dict[str, Any]] = field(default_factory=dict)
    aborted: bool = False  # a step failed under the abort policy
    paused: str = ""  # a step failed under the pause policy: why (the run waits for a person)
    halted: str = ""  # why the rest of the run is skipped
    failure: str = ""  # the first thing that went wrong, in words, for the run's error
    finished: bool = False
    cut: bool = False  # its segment ended early: a loop or a merge may still go on
    # Its effects may exist without step rows (read back after a Replay, where an earlier
    # segment's step rows may have failed to write): each step looks for its effect first.
    effects_may_exist: bool = False
    # Where the work is (private: see the methods).
    _frontier: deque[Place] = field(default_factory=deque)  # places reached, not yet handled
    _queued: set[Place] = field(default_factory=set)  # places in the frontier or handed to a group of steps
    _seen: set[Place] = field(default_factory=set)  # places reached in this delivery: each runs once
    _waiting: dict[Place, datetime | None] = field(default_factory=dict)  # None: for a person or a child run
    _external: dict[Place, tuple[ExecutionContext, Result]] = field(default_factory=dict)  # to deliver
    _merges: dict[Place, set[str]] = field(default_factory=dict)  # merges waiting: the sources arrived
    _loops: dict[Place, int] = field(default_factory=dict)  # loops running: their current iteration

    # --- What the run is ---------------------------------------------------------------------
    def skips_wait(self, node_id: str) -> bool:
        """A simulation's wait that is fast-forwarded rather than waited for."""
        return self.simulating and (self.fast_forward is None or node_id in self.fast_forward)

    def assumed_answer(self, node_id: str) -> str | None:
        """A simulation's answer to a question: what the debugging person chose, else "approved"
        in a simulation and none (the run stops there) in live debug."""
        if not self.simulating:
            return None
        return self.answers.get(node_id) or ("approved" if self.fast_forward is None else None)

    @property
    def handling(self) -> str:
        """The workflow's error policy (stop | continue | pause), for steps without their own."""
        policy: str = self.definition.get("error_handling", "stop")
        return policy

    def node(self, node_id: str) -> Node:
        return self.graph.nodes[node_id]

    def step(self, place: Place) -> str:
        return step_name(place[0], place[1])

    def context_at(self, place: Place) -> dict[str, Any]:
        """The template values at a place: the trigger's, plus the loop's inside a loop body."""
        loop_id = self.graph.loop_of.get(place[0])
        if loop_id is None or not place[1]:
            return {**self.outputs, **self.template_context} if self.outputs else self.template_context
        instance = (loop_id, graph.parent_token(place[1]))
        index = int(place[1].rpartition(".")[2])
        items = self.loop_items.get(instance) or []
        current = items[index] if index < len(items) else None
        return {**self.outputs, **self.template_context, "loop": {"current": current, "index": index}}

    def step_input(self, place: Place, settled: bool = False, known: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
        """What a step got besides its configuration (in the version): its loop item; once it has
        run (`settled`), its templated settings as they read for this run (`settings`, by place
        in the config: {"subject": "Welcome, Ann"}), for the run's record. `known`: the texts the
        step rendered itself, by template (ExecutionContext.rendered)."""
        if not (place[1] or settled):
            return {}  # (the hot path: a step noted as it starts builds no context)
        context = self.context_at(place)
        loop = context.get("loop") if place[1] else None
        found: dict[str, Any] = {"loop": loop} if loop else {}
        if settled:
            settings = rendered_settings(self.node(place[0]).config, context, known)
            if settings:
                found["settings"] = settings
        return found

    def remember(self, place: Place, result: Result) -> None:
        """A node's output, for the templates of the nodes after it ({{Label.field}}, {{node-id}})."""
        node = self.node(place[0])
        output = result.get("output") if node.type in OUTPUT_NODES else result
        self.outputs[node.id] = output
        self.outputs[(node.label or node.id).casefold()] = output

    # --- Where the work is -------------------------------------------------------------------
    @property
    def live(self) -> bool:
        return bool(self._frontier or self._queued or self._waiting or self._external or self._merges
                    or self._loops)

    @property
    def done(self) -> bool:
        return self.finished or not self.live

    @property
    def parked(self) -> bool:
        """Only waits are left: for time, for an answer, for a sub-workflow."""
        return bool(self._waiting) and not (self._frontier or self._queued or self._external or self.cut)

    @property
    def wait_until(self) -> datetime | None:
        """When a parked run wakes: the earliest time one of its waits ends; None when they all
        wait for something else (an answer, a sub-workflow), which wakes the run itself."""
        if self.parked:
            return min((t for t in self._waiting.values() if t is not None), default=None)
        return None

    def ending(self) -> tuple[str, datetime | None]:
        """What the end of this segment does with the run: ("park", its wake-up time or None)
        when only waits are left; ("pause", None) when a failed step's policy paused it and
        nothing else runs; ("end", None) when nothing is left; ("", None) while it goes on, or
        when it was settled before."""
        if self.finished:
            return "", None
        if self.parked and not self.halted and not self.paused:
            return "park", self.wait_until
        if not self.live:
            return ("pause" if self.paused else "end"), None
        return "", None

    def reach(self, place: Place) -> bool:
        """The walk arrives at a place; False if it was reached before (a node runs once per token:
        the first arrival wins)."""
        if place in self._seen:
            return False
        self._seen.add(place)
        self._queued.add(place)
        self._frontier.append(place)
        return True

    def reached(self, place: Place) -> bool:
        return place in self._seen

    def next_place(self) -> Place | None:
        return self._frontier.popleft() if self._frontier else None

    def pending(self, place: Place) -> bool:
        """Reached and not handled yet (a run halted meanwhile has none)."""
        return place in self._queued

    def handled(self, place: Place) -> None:
        self._queued.discard(place)

    def wait(self, place: Place, until: datetime | None) -> None:
        """The step waits: for a time, or (None) for a person or a sub-workflow, which wake the run."""
        self._queued.discard(place)
        self._waiting[place] = until

    def stop_waiting(self, place: Place) -> None:
        self._waiting.pop(place, None)

    def hand_over(self, place: Place, ctx: ExecutionContext, result: Result) -> None:
        """The step's effect is made and must be delivered after the commit (an email, a request)."""
        self._external[place] = (ctx, result)

    def to_deliver(self) -> Iterator[tuple[Place, tuple[ExecutionContext, Result]]]:
        return iter(list(self._external.items()))

    def handed_over(self, place: Place) -> tuple[ExecutionContext, Result]:
        return self._external[place]

    def delivering_kinds(self) -> set[str]:
        """The node types of the effects waiting to be delivered (not a loop's question to the
        model, which no provider's fairness counts)."""
        return {self.node(place[0]).type for place in self._external if self.node(place[0]).type in REGISTRY}

    def delivering_at(self, place: Place) -> bool:
        return place in self._external

    @property
    def delivering(self) -> bool:
        return bool(self._external)

    def delivered(self, place: Place) -> ExecutionContext:
        """A handed-over effect was delivered (or failed to be): its step is handled."""
        ctx, _ = self._external.pop(place)
        self._queued.discard(place)
        return ctx

    def arrive(self, place: Place, source: str, incoming: Iterable[str], *, first: bool) -> bool:
        """A branch arrives at a merge: True when the merge may go on (all its incoming edges
        arrived, or the first one for the `first` strategy)."""
        arrived = self._merges.setdefault(place, set())
        arrived.add(source)
        return first or arrived >= set(incoming)

    def merged(self, place: Place) -> list[str]:
        """The merge runs: the sources that arrived, in order."""
        return sorted(self._merges.pop(place, set()))

    def waiting_merges(self) -> list[Place]:
        """Merges still waiting, innermost (longest token) first."""
        return sorted(self._merges, key=lambda p: -len(p[1]))

    def loop_started(self, place: Place) -> None:
        self._loops[place] = 0

    def loop_next(self, place: Place) -> int:
        self._loops[place] += 1
        return self._loops[place]

    def loop_ended(self, place: Place) -> None:
        self._loops.pop(place, None)

    def running_loops(self) -> list[tuple[Place, int]]:
        """Loops under way with their current iteration, innermost first."""
        return sorted(self._loops.items(), key=lambda item: -len(item[0][1]))

    def busy_within(self, token: str, *, merges: bool = True) -> bool:
        """Whether work at or below `token` (an iteration, or "" for the whole run) is under way.
        Merges waiting are passive (they go on only when something arrives): a merge does not
        wait for another merge."""
        places = [*self._frontier, *self._queued, *self._waiting, *self._external, *self._loops]
        if merges:
            places += list(self._merges)
        return any(graph.within(t, token) for _, t in places)

    def drop_pending(self) -> None:
        """A person decides how this run goes on: what is under way elsewhere in it is picked up
        again when it resumes (deliveries already handed over finish first)."""
        for pending in (self._frontier, self._queued, self._waiting, self._merges, self._loops):
            pending.clear()

    def take_all_pending(self) -> list[Place]:
        """The run stops: every place under way or waiting, to be skipped; nothing is left."""
        places = list(dict.fromkeys([*self._frontier, *self._queued, *self._waiting, *self._external,
                                     *self._merges, *self._loops]))
        for pending in (self._frontier, self._queued, self._waiting, self._external, self._merges, self._loops):
            pending.clear()
        return places


MAX_STEPS = 5_000  # step rows per run
SEGMENT_ROWS = 2_000  # step rows a segment notes at most before it commits
ROUTER = "router"
SUB_WORKFLOW = "sub_workflow"

# Tool-call steps reached in a pass, by action type: run together, across runs, with bulk writes.
Groups = dict[str, list[tuple[RunState, Place]]]
# The step rows a segment noted, by (run id, place): the last values noted for a place win.
Rows = dict[tuple[int, Place], tuple[RunState, Place, dict[str, Any]]]


def failure_text(state: RunState, place: Place, error: str) -> str:
    node = state.node(place[0])
    action = REGISTRY.get(node.type)
    label = node.label or (action.label if action else node.type)
    where = f" in iteration {place[1]}" if place[1] else ""
    return f"Step {node.index + 1} ({label}){where} failed: {error}"


class Walk:
    def __init__(self, rows: Rows, now: datetime | None = None) -> None:
        self.rows = rows
        self.now = now or timezone.now()

    # --- Steps: what nodes may do --------------------------------------------------------------
    def record(self, state: RunState, place: Place, status: str, *, result: Result | None = None, error: str = "",
               ctx: Any = None, started: datetime | None = None, new_attempt: bool = True,
               counts: bool = True) -> None:
        """Note a step's status on the run and in the buffer. Rows are written for every run, even
        one whose history the plan's quota does not keep: they are its cursor (a run that waits
        or crashes resumes from them) and go with the run when it finishes. `counts=False`: not an
        outcome of the run."""
        if status in FINISHED_STEPS and counts:
            state.outcomes.append(status)
        if status == StepStatus.FAILED and not state.failure:
            state.failure = failure_text(state, place, error)
        result = dict(result or {})
        if status == StepStatus.COMPLETED:
            state.remember(place, result)
        if ctx is not None and ctx.notes:
            result["notes"] = ctx.notes
        previous = state.history.get(place)
        noted = self.rows.get((state.run.pk, place))
        earlier = noted[2] if noted is not None else None
        now = timezone.now()
        attempts = (previous.attempts if previous else 0) + (1 if new_attempt or not previous else 0)
        if earlier is not None:  # noted twice in one segment (a loop's start and end)
            attempts, position, first = earlier["attempts"], earlier["position"], earlier["started_at"]
        else:
            position = previous.position if previous else state.next_position
            if previous is None:
                state.next_position += 1
            first = previous.started_at if previous else now
        self.rows[(state.run.pk, place)] = (state, place, {
            "action_type": state.node(place[0]).type, "status": status, "result": result,
            "input": state.step_input(place, settled=status in SETTLED_STEPS,
                                      known=ctx.rendered if ctx is not None else None), "error": error[:4000],
            "attempts": attempts, "position": position,
            "started_at": started or first, "finished_at": now if status in FINISHED_STEPS else None})

    def follow(self, state: RunState, place: Place, handles: set[str] | None = None) -> None:
        """A step finished: reach the nodes after it (through `handles`; None: its one way out)."""
        node_id, token = place
        for _, target in state.graph.targets(node_id, handles if handles is not None else {""}):
            if state.graph.ends_iteration(node_id, target):
                continue  # back to the loop node: this path of the iteration is over
            target_place = (target, token)  # (after a loop's done handle: the loop's own token)
            if state.reached(target_place):
                continue  # a node runs once per token: the first arrival wins
            flow = FLOW.get(state.node(target).type)
            if flow is not None and target_place not in state.history and not flow.accepts(state, target_place,
                                                                                           node_id):
                continue
            state.reach(target_place)

    def finished(self, state: RunState, place: Place, result: Result | None = None) -> None:
        """After a step that did its job: go on (a router: by the route it chose)."""
        if state.node(place[0]).type == ROUTER:
            route: Any = (result or {}).get("handle")  # (a router's result names the handle it chose)
            self.follow(state, place, {route})
        else:
            self.follow(state, place)

    def fail(self, state: RunState, place: Place, error: str, *, result: Result | None = None, ctx: Any = None,
             started: datetime | None = None, new_attempt: bool = True, made_effect: bool = False) -> None:
        """A step failed: apply its error policy (error_policy.py) and record what was decided.
        `made_effect`: the step's effect exists (an email the provider refused): a retry first
        asks the action to make it ready again, which it refuses when that could repeat it."""
        node = state.node(place[0])
        previous = state.history.get(place)
        attempt = (previous.attempts if previous else 0) + (1 if new_attempt or previous is None else 0)
        safe = True
        if (node.on_error or {}).get("policy") == "retry" and made_effect and node.type in REGISTRY:
            safe = REGISTRY[node.type].retry(effect_key(state.run.pk, state.step(place)))
        decision = error_policy.decide(node.on_error, state.handling, attempt=attempt, retry_safe=safe,
                                       now=timezone.now(), simulating=state.simulating)
        info = {**(result or {}), "policy": decision.policy}
        if decision.policy == "fallback":  # what the fallback's steps read: {{<this step>.error}}
            info["error"] = error
        if not state.simulating:
            run_log.step_failed(state.run, node_id=place[0], action_type=node.type, attempt=attempt,
                                policy=decision.policy, error=error)
        if decision.note:
            info["decided"] = decision.note
        state.handled(place)
        if decision.policy == "retry":
            assert decision.retry_at is not None, "a retry has its time"
            info["retry_at"] = decision.retry_at.isoformat()
            self.record(state, place, StepStatus.WAITING, result=info, error=error, ctx=ctx, started=started,
                        new_attempt=new_attempt)
            state.wait(place, decision.retry_at)
            return
        self.record(state, place, StepStatus.FAILED, result=info, error=error, ctx=ctx, started=started,
                    new_attempt=new_attempt)
        if decision.policy == "fallback":
            state.remember(place, info)  # its fallback reads the failure: {{<this step>.error}}
        self._after_failure(state, place, decision.policy, failure_text(state, place, error))

    def later(self, state: RunState, place: Place, until: datetime, reason: str, *, ctx: Any = None,
              started: datetime | None = None) -> None:
        """The step can be done at `until`, not now: it waits (as a retry does) and is tried then."""
        state.handled(place)
        self.record(state, place, StepStatus.WAITING, result={"retry_at": until.isoformat(), "waiting_for": reason},
                    ctx=ctx, started=started)
        state.wait(place, until)

    @overload
    def due(self, state: RunState, previous: StepRow, at: datetime) -> datetime: ...

    @overload
    def due(self, state: RunState, previous: StepRow, at: datetime | None) -> datetime | None: ...

    def due(self, state: RunState, previous: StepRow, at: datetime | None) -> datetime | None:
        """When a waiting step is due: its time, or earlier if a person said "go on now" after it
        began. None: it waits for a person or a sub-workflow, not for time."""
        if at is None:
            return None
        woken = (state.run.metadata or {}).get("woken_at")
        if woken and previous.started_at and datetime.fromisoformat(woken) >= previous.started_at:
            return min(at, datetime.fromisoformat(woken))
        return at

    # --- The walk ------------------------------------------------------------------------------
    def start(self, state: RunState) -> None:
        """A delivery begins: walk on from the trigger (its step is never a row)."""
        self.follow(state, (state.graph.trigger, ""))

    def advance(self, state: RunState, groups: Groups) -> bool:
        """Handle the run's reached places: read back finished steps, run inline nodes, and hand
        tool calls to `groups` (run together with other runs' steps of the same kind). Returns
        whether anything was handled."""
        moved = False
        while (place := state.next_place()) is not None:
            moved = True
            previous = state.history.get(place)
            node = state.node(place[0])
            if previous is not None and previous.status in FINISHED_STEPS:
                state.handled(place)
                self._read_back(state, place, previous)
                continue
            self._check_limits(state, previous)
            if state.halted:
                state.handled(place)
                self._skip(state, place)
                continue
            flow = FLOW.get(node.type)
            if flow is not None:
                state.handled(place)
                flow.run(self, state, place, previous)
                continue
            if previous is not None and previous.status == StepStatus.WAITING:
                if "timeout_at" in (previous.result or {}) and node.type in REGISTRY:  # waits for an answer
                    state.handled(place)
                    self._awaited(state, place, previous)
                    continue
                if node.type == SUB_WORKFLOW and "child_run" in (previous.result or {}):
                    state.handled(place)
                    self._child_step(state, place, previous)
                    continue
                retry_at = self.due(state, previous, datetime.fromisoformat(previous.result["retry_at"]))
                if retry_at > self.now:  # its next try is later: the run waits for it
                    state.wait(place, retry_at)
                    continue
                state.stop_waiting(place)
                # A new try begins (counted once however many rows this segment writes for it).
                self.record(state, place, StepStatus.RUNNING, result=previous.result, error=previous.error)
            groups.setdefault(node.type, []).append((state, place))
        if state.paused:
            state.drop_pending()
        elif state.halted and state.live:
            self._halt_rest(state)
        return moved

    def settle(self, state: RunState) -> bool:
        """When a run's reached steps are all handled: let merges whose other branches will not
        come go on, and start a loop's next iteration (or what follows the loop) once one is
        over. Returns whether something could go on."""
        if state.done or state.halted:
            return False
        for place in state.waiting_merges():
            if not state.busy_within(place[1], merges=False):
                state.reach(place)  # wait-all, but nothing else can arrive: go on with what came
                return True
        return any(Loop.go_on(self, state, place, index) for place, index in state.running_loops())

    def delivered(self, state: RunState, place: Place, result: Result, **record: Any) -> None:
        """An external effect was delivered: the step is done, or waits for its answer (an SMS's
        reply) until the action's time, holding nothing."""
        until = REGISTRY[state.node(place[0]).type].awaiting(result)
        if until is None:
            self.record(state, place, StepStatus.COMPLETED, result=result, **record)
            self.finished(state, place, result)
            return
        self.record(state, place, StepStatus.WAITING, result={**result, "timeout_at": until.isoformat()}, **record)
        state.wait(place, until)

    def _awaited(self, state: RunState, place: Place, previous: StepRow) -> None:
        """A step waiting for an answer: go on with it once it came, or without one once the wait
        is over (`timed_out`); else keep waiting."""
        action = REGISTRY[state.node(place[0]).type]
        until = datetime.fromisoformat(previous.result["timeout_at"])
        result = action.answered(previous.result, over=self.due(state, previous, until) <= self.now)
        if result is None:
            state.wait(place, until)
            return
        state.stop_waiting(place)
        self.record(state, place, StepStatus.COMPLETED, result=result, new_attempt=False)
        self.finished(state, place, result)

    def made(self, state: RunState, place: Place, result: Result, **record: Any) -> None:
        """A tool call's effect was made: the step is done, unless it is a sub-workflow this run
        waits for."""
        state.handled(place)
        if state.node(place[0]).type == SUB_WORKFLOW and state.simulating:  # not started: say so downstream
            result = {**result, "output": {"status": "not started (simulation)", "outputs": {}}}
        elif state.node(place[0]).type == SUB_WORKFLOW and result.get("await"):
            self.record(state, place, StepStatus.WAITING, result=result, **record)
            state.wait(place, None)
            return
        self.record(state, place, StepStatus.COMPLETED, result=result, **record)
        self.finished(state, place, result)

    # --- Inside the walk -----------------------------------------------------------------------
    def _check_limits(self, state: RunState, previous: StepRow | None) -> None:
        if state.halted:
            return
        if state.record is None and context.has_record(state.run.trigger_entity_type):
            state.halted = f"the triggering {state.run.trigger_entity_type} no longer exists"
        elif time.monotonic() > state.deadline:
            timeout = state.definition.get("timeout_seconds")
            state.halted = f"the workflow's timeout of {timeout}s was reached"
        elif previous is None and state.next_position >= MAX_STEPS:
            # Loops in loops could ask for a million steps: a run stops at a size a person can read.
            state.halted = f"the run reached its limit of {MAX_STEPS:,} steps"

    def _after_failure(self, state: RunState, place: Place, policy: str, failure: str) -> None:
        """`failure`: this step's failure in words. A pause names the step that paused the run,
        not the run's first failure (an earlier step may have failed and been skipped)."""
        if policy == "skip":
            self.follow(state, place, self._ways_past(state, place))
        elif policy == "fallback" and state.graph.targets(place[0], {graph.ERROR}):
            self.follow(state, place, {graph.ERROR})  # (the run ends partial: the failure is on its record)
        elif policy == "pause":
            state.paused = state.paused or failure
        else:
            state.aborted = True
            if not state.halted:
                why = "has no error edge to fall back to" if policy == "fallback" else "the workflow stops on errors"
                state.halted = f"skipped: step {state.node(place[0]).index + 1} failed and {why}"
            self.follow(state, place)

    @staticmethod
    def _ways_past(state: RunState, place: Place) -> set[str] | None:
        flow = FLOW.get(state.node(place[0]).type)
        return flow.handles_when_skipped if flow is not None else None

    def _read_back(self, state: RunState, place: Place, previous: StepRow) -> None:
        """A step that finished in an earlier delivery: its outcome is read, never decided again."""
        result = previous.result or {}
        if previous.status == StepStatus.SKIPPED:
            if result.get("continued"):  # a person skipped the failed step and let the run go on
                state.outcomes.append(StepStatus.FAILED)
                state.failure = state.failure or failure_text(state, place, previous.error)
                self.follow(state, place, self._ways_past(state, place))
            elif not result.get("off_path"):
                state.outcomes.append(previous.status)
            return  # nothing after a skipped step runs
        state.outcomes.append(previous.status)
        if previous.status == StepStatus.FAILED:
            if not state.failure:
                state.failure = failure_text(state, place, previous.error)
            policy = result.get("policy") or error_policy.WORKFLOW_POLICY.get(state.handling, "abort")
            if policy == "fallback":
                state.remember(place, result)
            self._after_failure(state, place, policy, failure_text(state, place, previous.error))
            return
        state.remember(place, result)
        flow = FLOW.get(state.node(place[0]).type)
        if flow is not None:
            flow.read_back(self, state, place, previous)
        else:
            self.finished(state, place, result)

    def _child_step(self, state: RunState, place: Place, previous: StepRow) -> None:
        """A sub-workflow this run waits for: go on when its run has finished (it wakes us)."""
        recorded = previous.result.get("child_outcome")  # written when the child ended
        outcome = tuple(recorded) if recorded else child_outcome(previous.result["child_run"])
        if outcome is None:
            state.wait(place, None)
            return
        status, output = outcome
        result = {**previous.result, "output": output}
        if status in (RunStatus.COMPLETED, RunStatus.PARTIAL):
            self.record(state, place, StepStatus.COMPLETED, result=result, new_attempt=False)
            self.finished(state, place)
        else:
            self.fail(state, place, f"its run #{output['run']} {status}: {output.get('error') or 'no reason given'}",
                      result=result, new_attempt=False)

    def _skip(self, state: RunState, place: Place) -> None:
        action = REGISTRY.get(state.node(place[0]).type)
        if action is not None:  # a step begun before may have made something: settle it
            action.cancel(effect_key(state.run.pk, state.step(place)), state.halted)
        self.record(state, place, StepStatus.SKIPPED, error=state.halted)
        # What comes after it is not reached either: say so on those steps too (one level of a
        # loop: its body is not entered).
        for handle, target in state.graph.targets(place[0]):
            after = (target, place[1])
            if handle == graph.BODY or state.graph.ends_iteration(place[0], target):
                continue
            if after not in state.history and (state.run.pk, after) not in self.rows:
                self._skip(state, after)

    def _halt_rest(self, state: RunState) -> None:
        """The run stops: every step under way or waiting is skipped with the reason."""
        for place in state.take_all_pending():
            previous = state.history.get(place)
            noted = self.rows.get((state.run.pk, place))
            if (previous is None or previous.status not in FINISHED_STEPS) and not (
                    noted is not None and noted[2]["status"] in FINISHED_STEPS):
                self._skip(state, place)


# --- A segment's walk ------------------------------------------------------------------------------
def step_all(states: list[RunState], rows: Rows, seconds: float | None = None) -> bool:
    """Advance every run as far as it can go in this segment: until each one is done, waits for
    a delivery after the commit, or waits for time to pass. With `seconds`, the segment also
    ends once it has noted SEGMENT_ROWS step rows or has been writing for `seconds` (reading
    finished steps back does not count: every segment makes progress). Returns True when it
    stopped early with work left."""
    walk = Walk(rows)  # one clock per pass: runs that wait alike wake alike (one UPDATE parks them)
    writing_since = None
    for state in states:
        state.cut = False
    while True:
        if seconds is not None and rows:
            writing_since = writing_since or time.monotonic()
            if len(rows) >= SEGMENT_ROWS or time.monotonic() - writing_since >= seconds:
                # What is left is in the runs' frontiers (and loops, merges), which the next
                # segment walks on from, or which a new delivery rebuilds from the rows this
                # segment commits. A run whose only other work is a wait is not parked yet: its
                # loop may have iterations left.
                for state in states:
                    state.cut = not state.finished
                return True
        groups: Groups = {}
        moved = False
        for state in states:
            if not state.finished:
                moved |= walk.advance(state, groups)
        run_groups(walk, groups)
        if groups or moved:
            continue
        if not any([walk.settle(state) for state in states if not state.finished]):
            return False


# --- Tool calls ------------------------------------------------------------------------------------
Item = tuple[RunState, Place, ExecutionContext, object]  # a step with its prepared effect


def context_of(state: RunState, place: Place) -> ExecutionContext:
    run = state.run
    return ExecutionContext(run_id=run.pk, step=state.step(place), organization_id=run.organization_id,
                            trigger_type=run.trigger_type, depth=run.event.depth,
                            template_context=state.context_at(place), record=state.record,
                            simulating=state.simulating)


def run_groups(walk: Walk, groups: Groups) -> None:
    for action_type, group in groups.items():
        _run_group(walk, REGISTRY[action_type], group)


def _run_group(walk: Walk, action: Action[Any], group: list[tuple[RunState, Place]]) -> None:
    group = [(s, p) for s, p in group if s.pending(p)]  # not those of a run halted meanwhile
    if not group:
        return
    started = timezone.now()
    contexts = {(state.run.pk, place): context_of(state, place) for state, place in group}
    # Only a step that may have begun before needs the lookup: one with a history row, or any
    # step of a run that crashed before or keeps no history (over the quota).
    maybe_begun = [contexts[(s.run.pk, p)].key for s, p in group
                   if p in s.history or s.run.attempts > 1 or s.run.history_suppressed or s.effects_may_exist]
    found = action.existing(maybe_begun) if maybe_begun else {}
    items: list[Item] = []
    for state, place in group:
        ctx = contexts[(state.run.pk, place)]
        if ctx.key in found:
            _reuse(walk, action, state, place, ctx, found[ctx.key], started)
            continue
        try:
            items.append((state, place, ctx, action.prepare(state.node(place[0]).config, ctx)))
        except NotYet as later:  # (quiet hours): the run waits for the time the step can be done
            walk.later(state, place, later.until, later.reason, ctx=ctx, started=started)
        except Exception as exc:  # fails this run's step only; the group goes on
            if not isinstance(exc, ActionFailed):
                logger.exception("Preparing step %s of run %s crashed", ctx.step, state.run.pk)
            error = str(exc) if isinstance(exc, ActionFailed) else f"internal error: {type(exc).__name__}: {exc}"
            walk.fail(state, place, error, ctx=ctx, started=started)
    if items:
        _apply(walk, action, items, started)


class Replay(Exception):  # noqa: N818 (an instruction to the caller, not an error of its own)
    """A write failed in a segment done without a savepoint per write (`without_savepoints`): the
    segment is undone, and its caller does it again with them, so the write that fails fails alone."""


_SAVEPOINTS: ContextVar[bool] = ContextVar("savepoints", default=True)


@contextmanager
def without_savepoints(without: bool = True) -> Iterator[None]:
    """No SAVEPOINT/RELEASE around each kind of action's writes and the step rows (two round trips
    each, ten for a three-action run): a failing write raises Replay instead of failing alone.
    (`without=False`: with them, whatever an enclosing block said.)"""
    token = _SAVEPOINTS.set(not without)
    try:
        yield
    finally:
        _SAVEPOINTS.reset(token)


def savepoints() -> bool:
    """Whether each write of a segment goes in a savepoint of its own (`without_savepoints`)."""
    return _SAVEPOINTS.get()


def per_write() -> AbstractContextManager[Any]:
    """Around one write of a segment: its own savepoint, unless `without_savepoints`."""
    return transaction.atomic() if savepoints() else nullcontext()


def _apply(walk: Walk, action: Action[Any], items: list[Item], started: datetime) -> None:
    """Apply one action for many runs with bulk writes; if that fails, one by one, so a single
    bad item fails its own step and nothing else (without savepoints: Replay)."""
    try:
        with per_write():
            results = action.apply([(ctx, prepared) for _, _, ctx, prepared in items])
        outcomes = [(state, place, ctx, True, result, "")
                    for (state, place, ctx, _), result in zip(items, results, strict=True)]
    except Exception as exc:
        if not savepoints():
            raise Replay from exc
        outcomes = [_apply_one(action, item) for item in items]
    for state, place, ctx, ok, result, error in outcomes:
        if ok and action.external:
            state.hand_over(place, ctx, result)
            walk.record(state, place, StepStatus.RUNNING, result=result, ctx=ctx, started=started)
        elif ok:
            walk.made(state, place, result, ctx=ctx, started=started)
        else:
            walk.fail(state, place, error, result=result, ctx=ctx, started=started)


def _apply_one(action: Action[Any], item: Item) -> tuple[RunState, Place, ExecutionContext, bool, Result, str]:
    state, place, ctx, prepared = item
    try:
        with transaction.atomic():
            (result,) = action.apply([(ctx, prepared)])
        return state, place, ctx, True, result, ""
    except ActionFailed as exc:
        return state, place, ctx, False, {}, str(exc)
    except Exception as exc:  # a bug or an outage: record it on the step, keep the others going
        logger.exception("Step %s of run %s crashed", ctx.step, ctx.run_id)
        return state, place, ctx, False, {}, f"internal error: {type(exc).__name__}: {exc}"


def _reuse(walk: Walk, action: Action[Any], state: RunState, place: Place, ctx: ExecutionContext, result: Result,
           started: datetime) -> None:
    """The step's effect exists from an earlier delivery: settle the step from it."""
    if action.external:
        settled = action.settle_existing(result)
        if settled is None:  # made but not yet delivered: deliver it after this segment
            state.hand_over(place, ctx, result)
            return
        ok, result, error = settled
    else:
        ok, result, error = True, {**result, "repeated_delivery": True}, ""
    if not ok:
        walk.fail(state, place, error, result=result, started=started, made_effect=True)
        return
    if action.external:  # (delivered before: done, or waiting for its answer)
        state.handled(place)
        walk.delivered(state, place, result, started=started)
        return
    walk.made(state, place, result, started=started)


def deliver(walk: Walk, states: list[RunState], deadline: float) -> int:
    """Outside any transaction: hand waiting effects over, each outcome recorded as it happens.
    Those the deadline leaves undelivered keep waiting (their run is handed back). Returns how
    many were settled."""
    settled = 0
    waiting: dict[str, list[tuple[RunState, Place]]] = {}
    for state in states:
        for place, _ in state.to_deliver():
            waiting.setdefault(state.node(place[0]).type, []).append((state, place))
    questions = waiting.pop(Loop.type, [])  # a loop's question whether to go on: read by the loop itself
    for (state, place), settled_now in zip(questions, orchestrator.deliver(
            [state.handed_over(place) for state, place in questions], deadline), strict=True):
        if settled_now:
            state.delivered(place)
            settled += 1
    for action_type, group in waiting.items():
        outcomes = REGISTRY[action_type].deliver([s.handed_over(p) for s, p in group], deadline)
        for (state, place), outcome in zip(group, outcomes, strict=True):
            if outcome is None:
                continue
            ok, result, error = outcome
            ctx = state.delivered(place)
            if ok:
                walk.delivered(state, place, result, ctx=ctx, new_attempt=False)
            else:
                walk.fail(state, place, error, result=result, ctx=ctx, new_attempt=False, made_effect=True)
            settled += 1
    return settled
