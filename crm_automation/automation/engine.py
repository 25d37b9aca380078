"""Worker step 2: execute one run, step by step, durably and idempotently.

1. Claim the run with a conditional UPDATE (a lease). Another worker holding a live lease
   means "someone else is on it": return.
2. Walk the actions of the run's immutable version. A step already recorded as finished is
   not executed again; a step whose side effect exists (found by its (run, step) key) is
   recorded from that effect instead of repeating it.
3. Each action runs in its own transaction together with its history row; writing history
   happens in a savepoint, so a failure to log never undoes or stops the action (invariant 7).
4. Finish with a conditional UPDATE (started → final), which also moves the workflow's
   counters exactly once, however often the run is delivered.
"""

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from crm_automation.automation import context
from crm_automation.automation.actions import REGISTRY, ActionFailed, ExecutionContext
from crm_automation.automation.models import (
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.triggers import caused_by

logger = logging.getLogger(__name__)
FINISHED_STEPS = {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED}


def claim_run(run_id: int) -> bool:
    now = timezone.now()
    lease = timedelta(seconds=settings.AUTOMATION["LEASE_SECONDS"])
    return bool(
        WorkflowRun.objects.filter(pk=run_id, status=RunStatus.STARTED)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + lease, attempts=F("attempts") + 1)
    )


def log_step(run: WorkflowRun, position: int, action_type: str, **values) -> None:
    """Write one step's history row. Never raises: history must not block work."""
    if run.history_suppressed:
        return
    try:
        with transaction.atomic():
            WorkflowRunAction.objects.update_or_create(
                run=run, position=position, defaults={"action_type": action_type, **values}
            )
    except DatabaseError:
        logger.exception("Could not write history for run %s step %s", run.pk, position)


def _load_record(run: WorkflowRun):
    return context.load_records([run.event]).get(run.trigger_entity_id)


def execute_run(run_id: int) -> str | None:
    """Execute (or resume) a run. Returns its final status, or None if not ours to run."""
    if not claim_run(run_id):
        return None
    run = WorkflowRun.objects.select_related("version", "event").get(pk=run_id)
    definition = run.version.definition
    done = {a.position: a for a in run.actions.all()} if not run.history_suppressed else {}
    record = _load_record(run)
    slugs = context.stage_slugs([run.event])
    template_context = (context.full_context(run.event, record, context.trigger_dict(run.event, slugs))
                        if record is not None else {})
    stop_on_error = definition.get("error_handling") == "stop"
    deadline = time.monotonic() + definition.get("timeout_seconds", 60)
    outcomes: list[str] = []
    halted = ""

    with caused_by(run.pk, run.event.depth):
        for position, item in enumerate(definition["actions"]):
            action_type = item["type"]
            previous = done.get(position)
            if previous is not None and previous.status in FINISHED_STEPS:
                outcomes.append(previous.status)
                continue
            if halted:
                log_step(run, position, action_type, status=StepStatus.SKIPPED, error=halted)
                outcomes.append(StepStatus.SKIPPED)
                continue
            if record is None:
                halted = f"the triggering {run.trigger_entity_type} no longer exists"
            elif time.monotonic() > deadline:
                halted = f"the workflow's timeout of {definition.get('timeout_seconds')}s was reached"
            if halted:
                log_step(run, position, action_type, status=StepStatus.SKIPPED, error=halted)
                outcomes.append(StepStatus.SKIPPED)
                continue
            status = _run_step(run, position, action_type, item.get("config") or {}, record,
                               template_context, previous)
            outcomes.append(status)
            if status == StepStatus.FAILED and stop_on_error:
                halted = f"skipped: action {position + 1} failed and the workflow stops on errors"
    return finish_run(run, outcomes, error=halted if record is None else "")


def _run_step(run, position, action_type, config, record, template_context, previous) -> str:
    action = REGISTRY[action_type]
    ctx = ExecutionContext(run_id=run.pk, position=position, organization_id=run.organization_id,
                           trigger_type=run.trigger_type, template_context=template_context,
                           record=record)
    started = timezone.now()
    attempts = (previous.attempts if previous else 0) + 1
    try:
        with transaction.atomic():
            result = action.execute(config, ctx)
            ok, error = True, ""
            if action_type != "send_email":
                _log_result(run, position, action_type, ok, result, error, ctx, started, attempts)
    except ActionFailed as exc:
        ok, result, error = False, {}, str(exc)
    except Exception as exc:  # a bug or an outage: record it on the step, keep the run going
        logger.exception("Action %s of run %s crashed", position, run.pk)
        ok, result, error = False, {}, f"internal error: {type(exc).__name__}: {exc}"
    else:
        if action_type != "send_email":
            return StepStatus.COMPLETED
        ok, result, error = action.after_commit(result, ctx)
    _log_result(run, position, action_type, ok, result, error, ctx, started, attempts)
    return StepStatus.COMPLETED if ok else StepStatus.FAILED


def _log_result(run, position, action_type, ok, result, error, ctx, started, attempts) -> None:
    if ctx.notes:
        result = {**result, "notes": ctx.notes}
    log_step(run, position, action_type, status=StepStatus.COMPLETED if ok else StepStatus.FAILED,
             result=result, error=error[:4000], attempts=attempts, started_at=started,
             finished_at=timezone.now(), input={"template_notes": len(ctx.notes)})


def final_status(outcomes: list[str]) -> str:
    failed = outcomes.count(StepStatus.FAILED) + outcomes.count(StepStatus.SKIPPED)
    if failed == 0:
        return RunStatus.COMPLETED
    if outcomes.count(StepStatus.COMPLETED) == 0:
        return RunStatus.FAILED
    if StepStatus.SKIPPED in outcomes:
        return RunStatus.FAILED  # stopped on an error: the run did not do its job
    return RunStatus.PARTIAL


@transaction.atomic
def finish_run(run: WorkflowRun, outcomes: list[str], error: str = "") -> str | None:
    status = final_status(outcomes)
    now = timezone.now()
    duration = int((now - run.started_at).total_seconds() * 1000)
    moved = WorkflowRun.objects.filter(pk=run.pk, status=RunStatus.STARTED).update(
        status=status, finished_at=now, duration_ms=duration, lease_until=None, error=error
    )
    if not moved:
        return None
    success = status == RunStatus.COMPLETED
    Workflow.objects.filter(pk=run.workflow_id).update(
        run_count=F("run_count") + 1,
        success_count=F("success_count") + (1 if success else 0),
        failure_count=F("failure_count") + (0 if success else 1),
        last_run_at=now,
    )
    if run.history_suppressed:
        WorkflowRun.objects.filter(pk=run.pk).delete()
    return status
