"""What a person can do to a run: cancel it, let a waiting one go on now, retry a failed one from
its failed steps. Ops members and admins of the run's organization may.

Each works under the run's row lock and only on a run no worker holds, and none repeats a side
effect: a retry re-runs only the steps that failed (their effects were not made), re-queues an
email that was refused (never one whose outcome is unknown), and reads every completed step
back from its row.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from crm_automation.automation import lifecycle
from crm_automation.automation.definition import graph
from crm_automation.automation.models import (
    RunStatus,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.nodes import REGISTRY, effect_key
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.nodes.base import step_name
from crm_automation.automation.ops import paused_run_alerts as alerts
from crm_automation.automation.runtime.engine import wake_parents
from crm_automation.automation.runtime.queue import enqueue_continue
from crm_automation.crm.models import EmailMessage
from crm_automation.crm.selectors import user_has_role
from crm_automation.refusals import Refused

UNFINISHED = (RunStatus.STARTED, RunStatus.WAITING, RunStatus.PAUSED)
RETRYABLE = (RunStatus.FAILED, RunStatus.PARTIAL)
FINISHED = (StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED)


def _locked(run_id: int, by) -> WorkflowRun:
    run = WorkflowRun.objects.select_for_update(of=("self",), no_key=True).select_related("version").get(pk=run_id)
    if by is not None and not user_has_role(by, run.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can change runs.")
    return run


def _held(run: WorkflowRun) -> bool:
    return run.status == RunStatus.STARTED and run.lease_until is not None and run.lease_until > timezone.now()


def _who(by) -> str:
    return f"cancelled by {by.get_username()}" if by is not None else "cancelled"


def _key(run: WorkflowRun, node: graph.Node, token: str) -> str:
    return effect_key(run.pk, step_name(node.id, token))


def _nudge(run_ids: list[int]) -> None:
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue(run_ids))


@transaction.atomic
def run_cancel(*, run_id: int, by) -> WorkflowRun:
    """Stop an unfinished run: the steps not done are skipped, a queued email is not sent."""
    run = _locked(run_id, by)
    if run.status not in UNFINISHED:
        raise Refused(f"Run #{run.pk} already ended ({run.get_status_display().lower()}).")
    if _held(run):
        raise Refused(f"Run #{run.pk} is executing right now; cancel it again in a few seconds.")
    reason = _who(by)
    now = timezone.now()
    flow = graph.build(run.version.definition)
    rows = {(r.node_id, r.token): r for r in run.actions.all()}
    position = max((r.position for r in rows.values()), default=-1) + 1
    skipped = f"skipped: the run was {reason}"
    # The steps under way (a queued email, a wait, a loop) are skipped, and so are the steps
    # after them, so the run's page shows what will not happen.
    for row in [r for r in rows.values() if r.status not in FINISHED]:
        action = REGISTRY.get(row.action_type)
        if action is not None and row.node_id in flow.nodes:
            action.cancel(_key(run, flow.nodes[row.node_id], row.token), reason)
        row.status, row.error, row.finished_at = StepStatus.SKIPPED, skipped, now
        row.save(update_fields=["status", "error", "finished_at"])
        if row.action_type == questions.USER_INPUT:  # nobody need answer it any more
            alerts.question_settled(run.pk, row.node_id, row.token, f"no answer is needed: the run was {reason}.")
        for node_id in graph.downstream(flow, row.node_id) if row.node_id in flow.nodes else []:
            if (node_id, row.token) not in rows:
                rows[(node_id, row.token)] = WorkflowRunAction.objects.create(
                    run=run, node_id=node_id, token=row.token, position=position, status=StepStatus.SKIPPED,
                    action_type=flow.nodes[node_id].type, error=skipped, finished_at=now)
                position += 1
    run.status, run.error, run.finished_at = RunStatus.CANCELLED, f"The run was {reason}.", now
    run.lease_until, run.lease_owner, run.wake_at, run.holds_enrollment = None, "", None, False
    run.save(update_fields=["status", "error", "finished_at", "lease_until", "lease_owner", "wake_at",
                            "holds_enrollment"])
    wake_parents([run])
    lifecycle.runs_ended([run])
    return run


@transaction.atomic
def run_wake_now(*, run_id: int, by) -> WorkflowRun:
    """A waiting run goes on at once instead of at its wake-up time."""
    run = _locked(run_id, by)
    if run.status != RunStatus.WAITING:
        raise Refused(f"Run #{run.pk} is not waiting ({run.get_status_display().lower()}).")
    now = timezone.now()
    run.wake_at = now
    # Waits that began before this moment end now (not those the run starts later).
    run.metadata = {**(run.metadata or {}), "woken_at": now.isoformat()}
    run.save(update_fields=["wake_at", "metadata"])
    return run


@transaction.atomic
def run_retry(*, run_id: int, by) -> WorkflowRun:
    """Run a failed run's failed (and therefore skipped) steps again; completed steps stay done."""
    run = _locked(run_id, by)
    if run.status not in RETRYABLE:
        raise Refused(f"Run #{run.pk} did not fail ({run.get_status_display().lower()}); only failed "
                      "runs are retried.")
    rows = list(run.actions.filter(Q(status=StepStatus.FAILED) | Q(status=StepStatus.SKIPPED)))
    redo = [r for r in rows if not (r.result or {}).get("off_path")]
    nodes = graph.build(run.version.definition).nodes
    for row in redo:
        if row.action_type == "send_email" and row.node_id in nodes:
            email = EmailMessage.objects.filter(automation_key=_key(run, nodes[row.node_id], row.token)).first()
            if email is not None and email.status == EmailMessage.Status.UNKNOWN:
                step = nodes[row.node_id].index + 1
                raise Refused(f"Run #{run.pk}: the email of step {step} may already have "
                              "reached its recipient (outcome unknown), so the run is not retried. "
                              "Resend that email from the outbox if you are sure it did not arrive.")
            if email is not None and email.status == EmailMessage.Status.FAILED:
                EmailMessage.objects.filter(pk=email.pk).update(status=EmailMessage.Status.QUEUED, error="")
    policy = run.version.definition.get("reenrollment", Workflow.Reenrollment.EVERY_TIME)
    # The run takes its record's place again; the unique index refuses it (below) when another
    # run of the workflow holds the record now.
    run.holds_enrollment = policy == Workflow.Reenrollment.NOT_WHILE_RUNNING
    WorkflowRunAction.objects.filter(pk__in=[r.pk for r in redo]).delete()
    # It ended once and was counted as not successful; it will be counted again when it ends.
    # (Never below zero: counters of runs written around the engine, an import, may not hold it.)
    Workflow.objects.filter(pk=run.workflow_id).update(run_count=Greatest(F("run_count") - 1, 0),
                                                       failure_count=Greatest(F("failure_count") - 1, 0))
    run.status, run.error, run.finished_at = RunStatus.STARTED, "", None
    run.attempts = 1  # counted as delivered before, so every effect is looked up before it is made
    run.lease_until, run.lease_owner = None, ""
    try:
        with transaction.atomic():
            run.save(update_fields=["status", "error", "finished_at", "attempts", "lease_until", "lease_owner",
                                    "holds_enrollment"])
    except IntegrityError:  # another run of the record took its place a moment ago
        raise Refused(f"Run #{run.pk}: this {run.trigger_entity_type} is in another run of the workflow "
                      "now; retry when that one has finished.") from None
    _nudge([run.pk])
    return run


def open_questions(run: WorkflowRun) -> list[WorkflowRunAction]:
    """The user-input steps of a run that wait for an answer."""
    return list(run.actions.filter(action_type=questions.USER_INPUT, status=StepStatus.WAITING).order_by("position"))


@transaction.atomic
def run_answer(*, run_id: int, by, node_id: str, token: str = "", decision: str, comment: str = "") -> WorkflowRun:
    """Answer a run's question (a user-input step): approved or rejected, with a comment. Only
    people with the step's role in the run's organization may; the run goes on at once."""
    run = WorkflowRun.objects.select_for_update(no_key=True).get(pk=run_id)
    row = run.actions.filter(node_id=node_id, token=token, action_type=questions.USER_INPUT).first()
    if row is None or row.status != StepStatus.WAITING or (row.result or {}).get("decision"):
        raise Refused(f"Run #{run.pk} has no open question “{node_id}” (answered, timed out or cancelled).")
    role = row.result.get("role", "admin")
    if by is None or not user_has_role(by, run.organization_id, role):
        raise PermissionDenied(f"Only {'admins' if role == 'admin' else 'ops members and admins'} of this "
                               "organization may answer this question.")
    if decision not in (questions.APPROVED, questions.REJECTED):
        raise ValidationError(f"Answer {questions.APPROVED} or {questions.REJECTED}.")
    if len(comment) > 2000:
        raise ValidationError("The comment is longer than 2,000 characters.")
    if _held(run):
        raise Refused(f"Run #{run.pk} is executing right now; answer again in a few seconds.")
    now = timezone.now()
    row.result = {**row.result, "decision": decision, "comment": comment, "answered_by": by.get_username(),
                  "answered_at": now.isoformat()}
    row.save(update_fields=["result"])
    # The question's notifications are done with, for everyone it asked, and say who answered what.
    alerts.question_settled(run.pk, node_id, token, alerts.answered_words(decision, by.get_username(), comment))
    if run.status == RunStatus.WAITING:  # woken as a due wait is (tasks.wake_due_runs)
        run.status, run.wake_at, run.lease_until, run.lease_owner = RunStatus.STARTED, now, None, ""
        run.save(update_fields=["status", "wake_at", "lease_until", "lease_owner"])
        _nudge([run.pk])
    return run


RESUME_WAYS = ("retry", "skip")


@transaction.atomic
def run_resume(*, run_id: int, by, how: str) -> WorkflowRun:
    """Let a paused run go on: `retry` the step that paused it (its effect is made again only
    where that cannot repeat it), or `skip` it and go on after it (the run ends partial)."""
    if how not in RESUME_WAYS:
        raise ValidationError(f"Resume by {', '.join(RESUME_WAYS)}, not {how!r}.")
    run = _locked(run_id, by)
    if run.status != RunStatus.PAUSED:
        raise Refused(f"Run #{run.pk} is not paused ({run.get_status_display().lower()}).")
    flow = graph.build(run.version.definition)
    rows = [r for r in run.actions.filter(status=StepStatus.FAILED) if (r.result or {}).get("policy") == "pause"]
    who = by.get_username() if by is not None else "the system"
    for row in rows:
        action = REGISTRY.get(row.action_type)
        if (how == "retry" and action is not None and row.node_id in flow.nodes
                and not action.retry(_key(run, flow.nodes[row.node_id], row.token))):
            raise Refused(f"Run #{run.pk}: the step “{row.node_id}” may already have had its effect "
                          "(an email whose outcome is unknown), so it is not tried again; skip it, "
                          "or resend the email from the outbox if you are sure it did not arrive.")
    if how == "retry":
        WorkflowRunAction.objects.filter(pk__in=[r.pk for r in rows]).delete()
    else:
        for row in rows:
            row.status, row.result = StepStatus.SKIPPED, {**(row.result or {}), "continued": True, "skipped_by": who}
            row.save(update_fields=["status", "result"])
    run.status, run.error = RunStatus.STARTED, ""
    run.attempts = 1  # counted as delivered before, so every effect is looked up before it is made
    run.lease_until, run.lease_owner = None, ""
    run.save(update_fields=["status", "error", "attempts", "lease_until", "lease_owner"])
    _nudge([run.pk])
    return run


def runs_retry_failed(*, workflow_id: int, by, since) -> tuple[int, list[str]]:
    """Retry a workflow's failed runs that started after `since` ("after the provider's outage").
    Returns how many were retried and why the others were not."""
    organization_id = Workflow.objects.values_list("organization_id", flat=True).get(pk=workflow_id)
    if by is not None and not user_has_role(by, organization_id, "ops"):  # also when none failed
        raise PermissionDenied("Only ops members and admins of this organization can change runs.")
    retried, problems = 0, []
    ids = WorkflowRun.objects.filter(workflow_id=workflow_id, status__in=RETRYABLE, started_at__gte=since,
                                     history_suppressed=False).order_by("pk").values_list("pk", flat=True)
    for run_id in ids:
        try:
            run_retry(run_id=run_id, by=by)
            retried += 1
        except Refused as exc:
            problems.append(exc.message)
    return retried, problems
