"""Impact preview (seed 003): what a draft or an edited workflow would have done over the last
N days of recorded changes, shown before it goes live. Nothing is sent or written.

Each recorded event the workflow listens to is matched as dispatch would match it (stage filter,
watched fields, conditions — checked against the records as they are now, since an event keeps
its change, not a copy of the record), then walked through the graph: conditions are evaluated
and take their side, parallel branches all run, a question is counted and assumed approved, a
loop's body is counted once per run, waits are passed. The result: how many records would have
entered, why the others would not, and how many runs would have reached each step and each
branch. The walk does not run actions, so steps whose outcome depends on an earlier step's
output (a function's rows, an HTTP answer) are counted as reached, not evaluated.
"""

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from crm_automation.automation import catalog, conditions, context, control, field_changes, graph, questions
from crm_automation.automation.definitions import definition_of
from crm_automation.automation.dispatch import stage_mismatch
from crm_automation.automation.models import AutomationEvent, Workflow
from crm_automation.automation.retention import first_event_after
from crm_automation.crm.models import Stage

BATCH = 1000
MAX_EVENTS = 200_000


@dataclass
class Impact:
    days: int
    events: int = 0
    entered: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason → events
    reached: Counter = field(default_factory=Counter)  # node id → runs
    branches: Counter = field(default_factory=Counter)  # (node id, handle) → runs
    seconds: float = 0.0
    truncated: bool = False


def _walk(flow: graph.Graph, trigger_type: str, ctx: dict, impact: Impact) -> None:
    """Count the nodes one run would reach, taking each condition's side for this context."""
    seen, todo = set(), [flow.trigger]
    while todo:
        node_id = todo.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = flow.nodes.get(node_id)
        handles = None
        if node is not None:
            impact.reached[node_id] += 1
            if node.type == control.CONDITION:
                passed = control.gate(node.config, trigger_type, ctx).passed
                handles = {graph.TRUE if passed else graph.FALSE}
            elif node.type == questions.USER_INPUT:
                handles = {questions.APPROVED}
            elif node.type == control.LOOP:
                handles = {graph.BODY, graph.DONE}
        for handle, target in flow.targets(node_id, handles):
            if handle:
                impact.branches[(node_id, handle)] += 1
            if not flow.ends_iteration(node_id, target):
                todo.append(target)


def _skip_reason(definition: dict, event, trigger: dict, names: dict[str, str], full) -> str | None:
    mismatch = stage_mismatch(definition.get("trigger_config") or {}, trigger, names)
    if mismatch:
        return "the stage did not match"
    trigger_type = definition["trigger_type"]
    if trigger_type in catalog.UPDATED and field_changes.unwatched(
            definition.get("trigger_config") or {}, field_changes.changed_of(event.payload)):
        return "no watched field changed"
    if full is None:
        return "the record no longer exists"
    if not conditions.evaluate(definition.get("conditions"), trigger_type, {"trigger": trigger}, lambda: full).passed:
        return "the conditions were false"
    return None


def preview(workflow: Workflow, *, days: int = 30, definition: dict | None = None) -> Impact:
    """Replay the last `days` of the organization's recorded changes through `definition` (the
    workflow as saved by default)."""
    started = time.monotonic()
    definition = definition or definition_of(workflow)
    impact = Impact(days=days)
    kinds = [kind for kind, _ in catalog.TRIGGER_CHOICES if definition["trigger_type"] in catalog.listeners(kind)]
    if not kinds or catalog.TRIGGER_ENTITY.get(definition["trigger_type"]) is None:
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
            impact.events += 1
            trigger = context.trigger_dict(event, slugs)
            record = records.get(event.entity_id)
            full = None if record is None else context.full_context(event, record, trigger)
            why = _skip_reason(definition, event, trigger, names, full)
            if why:
                impact.skipped[why] += 1
                continue
            impact.entered += 1
            _walk(flow, definition["trigger_type"], full, impact)
        if impact.events >= MAX_EVENTS:
            impact.truncated = True
            break
    impact.seconds = time.monotonic() - started
    return impact
