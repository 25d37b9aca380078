"""Regression check at publish (docs/product.md#regression-check): before a live workflow's saved
edits are published, the last N real runs are replayed through the live version and through the
draft, and the runs whose start, path or effects would differ are listed. Nothing is sent or
written but the check's own row.

For each run, its event is matched by dispatch's one rule (triggers/matching.py) against each
definition, then each definition that would start is walked by the real engine in a sandbox
(runtime/engine/simulate.py, as Simulate does): every walk in a savepoint of its own that is rolled
back, so one walk's field update never shows in the next, and no email, task, field change, run
or event survives. The two walks are compared by:

- started or not (the matching rule's reason when not);
- the path: the steps in the order they ran and the branch each took;
- the effects: each tool call's type and its settings as they read for the run (templates
  rendered), and how the run would end.

The trigger data (stages, changed fields, a deleted record's snapshot, a contact or a business
event's data) is the event's, as recorded; a deal, lead or project is read as it is now (an event
keeps the change, not a copy of the record). Each listed run says which it used.
"""

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from crm_automation.automation.definition import catalog, conditions, context, graph
from crm_automation.automation.models import AutomationEvent, ImpactPreview, Workflow, WorkflowRun, WorkflowVersion
from crm_automation.automation.nodes import REGISTRY, control
from crm_automation.automation.runtime import engine
from crm_automation.automation.runtime.queue import enqueue_regression
from crm_automation.automation.services import impact
from crm_automation.automation.services.simulation import stand_in_for
from crm_automation.automation.services.workflows import has_unpublished_changes, published_version
from crm_automation.automation.triggers import matching
from crm_automation.crm.models import Stage
from crm_automation.refusals import Refused

logger = logging.getLogger(__name__)

DEFAULT_RUNS, MAX_RUNS = 50, 200
NOUNS = {"send_email": "email", "create_task": "task", "update_field": "field update", "send_sms": "text message",
         "notify": "notification", "http_request": "HTTP request"}
WAYS = {"condition-true": "yes", "condition-false": "no"}  # a branch in a path's words
QUOTE_ROOM = 80  # a setting's value is quoted up to this many characters in a reason


def runs_checked() -> int:
    """How many of the latest runs a check replays (AUTOMATION["REGRESSION_RUNS"], at most MAX_RUNS)."""
    wanted = settings.AUTOMATION.get("REGRESSION_RUNS", DEFAULT_RUNS)
    return max(1, min(wanted, MAX_RUNS))


class _Rollback(Exception):
    pass


@dataclass
class Walked:
    """One definition's replay of one run's event."""

    started: bool
    why_not: str = ""  # the matching rule's reason when it would not start
    status: str = ""
    error: str = ""
    path: list[tuple[str, str]] = field(default_factory=list)  # (node id, branch taken) in order
    # node id (and loop token) → {"node", "type", "settings" by place, "status"}
    effects: dict[str, dict[str, Any]] = field(default_factory=dict)


def _flat(value: object, where: str, found: dict[str, str]) -> None:
    """A config's leaves by place ("subject", "rules[0].value"), as rendered_settings names them."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(inner, f"{where}.{key}" if where else str(key), found)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            _flat(inner, f"{where}[{index}]", found)
    else:
        found[where] = "" if value is None else str(value)


def _listens(definition: dict, event: AutomationEvent) -> bool:
    trigger_type = definition["trigger_type"]
    return trigger_type == event.kind or trigger_type in catalog.listeners(event.kind)


def _walk(workflow: Workflow, version: WorkflowVersion | None, definition: dict, flow: graph.Graph,
          event: AutomationEvent, number: int) -> Walked:
    """Walk `version` (None: the draft, as version `number`) on a copy of `event` with the engine,
    in a savepoint rolled back."""
    walked = Walked(started=True)
    try:
        with transaction.atomic():
            if version is None:  # the draft: a version for as long as the walk lasts
                version = WorkflowVersion.objects.create(workflow=workflow, number=number, document=workflow.document)
                version.__dict__["definition"] = definition  # (not compiled again nor kept by the process)
            copy = AutomationEvent.objects.create(
                organization_id=event.organization_id, kind=event.kind, entity_type=event.entity_type,
                entity_id=event.entity_id, payload=event.payload, depth=event.depth, processed_at=timezone.now())
            run = WorkflowRun.objects.create(
                organization_id=workflow.organization_id, workflow=workflow, version=version, event=copy,
                trigger_type=definition["trigger_type"], trigger_entity_type=event.entity_type,
                trigger_entity_id=event.entity_id, simulated=True, lease_owner="regression")
            walked.status, walked.error, rows = engine.walk_without_effects(run, stand_in_for(definition, None))
            for row in sorted(rows, key=lambda r: r["position"]):
                node = flow.nodes.get(row["node_id"])
                if node is None:
                    continue
                walked.path.append((node.id, str((row["result"] or {}).get("handle") or "")))
                if node.type not in control.FLOW:
                    settings_read: dict[str, str] = {}
                    _flat(node.config, "", settings_read)
                    settings_read.update((row["input"] or {}).get("settings") or {})
                    # (a step in a loop's body runs once per item: each is an effect of its own)
                    place = f"{node.id}[{row['token']}]" if row.get("token") else node.id
                    walked.effects[place] = {"node": node.id, "type": node.type, "settings": settings_read,
                                             "status": row["status"]}
            raise _Rollback  # nothing of the walk stays: no run, event, email, task or field change
    except _Rollback:
        pass
    return walked


def _replay(workflow: Workflow, version: WorkflowVersion | None, definition: dict, flow: graph.Graph,
            event: AutomationEvent, trigger: dict, full: dict | None, names: dict[str, str], number: int) -> Walked:
    """Whether `definition` starts for `event` (the one matching rule) and, if it does, its walk."""
    if not _listens(definition, event):
        listens = catalog.trigger_label(definition["trigger_type"]).lower()
        return Walked(started=False, why_not=f"it now starts on another trigger: “{listens}”")
    if event.kind not in catalog.MANUAL:  # a start by hand matches nothing: a person chose the record

        def load(full: dict | None = full) -> dict | None:
            return full

        verdict = matching.match(event, definition, trigger, load, names)
        if not verdict.matched:
            return Walked(started=False, why_not=verdict.reason)
    return _walk(workflow, version, definition, flow, event, number)


def _label(flow: graph.Graph, node_id: str) -> str:
    node = flow.nodes.get(node_id)
    if node is None:
        return node_id
    action = REGISTRY.get(node.type) or control.FLOW.get(node.type)
    return node.label or getattr(action, "label", "") or node.type


def path_in_words(flow: graph.Graph, walked: Walked) -> str:
    """“Big? (yes) → Send email”: the steps in order, a branch's way in brackets."""
    if not walked.started:
        return "does not start"
    words = [_label(flow, node_id) + (f" ({WAYS.get(handle, handle)})" if handle else "")
             for node_id, handle in walked.path]
    return " → ".join(words) or "starts and does nothing"


def _quote(text: str) -> str:
    return "‘" + (text if len(text) <= QUOTE_ROOM else text[:QUOTE_ROOM - 1] + "…") + "’"


def _path_reason(live_flow: graph.Graph, draft_flow: graph.Graph, live: Walked, draft: Walked,
                 explanations: dict[str, str]) -> str:
    """Where the draft's path leaves the live one's, in words."""
    at = 0
    while at < min(len(live.path), len(draft.path)) and live.path[at] == draft.path[at]:
        at += 1
    if at < len(live.path) and at < len(draft.path) and live.path[at][0] == draft.path[at][0]:
        node_id = live.path[at][0]  # the same step takes another way: a condition (or a route)
        side = draft.path[at][1].removeprefix("condition-")
        nxt_live = _label(live_flow, live.path[at + 1][0]) if at + 1 < len(live.path) else ""
        nxt_draft = _label(draft_flow, draft.path[at + 1][0]) if at + 1 < len(draft.path) else ""
        what = explanations.get(node_id) or _label(draft_flow, node_id)
        head = f"condition `{what}` now {side}" if side in ("true", "false") else \
            f"“{_label(draft_flow, node_id)}” now goes {side or 'no way'}"
        if not nxt_draft:
            return f"{head}: stops before {nxt_live}" if nxt_live else head
        return f"{head}: goes to {nxt_draft}" + (f" instead of {nxt_live}" if nxt_live else "")
    live_ids, draft_ids = [n for n, _ in live.path], [n for n, _ in draft.path]
    gone = [_label(live_flow, n) for n in dict.fromkeys(live_ids) if n not in draft_ids]
    new = [_label(draft_flow, n) for n in dict.fromkeys(draft_ids) if n not in live_ids]
    words = ([f"no longer reaches {', '.join(gone)}"] if gone else []) + \
        ([f"now also reaches {', '.join(new)}"] if new else [])
    return "; ".join(words) or "takes the same steps in another order"


def compare(live_flow: graph.Graph, draft_flow: graph.Graph, live: Walked, draft: Walked,
            explanations: dict[str, str] | None = None) -> list[str]:
    """Why the draft's replay of a run differs from the live version's, one reason per difference
    (empty: the same)."""
    if live.started != draft.started:
        return [f"would not start: {draft.why_not}"] if live.started else \
            [f"would start (the live version does not: {live.why_not})"]
    if not live.started:
        return []
    reasons = []
    if live.path != draft.path:
        reasons.append(_path_reason(live_flow, draft_flow, live, draft, explanations or {}))
    for place, before in live.effects.items():
        after = draft.effects.get(place)
        if after is None:
            continue  # (not reached: the path's reason says so)
        label = _label(live_flow, before["node"])
        noun = NOUNS.get(before["type"], label)
        if after["type"] != before["type"]:
            reasons.append(f"“{label}” is now a {NOUNS.get(after['type'], after['type'])}")
            continue
        for place in sorted(set(before["settings"]) | set(after["settings"])):
            old, new = before["settings"].get(place, ""), after["settings"].get(place, "")
            if old != new:
                reasons.append(f"{noun} {place} changed: {_quote(old)} → {_quote(new)}")
        if before["status"] != after["status"]:
            reasons.append(f"{noun} step would be {after['status']} instead of {before['status']}")
    if live.status != draft.status and not reasons:
        reasons.append(f"would end {draft.status} instead of {live.status}" + (f": {draft.error}" if draft.error
                                                                              else ""))
    return reasons


def check(workflow: Workflow, *, runs: int | None = None) -> dict[str, Any]:
    """Replay the last `runs` real runs of `workflow` through its live version and its draft;
    the result as the API gives it."""
    started = time.monotonic()
    runs = min(runs or runs_checked(), MAX_RUNS)
    live_version = published_version(workflow)  # (a rollout's version, while one is under way)
    assert live_version is not None, "a live workflow has its version"
    live_definition, draft_definition = live_version.definition, workflow.definition
    live_flow, draft_flow = graph.build(live_definition), graph.build(draft_definition)
    number = (workflow.versions.aggregate(last=Max("number"))["last"] or 0) + 1  # the draft's, while walked
    recent = list(_real_runs(workflow).select_related("event")[:runs])
    events = [run.event for run in recent]
    slugs, records = context.stage_slugs(events), context.load_records(events)
    names = dict(Stage.objects.filter(organization_id=workflow.organization_id).values_list("slug", "name"))
    differences = []
    for run in recent:
        event = run.event
        trigger = context.trigger_dict(event, slugs)
        full = matching.record_context(event, records.get(event.entity_id), trigger)
        try:
            live = _replay(workflow, live_version, live_definition, live_flow, event, trigger, full, names, number)
            draft = _replay(workflow, None, draft_definition, draft_flow, event, trigger, full, names, number)
        except Exception as exc:  # one run the sandbox cannot replay is listed, not the whole check lost
            logger.exception("Regression check of workflow %s could not replay run %s", workflow.pk, run.pk)
            live = draft = Walked(started=False)
            reasons = [f"could not be replayed: {type(exc).__name__}: {exc}"[:500]]
        else:
            explanations = {node_id: _condition_words(draft_flow, node_id) for node_id, _ in draft.path
                            if draft_flow.nodes[node_id].type == control.CONDITION}
            reasons = compare(live_flow, draft_flow, live, draft, explanations)
        if reasons:
            differences.append({
                "run": run.pk, "started_at": run.started_at.isoformat(), "reasons": reasons,
                "live_path": path_in_words(live_flow, live), "draft_path": path_in_words(draft_flow, draft),
                "about": str(context.acted_on(records.get(event.entity_id)) or ""), "record": _read_as(event)})
    return {"runs": runs, "checked": len(recent), "differ": len(differences), "same": len(recent) - len(differences),
            "live_version": live_version.number, "live_version_id": live_version.pk,
            "revision": workflow.draft_revision,
            "last_run": recent[0].pk if recent else None, "differences": differences,
            "seconds": time.monotonic() - started}


def _read_as(event: AutomationEvent) -> str:
    """How a replay read the run's record: what the event carries is as recorded; a record it
    only names is loaded as it is now."""
    if context.has_record(event.entity_type):
        return "as it is now"
    if event.entity_type == context.EVENT:
        return "the event's data as recorded, the records it names as they are now"
    return "as recorded in the event"


def _condition_words(flow: graph.Graph, node_id: str) -> str:
    """A condition's rules as a person reads them: “Deal › Amount is greater than 20000”."""
    config = flow.nodes[node_id].config
    parts = [conditions.describe(rule) for rule in config.get("rules") or [] if isinstance(rule, dict)]
    return f" {config.get('combinator', 'and')} ".join(parts)


# --- Worked out by a worker (as the impact preview is: impact.py) --------------------------------
Status = ImpactPreview.Status
KIND = ImpactPreview.Kind.REGRESSION


def _mine(workflow: Workflow) -> QuerySet[ImpactPreview]:
    return ImpactPreview.objects.filter(workflow=workflow, kind=KIND, days=0)


def _real_runs(workflow: Workflow) -> QuerySet[WorkflowRun]:
    """The runs a check replays: real ones (not simulated), started by their own trigger (not as
    another workflow's sub-workflow), newest first."""
    return (WorkflowRun.objects.filter(workflow=workflow, simulated=False, parent_run__isnull=True)
            .order_by("-started_at", "-id"))


def latest_run_id(workflow: Workflow) -> int | None:
    return _real_runs(workflow).values_list("pk", flat=True).first()


def is_current(made: ImpactPreview, workflow: Workflow, last_run: int | None) -> bool:
    """Whether a finished check still answers for `workflow`: the same saved edits, the same live
    version and no run since."""
    result = made.result or {}
    live = published_version(workflow)
    return (made.revision == workflow.draft_revision and result.get("live_version_id") == (live.pk if live else None)
            and result.get("last_run") == last_run)


def check_request(workflow: Workflow, *, by=None) -> ImpactPreview | None:
    """The regression check of `workflow`'s saved edits, in this order:

    1. the latest finished one, while it is current (is_current), or a failure within FAILED_FOR;
    2. the one in flight, whatever it checks: repeated asks join it;
    3. for a person who may not start one (a viewer), the latest finished one, or None;
    4. a new one handed to the workers (one in flight per workflow: `uniq_replay_in_flight`).

    Refused for a workflow with no saved edits waiting (nothing to compare)."""
    if not has_unpublished_changes(workflow):
        raise Refused(f"“{workflow.name}” has no saved edits waiting to be published: there is nothing to check.")
    mine = _mine(workflow)
    latest = mine.filter(status__in=(Status.DONE, Status.FAILED)).order_by("-finished_at", "-pk").first()
    if latest is not None:
        if latest.status == Status.DONE and is_current(latest, workflow, latest_run_id(workflow)):
            return latest
        if latest.status == Status.FAILED and latest.revision == workflow.draft_revision and \
                latest.finished_at is not None and latest.finished_at >= timezone.now() - impact.FAILED_FOR:
            return latest
    flying = mine.filter(status__in=impact.IN_FLIGHT).first()
    if flying is not None:
        return flying
    if not impact.may_start(by, workflow):
        return mine.filter(status=Status.DONE).order_by("-finished_at", "-pk").first()
    try:
        with transaction.atomic():
            made = ImpactPreview.objects.create(organization_id=workflow.organization_id, workflow=workflow,
                                                kind=KIND, days=0, revision=workflow.draft_revision,
                                                requested_by=by)
    except IntegrityError:  # another ask started it between our look and our insert: join it
        flying = mine.filter(status__in=impact.IN_FLIGHT).first()
        if flying is None:
            raise
        return flying
    transaction.on_commit(lambda: _enqueue(made.pk))
    return made


def _enqueue(check_id: int) -> None:
    try:
        enqueue_regression(check_id)
    except Exception:  # the broker is down: the watch hands it over later (impact.LOST_AFTER)
        logger.warning("Regression check %s could not be queued; the watch will retry", check_id, exc_info=True)


def check_run(check_id: int) -> None:
    """The worker's part: claim the check, replay, store the result (or the error)."""
    if not ImpactPreview.objects.filter(pk=check_id, kind=KIND, status=Status.QUEUED).update(status=Status.RUNNING):
        return  # done or taken by another worker
    made = ImpactPreview.objects.select_related("workflow", "workflow__current_version").get(pk=check_id)
    try:
        data, status, error = check(made.workflow), Status.DONE, ""
    except Exception as exc:  # shown on the page; the next request starts a new one
        logger.exception("Regression check %s failed", check_id)
        data, status, error = None, Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    # The revision it checked: the edits may have been saved again while it worked.
    revision = data["revision"] if data is not None else made.revision
    ImpactPreview.objects.filter(pk=check_id).update(status=status, result=data, error=error, revision=revision,
                                                     finished_at=timezone.now())


def requeue_lost() -> int:
    """Checks whose task never reached a worker, or whose worker died, are handed over again."""
    now = timezone.now()
    lost = ImpactPreview.objects.filter(kind=KIND).filter(
        Q(status=Status.QUEUED, created_at__lt=now - impact.LOST_AFTER)
        | Q(status=Status.RUNNING, created_at__lt=now - impact.LOST_AFTER * 5))
    ids = list(lost.values_list("pk", flat=True)[:100])
    ImpactPreview.objects.filter(pk__in=ids).update(status=Status.QUEUED, created_at=now - impact.LOST_AFTER)
    for check_id in ids:
        _enqueue(check_id)
    return len(ids)
