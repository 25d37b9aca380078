"""What a person can do to a run: cancel it, let a waiting one go on now, retry a failed one from
its failed steps. Ops members and admins of the run's organization may.

Each works under the run's row lock and only on a run no worker holds, and none repeats a side
effect: a retry re-runs only the steps that failed (their effects were not made), re-queues an
email that was refused (never one whose outcome is unknown), and reads every completed step
back from its row.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from crm_automation.automation import enrollment
from crm_automation.automation.actions import REGISTRY, effect_key
from crm_automation.automation.models import (
    Enrollment,
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.queue import enqueue_continue
from crm_automation.crm.models import EmailMessage
from crm_automation.crm.selectors import user_has_role

UNFINISHED = (RunStatus.STARTED, RunStatus.WAITING)
RETRYABLE = (RunStatus.FAILED, RunStatus.PARTIAL)


def _locked(run_id: int, by) -> WorkflowRun:
    run = WorkflowRun.objects.select_for_update().select_related("version").get(pk=run_id)
    if by is not None and not user_has_role(by, run.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can change runs.")
    return run


def _held(run: WorkflowRun) -> bool:
    return run.status == RunStatus.STARTED and run.lease_until is not None and run.lease_until > timezone.now()


def _who(by) -> str:
    return f"cancelled by {by.get_username()}" if by is not None else "cancelled"


def _nudge(run_ids: list[int]) -> None:
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue(run_ids))


@transaction.atomic
def run_cancel(*, run_id: int, by) -> WorkflowRun:
    """Stop an unfinished run: the steps not done are skipped, a queued email is not sent."""
    run = _locked(run_id, by)
    if run.status not in UNFINISHED:
        raise ValidationError(f"Run #{run.pk} already ended ({run.get_status_display().lower()}).")
    if _held(run):
        raise ValidationError(f"Run #{run.pk} is executing right now; cancel it again in a few seconds.")
    reason = _who(by)
    done = set(run.actions.filter(status__in=[StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED])
               .values_list("position", flat=True))
    now = timezone.now()
    for position, step in enumerate(run.version.definition["actions"]):
        if position in done:
            continue
        action = REGISTRY.get(step["type"])
        if action is not None:
            action.cancel(effect_key(run.pk, position), reason)
        WorkflowRunAction.objects.update_or_create(run=run, position=position, defaults={
            "action_type": step["type"], "status": StepStatus.SKIPPED, "error": f"skipped: the run was {reason}",
            "finished_at": now})
    run.status, run.error, run.finished_at = RunStatus.CANCELLED, f"The run was {reason}.", now
    run.lease_until, run.lease_owner, run.wake_at = None, "", None
    run.save(update_fields=["status", "error", "finished_at", "lease_until", "lease_owner", "wake_at"])
    enrollment.release(runs=[run])
    return run


@transaction.atomic
def run_wake_now(*, run_id: int, by) -> WorkflowRun:
    """A waiting run goes on at once instead of at its wake-up time."""
    run = _locked(run_id, by)
    if run.status != RunStatus.WAITING:
        raise ValidationError(f"Run #{run.pk} is not waiting ({run.get_status_display().lower()}).")
    run.wake_at = timezone.now()
    run.save(update_fields=["wake_at"])
    return run


@transaction.atomic
def run_retry(*, run_id: int, by) -> WorkflowRun:
    """Run a failed run's failed (and therefore skipped) steps again; completed steps stay done."""
    run = _locked(run_id, by)
    if run.status not in RETRYABLE:
        raise ValidationError(f"Run #{run.pk} did not fail ({run.get_status_display().lower()}); only failed "
                              "runs are retried.")
    rows = list(run.actions.filter(Q(status=StepStatus.FAILED) | Q(status=StepStatus.SKIPPED)))
    redo = [r for r in rows if not (r.result or {}).get("off_path")]
    for row in redo:
        if row.action_type == "send_email":
            email = EmailMessage.objects.filter(automation_key=effect_key(run.pk, row.position)).first()
            if email is not None and email.status == EmailMessage.Status.UNKNOWN:
                raise ValidationError(f"Run #{run.pk}: the email of step {row.position + 1} may already have "
                                      "reached its recipient (outcome unknown), so the run is not retried. "
                                      "Resend that email from the outbox if you are sure it did not arrive.")
            if email is not None and email.status == EmailMessage.Status.FAILED:
                EmailMessage.objects.filter(pk=email.pk).update(status=EmailMessage.Status.QUEUED, error="")
    policy = run.version.definition.get("reenrollment", Workflow.Reenrollment.EVERY_TIME)
    if policy == Workflow.Reenrollment.NOT_WHILE_RUNNING:
        holder = Enrollment.objects.filter(workflow_id=run.workflow_id, entity_id=run.trigger_entity_id).first()
        if holder is not None and holder.event_id != run.event_id:
            raise ValidationError(f"Run #{run.pk}: this {run.trigger_entity_type} is in another run of the workflow "
                                  "now; retry when that one has finished.")
        Enrollment.objects.get_or_create(workflow_id=run.workflow_id, entity_id=run.trigger_entity_id,
                                         defaults={"event_id": run.event_id, "until_finished": True})
    WorkflowRunAction.objects.filter(pk__in=[r.pk for r in redo]).delete()
    # It ended once and was counted as not successful; it will be counted again when it ends.
    Workflow.objects.filter(pk=run.workflow_id).update(run_count=F("run_count") - 1,
                                                       failure_count=F("failure_count") - 1)
    run.status, run.error, run.finished_at = RunStatus.STARTED, "", None
    run.attempts = 1  # counted as delivered before, so every effect is looked up before it is made
    run.lease_until, run.lease_owner = None, ""
    run.save(update_fields=["status", "error", "finished_at", "attempts", "lease_until", "lease_owner"])
    _nudge([run.pk])
    return run


def runs_retry_failed(*, workflow_id: int, by, since) -> tuple[int, list[str]]:
    """Retry a workflow's failed runs that started after `since` ("after the provider's outage").
    Returns how many were retried and why the others were not."""
    retried, problems = 0, []
    ids = WorkflowRun.objects.filter(workflow_id=workflow_id, status__in=RETRYABLE, started_at__gte=since,
                                     history_suppressed=False).order_by("pk").values_list("pk", flat=True)
    for run_id in ids:
        try:
            run_retry(run_id=run_id, by=by)
            retried += 1
        except ValidationError as exc:
            problems.extend(exc.messages)
    return retried, problems
