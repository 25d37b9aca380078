"""Shadow mode (docs/product.md#shadow-mode): "design in simulate, release in execute". A workflow
in shadow mode listens to real events and runs for real records, but each run is walked as a
simulation (services/simulation.shadow_run): every email, SMS, chat post, webhook, task and field
change is a preview on the run, nothing is sent or changed, and the run counts nowhere (no quota,
no KPI, no enrollment). Switching to execute mode is one admin action that says what shadow mode saw.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from crm_automation.automation import lifecycle
from crm_automation.automation.models import LifecycleType, Workflow, WorkflowRun, WorkflowRunAction
from crm_automation.crm.selectors import user_has_role

# What a previewed step would have done, in the words a summary uses.
STEP_EFFECTS = {"send_email": "emails", "send_sms": "text messages", "create_task": "tasks",
                "update_field": "field changes", "post_slack": "chat posts", "post_teams": "chat posts",
                "http_request": "webhook requests", "create_record": "records created",
                "archive_record": "records archived", "delete_record": "records deleted", "notify": "notifications"}


@dataclass
class ShadowSummary:
    runs: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    effects: dict[str, int] = field(default_factory=dict)
    since: Any = None

    def words(self) -> str:
        if not self.runs:
            return "In shadow mode it did not run."
        seen = ", ".join(f"{count} {what}" for what, count in sorted(self.effects.items())) or "no effects"
        return (f"In shadow mode it ran {self.runs} time{'s' if self.runs != 1 else ''} and would have made: "
                f"{seen}; nothing was sent.")


def shadow_runs(workflow: Workflow) -> QuerySet[WorkflowRun]:
    runs = WorkflowRun.objects.filter(workflow=workflow, simulated=True, metadata__shadow=True)
    if workflow.shadow_since is not None:
        runs = runs.filter(started_at__gte=workflow.shadow_since)
    return runs


def summary(workflow: Workflow) -> ShadowSummary:
    """How many runs shadow mode made since it was switched on, and which effects they previewed."""
    runs = shadow_runs(workflow)
    found = ShadowSummary(since=workflow.shadow_since)
    found.by_status = dict(Counter(runs.values_list("status", flat=True)))
    found.runs = sum(found.by_status.values())
    steps = (WorkflowRunAction.objects.filter(run__in=runs.values("pk"), status="completed",
                                              action_type__in=list(STEP_EFFECTS))
             .values_list("action_type", flat=True))
    found.effects = dict(Counter(STEP_EFFECTS[kind] for kind in steps))
    return found


@transaction.atomic
def workflow_set_mode(*, workflow_id: int, by: Any, mode: str) -> tuple[Workflow, ShadowSummary]:
    """Switch a workflow to shadow or to execute mode (admins). Returns what shadow mode saw (when
    leaving it, what the person is told)."""
    if mode not in Workflow.Mode.values:
        raise ValidationError({"mode": [f"must be one of {', '.join(Workflow.Mode.values)}"]})
    workflow = Workflow.objects.select_for_update(no_key=True).get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "admin"):
        raise PermissionDenied("Only admins of this organization can switch a workflow between shadow and "
                               "execute mode.")
    seen = summary(workflow) if workflow.mode == Workflow.Mode.SHADOW else ShadowSummary()
    if workflow.mode != mode:
        workflow.mode = mode
        workflow.shadow_since = timezone.now() if mode == Workflow.Mode.SHADOW else workflow.shadow_since
        workflow.save(update_fields=["mode", "shadow_since", "updated_at"])
        lifecycle.workflow_event(LifecycleType.WORKFLOW_UPDATED, workflow, by, changed=["mode"], mode=mode,
                                 shadow={"runs": seen.runs, "effects": seen.effects})
    return workflow, seen
