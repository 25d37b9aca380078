"""The tools that change something: drafts and simulations (scope `draft`), real starts and what
a person does to a run (scope `run`). Each calls the service the pages and the API call, which
checks the person's role and refuses what the state forbids (crm_automation/refusals.py);
server.py turns a refusal into a tool error."""

from typing import Any

from crm_automation.api.mcp_server.caller import Call, NotFound
from crm_automation.api.mcp_server.reads import get_run, run_detail, workflow_summary
from crm_automation.api.mcp_server.registry import ID, ORGANIZATION, RECORD_ID, RECORD_KIND, tool
from crm_automation.automation.ai.authoring import MAX_DESCRIPTION, workflow_draft_from_description
from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.services.runs import RESUME_WAYS, run_answer, run_resume, run_retry
from crm_automation.automation.services.simulation import simulate as simulate_run
from crm_automation.automation.services.versions import workflow_export_yaml, workflow_import_yaml
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.refusals import Refused

MAX_YAML = 200_000  # as the API's body limit (bounded_reader.py checks depth and values too)


@tool("create_draft", scope="draft", description=(
    "Create a new draft workflow, from a YAML workflow document (as get_workflow returns one) or from a "
    "plain-language description that the AI model turns into a document. The draft is never activated: a "
    "person reviews and activates it. Every problem of a document is reported with its place. Ops and admins."),
    properties={"yaml": {"type": "string", "maxLength": MAX_YAML, "description": "A YAML workflow document."},
                "description": {"type": "string", "maxLength": MAX_DESCRIPTION,
                                "description": "What should start the workflow and what it should do."},
                "organization": ORGANIZATION})
def create_draft(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    text, description = args.get("yaml"), args.get("description")
    if bool(text) == bool(description):
        raise Refused("Give either `yaml` (a workflow document) or `description` (in plain words), not both.")
    organization = call.organization(args.get("organization"))
    user = call.caller.user
    notes: list[str] = []
    if text:
        workflow, notes = workflow_import_yaml(organization=organization, by=user, text=text)
    else:
        draft = workflow_draft_from_description(organization=organization, by=user, description=str(description))
        workflow, notes = draft.workflow, [f"assumed: {a}" for a in draft.assumptions]
    return {**workflow_summary(workflow), "notes": notes, "yaml": workflow_export_yaml(workflow),
            "url": call.caller.link("web:edit", workflow.pk)}


def _simulated(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    workflow = call.workflow(args["workflow_id"])
    record = call.record(args["entity_type"], args["entity_id"])
    run = simulate_run(workflow_id=workflow.pk, by=call.caller.user, record=record,
                       version_number=args.get("version"))
    run = WorkflowRun.objects.select_related("workflow", "version").get(pk=run.pk)
    return {**run_detail(run), "url": call.caller.link("web:run", run.pk),
            "note": "A simulation: every step ran against the record as it is now, in a transaction that was "
                    "rolled back. Nothing was sent or changed."}


@tool("simulate", scope="draft", required=("workflow_id", "entity_type", "entity_id"), description=(
    "Simulate a workflow (its latest version, or the one named) on a record: every step runs as it would, "
    "inside a transaction that is rolled back, so nothing is sent or changed; returns the simulated run with "
    "what each step would do. Ops and admins."),
    properties={"workflow_id": ID, "entity_type": RECORD_KIND, "entity_id": RECORD_ID,
                "version": {"type": "integer", "minimum": 1, "description": "The version number (latest if left "
                                                                             "out)."}})
def simulate(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    return _simulated(call, args)


@tool("start_workflow", scope="draft", required=("workflow_id",), description=(
    "Start a workflow on a record. By default a dry run: the workflow is simulated (nothing is sent or changed) "
    "and the simulated run is returned. A real start needs dry_run false AND confirm true, a token with the "
    "`run` scope and the ops or admin role; the run is queued and its id returned (follow it with get_run)."),
    properties={"workflow_id": ID, "entity_type": RECORD_KIND, "entity_id": RECORD_ID,
                "input": {"type": "object", "description": "The workflow's declared inputs ({{trigger.input.x}})."},
                "reason": {"type": "string", "maxLength": 500, "description": (
                    "Why it is started now: required when an admin starts a workflow whose trigger is not "
                    "“started by a person” (kept on the run).")},
                "dry_run": {"type": "boolean", "default": True},
                "confirm": {"type": "boolean", "default": False,
                            "description": "Must be true for a real start: the person has agreed to it."}})
def start(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    if args.get("dry_run", True):
        if args.get("entity_type") is None or args.get("entity_id") is None:
            raise Refused("A dry run simulates the workflow on a record: name one (entity_type and entity_id).")
        return {"dry_run": True, **_simulated(call, args)}
    if "run" not in call.caller.scopes:
        raise Refused("A real start needs a token with the “run” scope; this one can only do a dry run.")
    if args.get("confirm") is not True:
        raise Refused("A real start sends and changes things for real: ask the person, then call again with "
                      "confirm: true (or leave dry_run true to simulate).")
    workflow = call.workflow(args["workflow_id"])
    record = None
    if args.get("entity_type") is not None or args.get("entity_id") is not None:
        record = call.record(args.get("entity_type"), args.get("entity_id"))
    run = workflow_start(workflow_id=workflow.pk, by=call.caller.user, record=record, input=args.get("input"),
                         reason=args.get("reason") or "")
    run = WorkflowRun.objects.select_related("workflow", "version").get(pk=run.pk)
    return {"dry_run": False, **run_detail(run), "url": call.caller.link("web:run", run.pk)}


@tool("retry_run", scope="run", required=("run_id",), description=(
    "Run a failed run's failed (and skipped) steps again; completed steps stay done. Refused when an email's "
    "outcome is unknown (it may have arrived). Ops and admins."),
    properties={"run_id": ID})
def retry(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    run = call.run(args["run_id"])
    run_retry(run_id=run.pk, by=call.caller.user)
    return get_run(call, {"run_id": run.pk})


@tool("resume_run", scope="run", required=("run_id", "how"), description=(
    "Resume a paused run (a failed step whose policy asks a person): retry that step, or skip it and go on. "
    "Ops and admins."),
    properties={"run_id": ID, "how": {"type": "string", "enum": list(RESUME_WAYS)}})
def resume(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    run = call.run(args["run_id"])
    run_resume(run_id=run.pk, by=call.caller.user, how=args["how"])
    return get_run(call, {"run_id": run.pk})


@tool("answer_approval", scope="run", required=("approval", "decision"), description=(
    "Answer a question a run waits on (an approval: get_run lists its open_questions with their approval id): "
    "approved or rejected, with a comment; the run goes on. Who may answer is the question's role."),
    properties={"approval": {**ID, "description": "The question's id (open_questions[].approval of get_run)."},
                "decision": {"type": "string", "enum": [questions.APPROVED, questions.REJECTED]},
                "comment": {"type": "string", "maxLength": 2000}})
def answer(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    pk = call.number(args["approval"], "approval")
    step = (WorkflowRunAction.objects.filter(pk=pk, run__organization_id__in=call.caller.organization_ids,
                                             action_type=questions.USER_INPUT).first())
    if step is None:
        raise NotFound(f"No approval {pk} in your organizations.")
    call.organization_id = call.run(step.run_id).organization_id
    run_answer(run_id=step.run_id, by=call.caller.user, node_id=step.node_id, token=step.token,
               decision=args["decision"], comment=args.get("comment", ""))
    return get_run(call, {"run_id": step.run_id})
