"""The cycle check at activation and publish (docs/product.md#cycles): workflows that start each
other in a circle are found before they go live, not by the runtime loop guard after the damage.

Which workflow can start which:
- a step that moves a deal to stage S (update_field `stage`) starts the organization's
  workflows listening to `deal_stage_change` whose to-stage is S or any, and `deal_updated`
  workflows watching the stage (or every field);
- a sub-workflow step starts the workflow it names.
(Other field changes made by workflows are written without events, and workflows create no
deals, leads or contacts, so nothing else links them.)

The graph is built over the organization's activated workflows plus the one going live (with
its new definition). A cycle is refused with its path in words ("Lead assignment → Score update
→ Lead assignment"). A cycle that something stops — a workflow in it with conditions, or one that
lets a record through only once — is *guarded*: the person may acknowledge it and go on; an
unguarded one cannot be published. The runtime loop guard (MAX_CHAIN_DEPTH) stays either way.
"""

from dataclasses import dataclass

from crm_automation.automation.models import Workflow, WorkflowStatus
from crm_automation.crm.changes import DEAL_STAGE_CHANGE, DEAL_UPDATED


@dataclass(frozen=True)
class Cycle:
    names: tuple[str, ...]  # the path, first name repeated at the end
    guarded: bool

    def __str__(self) -> str:
        return " → ".join(self.names)


def _moves_to(definition: dict) -> set[str]:
    """The stages the definition's steps move a deal to ("*" for a stage read from a template)."""
    found = set()
    for action in definition.get("actions") or []:
        config = action.get("config") or {}
        if action.get("type") == "update_field" and str(config.get("field", "")).split(".")[-1] == "stage":
            value = config.get("value")
            found.add(value if isinstance(value, str) and "{{" not in value else "*")
    return found


def _calls(definition: dict) -> set[str]:
    return {str((a.get("config") or {}).get("workflowId")) for a in definition.get("actions") or []
            if a.get("type") == "sub_workflow"}


def _listens(definition: dict, stage: str) -> bool:
    trigger, config = definition.get("trigger_type"), definition.get("trigger_config") or {}
    if trigger == DEAL_STAGE_CHANGE:
        return stage == "*" or config.get("to_stage") in (None, "", stage)
    if trigger == DEAL_UPDATED:
        fields = config.get("fields") or []
        return not fields or "stage" in fields
    return False


def _guarded(definition: dict) -> bool:
    reenrollment = definition.get("reenrollment", "every_time")
    return bool((definition.get("conditions") or {}).get("rules")) or reenrollment == Workflow.Reenrollment.ONCE


def find(workflow: Workflow, definition: dict) -> list[Cycle]:
    """The cycles through `workflow` if it went live with `definition`."""
    live = {w.pk: w for w in Workflow.objects.filter(organization_id=workflow.organization_id,
                                                     status=WorkflowStatus.ACTIVATED)
            .exclude(pk=workflow.pk).select_related("current_version")}
    definitions = {pk: w.current_version.definition for pk, w in live.items() if w.current_version}
    definitions[workflow.pk] = definition
    names = {pk: w.name for pk, w in live.items()} | {workflow.pk: workflow.name}
    keys = {w.key: pk for pk, w in live.items()} | {workflow.key: workflow.pk}

    def starts(pk: int) -> list[int]:
        found = []
        for stage in _moves_to(definitions[pk]):
            found += [other for other, d in definitions.items() if _listens(d, stage)]
        found += [keys[key] for key in _calls(definitions[pk]) if key in keys]
        return sorted(set(found))

    cycles, path, on_path = [], [workflow.pk], {workflow.pk}

    def walk(pk: int) -> None:
        for nxt in starts(pk):
            if nxt == workflow.pk:
                ids = [*path, workflow.pk]
                cycles.append(Cycle(tuple(names[i] for i in ids), any(_guarded(definitions[i]) for i in path)))
            elif nxt not in on_path and len(path) < len(definitions):
                path.append(nxt)
                on_path.add(nxt)
                walk(nxt)
                on_path.discard(nxt)
                path.pop()

    walk(workflow.pk)
    return cycles[:5]


def refusal(workflow: Workflow, definition: dict, acknowledged: bool) -> str | None:
    """Why the workflow may not go live because of a cycle, or None."""
    cycles = find(workflow, definition)
    unguarded = [c for c in cycles if not c.guarded]
    if unguarded:
        return (f"it would start itself in a circle: {unguarded[0]}. Nothing in that circle stops it (no "
                "conditions, and records may go through again); break the circle first")
    if cycles and not acknowledged:
        return (f"it would start itself in a circle: {cycles[0]}. A condition or a once-only rule in it should stop "
                "the circle; acknowledge the cycle to go live anyway")
    return None

