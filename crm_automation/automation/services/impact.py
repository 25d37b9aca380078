"""Impact preview (docs/product.md#impact-preview): what a draft or an edited workflow would have
done over the last N days of recorded changes, shown before it goes live. Nothing is sent or
written.

Each recorded event the workflow listens to is matched by dispatch's own rule (triggers/matching.py:
stage filter, endpoint, watched fields, conditions, crossing — checked against the records as they
are now, since an event keeps its change, not a copy of the record), then walked through the graph
(graph.walk): conditions are evaluated and take their side, parallel branches all run, a question
is counted and assumed approved, a loop's body is counted once per run, waits are passed. The
result: how many records would have entered, why the others would not, and how many runs would
have reached each step and each branch. The walk does not run actions, so steps whose outcome
depends on an earlier step's output (a function's rows, an HTTP answer) are counted as reached,
not evaluated. An AI router is not asked (it would cost and its answer is not repeatable): runs
that reach it are counted as undecided, and the steps after it are not counted.
"""

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from crm_automation.automation.definition import catalog, context, graph
from crm_automation.automation.models import AutomationEvent, ImpactPreview, Workflow
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.nodes import control
from crm_automation.automation.ops.retention import first_event_after
from crm_automation.automation.runtime.queue import enqueue_impact
from crm_automation.automation.triggers import matching
from crm_automation.crm.models import Stage
from crm_automation.crm.selectors import user_has_role

logger = logging.getLogger(__name__)
BATCH = 1000
ROUTER = "router"
MAX_EVENTS = 200_000


@dataclass
class Impact:
    days: int
    events: int = 0
    entered: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason → events
    reached: Counter = field(default_factory=Counter)  # node id → runs
    branches: Counter = field(default_factory=Counter)  # (node id, handle) → runs
    undecided: Counter = field(default_factory=Counter)  # AI router id → runs that would ask the model
    seconds: float = 0.0
    truncated: bool = False


def _sides(trigger_type: str, ctx: dict) -> Callable[[graph.Node], set[str] | None]:
    """The ways out a run would take from each node, as far as they can be told without running
    it: a condition's side for this context, a question approved, a loop's body and what follows
    it; an AI router none (the model chooses at run time); any other node all of its ways."""
    def ways(node: graph.Node) -> set[str] | None:
        if node.type == control.CONDITION:
            return {graph.TRUE if control.gate(node.config, trigger_type, ctx).passed else graph.FALSE}
        if node.type == questions.USER_INPUT:
            return {questions.APPROVED}
        if node.type == control.LOOP:
            return {graph.BODY, graph.DONE}
        if node.type == ROUTER:
            return set()
        return None
    return ways


def _count(flow: graph.Graph, trigger_type: str, ctx: dict, impact: Impact) -> None:
    """Count the nodes and branches one run would reach (graph.walk, taking each condition's side)."""
    for node_id, taken in graph.walk(flow, _sides(trigger_type, ctx)):
        node = flow.nodes.get(node_id)
        if node is None:
            continue  # the trigger
        impact.reached[node_id] += 1
        if node.type == ROUTER:
            impact.undecided[node_id] += 1
        for handle, _ in taken:
            if handle:
                impact.branches[(node_id, handle)] += 1


# Started by a clock, a caller or a person, not by a change of a record: nothing to replay.
NOT_REPLAYED = frozenset({catalog.SCHEDULE, catalog.WEBHOOK, *catalog.MANUAL})


def preview(workflow: Workflow, *, days: int = 30, definition: dict | None = None) -> Impact:
    """Replay the last `days` of the organization's recorded changes through `definition` (the
    workflow as saved by default)."""
    started = time.monotonic()
    definition = definition or workflow.definition
    impact = Impact(days=days)
    kinds = [kind for kind, _ in catalog.TRIGGER_CHOICES if definition["trigger_type"] in catalog.listeners(kind)]
    if catalog.is_event(definition["trigger_type"]):
        kinds = [definition["trigger_type"]]  # the events of that name other systems sent
    if not kinds or definition["trigger_type"] in NOT_REPLAYED:
        impact.seconds = time.monotonic() - started
        return impact  # schedules, webhooks, manual starts: no recorded changes to replay
    boundary = first_event_after(timezone.now() - timedelta(days=days))
    flow = graph.build(definition)
    names = dict(Stage.objects.filter(organization_id=workflow.organization_id).values_list("slug", "name"))
    events = (AutomationEvent.objects.filter(organization_id=workflow.organization_id, kind__in=kinds,
                                             pk__gte=boundary or 0)
              .order_by("pk"))
    last = 0
    while True:
        batch = list(events.filter(pk__gt=last)[:BATCH])
        if not batch:
            break
        last = batch[-1].pk
        slugs, records = context.stage_slugs(batch), context.load_records(batch)
        for event in batch:
            if not matching.offered(event, workflow.pk):
                continue  # a due time or an occasion of another workflow: never this one's
            impact.events += 1
            trigger = context.trigger_dict(event, slugs)
            full = matching.record_context(event, records.get(event.entity_id), trigger)

            def load(full: dict | None = full) -> dict | None:
                return full

            verdict = matching.match(event, definition, trigger, load, names)
            if not verdict.matched:
                impact.skipped[matching.SUMMARY[verdict.check]] += 1
                continue
            assert full is not None, "a match has its record"
            impact.entered += 1
            _count(flow, definition["trigger_type"], full, impact)
        if impact.events >= MAX_EVENTS:
            impact.truncated = True
            break
    impact.seconds = time.monotonic() - started
    return impact


# --- Worked out by a worker ---------------------------------------------------------------------
WINDOWS = (7, 30, 90)  # the days a preview may look back (the page's choices, the API's too)
FRESH_FOR = timedelta(minutes=10)  # a finished preview is shown again this long (same days, same revision)
FAILED_FOR = timedelta(minutes=1)  # a failure is shown this long; asking after that tries again
LOST_AFTER = timedelta(minutes=2)  # queued this long: its task was lost (broker down); the watch re-queues it
IN_FLIGHT = (ImpactPreview.Status.QUEUED, ImpactPreview.Status.RUNNING)
START_ROLE = "ops"  # a replay is worker work: ops and admins start one, viewers read the latest


def as_data(result: Impact) -> dict:
    """An Impact as JSON, in the shape the API gives."""
    return {"days": result.days, "events": result.events, "entered": result.entered, "seconds": result.seconds,
            "truncated": result.truncated,
            "skipped": [{"reason": r, "events": n} for r, n in result.skipped.most_common()],
            "reached": [{"node": node, "runs": n} for node, n in result.reached.most_common()],
            "branches": [{"node": node, "handle": handle, "runs": n}
                         for (node, handle), n in result.branches.most_common()],
            "undecided": [{"node": node, "runs": n} for node, n in result.undecided.most_common()]}


def may_start(by, workflow: Workflow) -> bool:
    """Whether `by` may hand a new replay to the workers (None: the system, e.g. a test or a command)."""
    return by is None or user_has_role(by, workflow.organization_id, START_ROLE)


def preview_request(workflow: Workflow, *, days: int, by=None) -> ImpactPreview | None:
    """The preview of `workflow` as saved over `days`, in this order:

    1. a fresh one (finished for the saved revision within FRESH_FOR, or failed within FAILED_FOR);
    2. the one in flight for this workflow and window, whatever revision it replays: repeated asks
       join it (the next ask after it finishes starts one for the saved revision);
    3. for a person who may not start one (a viewer), the latest finished one of any age or
       revision, or None when there is none;
    4. a new one handed to the workers. At most one per workflow and window is queued or running:
       the partial unique constraint `uniq_impact_in_flight` settles two asks racing each other,
       and the one that loses joins the winner's.
    """
    if days not in WINDOWS:
        raise ValueError(f"days must be one of {', '.join(map(str, WINDOWS))}, not {days!r}")
    now = timezone.now()
    mine = ImpactPreview.objects.filter(workflow=workflow, kind=ImpactPreview.Kind.IMPACT, days=days)
    fresh = (mine.filter(revision=workflow.draft_revision)
             .filter(Q(status=ImpactPreview.Status.DONE, finished_at__gte=now - FRESH_FOR)
                     | Q(status=ImpactPreview.Status.FAILED, finished_at__gte=now - FAILED_FOR)).first())
    if fresh is not None:
        return fresh
    flying = mine.filter(status__in=IN_FLIGHT).first()
    if flying is not None:
        return flying
    if not may_start(by, workflow):
        return mine.filter(status=ImpactPreview.Status.DONE).order_by("-finished_at", "-pk").first()
    try:
        with transaction.atomic():
            made = ImpactPreview.objects.create(organization_id=workflow.organization_id, workflow=workflow,
                                                days=days, revision=workflow.draft_revision, requested_by=by)
    except IntegrityError:  # another ask started it between our look and our insert: join it
        flying = mine.filter(status__in=IN_FLIGHT).first()
        if flying is None:
            raise
        return flying
    transaction.on_commit(lambda: _enqueue(made.pk))
    return made


def _enqueue(preview_id: int) -> None:
    try:
        enqueue_impact(preview_id)
    except Exception:  # the broker is down: the watch hands it over later (LOST_AFTER)
        logger.warning("Impact preview %s could not be queued; the watch will retry", preview_id, exc_info=True)


def preview_run(preview_id: int) -> None:
    """The worker's part: claim the preview, replay, store the result (or the error)."""
    if not ImpactPreview.objects.filter(pk=preview_id, kind=ImpactPreview.Kind.IMPACT,
                                        status=ImpactPreview.Status.QUEUED).update(
            status=ImpactPreview.Status.RUNNING):
        return  # done or taken by another worker
    made = ImpactPreview.objects.select_related("workflow").get(pk=preview_id)
    try:
        data, status, error = as_data(preview(made.workflow, days=made.days)), ImpactPreview.Status.DONE, ""
    except Exception as exc:  # shown on the page; the next request starts a new one
        logger.exception("Impact preview %s failed", preview_id)
        data, status, error = None, ImpactPreview.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    ImpactPreview.objects.filter(pk=preview_id).update(status=status, result=data, error=error,
                                                       finished_at=timezone.now())


def requeue_lost() -> int:
    """Previews whose task never reached a worker, or whose worker died, are handed over again."""
    now = timezone.now()
    lost = ImpactPreview.objects.filter(kind=ImpactPreview.Kind.IMPACT).filter(
        Q(status=ImpactPreview.Status.QUEUED, created_at__lt=now - LOST_AFTER)
        | Q(status=ImpactPreview.Status.RUNNING, created_at__lt=now - LOST_AFTER * 5))
    ids = list(lost.values_list("pk", flat=True)[:100])
    ImpactPreview.objects.filter(pk__in=ids).update(status=ImpactPreview.Status.QUEUED,
                                                    created_at=now - LOST_AFTER)
    for preview_id in ids:
        _enqueue(preview_id)
    return len(ids)
