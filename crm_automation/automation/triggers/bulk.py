"""Bulk changes by source (docs/product.md#bulk-operations): a 5,000-lead import must
not send 5,000 welcome emails because one workflow listens to new leads.

Every recorded change carries its source (crm/sources.py); changes made by one import or bulk
action also carry the operation's id and size (`{{trigger.bulk.size}}`). Each workflow says,
on its trigger, what it does when one operation changes more than `over` records:

    trigger_config: {..., "bulk": {"mode": "hold", "over": 100}}     # YAML: bulk: {mode: hold, over: 100}

- ``run_all`` (the default): a run per record, as for any change;
- ``digest``: one run for the whole operation (about its first matching record; its templates
  read ``{{trigger.bulk.size}}`` and ``{{trigger.source}}``), the other records' decisions say
  they were in the digest;
- ``hold``: no runs; one review item (`BulkHold`) for the operation, the organization's admins
  are notified, and an admin releases it (a run per held record starts then) or discards it.

Decided in the dispatch transaction, after conditions (only records the workflow would have run
for are held or digested) and before enrollment (a held record is not enrolled until released).
"""

import logging
from collections import defaultdict

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from crm_automation.automation import plans
from crm_automation.automation.models import BulkHold, WorkflowDecision, WorkflowRun
from crm_automation.automation.ops import paused_run_alerts as alerts
from crm_automation.automation.runtime import rollout
from crm_automation.automation.runtime.enrollment import enroll, holds, insert_runs
from crm_automation.automation.runtime.queue import enqueue_continue
from crm_automation.crm.selectors import user_has_role
from crm_automation.refusals import Refused

logger = logging.getLogger(__name__)
Outcome = WorkflowDecision.Outcome
RUN_ALL, DIGEST, HOLD = "run_all", "digest", "hold"
MODES = (RUN_ALL, DIGEST, HOLD)
DEFAULT_OVER = 100
WORDS = {"import": "an import", "bulk": "a bulk change", "api": "an API call", "user": "a bulk edit"}


def policy(definition: dict) -> tuple[str, int]:
    bulk = (definition.get("trigger_config") or {}).get("bulk") or {}
    return bulk.get("mode", RUN_ALL), bulk.get("over", DEFAULT_OVER)


def validate(value) -> list[tuple[str, str]]:
    """The `bulk` setting of a trigger."""
    where = "trigger_config.bulk"
    if not isinstance(value, dict):
        return [(where, 'must be {"mode": "run_all" | "digest" | "hold", "over": <records>}')]
    errors = [(f"{where}.{key}", "unknown setting (mode, over)") for key in sorted(set(value) - {"mode", "over"})]
    if value.get("mode", RUN_ALL) not in MODES:
        errors.append((f"{where}.mode", "must be run_all (a run per record), digest (one run for the operation) or "
                                        "hold (hold the runs for review)"))
    over = value.get("over", DEFAULT_OVER)
    if not isinstance(over, int) or isinstance(over, bool) or not 1 <= over <= 1_000_000:
        errors.append((f"{where}.over", "must be a whole number of records from 1 to 1,000,000"))
    return errors


def _operation(event) -> dict | None:
    bulk = event.payload.get("bulk")
    return bulk if isinstance(bulk, dict) and bulk.get("id") else None


def sort_out(matched: list) -> list:
    """Of the matched (event, workflow, decision, metadata) items, keep those that run; hold or
    digest the others (their decisions say so). Call inside the dispatch transaction."""
    kept, groups = [], defaultdict(list)
    for item in matched:
        event, workflow = item[0], item[1]
        operation = _operation(event)
        mode, over = policy(workflow.current_version.definition)
        if operation is None or mode == RUN_ALL or operation.get("size", 0) <= over:
            kept.append(item)
        else:
            groups[(workflow, operation["id"])].append(item)
    for (workflow, operation_id), items in groups.items():
        kept += _sort_group(workflow, operation_id, items)
    return kept


def _sort_group(workflow, operation_id: str, items: list) -> list:
    event = items[0][0]
    mode, over = policy(workflow.current_version.definition)
    size, source = event.payload["bulk"].get("size", 0), event.payload.get("source", "bulk")
    hold, created = BulkHold.objects.get_or_create(
        workflow=workflow, operation=operation_id,
        defaults={"organization_id": workflow.organization_id, "source": source, "size": size, "mode": mode,
                  "status": BulkHold.Status.PENDING if mode == HOLD else BulkHold.Status.DIGESTED})
    # Dispatches of the same operation take turns.
    hold = BulkHold.objects.select_for_update(no_key=True).get(pk=hold.pk)
    what = f"{WORDS.get(source, source)} of {size:,} records"
    kept = []
    if hold.mode == DIGEST and hold.count == 0:
        first = items[0]
        first[3]["digest"] = {"operation": operation_id, "size": size}
        first[2].reason = f"ran once for {what} (a digest: the workflow runs once for more than {over:,})"
        kept, items = [first], items[1:]
    for _, _, decision, _ in items:
        if hold.mode == HOLD:
            decision.outcome = Outcome.HELD
            decision.reason = (f"held for review: part of {what}; the workflow holds bulk changes of more than "
                               f"{over:,} records until an admin releases them")
        else:
            decision.outcome = Outcome.DIGESTED
            decision.reason = f"part of {what}: the workflow ran once for all of them (a digest)"
    hold.count += len(items) + len(kept)
    hold.save(update_fields=["count"])
    if created and hold.mode == HOLD:
        link = reverse("web:bulk-hold", args=[hold.pk])
        alerts.notify_admins(  # in the same transaction as the hold: both or neither
            workflow.organization_id, title=f"“{workflow.name}” held {what} for review",
            body="No run started. Release the hold to run the workflow for each record, or discard it.", link=link,
            key=f"bulk-hold:{hold.pk}")
    return kept


# --- A person decides -----------------------------------------------------------------------------
def _decidable(hold_id: int, by) -> BulkHold:
    hold = (BulkHold.objects.select_for_update(of=("self",), no_key=True)
            .select_related("workflow", "workflow__current_version").get(pk=hold_id))
    if by is not None and not user_has_role(by, hold.organization_id, "admin"):
        raise PermissionDenied("Only admins of this organization can release or discard held runs.")
    if hold.status != BulkHold.Status.PENDING:
        raise Refused(f"This hold is already {hold.get_status_display().lower()}.")
    return hold


@transaction.atomic
def bulk_hold_release(*, hold_id: int, by) -> int:
    """Start a run for each held record (enrollment rules and the plan's quota apply as at any
    start). Returns how many runs started."""
    hold = _decidable(hold_id, by)
    workflow = hold.workflow
    if workflow.status != "activated":
        raise Refused(f"“{workflow.name}” is {workflow.get_status_display().lower()}: activate it first.")
    decisions = list(WorkflowDecision.objects.filter(workflow=workflow, outcome=Outcome.HELD,
                                                     event__payload__bulk__id=hold.operation)
                     .select_related("event").order_by("pk"))
    who = by.get_username() if by is not None else "the system"
    for decision in decisions:
        decision.outcome = Outcome.MATCHED
        decision.reason = f"released by {who} from the hold of a bulk change"
    matched = enroll([(d.event, workflow, d, {"released_from_hold": hold.pk}) for d in decisions])
    keep = plans.reserve_history(organization=workflow.organization, runs=len(matched))
    runs = []
    for i, (event, _, decision, meta) in enumerate(matched):
        if i >= keep:
            decision.outcome = Outcome.MATCHED_UNLOGGED
        runs.append((WorkflowRun(organization_id=workflow.organization_id, workflow=workflow,
                                 # the record's version now (a rollout may have moved on since the hold)
                                 version=rollout.version_for(workflow, rollout.record_of(event))[0], event=event,
                                 trigger_type=event.kind,
                                 trigger_entity_type=event.entity_type, trigger_entity_id=event.entity_id,
                                 metadata=meta, history_suppressed=i >= keep, holds_enrollment=holds(workflow)),
                     decision))
    made = insert_runs(runs) if runs else []  # before the decisions: a refused run's says so
    WorkflowDecision.objects.bulk_update(decisions, ["outcome", "reason"], batch_size=1000)
    BulkHold.objects.filter(pk=hold.pk).update(status=BulkHold.Status.RELEASED, decided_by=by,
                                               decided_at=timezone.now())
    run_ids = [run.pk for run in made]
    if run_ids:
        transaction.on_commit(lambda: _start(run_ids))
    return len(run_ids)


def _start(run_ids: list[int]) -> None:
    try:
        enqueue_continue(run_ids)
    except Exception:  # the broker is down: the sweep resumes started runs
        logger.warning("Released runs could not be handed to the workers; the sweep will start them", exc_info=True)


@transaction.atomic
def bulk_hold_discard(*, hold_id: int, by) -> None:
    """No run for the held records; their decisions keep saying they were held."""
    hold = _decidable(hold_id, by)
    who = by.get_username() if by is not None else "the system"
    WorkflowDecision.objects.filter(workflow=hold.workflow, outcome=Outcome.HELD,
                                    event__payload__bulk__id=hold.operation).update(
        reason=f"held for review as part of a bulk change, then discarded by {who}")
    BulkHold.objects.filter(pk=hold.pk).update(status=BulkHold.Status.DISCARDED, decided_by=by,
                                               decided_at=timezone.now())
