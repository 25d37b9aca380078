"""Worker step 1: claim a batch of events, decide for every candidate workflow, create runs."""

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from crm_automation.automation import plans
from crm_automation.automation.definition import catalog, context
from crm_automation.automation.models import (
    AutomationEvent,
    RunStatus,
    Workflow,
    WorkflowDecision,
    WorkflowRun,
    WorkflowStatus,
    WorkflowVersion,
)
from crm_automation.automation.runtime import leases, rollout
from crm_automation.automation.runtime.enrollment import Matched, enroll, holds, insert_runs
from crm_automation.automation.triggers import bulk, matching
from crm_automation.bulk_insert import bulk_insert, prepared_cursor
from crm_automation.compiled_query import CompiledQuery, updated_rows
from crm_automation.crm.models import Organization, Stage

logger = logging.getLogger(__name__)
Outcome = WorkflowDecision.Outcome


def claim_events(limit: int, *, fair: bool = False) -> list[AutomationEvent]:
    """Claim up to `limit` unprocessed events for this worker (a lease, not a lock), oldest first.

    `fair` (the drains): one organization's events only, the one of the oldest event among the
    organizations no worker is busy with (runs leased, events claimed), else the oldest. So a
    batch never makes one organization's changes wait behind another's slow provider in the
    same task, and a free worker turns to the organizations nobody serves (fairness.py) instead
    of piling onto one that already holds a worker.

    PostgreSQL skips rows another worker holds (SKIP LOCKED); SQLite serialises writers
    (IMMEDIATE transactions), so the SELECT and UPDATE below cannot interleave there either.
    A dispatch that outlives its lease is harmless: decisions and runs are unique per
    (event, workflow), so a second dispatch of the same events adds nothing.
    """
    return claim_fairly(limit, ask_others=False)[0] if fair else _claim(limit)


def claim_fairly(limit: int, *, ask_others: bool) -> tuple[list[AutomationEvent], bool | None]:
    """`claim_events(fair=True)`, and with `ask_others` whether another organization's events
    were waiting too (None when not asked): the drain's question, answered by the statement that
    picks the organization instead of one more round trip."""
    organization_id, others = _next_organization(ask_others)
    if organization_id is None:
        return [], others  # nothing waits unclaimed
    events = _claim(limit, organization_id)
    if events:
        return events, others
    # Another worker took that organization's events first: any organization's, and whether
    # others wait is no longer known for sure (so it is said they do: the drain looks again).
    return _claim(limit), (True if ask_others else None)


def unclaimed_events(now: datetime | None = None) -> QuerySet[AutomationEvent]:
    """Events waiting for a worker: unprocessed, and never claimed or with a lapsed claim."""
    now = now or timezone.now()
    return (AutomationEvent.objects.filter(processed_at__isnull=True)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)))


def _free_first(now: datetime) -> QuerySet[AutomationEvent, Any]:
    """The oldest waiting event of an organization no worker is busy with (runs leased, events claimed)."""
    leased = WorkflowRun.objects.filter(status=RunStatus.STARTED, lease_until__gt=now).values("organization_id")
    claimed = AutomationEvent.objects.filter(processed_at__isnull=True, claimed_until__gte=now).values(
        "organization_id")
    return (unclaimed_events(now).exclude(organization_id__in=leased).exclude(organization_id__in=claimed)
            .order_by("id").values("organization_id")[:1])


# Built and compiled once per process (compiled_query.py): a drain asks these at least twice.
_FREE_FIRST = CompiledQuery(_free_first, now=datetime)
_OLDEST = CompiledQuery(lambda now: unclaimed_events(now).order_by("id").values("organization_id")[:1], now=datetime)
_WAITING_ORGANIZATIONS = CompiledQuery(lambda now: unclaimed_events(now).values("organization_id"), now=datetime)
_WAITING: dict[tuple[int, bool], CompiledQuery] = {}  # (limit, of one organization): the claim's look


def _waiting(limit: int, of_one_organization: bool) -> CompiledQuery:
    """The ids of the oldest `limit` waiting events (the LIMIT is in the SQL: one query per size)."""
    key = (limit, of_one_organization)
    if key not in _WAITING:
        if of_one_organization:
            _WAITING[key] = CompiledQuery(lambda now, organization: unclaimed_events(now).filter(
                organization_id=organization).order_by("id").values("id")[:limit], now=datetime, organization=int)
        else:
            _WAITING[key] = CompiledQuery(
                lambda now: unclaimed_events(now).order_by("id").values("id")[:limit], now=datetime)
    return _WAITING[key]


def _next_organization(ask_others: bool = False) -> tuple[int | None, bool | None]:
    """The organization of the oldest waiting event, preferring those no worker is busy with,
    and (`ask_others`) whether another organization's events wait: one statement (the second
    look runs only if the first finds nothing)."""
    now = timezone.now()
    free, free_params = _FREE_FIRST.sql(now=now)
    oldest, oldest_params = _OLDEST.sql(now=now)
    picked = f"SELECT COALESCE(({free}), ({oldest})) AS org"
    connection = connections[router.db_for_read(AutomationEvent)]
    with prepared_cursor(connection) as cursor:
        if not ask_others:
            cursor.execute(picked, [*free_params, *oldest_params])
            return cursor.fetchone()[0], None
        waiting, waiting_params = _WAITING_ORGANIZATIONS.sql(now=now)
        cursor.execute(f"SELECT picked.org, EXISTS(SELECT 1 FROM ({waiting}) w WHERE w.organization_id <> picked.org) "
                       f"FROM ({picked}) picked", [*waiting_params, *free_params, *oldest_params])
        found, others = cursor.fetchone()
        return found, bool(others)


def _claim(limit: int, organization_id: int | None = None) -> list[AutomationEvent]:
    """One statement: lease the oldest waiting events and return them (UPDATE … WHERE id IN
    (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …). PostgreSQL skips rows another worker
    is claiming; SQLite runs one writing statement at a time."""
    now = timezone.now()
    if organization_id is not None:
        select, params = _waiting(limit, True).sql(now=now, organization=organization_id)
    else:
        select, params = _waiting(limit, False).sql(now=now)
    connection = connections[router.db_for_write(AutomationEvent)]
    if connection.features.has_select_for_update_skip_locked:
        select += " FOR UPDATE SKIP LOCKED"
    quote = connection.ops.quote_name
    table = quote(AutomationEvent._meta.db_table)
    until = AutomationEvent._meta.get_field("claimed_until").get_db_prep_save(now + leases.lease_length(), connection)
    done = AutomationEvent._meta.get_field("processed_at").get_db_prep_save(now, connection)
    listened, listened_params = _listened(connection)
    claimed = updated_rows(AutomationEvent, f"UPDATE {table} SET {quote('claimed_until')} = %s, "
                           f"{quote('processed_at')} = CASE WHEN {listened} THEN NULL ELSE %s END "
                           f"WHERE {quote('id')} IN ({select})", [until, *listened_params, done, *params],
                           using=connection.alias, prepared=True)
    return sorted(claimed, key=lambda event: event.pk)


_LISTENED: dict[str, tuple[str, list[Any]]] = {}  # by database vendor
# The workflows an event is decided for (`_candidates`), and so the ones the claim asks about.
CANDIDATE_STATUSES = [WorkflowStatus.ACTIVATED, WorkflowStatus.PAUSED, WorkflowStatus.DRAFT]


def _listened(connection: Any) -> tuple[str, list[Any]]:
    """SQL that is true for an event (the claim's row) that some workflow of its organization
    may be started by: a candidate of `_candidates` (a draft, paused or activated workflow with
    a version, of a trigger type that listens to the event's kind). The claim marks every other
    event processed at once: nothing could decide on it (most saves are of this kind when few
    workflows listen), so it costs one row write, not two, and no dispatch."""
    if connection.vendor not in _LISTENED:
        quote = connection.ops.quote_name
        event, workflow = quote(AutomationEvent._meta.db_table), quote(Workflow._meta.db_table)
        kind, trigger_type = f"{event}.{quote('kind')}", f"w.{quote('trigger_type')}"
        mapped = sorted(catalog.LISTENERS.items())
        listens = " OR ".join([
            f"({trigger_type} = {kind} AND {kind} NOT IN ({', '.join(['%s'] * len(mapped))}))",
            *(f"({kind} = %s AND {trigger_type} IN ({', '.join(['%s'] * len(types))}))" for _, types in mapped)])
        statuses = CANDIDATE_STATUSES
        _LISTENED[connection.vendor] = (
            f"EXISTS (SELECT 1 FROM {workflow} w "
            f"WHERE w.{quote('organization_id')} = {event}.{quote('organization_id')} "
            f"AND w.{quote('current_version_id')} IS NOT NULL "
            f"AND w.{quote('status')} IN ({', '.join(['%s'] * len(statuses))}) AND ({listens}))",
            [*(str(s) for s in statuses), *(k for k, _ in mapped), *(v for k, types in mapped for v in (k, *types))])
    return _LISTENED[connection.vendor]


def _mark_processed(event_ids: list[int]) -> set[int]:
    """Mark the events processed and lock them (one UPDATE … RETURNING); returns those that were
    not processed yet. Called first in the dispatch's transaction: if the transaction fails,
    the mark goes with it and the events are claimed again after their lease."""
    connection = connections[router.db_for_write(AutomationEvent)]
    quote = connection.ops.quote_name
    field = AutomationEvent._meta.get_field("processed_at")
    now = field.get_db_prep_save(timezone.now(), connection)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(AutomationEvent._meta.db_table)} SET {quote(field.column)} = %s "
            f"WHERE {quote('id')} IN ({', '.join(['%s'] * len(event_ids))}) AND {quote(field.column)} IS NULL "
            f"RETURNING {quote('id')}", [now, *event_ids])
        return {pk for (pk,) in cursor.fetchall()}


def _decide(event: AutomationEvent, workflow: Workflow, version: WorkflowVersion, org: Organization,
            trigger: dict[str, Any], load: Callable[[], dict[str, Any] | None],
            names: dict[str, str]) -> tuple[str, str] | None:
    """The decision for one candidate workflow on the version the record runs; None for a draft
    that would not have run anyway (drafts are listed only when they are the answer to "why
    didn't it run?")."""
    if workflow.status == WorkflowStatus.DRAFT:
        if not plans.includes_automation(org.plan):
            return None
        if not matching.match(event, version.definition, trigger, load, names).matched:
            return None
        # (the outcome already reads "Draft: not activated": the reason says only what follows)
        return Outcome.DRAFT, "it would have run if it were activated"
    max_depth = settings.AUTOMATION["MAX_CHAIN_DEPTH"]
    if not plans.includes_automation(org.plan):
        return Outcome.PLAN, f"the {org.get_plan_display()} plan does not include automation"
    if workflow.status == WorkflowStatus.PAUSED:
        return Outcome.PAUSED, "the workflow is paused"
    if event.depth > max_depth:
        return Outcome.LOOP_GUARD, (f"this change is {event.depth} steps down a chain of workflow "
                                    f"changes (run {event.caused_by_run_id}); the limit is {max_depth}")
    outcome, reason, _ = matching.match(event, version.definition, trigger, load, names)
    return outcome, reason


def run_metadata(trigger: dict[str, Any], full: dict[str, Any] | None) -> dict[str, Any]:
    """What a run shows of its trigger in lists (the stages, the record's title): dispatch's and a
    start by hand's (triggers/on_demand.py)."""
    meta = {"from_stage": trigger.get("from_stage"), "to_stage": trigger.get("to_stage")}
    if full and "deal" in full:
        meta["deal_title"] = full["deal"]["title"]
    if full and "lead" in full:
        meta["lead_name"] = full["lead"]["name"]
    return meta


_CANDIDATES = CompiledQuery(
    lambda organizations, kinds: Workflow.objects.filter(
        organization_id__in=organizations, trigger_type__in=kinds, current_version__isnull=False,
        status__in=CANDIDATE_STATUSES,
    ).select_related("current_version", "organization", "rollout__version").order_by("pk"),
    organizations=list[int], kinds=list[str], prepared=True)
_STAGES = CompiledQuery(lambda organizations: Stage.objects.filter(organization_id__in=organizations).values_list(
    "pk", "organization_id", "slug", "name"), organizations=list[int], prepared=True)


def _candidates(events: list[AutomationEvent]) -> dict[tuple[int, str], list[Workflow]]:
    found: dict[tuple[int, str], list[Workflow]] = defaultdict(list)
    kinds = sorted({trigger_type for e in events for trigger_type in catalog.listeners(e.kind)})
    for wf in _CANDIDATES.models(organizations=sorted({e.organization_id for e in events}), kinds=kinds):
        found[(wf.organization_id, wf.trigger_type)].append(wf)
    return found


@dataclass
class Dispatched:
    """What a dispatch made: the runs (with their workflow, version and event in memory) and the
    records and stage slugs it loaded. With a `token`, the runs were inserted already leased to
    it: the engine starts them from here without claiming or reading them back (execute_leased)."""

    runs: list[WorkflowRun] = field(default_factory=list)
    records: dict[Any, Any] = field(default_factory=dict)
    slugs: dict[int, str] = field(default_factory=dict)
    token: str = ""

    def merge(self, other: "Dispatched") -> None:
        self.runs += other.runs
        self.records.update(other.records)
        self.slugs.update(other.slugs)


def dispatch_events(events: list[AutomationEvent]) -> list[int]:
    """Dispatch a batch and leave its runs for any worker to claim. Returns the runs' ids."""
    return [run.pk for run in dispatch(events).runs]


def dispatch(events: list[AutomationEvent], *, token: str = "") -> Dispatched:
    """Record a decision per (event, candidate workflow), create the runs, mark events done.

    One transaction: either all of it is recorded or none (and the events are claimed again
    after their lease). With `token`, the runs are inserted leased to it (their first claim,
    counted as an attempt), so the caller executes them without another UPDATE; a caller that
    dies leaves them to the watchdog one lease later, as a claim would.
    """
    events = [e for e in events if e.processed_at is None]  # (the claim settled those no workflow listens to)
    if not events:
        return Dispatched(token=token)
    workflows = _candidates(events)
    # The organizations come with their workflows: one with none has nothing to decide here.
    orgs = {wf.organization_id: wf.organization for found in workflows.values() for wf in found}
    slugs: dict[int, str] = {}  # every stage of these organizations: what the events' stage ids name
    stage_names: dict[int, dict[str, str]] = defaultdict(dict)
    for pk, org_id, slug, name in _STAGES.rows(organizations=sorted(orgs)):
        slugs[pk] = slug
        stage_names[org_id][slug] = name
    records: dict[Any, Any] | None = None  # loaded only if some event gets past the cheap checks

    decisions: list[WorkflowDecision] = []
    matched: list[Matched] = []
    for event in events:
        trigger = context.trigger_dict(event, slugs)
        cache: dict[str, dict[str, Any] | None] = {}

        def load(event: AutomationEvent = event, trigger: dict[str, Any] = trigger,
                 cache: dict[str, dict[str, Any] | None] = cache) -> dict[str, Any] | None:
            nonlocal records
            if "full" not in cache:
                if records is None:
                    records = context.load_records(events)
                cache["full"] = matching.record_context(event, records.get(event.entity_id), trigger)
            return cache["full"]

        candidates = [wf for trigger_type in catalog.listeners(event.kind)
                      for wf in workflows.get((event.organization_id, trigger_type), [])]
        for wf in candidates:
            if not matching.offered(event, wf.pk):
                continue  # a due time or an occasion belongs to its own workflow: the others are not candidates
            version, rolling = rollout.version_for(wf, rollout.record_of(event))
            assert version is not None, "_candidates takes workflows with a version only"
            decided = _decide(event, wf, version, orgs[event.organization_id], trigger, load,
                              stage_names[event.organization_id])
            if decided is None:
                continue
            outcome, reason = decided
            if rolling:
                reason = f"{reason} ({rolling})"
            decisions.append(WorkflowDecision(event=event, workflow=wf, version=version,
                                              entity_id=event.entity_id, outcome=outcome, reason=reason[:2000]))
            if outcome == Outcome.MATCHED:
                matched.append((event, wf, decisions[-1], run_metadata(trigger, cache.get("full"))))

    lease = leases.leased_to(token) if token else {}
    with transaction.atomic():
        # A second dispatch of the same events (a worker that outlived its lease) waits here for
        # the first one and then finds nothing left to do.
        pending = _mark_processed([e.pk for e in events])
        decisions = [d for d in decisions if d.event.pk in pending]
        matched = [m for m in matched if m[0].pk in pending]
        # Shadow mode: a previewed run holds no enrollment, counts against no quota, is never held.
        shadows = [m for m in matched if m[1].mode == Workflow.Mode.SHADOW]
        matched = enroll(bulk.sort_out([m for m in matched if m[1].mode != Workflow.Mode.SHADOW]))
        per_org: dict[int, list[Matched]] = defaultdict(list)
        for item in matched:
            per_org[item[0].organization_id].append(item)
        matched_runs: list[tuple[WorkflowRun, WorkflowDecision]] = []
        for org_id, items in sorted(per_org.items()):  # one lock order for the usage rows
            keep = plans.reserve_history(organization=orgs[org_id], runs=len(items))
            for i, (event, wf, decision, meta) in enumerate(items):
                suppressed = i >= keep
                if suppressed:
                    decision.outcome = Outcome.MATCHED_UNLOGGED
                    decision.reason = ("ran, but its history is not kept: the plan's monthly quota "
                                       "of logged runs is used up")
                matched_runs.append((WorkflowRun(
                    organization_id=org_id, workflow=wf, version=decision.version, event=event,
                    trigger_type=event.kind, trigger_entity_type=event.entity_type,
                    trigger_entity_id=event.entity_id, metadata=meta, history_suppressed=suppressed,
                    holds_enrollment=holds(wf), **lease,
                ), decision))
        for event, wf, decision, meta in shadows:
            decision.reason = f"{decision.reason} (shadow mode: every effect previewed, nothing sent)"[:2000]
            matched_runs.append((WorkflowRun(
                organization_id=event.organization_id, workflow=wf, version=decision.version, event=event,
                trigger_type=event.kind, trigger_entity_type=event.entity_type, trigger_entity_id=event.entity_id,
                metadata={**meta, "shadow": True}, simulated=True, holds_enrollment=False, **lease), decision))
        # Runs first: a refused one's decision must say so before the decisions are written.
        runs = insert_runs(matched_runs) if matched_runs else []
        bulk_insert(decisions, ignore_conflicts=True)
    return Dispatched(runs=runs, records=records or {}, slugs=slugs, token=token)
