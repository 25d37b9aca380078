"""The tools that only read (scope `read`): search and fetch in the shape ChatGPT's connectors
expect, workflows with their documents, runs with their steps, and why a record did or did not
run a workflow. Everything is scoped to the caller's organizations (caller.Call)."""

import json
import re
from typing import Any

from django.db.models import Q

from crm_automation.api.mcp_server.caller import Call, NotFound
from crm_automation.api.mcp_server.registry import ID, LIMIT, RECORD_ID, RECORD_KIND, plain, tool
from crm_automation.api.run_serializers import RunDetailSerializer, RunSerializer
from crm_automation.automation.models import RunStatus, Workflow, WorkflowRun, WorkflowStatus
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.selectors import decisions_of_record, runs_of_record, version_labels
from crm_automation.automation.services.versions import workflow_export_yaml
from crm_automation.crm.changes import stand_in
from crm_automation.crm.models import Contact, Deal, Lead, Project
from crm_automation.crm.selectors import record_kind

PER_KIND = 5  # search: at most this many of each kind, so one kind cannot crowd out the others
SHOWN = 20  # runs and decisions shown with a record


def record_title(record: Any) -> str:
    if isinstance(record, Contact):
        return f"{record.first_name} {record.last_name}".strip() or f"Contact {record.pk}"
    return str(getattr(record, "title", None) or getattr(record, "name", None) or record)


def events_id(record: Any) -> Any:
    """The id a record's events and runs carry (a contact's is a stand-in uuid: crm/changes.py)."""
    return stand_in("contact", record.pk) if isinstance(record, Contact) else record.pk


def record_fields(record: Any) -> dict[str, Any]:
    """What a person reads on the record's page, as plain values."""
    kind = record_kind(record)
    common = {"id": str(record.pk), "kind": kind, "custom": record.custom,
              "archived": record.archived_at is not None}
    if isinstance(record, Deal):
        return {**common, "title": record.title, "amount": str(record.amount), "stage": record.stage.slug,
                "contact": record.contact_id, "owner": record.owner.get_username() if record.owner else None,
                "close_date": record.close_date.isoformat() if record.close_date else None}
    if isinstance(record, Lead):
        return {**common, "name": record.name, "email": record.email, "company": record.company,
                "status": record.status, "source": record.source,
                "owner": record.owner.get_username() if record.owner else None}
    if isinstance(record, Project):
        return {**common, "name": record.name, "status": record.status, "service_type": record.service_type,
                "contact": record.contact_id, "deal": str(record.deal_id) if record.deal_id else None}
    return {**common, "first_name": record.first_name, "last_name": record.last_name, "email": record.email,
            "phone": record.phone, "company": record.company}


def workflow_summary(workflow: Workflow) -> dict[str, Any]:
    return {"id": workflow.pk, "name": workflow.name, "key": workflow.key, "status": workflow.status,
            "trigger_type": workflow.trigger_type, "description": workflow.description,
            "runs": workflow.run_count, "organization": workflow.organization_id}


def run_detail(run: WorkflowRun) -> dict[str, Any]:
    """The API's shape of a run with its steps, plus the questions it waits on (answer_approval)."""
    detail: dict[str, Any] = dict(RunDetailSerializer(run, context={"labels": version_labels(run.version)}).data)
    open_steps = run.actions.filter(action_type=questions.USER_INPUT, status="waiting").order_by("position")
    detail["open_questions"] = [{"approval": step.pk, "node_id": step.node_id,
                                 "prompt": str((step.result or {}).get("prompt", "")),
                                 "role": str((step.result or {}).get("role", "admin"))} for step in open_steps]
    return detail


# --- search and fetch (ChatGPT connectors) --------------------------------------------------------

SEARCHED: dict[str, tuple[Any, tuple[str, ...]]] = {
    "deal": (Deal, ("title",)),
    "lead": (Lead, ("name", "email", "company")),
    "contact": (Contact, ("first_name", "last_name", "email", "company")),
    "project": (Project, ("name", "service_type")),
}


@tool("search", scope="read", required=("query",), description=(
    "Search the caller's organization for workflows (by name or description), runs (by number or by their "
    "workflow's name) and records: deals, leads, contacts and projects (by name, title, email or company). "
    "Returns {results: [{id, title, url}]}; pass an id (e.g. \"workflow:12\", \"run:34\", \"deal:<uuid>\") to "
    "fetch for the whole document."),
    properties={"query": {"type": "string", "maxLength": 200, "description": "Words to look for."}})
def search(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    query = str(args["query"]).strip()
    orgs = call.caller.organization_ids
    results: list[dict[str, str]] = []
    workflows = Workflow.objects.filter(organization_id__in=orgs).filter(
        Q(name__icontains=query) | Q(description__icontains=query) | Q(key__icontains=query)).order_by("name")
    results += [{"id": f"workflow:{w.pk}", "title": f"Workflow “{w.name}” ({w.status})",
                 "url": call.caller.link("web:edit", w.pk)} for w in workflows[:PER_KIND]]
    number = re.fullmatch(r"(?:run:|#)?(\d{1,18})", query)
    runs = WorkflowRun.objects.filter(organization_id__in=orgs, history_suppressed=False).select_related("workflow")
    runs = runs.filter(pk=int(number.group(1))) if number else runs.filter(workflow__name__icontains=query)
    results += [{"id": f"run:{r.pk}", "title": f"Run #{r.pk} of “{r.workflow.name}” ({r.status})",
                 "url": call.caller.link("web:run", r.pk)} for r in runs.order_by("-started_at", "-id")[:PER_KIND]]
    for kind, (model, fields) in SEARCHED.items():
        match = Q()
        for name in fields:
            match |= Q(**{f"{name}__icontains": query})
        for record in model.objects.filter(match, organization_id__in=orgs).order_by("-pk")[:PER_KIND]:
            results.append({"id": f"{kind}:{record.pk}", "title": f"{kind.title()} “{record_title(record)}”",
                            "url": call.caller.link("web:record", kind, str(record.pk))})
    return {"results": results}


@tool("fetch", scope="read", required=("id",), description=(
    "The whole document behind a search result: a workflow (its YAML), a run (its steps, inputs, results and "
    "errors) or a record (its fields and the workflows it ran). Returns {id, title, text, url, metadata}."),
    properties={"id": {"type": "string", "maxLength": 80,
                       "description": "As search gives it: workflow:<n>, run:<n>, deal:<uuid>, lead:<uuid>, "
                                      "contact:<n> or project:<uuid>."}})
def fetch(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    kind, _, raw = str(args["id"]).partition(":")
    if kind == "workflow":
        workflow = call.workflow(raw)
        return {"id": f"workflow:{workflow.pk}", "title": workflow.name, "text": workflow_export_yaml(workflow),
                "url": call.caller.link("web:edit", workflow.pk), "metadata": workflow_summary(workflow)}
    if kind == "run":
        run = call.run(raw)
        detail = run_detail(run)
        return {"id": f"run:{run.pk}", "title": f"Run #{run.pk} of “{run.workflow.name}”",
                "text": json.dumps(detail, indent=1, default=plain), "url": call.caller.link("web:run", run.pk),
                "metadata": {"workflow": run.workflow_id, "status": run.status, "simulated": run.simulated}}
    if kind in SEARCHED:
        record = call.record(kind, raw)
        fields = record_fields(record)
        automation = why_of(record)
        return {"id": f"{kind}:{record.pk}", "title": record_title(record),
                "text": json.dumps({**fields, **automation}, indent=1, default=plain),
                "url": call.caller.link("web:record", kind, str(record.pk)), "metadata": fields}
    raise NotFound(f"No {args['id']!r}: an id looks like workflow:12, run:34 or deal:<uuid> (as search gives it).")


# --- workflows -----------------------------------------------------------------------------------

@tool("list_workflows", scope="read", description=(
    "The caller's workflows, by name: id, name, status (draft, activated, paused, archived), trigger type and "
    "how many times each ran."),
    properties={"status": {"type": "string", "enum": list(WorkflowStatus.values)},
                "search": {"type": "string", "maxLength": 200, "description": "Part of the name or description."},
                "limit": LIMIT})
def list_workflows(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    workflows = Workflow.objects.filter(organization_id__in=call.caller.organization_ids)
    if args.get("status"):
        workflows = workflows.filter(status=args["status"])
    if args.get("search"):
        workflows = workflows.filter(Q(name__icontains=args["search"]) | Q(description__icontains=args["search"]))
    shown = list(workflows.order_by("name", "id")[:args.get("limit", 20)])
    return {"workflows": [workflow_summary(w) for w in shown], "total": workflows.count()}


@tool("get_workflow", scope="read", required=("workflow_id",), description=(
    "One workflow: its summary and its YAML document (trigger, nodes, edges, settings), the same text as the "
    "builder's YAML tab and the API's export."),
    properties={"workflow_id": ID})
def get_workflow(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    workflow = call.workflow(args["workflow_id"])
    return {**workflow_summary(workflow), "yaml": workflow_export_yaml(workflow),
            "url": call.caller.link("web:edit", workflow.pk)}


# --- runs ----------------------------------------------------------------------------------------

@tool("list_runs", scope="read", description=(
    "Runs, newest first: of one workflow, of one status, or all; simulations are left out unless asked for."),
    properties={"workflow_id": ID, "status": {"type": "string", "enum": list(RunStatus.values)},
                "simulated": {"type": "boolean", "default": False}, "limit": LIMIT})
def list_runs(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    runs = WorkflowRun.objects.filter(organization_id__in=call.caller.organization_ids, history_suppressed=False,
                                      simulated=bool(args.get("simulated", False)))
    if args.get("workflow_id") is not None:
        runs = runs.filter(workflow=call.workflow(args["workflow_id"]))
    if args.get("status"):
        runs = runs.filter(status=args["status"])
    shown = runs.select_related("workflow", "version").order_by("-started_at", "-id")[:args.get("limit", 20)]
    return {"runs": [dict(RunSerializer(run).data) for run in shown]}


@tool("get_run", scope="read", required=("run_id",), description=(
    "One run with its steps in order: what each step was given (input), what it did (result), its status, "
    "error and attempts; and the questions (approvals) it waits on."),
    properties={"run_id": ID})
def get_run(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    run = call.run(args["run_id"])
    return {**run_detail(run), "url": call.caller.link("web:run", run.pk)}


# --- why -----------------------------------------------------------------------------------------

def why_of(record: Any, workflow: Workflow | None = None) -> dict[str, Any]:
    scope = {"entity_id": events_id(record), "organization_id": record.organization_id}
    runs = runs_of_record(**scope)
    decisions = decisions_of_record(**scope)
    if workflow is not None:
        runs, decisions = runs.filter(workflow=workflow), decisions.filter(workflow=workflow)
    return {
        "runs": [{"id": r.pk, "workflow": r.workflow_id, "workflow_name": r.workflow.name, "status": r.status,
                  "simulated": r.simulated, "started_at": r.started_at, "error": r.error} for r in runs[:SHOWN]],
        "decisions": [{"workflow": d.workflow_id, "workflow_name": d.workflow.name, "outcome": d.outcome,
                       "reason": d.reason, "event": d.event_id, "event_kind": d.event.kind,
                       "at": d.created_at} for d in decisions[:SHOWN]],
    }


@tool("why", scope="read", required=("entity_type", "entity_id"), description=(
    "Why a record did or did not run workflows: for each change of the record, each candidate workflow's "
    "recorded decision (matched, or why not: stage filter, condition false, paused, quota …) and the runs it "
    "started, newest first. Name a workflow to see only its decisions."),
    properties={"entity_type": RECORD_KIND, "entity_id": RECORD_ID, "workflow_id": ID})
def why(call: Call, args: dict[str, Any]) -> dict[str, Any]:
    record = call.record(args["entity_type"], args["entity_id"])
    workflow = call.workflow(args["workflow_id"]) if args.get("workflow_id") is not None else None
    found = why_of(record, workflow)
    if not found["decisions"] and not found["runs"]:
        found["note"] = ("No change of this record has been considered by " + (
            f"“{workflow.name}”" if workflow else "any workflow") + " yet: a workflow decides when a change of the "
            "kind it listens to is processed, and only active workflows are candidates.")
    return {"record": f"{args['entity_type']}:{record.pk}", "title": record_title(record), **found}
