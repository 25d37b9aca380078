"""Gradual rollout (docs/product.md#gradual-rollout): a published version goes to a share of the
records first, raised 10 % → 50 % → 100 % by an admin or on a schedule, and held by itself when
its runs fail more than the previous version's by the rollout's margin.

Writes only; which version a record runs is runtime/rollout.py. The watch task (every minute)
calls `check`: one aggregate query per open rollout, nothing on the save path or per run.
"""

from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from crm_automation.automation import lifecycle
from crm_automation.automation.definition import catalog
from crm_automation.automation.models import (
    LifecycleType,
    Rollout,
    RunStatus,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)
from crm_automation.automation.ops.paused_run_alerts import notify_admins
from crm_automation.crm.selectors import user_has_role
from crm_automation.refusals import Refused

OPEN = (Rollout.Status.ACTIVE, Rollout.Status.HELD)
NO_RECORD = {catalog.SCHEDULE, catalog.WEBHOOK}  # runs on no record: no share of records to give it to
TIMED = {catalog.DATE_REACHED, catalog.IN_STAGE}  # when they fire is worked out from the current version
FAILED = (RunStatus.FAILED, RunStatus.PARTIAL)
MAX_MARGIN = 100


def _who(by: Any) -> str:
    return by.get_username() if by is not None else "the system"


def _note(rollout: Rollout, by: Any, what: str) -> None:
    rollout.log = [*rollout.log, {"at": timezone.now().isoformat(), "percent": rollout.percent, "by": _who(by),
                                  "what": what}]


def _share(value: Any, field: str = "share") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise ValidationError({field: ["must be a whole percentage from 1 to 100"]})
    return value


def checked_steps(steps: Any, share: int, now: datetime) -> list[dict[str, Any]]:
    """A schedule: [{"percent": 50, "after_hours": 24}, …], each share above the one before;
    stored with the time each is due."""
    if steps is None:
        return []
    if not isinstance(steps, list) or len(steps) > 10:
        raise ValidationError({"steps": ["must be a list of at most 10 steps like {\"percent\": 50, "
                                         "\"after_hours\": 24}"]})
    out, last, hours = [], share, 0.0
    for i, step in enumerate(steps):
        place = f"steps[{i}]"
        if not isinstance(step, dict) or set(step) - {"percent", "after_hours"}:
            raise ValidationError({place: ["must be {\"percent\": …, \"after_hours\": …}"]})
        percent = _share(step.get("percent"), f"{place}.percent")
        after = step.get("after_hours")
        if isinstance(after, bool) or not isinstance(after, int | float) or not 0 < after <= 24 * 90:
            raise ValidationError({f"{place}.after_hours": ["must be a number of hours above 0 (at most 90 days)"]})
        if percent <= last:
            raise ValidationError({f"{place}.percent": [f"must be above the share before it ({last} %)"]})
        last, hours = percent, hours + float(after)
        out.append({"percent": percent, "at": (now + timedelta(hours=hours)).isoformat()})
    return out


def start(*, workflow: Workflow, version: WorkflowVersion, previous: WorkflowVersion, by: Any, share: int,
          steps: Any = None, margin: int | None = None) -> Rollout:
    """Called by workflow_publish under the workflow's row lock, after the new version was made:
    the previous version stays current for the records outside the share."""
    now = timezone.now()
    share = _share(share)
    planned = checked_steps(steps, share, now)
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int)
                               or not 0 <= margin <= MAX_MARGIN):
        raise ValidationError({"margin": ["must be a whole number of percentage points from 0 to 100"]})
    trigger = version.definition.get("trigger_type")
    if trigger != previous.definition.get("trigger_type"):
        raise Refused("A version with another trigger goes to every record at once: publish it to 100 %.")
    if trigger in NO_RECORD:
        raise Refused(f"“{workflow.name}” runs on no record ({catalog.trigger_label(trigger).lower()}), so there is "
                      "no share of records to give it to: publish it to 100 %.")
    if trigger in TIMED and version.definition.get("trigger_config") != previous.definition.get("trigger_config"):
        raise Refused("When it fires is worked out from one version for every record: a version that changes "
                      "its timing goes to every record at once (publish it to 100 %).")
    close_open(workflow, by, Rollout.Status.ABORTED, f"replaced by version {version.number}")
    rollout = Rollout(organization_id=workflow.organization_id, workflow=workflow, version=version,
                      previous=previous, percent=share, steps=planned, started_by=by if getattr(by, "pk", None)
                      else None, started_at=now, **({"margin": margin} if margin is not None else {}))
    _note(rollout, by, f"started at {share} %")
    rollout.save()
    Workflow.objects.filter(pk=workflow.pk).update(version=previous.number, current_version=previous,
                                                   rollout=rollout)
    workflow.version, workflow.current_version, workflow.rollout = previous.number, previous, rollout
    return rollout


def close_open(workflow: Workflow, by: Any, status: str, why: str) -> None:
    """End the workflow's open rollout, if any (a new publish, an archive)."""
    for rollout in Rollout.objects.select_for_update(no_key=True).filter(workflow=workflow, status__in=OPEN):
        rollout.status, rollout.finished_at = status, timezone.now()
        _note(rollout, by, why)
        rollout.save(update_fields=["status", "finished_at", "log"])
    if workflow.rollout_id is not None:
        Workflow.objects.filter(pk=workflow.pk).update(rollout=None)
        workflow.rollout = None


def _locked(workflow_id: int, by: Any) -> tuple[Workflow, Rollout]:
    workflow = (Workflow.objects.select_for_update(of=("self",), no_key=True).select_related("current_version")
                .get(pk=workflow_id))
    if by is not None and not user_has_role(by, workflow.organization_id, "admin"):
        raise PermissionDenied("Only admins of this organization can change a rollout.")
    rollout = Rollout.objects.select_for_update(of=("self",), no_key=True).select_related("version").filter(
        workflow=workflow, status__in=OPEN).first()
    if rollout is None:
        raise Refused(f"“{workflow.name}” has no rollout under way.")
    return workflow, rollout


def _complete(workflow: Workflow, rollout: Rollout, by: Any, why: str) -> None:
    rollout.percent, rollout.status, rollout.finished_at, rollout.steps = 100, Rollout.Status.COMPLETED, \
        timezone.now(), []
    _note(rollout, by, why)
    rollout.save(update_fields=["percent", "status", "finished_at", "steps", "log"])
    Workflow.objects.filter(pk=workflow.pk).update(version=rollout.version.number, current_version=rollout.version,
                                                   rollout=None)
    workflow.version, workflow.current_version, workflow.rollout = rollout.version.number, rollout.version, None
    lifecycle.workflow_event(LifecycleType.WORKFLOW_PUBLISHED, workflow, by, rollout={
        "version": rollout.version.number, "percent": 100, "status": rollout.status, "why": why})


@transaction.atomic
def rollout_raise(*, workflow_id: int, by: Any, percent: int) -> Rollout:
    """A larger share (records already in it stay); 100 % makes the version every record's. A
    held rollout raised by a person goes on (they looked at why it was held)."""
    workflow, rollout = _locked(workflow_id, by)
    percent = _share(percent, "percent")
    if percent <= rollout.percent:
        raise ValidationError({"percent": [f"must be above the current share ({rollout.percent} %); to go back, "
                                           "call the rollout off"]})
    if rollout.status == Rollout.Status.HELD:
        rollout.steps = _shifted(rollout)  # the schedule waited while it was held: it goes on from now
    rollout.steps = [step for step in rollout.steps if step["percent"] > percent]
    if percent == 100:
        _complete(workflow, rollout, by, f"raised to 100 % by {_who(by)}")
        return rollout
    rollout.percent, rollout.status, rollout.held_reason = percent, Rollout.Status.ACTIVE, ""
    _note(rollout, by, f"raised to {percent} %")
    rollout.save(update_fields=["percent", "status", "held_reason", "steps", "log"])
    return rollout


def _held_since(rollout: Rollout) -> datetime | None:
    for entry in reversed(rollout.log):
        if str(entry.get("what", "")).startswith("held"):
            return parse_datetime(entry["at"])
    return None


def _shifted(rollout: Rollout) -> list[dict[str, Any]]:
    """The remaining steps moved later by the time it was held, so none falls due at once."""
    since = _held_since(rollout)
    if since is None:
        return rollout.steps
    pause = timezone.now() - since
    return [{**step, "at": ((parse_datetime(step["at"]) or since) + pause).isoformat()} for step in rollout.steps]


@transaction.atomic
def rollout_hold(*, workflow_id: int, by: Any, reason: str = "") -> Rollout:
    """Stop raising it (the schedule waits); the records in the share keep the new version."""
    _, rollout = _locked(workflow_id, by)
    rollout.status = Rollout.Status.HELD
    rollout.held_reason = (reason or f"held by {_who(by)}")[:1000]
    _note(rollout, by, f"held: {rollout.held_reason}")
    rollout.save(update_fields=["status", "held_reason", "log"])
    return rollout


@transaction.atomic
def rollout_abort(*, workflow_id: int, by: Any) -> Rollout:
    """Call it off: every record runs the previous version again (runs under way finish on theirs)."""
    workflow, rollout = _locked(workflow_id, by)
    close_open(workflow, by, Rollout.Status.ABORTED, f"called off by {_who(by)}")
    rollout.refresh_from_db()
    lifecycle.workflow_event(LifecycleType.WORKFLOW_PUBLISHED, workflow, by, rollout={
        "version": rollout.version.number, "percent": 0, "status": rollout.status,
        "why": f"called off: every record runs version {rollout.previous.number} again"})
    return rollout


# --- The watch: schedule and automatic hold ---------------------------------------------------------
def failure_rates(rollout: Rollout) -> dict[int, tuple[int, int]]:
    """{version id: (finished runs, failed runs)} since the rollout began, for both versions."""
    rows = (WorkflowRun.objects.filter(workflow_id=rollout.workflow_id, started_at__gte=rollout.started_at,
                                       version_id__in=[rollout.version_id, rollout.previous_id],
                                       finished_at__isnull=False, simulated=False)
            .exclude(status=RunStatus.CANCELLED).values("version_id")
            .annotate(runs=Count("id"), failed=Count("id", filter=Q(status__in=FAILED))))
    return {row["version_id"]: (row["runs"], row["failed"]) for row in rows}


def _worse(rollout: Rollout) -> str:
    """Why the new version must be held ("" if it is not worse by more than the margin)."""
    rates = failure_rates(rollout)
    new_runs, new_failed = rates.get(rollout.version_id, (0, 0))
    old_runs, old_failed = rates.get(rollout.previous_id, (0, 0))
    if new_runs < rollout.min_runs:
        return ""
    new_rate = new_failed / new_runs
    old_rate = old_failed / old_runs if old_runs else 0.0
    if new_rate * 100 <= old_rate * 100 + rollout.margin:
        return ""
    return (f"version {rollout.version.number} failed {new_failed} of {new_runs} runs ({100 * new_rate:.0f} %) "
            f"against {old_failed} of {old_runs} ({100 * old_rate:.0f} %) for version {rollout.previous.number}: "
            f"more than {rollout.margin} points worse")


def check(now: datetime | None = None) -> dict[str, int]:
    """Hold the rollouts whose new version fails too much (and tell the admins); raise the others
    whose next step is due."""
    now = now or timezone.now()
    held = raised = 0
    for rollout in Rollout.objects.filter(status=Rollout.Status.ACTIVE).select_related("version", "previous",
                                                                                       "workflow"):
        reason = _worse(rollout)
        with transaction.atomic():
            # The workflow's row first, then the rollout's: the order publishing and a person's raise take.
            workflow = Workflow.objects.select_for_update(no_key=True).get(pk=rollout.workflow_id)
            current = (Rollout.objects.select_for_update(no_key=True)
                       .filter(pk=rollout.pk, status=Rollout.Status.ACTIVE).first())
            if current is None:
                continue  # a person changed it meanwhile
            if reason:
                current.status, current.held_reason = Rollout.Status.HELD, reason
                _note(current, None, f"held: {reason}")
                current.save(update_fields=["status", "held_reason", "log"])
                notify_admins(rollout.organization_id, title=f"Rollout of “{rollout.workflow.name}” held",
                              body=f"{reason}. Records outside the {current.percent} % share run version "
                                   f"{rollout.previous.number}; raise it or call it off.",
                              link=reverse("web:runs") + f"?workflow={rollout.workflow_id}&status=failed",
                              key=f"rollout:{rollout.pk}:held")
                held += 1
                continue
            due = [step for step in current.steps if (parse_datetime(step["at"]) or now) <= now]
            if due:
                percent = due[-1]["percent"]
                current.steps = [step for step in current.steps if step not in due]
                if percent >= 100:
                    current.version = rollout.version
                    _complete(workflow, current, None, "raised to 100 % on its schedule")
                else:
                    current.percent = percent
                    _note(current, None, f"raised to {percent} % on its schedule")
                    current.save(update_fields=["percent", "steps", "log"])
                raised += 1
    return {"held": held, "raised": raised}
