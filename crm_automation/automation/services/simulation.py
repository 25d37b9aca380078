"""Simulate a workflow version against a record (live debug and run-test: docs/product.md#simulate).

The real engine runs the version inside a transaction that is then rolled back: every node
executes as it would, on the record as it is now, and what it would have done is read before
the rollback (the rendered email, the task, the field's old → new value). Nothing is sent (no
delivery happens in a simulation), no CRM row changes, no event fires. Waits are
fast-forwarded (the time each would wait until is shown), a question is assumed approved, a
sub-workflow is not started, and a retry policy shows what it would do after its tries.

What was recorded is then written as a run marked `simulated`, with its steps: it shows on the
run list and the record's page like any run, and counts nowhere (workflow counters, the plan's
quota and the success rate are not touched).
"""

import json
import logging
from dataclasses import dataclass, field

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from crm_automation.automation.ai import providers
from crm_automation.automation.definition import catalog
from crm_automation.automation.models import (
    AiCall,
    AiCallStatus,
    AutomationEvent,
    RunStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
    WorkflowVersion,
)
from crm_automation.automation.nodes import REGISTRY, ActionFailed, ai_conversation
from crm_automation.automation.nodes.ai import result_of
from crm_automation.automation.nodes.base import ExecutionContext
from crm_automation.automation.runtime import engine
from crm_automation.crm import business_events, changes
from crm_automation.crm.models import (
    Contact,
    Deal,
    EmailMessage,
    Lead,
    Project,
    SmsMessage,
    Stage,
    Task,
    contact_snapshot,
)
from crm_automation.crm.selectors import record_kind, user_has_role
from crm_automation.crm.snapshots import snapshot

# The model is not asked in a simulation (it costs, and its answer differs each time): an agent's
# output reads as this text, and a router takes no route (what follows it is not simulated).
AI_STAND_IN: dict[str, dict[str, object]] = {"agent": {"output": "(written by the AI model when the workflow runs)"},
               "router": {"output": {"route": "", "reason": "not simulated"},
                          "note": "the AI model chooses the route when the workflow runs; the simulation stops here"}}


logger = logging.getLogger(__name__)


class _Rollback(Exception):
    pass


# What a simulation can replay: a deal's or a lead's workflows, and a contact's (the contact
# travels in the event, as contact_snapshot writes it).
# A deleted record's workflows replay on a record as it is now (as if it were deleted now), and a
# business event's on the record it is about, with sample data.
ENTITIES = {**catalog.TRIGGER_ENTITY, changes.CONTACT_CREATED: "contact", changes.CONTACT_UPDATED: "contact",
            catalog.MANUAL_CONTACT: "contact", **catalog.DELETED}
Record = Deal | Lead | Contact | Project


def entity_of(record: Record) -> str:
    return record_kind(record)


def entity_id(record: Record):
    """The id an event names the record by (a contact's is a stand-in uuid)."""
    return changes.stand_in("contact", record.pk) if isinstance(record, Contact) else record.pk


def replayed_entity(trigger_type: str, organization_id: int) -> str | None:
    """The kind of record a simulation of a workflow on this trigger is run on; None when it has
    none (a schedule, a webhook, a workflow started on no record)."""
    if catalog.is_event(trigger_type):
        declaration = business_events.catalog(organization_id).get(trigger_type.removeprefix(catalog.EVENT_PREFIX))
        return (declaration.about or "contact") if declaration is not None else None
    return ENTITIES.get(trigger_type) or None


def event_payload(workflow: Workflow, record: Record, sample: object, *, source: str = "simulation",
                  sample_when_empty: bool = True) -> dict:
    """A business event as it would arrive about `record`: its data checked against the
    declaration (ValidationError naming each field), the sample data when none is given (a
    simulation; a real start by hand checks what it is given: `sample_when_empty=False`)."""
    name = workflow.trigger_type.removeprefix(catalog.EVENT_PREFIX)
    declaration = business_events.catalog(workflow.organization_id)[name]
    given = business_events.sample_data(declaration) if sample in (None, "", {}) and sample_when_empty else sample
    data, errors = business_events.check_data(declaration, given or {}, workflow.organization_id)
    if errors:  # each at its place in the data, as the API's and the webhook's answers name it
        raise ValidationError([f"{place}: {message}" for place, message in errors.items()])
    entity = entity_of(record)
    return {"event": {"id": "simulated" if source == "simulation" else "started-by-hand", "name": name,
                      "idempotency_key": None, "source": source},
            "data": data, "links": {entity: str(record.pk)}}


def record_payload(workflow_version: WorkflowVersion, record, stage_ids: dict[str, int] | None = None) -> dict:
    """The trigger's data as the real event would carry it for this record (a stage change: from
    the trigger's `from` stage, or none, to the deal's stage now). `stage_ids`: the organization's
    {slug: id}, when the caller asks for many records (else the `from` stage is looked up)."""
    definition = workflow_version.definition
    if definition.get("trigger_type") in catalog.DELETED:
        return {"entity": entity_of(record), "record": snapshot(entity_of(record), record)}
    if isinstance(record, Contact):
        return {"contact": contact_snapshot(record), **({"changed": {}} if definition.get("trigger_type") ==
                                                         changes.CONTACT_UPDATED else {})}
    if not isinstance(record, Deal):
        return {}
    from_slug = (definition.get("trigger_config") or {}).get("from_stage")
    if stage_ids is not None:
        return {"from_stage_id": stage_ids.get(from_slug) if from_slug else None, "to_stage_id": record.stage_id}
    from_stage = Stage.objects.filter(organization_id=record.organization_id, slug=from_slug).first() \
        if from_slug else None
    return {"from_stage_id": from_stage.pk if from_stage else None, "to_stage_id": record.stage_id}


def _preview(row: dict) -> dict:
    """What a step would have made, read before the rollback."""
    result = dict(row["result"])
    if "email_id" in result:
        email = EmailMessage.objects.filter(pk=result.pop("email_id")).first()
        if email is not None:
            result["would_send"] = {"to": email.to, "subject": email.subject, "body": email.body}
        result["delivery"] = "not sent: simulation"
    if "sms_id" in result:
        sms = SmsMessage.objects.filter(pk=result.pop("sms_id")).first()
        if sms is not None:
            result["would_text"] = {"to": sms.to, "body": sms.body, "segments": sms.segments}
        result["delivery"] = "not sent: simulation"
    if "task_id" in result:
        task = Task.objects.filter(pk=result.pop("task_id")).select_related("assignee").first()
        if task is not None:
            result["would_create_task"] = {"title": task.title, "priority": task.priority,
                                           "assignee": task.assignee.username if task.assignee is not None else None,
                                           "due_date": task.due_date.isoformat() if task.due_date else None}
    if "ai_call_id" in result:
        call = AiCall.objects.filter(pk=result.pop("ai_call_id")).first()
        stood_in = any(result.get("output") == stand_in.get("output") for stand_in in AI_STAND_IN.values())
        if call is not None and stood_in:  # (an answer typed or asked for in debug is shown as the answer)
            result["would_ask"] = {"prompt": call.request.get("prompt"), "routes": call.request.get("routes")}
    if "child_run" in result:
        result.pop("child_run")
        result["would_start"] = result.get("workflow")
    return result


@dataclass(frozen=True)
class Debug:
    """Live debug's choices, made as the person steps through: the waits to fast-forward (the run
    stops at the others, as it would wait), the answers to questions (approved or rejected), and
    typed sample answers of AI nodes (an agent's text, a router's route): the model is not asked."""

    fast_forward: frozenset[str] = frozenset()
    answers: dict[str, str] = field(default_factory=dict)
    samples: dict[str, str] = field(default_factory=dict)
    ask_model: bool = False  # AI nodes without a sample ask the configured model (tokens and cost shown)

    def as_metadata(self) -> dict:
        return {"fast_forward": sorted(self.fast_forward), "answers": self.answers, "samples": self.samples,
                "ask_model": self.ask_model}


def stand_in_for(definition: dict, debug: Debug | None):
    """What an undelivered step returns: an AI node's typed sample answer in debug, else the
    stand-in that says the model is not asked."""
    configs = {action.get("id"): action.get("config") or {} for action in definition.get("actions") or []}

    def stand_in(node_id: str, node_type: str, result: dict, ctx: ExecutionContext) -> dict:
        sample = debug.samples.get(node_id) if debug is not None else None
        if sample is not None and node_type == "agent":
            output: object = sample
            if configs.get(node_id, {}).get("outputFormat") == "json":
                try:
                    output = json.loads(sample)
                except ValueError:
                    output = sample
            return {**result, "output": output, "note": "a sample answer typed in debug: the AI model was not asked"}
        if sample is not None and node_type == "router":
            routes = [r.get("label", "") if isinstance(r, dict) else "" for r in configs.get(node_id, {}).get("routes")
                      or []]
            index = next((i for i, label in enumerate(routes) if label.casefold() == sample.strip().casefold()), None)
            if index is not None:
                return {**result, "output": {"route": routes[index], "reason": "a sample answer typed in debug"},
                        "handle": f"route-{index}", "note": "the route was chosen in debug: the AI model was not asked"}
        if node_type == "send_sms" and result.get("reply_by"):  # no one replies in a simulation …
            if sample is not None:  # … but in debug, the reply typed stands for the contact's
                return {**result, "reply": sample, "timed_out": False, "note": "a reply typed in debug"}
            return {**result, "reply": None, "timed_out": True, "no_reply_because": "no one replies in a simulation"}
        if debug is not None and debug.ask_model and node_type in AI_STAND_IN and "ai_call_id" in result:
            return _asked(node_type, result, ctx)
        tools = configs.get(node_id, {}).get("tools") if node_type == "agent" else None
        if tools:  # the model is not asked, so it calls no tool: say which it could have called
            return {**result, **AI_STAND_IN[node_type], "would_use_tools": tools}
        return {**result, **AI_STAND_IN.get(node_type, {})}

    return stand_in


def _asked(node_type: str, result: dict, ctx: ExecutionContext) -> dict:
    """Live debug asked for the model: the question the step prepared is asked now, and its
    answer, tokens and cost are the step's (nothing else of the run is delivered). An agent's
    tool calls are made inside the debug's transaction (rolled back) and shown as previews."""
    provider = providers.configured()
    call = AiCall.objects.get(pk=result["ai_call_id"])
    if provider is None:
        return {**result, **AI_STAND_IN[node_type], "note": providers.not_configured_message()}
    request = call.request
    if request.get("tools"):
        fields = ai_conversation.Conversation(call, ctx, provider, preview=tool_preview).run()
        AiCall.objects.filter(pk=call.pk).update(**fields)
        asked = {**result, **result_of(AiCall.objects.get(pk=call.pk)), "note": "asked the AI model in debug; its "
                 "tool calls were previewed, nothing was created or sent"}
        asked.pop("ai_call_id", None)  # (read, so _preview does not show the question as unasked)
        if fields["status"] != AiCallStatus.SUCCEEDED:
            asked.update(AI_STAND_IN[node_type], note=f"the AI model was asked and gave no answer: {fields['error']}")
        return asked
    try:
        completion = providers.complete(provider, system=request["system"], prompt=request["prompt"],
                                        max_tokens=request["max_tokens"], schema=request.get("schema"))
        answer = REGISTRY[node_type].read(request, completion)  # type: ignore[attr-defined]
    except (providers.ProviderError, ActionFailed) as exc:
        return {**result, **AI_STAND_IN[node_type], "note": f"the AI model was asked and gave no answer: {exc}"}
    usage = provider.usage(completion)
    asked = {**result, "output": answer.get("output"), "model": usage["provider"],
             "note": "asked the AI model in debug",
             "tokens": {"input": usage["input_tokens"], "output": usage["output_tokens"]},
             "cost_usd": str(usage["cost"].normalize())}
    if "handle" in answer:
        asked["handle"] = answer["handle"]
    return asked


def tool_preview(made: dict) -> dict:
    """What an agent's tool call would have made, read before the rollback (as a step's)."""
    if "delivery_id" in made:  # a Slack post: what would be posted where
        return {"would_post": made.get("url"), "delivery": "not sent: simulation"}
    return _preview({"result": made})


def _walk(run: WorkflowRun, debug: Debug | None = None) -> tuple[str, str, list[dict]]:
    """Execute the run to its end with the engine (inside the caller's transaction)."""
    def prepare(state) -> None:
        if debug is not None:
            state.fast_forward = debug.fast_forward
            state.answers = dict(debug.answers)

    return engine.walk_without_effects(run, stand_in_for(run.version.definition, debug), prepare)


def simulate(*, workflow_id: int, by, record: Record, version_number: int | None = None,
             debug: Debug | None = None, replacing: WorkflowRun | None = None, sample: object = None) -> WorkflowRun:
    """Simulate a version (the latest by default) of a workflow against `record`; returns the
    simulated run with its steps. Ops members and admins of the organization may.

    `debug`: a live debug's choices (the run may stop at a wait or a question: its status is
    then waiting); `replacing`: the debug run this one continues, whose steps it replaces;
    `sample`: a business event's data (its declaration's sample when left out)."""
    workflow = Workflow.objects.get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can simulate workflows.")
    if record.organization_id != workflow.organization_id:
        raise ValidationError("That record belongs to another organization.")
    entity = entity_of(record)
    wanted = replayed_entity(workflow.trigger_type, workflow.organization_id)
    if wanted is None:
        started_by = catalog.trigger_label(workflow.trigger_type).lower()
        raise ValidationError(f"“{workflow.name}” starts when {started_by}, not for a record as it is now: a "
                              "simulation replays a deal, a lead, a contact or a project; the Impact tab shows what "
                              "past changes would have done.")
    if wanted != entity:
        raise ValidationError(f"“{workflow.name}” runs for a {wanted}; choose a {wanted} to simulate it with.")
    versions = workflow.versions.order_by("-number")
    version = versions.filter(number=version_number).first() if version_number else versions.first()
    if version is None:
        which = f"version {version_number}" if version_number else "version"
        raise ValidationError(f"“{workflow.name}” has no {which} to simulate.")
    started = timezone.now()
    payload = event_payload(workflow, record, sample) if catalog.is_event(workflow.trigger_type) else \
        record_payload(version, record)
    outcome = {}
    try:
        with transaction.atomic():
            run = _simulated_run(workflow, version, entity, record, payload, started, lease_owner="simulation")
            run = WorkflowRun.objects.select_related("version", "event").get(pk=run.pk)
            status, error, rows = _walk(run, debug)
            outcome = {"status": status, "error": error, "rows": [{**row, "result": _preview(row)} for row in rows]}
            raise _Rollback
    except _Rollback:
        pass
    metadata = {"simulated_by": by.get_username() if by is not None else None}
    if debug is not None:
        metadata.update(debug=True, **debug.as_metadata())
    return _record(workflow, version, entity, record, payload, started, outcome, metadata, replacing)


@transaction.atomic
def _record(workflow, version, entity, record, payload, started, outcome, metadata, replacing=None) -> WorkflowRun:
    over = outcome["status"] not in (RunStatus.WAITING, RunStatus.PAUSED)
    fields = {"status": outcome["status"], "error": outcome["error"][:4000],
              "finished_at": timezone.now() if over else None, "metadata": metadata}
    if replacing is not None:  # the same debug run, gone further: its steps are what this walk wrote
        WorkflowRun.objects.filter(pk=replacing.pk).update(version=version, **fields)
        replacing.actions.all().delete()
        run = WorkflowRun.objects.get(pk=replacing.pk)
    else:
        run = _simulated_run(workflow, version, entity, record, payload, started, **fields)
    WorkflowRunAction.objects.bulk_create([WorkflowRunAction(run=run, **row) for row in outcome["rows"]])
    return run


def event_entity(trigger_type: str, entity: str) -> str:
    """The entity type an event of this trigger about a record of kind `entity` carries: a business
    event's and a deletion's are named as the real ones are (`event`, `deleted`)."""
    if catalog.is_event(trigger_type):
        return "event"
    if trigger_type in catalog.DELETED:
        return changes.GONE
    return entity


def _simulated_run(workflow, version, entity: str, record, payload: dict, started, **fields) -> WorkflowRun:
    """A simulated run and the event it pretends came in (processed already: no worker takes it),
    named as the real one is (event_entity), with the record's id, so the record's page lists the
    simulation."""
    entity = event_entity(workflow.trigger_type, entity)
    event = AutomationEvent.objects.create(
        organization_id=workflow.organization_id, kind=workflow.trigger_type, entity_type=entity,
        entity_id=entity_id(record), payload=payload, processed_at=started)
    return WorkflowRun.objects.create(
        organization_id=workflow.organization_id, workflow=workflow, version=version, event=event,
        trigger_type=workflow.trigger_type, trigger_entity_type=entity, trigger_entity_id=entity_id(record),
        simulated=True, **fields)


def debug(*, workflow_id: int, by, record: Deal | Lead | Contact, choices: Debug,
          continuing: int | None = None) -> WorkflowRun:
    """Live debug: the workflow's latest version walked on `record` in the sandbox of a
    simulation, stopping at each wait and question it is not told to pass (`choices`). A run it
    `continuing`s (the same workflow and record, a debug run) is walked again from the start with
    the new choices and keeps its id: one debug run per session, kept to read, counted nowhere."""
    replacing = None
    if continuing is not None:
        replacing = WorkflowRun.objects.filter(pk=continuing, workflow_id=workflow_id, simulated=True,
                                               trigger_entity_id=entity_id(record), metadata__debug=True).first()
        if replacing is None:
            raise ValidationError("That debug run is not one of this workflow's on this record: start again.")
    return simulate(workflow_id=workflow_id, by=by, record=record, debug=choices, replacing=replacing)


def shadow_run(run_id: int, token: str) -> str:
    """Execute a shadow-mode run (a real event, a real record): walked as a simulation is, in a
    transaction rolled back, so every effect is a preview on its steps and nothing is sent or
    changed; then its steps and outcome are written under its lease. Returns its status."""
    run = WorkflowRun.objects.select_related("version", "event", "workflow").get(pk=run_id)
    outcome: dict = {}
    try:
        with transaction.atomic():
            status, error, rows = _walk(run)
            outcome = {"status": status, "error": error, "rows": [{**row, "result": _preview(row)} for row in rows]}
            raise _Rollback
    except _Rollback:
        pass
    except Exception as exc:  # noqa: BLE001 (one shadow run that cannot be walked fails alone, once)
        logger.exception("Shadow run %s could not be walked", run_id)
        outcome = {"status": RunStatus.FAILED, "error": f"the shadow run could not be walked: {exc}", "rows": []}
    with transaction.atomic():
        over = outcome["status"] not in (RunStatus.WAITING, RunStatus.PAUSED)
        mine = WorkflowRun.objects.filter(pk=run.pk, lease_owner=token, status=RunStatus.STARTED).update(
            status=outcome["status"], error=outcome["error"][:4000], finished_at=timezone.now() if over else None,
            lease_until=None, lease_owner="")
        if not mine:
            return run.status  # our lease ran out and someone else did it
        run.actions.all().delete()  # (a walk cut short by a crash wrote none, but be sure)
        WorkflowRunAction.objects.bulk_create([WorkflowRunAction(run=run, **row) for row in outcome["rows"]])
    return str(outcome["status"])
