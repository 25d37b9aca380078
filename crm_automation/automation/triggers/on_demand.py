"""Starting a workflow of any trigger now, by hand (the seeds' `$.Workflow.trigger(id)` verb): an
organization admin starts an activated record-change, relative-time, business-event or schedule
workflow on a record of the kind its trigger is about (a schedule's on no record), with a short
reason. `manual.workflow_start` is the one service and calls `start` for such workflows.

The run is made as if the trigger had fired for the record now: the event carries what the real
one would (`event_for`, which the run-test's candidates also evaluate), so {{trigger.deal.title}}
and {{trigger.to_stage}} read as they would. The trigger's own checks (its from/to stages, watched
fields, conditions) are *not* required: "trigger" means "run it now". What they say about the
record as it is now is kept in the run (`metadata.trigger_check`), so nobody mistakes the run for
one the trigger started. The workflow's state, the plan, the quota and the enrollment rules
("once", "not while running") apply as to any run; each refusal is a `Refused` in words.

Not started this way: workflows started by a person (their own path in manual.py), inbound
webhooks (call the endpoint), a task's triggers (a task is no record here) and a deletion's (the
record still exists).
"""

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from crm_automation.automation import plans
from crm_automation.automation.definition import catalog, context
from crm_automation.automation.models import (
    AutomationEvent,
    Workflow,
    WorkflowDecision,
    WorkflowRun,
    WorkflowStatus,
    WorkflowVersion,
)
from crm_automation.automation.runtime import rollout
from crm_automation.automation.runtime.dispatch import run_metadata
from crm_automation.automation.runtime.enrollment import enroll, holds, insert_runs
from crm_automation.automation.runtime.queue import enqueue_continue
from crm_automation.automation.services.simulation import (
    entity_id,
    event_entity,
    event_payload,
    record_payload,
    replayed_entity,
)
from crm_automation.automation.triggers import manual, matching, relative_time, schedules
from crm_automation.crm.models import Stage
from crm_automation.crm.selectors import record_kind, user_has_role
from crm_automation.refusals import Refused

MAX_REASON = 500
Outcome = WorkflowDecision.Outcome


def kind_of(workflow: Workflow) -> str | None:
    """The kind of record this workflow is started on by hand ("" for none: a schedule), or None
    when it is not started this way (a webhook's, a task's, a deletion's, a manual one's)."""
    if workflow.trigger_type == catalog.SCHEDULE:
        return ""
    if workflow.trigger_type in catalog.DELETED or workflow.trigger_type in catalog.MANUAL:
        return None
    return replayed_entity(workflow.trigger_type, workflow.organization_id)


def startable_on(record: Any) -> list[Workflow]:
    """The activated workflows not started by a person that an admin may start on this record now
    (those whose trigger is about its kind), by name."""
    kind = record_kind(record)
    live = Workflow.objects.filter(organization_id=record.organization_id, status=WorkflowStatus.ACTIVATED,
                                   current_version__isnull=False).exclude(trigger_type__in=list(catalog.MANUAL))
    return [workflow for workflow in live.order_by("name") if kind_of(workflow) == kind]


def unstartable(workflow: Workflow) -> str:
    """Why this workflow is not started by hand this way, in words."""
    how = catalog.trigger_label(workflow.trigger_type).lower()
    if workflow.trigger_type in catalog.DELETED:
        return f"“{workflow.name}” runs when a record is deleted ({how}); it is not started on one that still exists."
    if workflow.trigger_type == catalog.WEBHOOK:
        return f"“{workflow.name}” starts when its webhook is called: send the request to its endpoint instead."
    return f"“{workflow.name}” is not started on a deal, lead, contact or project (its trigger: {how})."


def event_for(workflow: Workflow, version: WorkflowVersion, record: Any, *, input: dict | None = None,
              who: str = "", data: object = None, shared: dict[str, Any] | None = None) -> AutomationEvent:
    """The event (not saved) the workflow's trigger would carry for `record` now: a stage
    change's from its `from` stage (or none) to the deal's stage, a contact's with the contact, a
    business event's with `data` checked against its declaration (ValidationError by field), a
    relative time's or a schedule's addressed to the workflow. `who`: a start by hand's person
    (the payload's `started_by`); "" for an evaluation that starts nothing. `shared`: a caller
    asking for many records keeps what is the same for each here (`stage_ids`: {slug: id}; a
    business event's checked data), so no record costs a query."""
    now = timezone.now()
    trigger_type = workflow.trigger_type
    payload: dict[str, Any]
    if trigger_type == catalog.SCHEDULE:
        payload = {"workflow_id": workflow.pk, "scheduled_for": now.isoformat(), "missed": 0,
                   "fired_at": now.isoformat()}
        entity, key = catalog.SCHEDULE, schedules.record_id(workflow.pk)
    elif catalog.is_event(trigger_type):
        if shared is not None and "event" in shared:  # the same data, about this record
            payload = {**shared["event"], "links": {record_kind(record): str(record.pk)}}
        else:
            payload = event_payload(workflow, record, data, source=f"started by {who}" if who else "evaluation",
                                    sample_when_empty=not who)
            if shared is not None:
                shared["event"] = payload
        entity, key = event_entity(trigger_type, record_kind(record)), entity_id(record)
    else:
        payload = record_payload(version, record, None if shared is None else shared.get("stage_ids"))
        if trigger_type in relative_time.TRIGGERS:  # addressed to this workflow, as the sweep's are
            payload.update(workflow_id=workflow.pk, occasion=now.date().isoformat())
        entity, key = event_entity(trigger_type, record_kind(record)), entity_id(record)
    if who:
        payload.update(started_by=who)
    if input:
        payload["input"] = input
    event = AutomationEvent(organization_id=workflow.organization_id, kind=trigger_type, entity_type=entity,
                            entity_id=key, payload=payload, processed_at=now)
    event.created_at = now  # ({{trigger.occurred_at}} before it is saved)
    return event


def stage_maps(organization_id: int) -> tuple[dict[int, str], dict[str, str]]:
    """{stage id: slug} (what events' ids name) and {slug: name} (what reasons say)."""
    rows = list(Stage.objects.filter(organization_id=organization_id).values_list("pk", "slug", "name"))
    return {pk: slug for pk, slug, _ in rows}, {slug: name for _, slug, name in rows}


def start(workflow: Workflow, *, by, record: Any, input: dict | None, reason: str) -> WorkflowRun:
    """Start a non-manual activated workflow on `record` now (in the caller's transaction; the
    caller checked the ops role and the record's organization). Admins only; a reason is required."""
    reason = (reason or "").strip()
    if by is None:
        how = catalog.trigger_label(workflow.trigger_type).lower()
        raise Refused(f"“{workflow.name}” is not started by hand (its trigger: {how}); an admin of its organization "
                      "may start it now, with a reason.")
    if not user_has_role(by, workflow.organization_id, "admin"):
        raise PermissionDenied("Only admins of this organization can start a workflow that is not started by a "
                               "person.")
    wanted = kind_of(workflow)
    if wanted is None:
        raise Refused(unstartable(workflow))
    if workflow.status != WorkflowStatus.ACTIVATED or workflow.current_version is None:
        raise Refused(f"“{workflow.name}” is {workflow.get_status_display().lower()}: activate it first.")
    if not plans.includes_automation(workflow.organization.plan):
        raise Refused(f"The {workflow.organization.get_plan_display()} plan does not include automation.")
    given = record_kind(record)
    if given != wanted:
        raise ValidationError({"entity_type": [f"“{workflow.name}” runs on a {wanted}: choose one of your "
                                               f"{wanted}s." if wanted else
                                               f"“{workflow.name}” runs on no record: leave the record out."]})
    if not reason:
        raise ValidationError({"reason": ["Say why it is started by hand now (a short sentence: it is kept with the "
                                          "run)."]})
    if len(reason) > MAX_REASON:
        raise ValidationError({"reason": [f"At most {MAX_REASON} characters."]})
    # A rollout's share, or the current version.
    version, _ = rollout.version_for(workflow, None if record is None else entity_id(record))
    assert version is not None
    who = by.get_username()
    # For a business event, `input` is the event's data (checked against its declaration); for the
    # others, plain data read as {{trigger.input.x}} (checked as a manual start's undeclared input).
    on_event = catalog.is_event(workflow.trigger_type)
    if not on_event:
        input = manual.checked_input(version.definition, input, workflow.organization_id) or None
    event = event_for(workflow, version, record, input=None if on_event else input, who=who,
                      data=input if on_event else None)
    slugs, names = stage_maps(workflow.organization_id)
    trigger = context.trigger_dict(event, slugs)
    full = matching.record_context(event, context.load_records([event]).get(event.entity_id), trigger)
    verdict = matching.match(event, version.definition, trigger, lambda: full, names, as_now=True)
    event.save()
    decision = WorkflowDecision(event=event, workflow=workflow, version=version, entity_id=event.entity_id,
                                outcome=Outcome.MATCHED, reason=f"started by {who}: {reason}"[:2000])
    checked = ("its trigger would start it for this record now" if verdict.matched else
               f"not required (started by hand); for this record now: {verdict.reason}")
    metadata = {**run_metadata(trigger, full), "started_by": who, "reason": reason, "trigger_check": checked}
    if not enroll([(event, workflow, decision, metadata)]):
        raise Refused(f"“{workflow.name}” does not take this {given or 'workflow'} now: {decision.reason}.")
    logged = plans.reserve_history(organization=workflow.organization, runs=1)  # counts like any run
    if not logged:
        decision.outcome = Outcome.MATCHED_UNLOGGED
    run = WorkflowRun(organization_id=workflow.organization_id, workflow=workflow, version=version, event=event,
                      trigger_type=workflow.trigger_type, trigger_entity_type=event.entity_type,
                      trigger_entity_id=event.entity_id, metadata=metadata, history_suppressed=not logged,
                      holds_enrollment=holds(workflow))
    if not insert_runs([(run, decision)]):  # another run took the record's place meanwhile
        raise Refused(f"“{workflow.name}” does not take this {given or 'workflow'} now: {decision.reason}.")
    decision.save()
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(lambda: enqueue_continue([run.pk]))
    return run
