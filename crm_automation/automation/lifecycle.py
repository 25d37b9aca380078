"""Lifecycle events (docs/product.md#lifecycle-events): what happened to a workflow or a run, as
other systems hear of it.

Each event is one `LifecycleEvent` row written inside the transaction that made the change (a
service's for a workflow's verbs, the engine's segment for a run), so an event exists exactly when
its change committed. Runs are written in bulk: one INSERT for all the runs a dispatch starts or a
segment ends. A run whose history is not kept (the plan's history quota is used up) has none.

In an organization with event subscriptions (each process knows which for a few seconds), the
events' deliveries are written in the same transaction (webhooks/subscriptions.py) and the commit
pokes a worker to send them; the minute schedule sends anything a lost poke left.
"""

import logging
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm_automation.automation.models import (
    LifecycleEvent,
    LifecycleType,
    RunStatus,
    Workflow,
    WorkflowRun,
)
from crm_automation.bulk_insert import bulk_insert_values

Type = LifecycleType
logger = logging.getLogger(__name__)

RUN_ENDINGS: dict[str, str] = {
    RunStatus.COMPLETED: Type.RUN_COMPLETED,
    RunStatus.PARTIAL: Type.RUN_COMPLETED,  # it went on past a failed step: over, with its status in data
    RunStatus.FAILED: Type.RUN_FAILED,
    RunStatus.PAUSED: Type.RUN_PAUSED,
    RunStatus.CANCELLED: Type.RUN_CANCELLED,
}
VERB_TYPES = {"activate": Type.WORKFLOW_ACTIVATED, "pause": Type.WORKFLOW_PAUSED, "archive": Type.WORKFLOW_ARCHIVED}
SUBSCRIBERS_TTL = 5.0  # seconds a process trusts its list of organizations with subscriptions

_subscribers: tuple[float, frozenset[int]] = (0.0, frozenset())


def who(by: Any) -> str | None:
    return by.get_username() if by is not None else None


def workflow_data(workflow: Workflow, by: Any = None, **more: Any) -> dict[str, Any]:
    version = workflow.current_version.number if workflow.current_version_id and workflow.current_version else None
    return {"workflow": {"id": workflow.pk, "key": workflow.key, "name": workflow.name, "status": workflow.status,
                         "version": version, "trigger_type": workflow.trigger_type},
            "by": who(by), **more}


def workflow_event(type: str, workflow: Workflow, by: Any = None, **more: Any) -> LifecycleEvent:
    """One event about a workflow, in the caller's transaction."""
    event = LifecycleEvent.objects.create(
        organization_id=workflow.organization_id, type=type, workflow_id=workflow.pk,
        data=workflow_data(workflow, by, **more), occurred_at=timezone.now())
    _fan_out([event])
    return event


def _run_data(run: WorkflowRun, status: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "run": {"id": run.pk, "status": status, "workflow_id": run.workflow_id, "version_id": run.version_id,
                "trigger_type": run.trigger_type, "record": {"type": run.trigger_entity_type,
                                                             "id": str(run.trigger_entity_id)},
                "started_at": run.started_at.isoformat() if run.started_at else None,
                "finished_at": run.finished_at.isoformat() if run.finished_at else None}}
    if run.error and status != RunStatus.COMPLETED:
        data["run"]["error"] = run.error[:500]
    if "workflow" in run._state.fields_cache:  # loaded already: name it (no query for it)
        data["workflow"] = {"id": run.workflow.pk, "key": run.workflow.key, "name": run.workflow.name}
    return data


def _runs_events(typed: Iterable[tuple[str, WorkflowRun]]) -> int:
    """One event per (type, run), all in one INSERT in the caller's transaction; runs whose
    history is not kept and simulated runs have none."""
    now = timezone.now()
    rows = [{"organization_id": run.organization_id, "type": type, "workflow_id": run.workflow_id, "run_id": run.pk,
             "data": _run_data(run, run.status), "occurred_at": now}
            for type, run in typed if not run.history_suppressed and not run.simulated]
    if rows:
        pks = bulk_insert_values(LifecycleEvent, rows)  # (with their ids, on both databases)
        subscribed = subscribed_organizations()
        # Objects only for the events someone subscribes to (nearly always none): what _fan_out reads.
        _fan_out([LifecycleEvent(pk=pk, **row) for pk, row in zip(pks, rows, strict=True)
                  if row["organization_id"] in subscribed])
    return len(rows)


def runs_started(runs: Iterable[WorkflowRun]) -> int:
    return _runs_events((Type.RUN_STARTED, run) for run in runs)


def runs_ended(runs: Iterable[WorkflowRun]) -> int:
    """run.completed / failed / paused / cancelled, by each run's status."""
    return _runs_events((RUN_ENDINGS[run.status], run) for run in runs if run.status in RUN_ENDINGS)


# --- Reading them in order ------------------------------------------------------------------------
SETTLE_SECONDS = 10  # no transaction that writes an event stays open this long after it (segments are ~1 s)


def settled(after: int, ids: list[int]) -> int:
    """How far past `after` a reader may move its cursor over `ids` (ascending ids of one
    organization's events after it): the last of them below which no id can still appear.

    Ids are taken at INSERT, not at commit: on PostgreSQL a transaction that took id 100 may commit
    after one that took 101, so a reader that saw 101 must not pass 100 yet. Every id of the table
    (all organizations) up to a point being present means nothing below it is still to come; a hole
    followed by an event older than SETTLE_SECONDS is an insert that rolled back (an event is
    written at the end of its transaction, which commits within a second or so). One COUNT per look, a few when there is
    a hole (bisection)."""
    if not ids:
        return after

    def whole(upto: int) -> bool:
        return LifecycleEvent.objects.filter(id__gt=after, id__lte=upto).count() == upto - after

    while ids:
        if whole(ids[-1]):
            return ids[-1]
        low, high = -1, len(ids) - 1  # whole up to ids[low] (after itself for -1), not up to ids[high]
        while high - low > 1:
            middle = (low + high) // 2
            if whole(ids[middle]):
                low = middle
            else:
                high = middle
        past_hole = LifecycleEvent.objects.filter(pk=ids[high]).values_list("occurred_at", flat=True).first()
        if past_hole is None or past_hole > timezone.now() - timedelta(seconds=SETTLE_SECONDS):
            return ids[low] if low >= 0 else after  # the hole may still fill: wait at its edge
        after, ids = ids[high], ids[high + 1:]  # an old hole: a rolled-back insert; go on past it
    return after


# --- Waking the delivery ----------------------------------------------------------------------------

def subscribed_organizations() -> frozenset[int]:
    """The organizations with an active subscription, as this process last read them (at most
    SUBSCRIBERS_TTL seconds ago): one query every few seconds, never one per event."""
    global _subscribers
    read_at, organizations = _subscribers
    if time.monotonic() - read_at > SUBSCRIBERS_TTL:
        from crm_automation.webhooks.models import EventSubscription

        organizations = frozenset(EventSubscription.objects.filter(active=True)
                                  .values_list("organization_id", flat=True).distinct())
        _subscribers = (time.monotonic(), organizations)
    return organizations


def forget_subscribers() -> None:
    """A subscription was made or changed in this process: read them again at the next event."""
    global _subscribers
    _subscribers = (0.0, frozenset())


def _fan_out(events: list[LifecycleEvent]) -> None:
    """The events' deliveries to subscriptions, in their transaction; a worker poked after it."""
    subscribed = subscribed_organizations()
    events = [event for event in events if event.organization_id in subscribed]
    if not events:
        return  # (nearly always: no query at all)
    from crm_automation.webhooks.subscriptions import deliveries_for, enqueue_delivery

    if not deliveries_for(events) or not settings.AUTOMATION["NUDGE"]:
        return  # (tests send them themselves; the minute schedule does too)
    wanted = sorted({event.organization_id for event in events})

    def enqueue() -> None:
        try:
            for organization_id in wanted:
                enqueue_delivery(organization_id)
        except Exception:  # noqa: BLE001 (the change committed; the minute schedule sends what a lost poke did not)
            logger.warning("Could not poke the lifecycle delivery for %s; the minute schedule will", wanted,
                           exc_info=True)

    transaction.on_commit(enqueue)
