"""The answer a webhook's caller gets: the reply of a response node (automation/nodes/response.py)
of a workflow the message started, when a run reaches one within WEBHOOK_RESPONSE_SECONDS; else
202 with the runs' ids (the reply, when it comes, stays on its run)."""

import time
from dataclasses import dataclass

from django.conf import settings

from crm_automation.automation.models import (
    RUN_OVER,
    StepStatus,
    Workflow,
    WorkflowRun,
    WorkflowRunAction,
    WorkflowStatus,
)
from crm_automation.webhooks.models import WebhookReceipt

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Reply:
    body: str
    status: int
    content_type: str
    run_id: int


def replies_expected(receipt: WebhookReceipt) -> bool:
    """Whether a live workflow on this endpoint's messages has a response node (else no one waits)."""
    for workflow in Workflow.objects.filter(organization_id=receipt.organization_id, trigger_type="webhook",
                                            status=WorkflowStatus.ACTIVATED).select_related("current_version"):
        definition = workflow.current_version.definition if workflow.current_version else {}
        endpoint = (definition.get("trigger_config") or {}).get("endpoint")
        if endpoint and str(endpoint) != str(receipt.endpoint.public_id):
            continue
        if any(isinstance(a, dict) and a.get("type") == "response" for a in definition.get("actions") or []):
            return True
    return False


def await_reply(receipt: WebhookReceipt, seconds: float | None = None) -> tuple[Reply | None, list[int]]:
    """The first reply a run of this message gives within `seconds`, and the runs' ids so far.
    Called after the message's transaction committed: the workers run it meanwhile."""
    deadline = time.monotonic() + (settings.WEBHOOK_RESPONSE_SECONDS if seconds is None else seconds)
    run_ids: list[int] = []
    while True:
        runs = list(WorkflowRun.objects.filter(trigger_entity_id=receipt.pk).values_list("pk", "status"))
        run_ids = [pk for pk, _ in runs]
        row = (WorkflowRunAction.objects.filter(run_id__in=run_ids, status=StepStatus.COMPLETED,
                                                result__has_key="response").order_by("finished_at", "pk")
               .values("run_id", "result").first()) if run_ids else None
        if row is not None:
            result = row["result"]
            return Reply(str(result.get("response", "")), int(result.get("status", 200)),
                         str(result.get("content_type") or "text/plain"), row["run_id"]), run_ids
        if (runs and all(status in RUN_OVER for _, status in runs)) or time.monotonic() >= deadline:
            return None, run_ids
        time.sleep(POLL_SECONDS)
