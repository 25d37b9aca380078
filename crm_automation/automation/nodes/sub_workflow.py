"""Sub-workflow nodes: a run starts a run of another workflow of its organization, for the same
record, and (with `awaitResponse`, the default) waits for it; the child's outcome and step
results become the node's output. Parent and child link to each other (WorkflowRun.parent_run;
the child's `parent_key` is the parent step's effect key, unique, so a redelivered parent finds
its child instead of starting another). Nesting is limited to MAX_DEPTH levels.

Config (docs/product.md#nodes): {"workflowId": "<the child's id (key)>", "awaitResponse": true}.
"""

from typing import Any, TypedDict

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from crm_automation.automation import lifecycle, plans
from crm_automation.automation.definition import catalog
from crm_automation.automation.models import RUN_OVER, AutomationEvent, RunStatus, Workflow, WorkflowRun, WorkflowStatus
from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, Result
from crm_automation.automation.runtime import rollout
from crm_automation.automation.runtime.queue import enqueue_continue

MAX_DEPTH = 5
FINISHED = RUN_OVER


# A child run to start: its workflow and version, the parent run, its nesting level, whether the
# parent waits for it.
Child = TypedDict("Child", {"child": Workflow, "version_id": int, "parent": WorkflowRun, "depth": int,
                            "await": bool})


class SubWorkflow(Action[Child]):
    type = "sub_workflow"
    label = "Sub-workflow"
    required = ("workflowId",)
    optional = ("awaitResponse",)

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict) or errors:
            return errors
        if not isinstance(config.get("awaitResponse", True), bool):
            errors.append(("config.awaitResponse", "must be true (wait for the sub-workflow) or false"))
        child = Workflow.objects.filter(organization_id=organization_id, key=config["workflowId"]).first()
        if child is None:
            keys = list(Workflow.objects.filter(organization_id=organization_id).exclude(
                status=WorkflowStatus.ARCHIVED).order_by("key").values_list("key", flat=True)[:20])
            return [*errors, ("config.workflowId", f"“{config['workflowId']}” is not a workflow of this organization; "
                                                   f"use one of {', '.join(keys) or '(none yet)'}")]
        ours, theirs = catalog.TRIGGER_ENTITY.get(trigger_type), catalog.TRIGGER_ENTITY.get(child.trigger_type)
        if ours != theirs:
            errors.append(("config.workflowId", f"“{child.key}” runs for a {theirs}; this workflow runs for a {ours}"))
        return errors

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Child:
        child = (Workflow.objects.filter(organization_id=ctx.organization_id, key=config["workflowId"])
                 .select_related("current_version", "rollout__version").first())
        if child is None:
            raise ActionFailed(f"the sub-workflow “{config['workflowId']}” no longer exists")
        if child.status != WorkflowStatus.ACTIVATED or child.current_version_id is None:
            raise ActionFailed(f"the sub-workflow “{child.name}” is {child.get_status_display().lower()}, so it "
                               "was not started")
        parent = WorkflowRun.objects.select_related("event", "organization").get(pk=ctx.run_id)
        depth = (parent.metadata or {}).get("sub_depth", 0) + 1
        if depth > MAX_DEPTH:
            raise ActionFailed(f"sub-workflows nest at most {MAX_DEPTH} deep; “{child.name}” would be level {depth}")
        version, _ = rollout.version_for(child, parent.trigger_entity_id)  # the record's version of the child
        return {"child": child, "version_id": version.pk if version else child.current_version_id, "parent": parent,
                "depth": depth, "await": config.get("awaitResponse", True)}

    def apply(self, items: list[tuple[ExecutionContext, Child]]) -> list[Result]:
        now = timezone.now()
        events = AutomationEvent.objects.bulk_create([AutomationEvent(
            organization_id=p["parent"].organization_id, kind=p["parent"].trigger_type,
            entity_type=p["parent"].trigger_entity_type, entity_id=p["parent"].trigger_entity_id,
            payload=p["parent"].event.payload, depth=p["parent"].event.depth, caused_by_run_id=p["parent"].pk,
            processed_at=now) for _, p in items])
        # Child runs count against the plan's monthly quota like any run (one organization per group).
        logged = plans.reserve_history(organization=items[0][1]["parent"].organization, runs=len(items))
        runs = []
        for i, ((ctx, prepared), event) in enumerate(zip(items, events, strict=True)):
            parent = prepared["parent"]
            runs.append(WorkflowRun(
                organization_id=parent.organization_id, workflow=prepared["child"],
                version_id=prepared["version_id"], event=event, trigger_type=parent.trigger_type,
                trigger_entity_type=parent.trigger_entity_type, trigger_entity_id=parent.trigger_entity_id,
                parent_run=parent, parent_key=ctx.key, history_suppressed=i >= logged,
                metadata={"sub_depth": prepared["depth"], "await": prepared["await"]}))
        WorkflowRun.objects.bulk_create(runs)
        lifecycle.runs_started(runs)
        if settings.AUTOMATION["NUDGE"]:
            ids = [r.pk for r in runs]
            transaction.on_commit(lambda: enqueue_continue(ids))
        return [self._result(run) for run in runs]

    @staticmethod
    def _result(run: WorkflowRun) -> Result:
        return {"child_run": run.pk, "workflow": run.workflow.key if run.workflow_id else "",
                "await": (run.metadata or {}).get("await", True)}

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {run.parent_key: self._result(run)
                for run in WorkflowRun.objects.filter(parent_key__in=keys).select_related("workflow")
                if run.parent_key is not None}  # (none is None: filtered on)


def child_outcome(child_run_id: int) -> tuple[str, dict[str, Any]] | None:
    """(status, output) of a finished child run; None while it runs or waits."""
    child = WorkflowRun.objects.filter(pk=child_run_id).only("status", "error").first()
    if child is None:
        return RunStatus.FAILED, {"error": "the sub-workflow's run no longer exists"}
    if child.status not in FINISHED:
        return None
    outputs = {row.node_id: row.result for row in child.actions.filter(status="completed")}
    return child.status, {"status": child.status, "run": child_run_id, "error": child.error, "outputs": outputs}
