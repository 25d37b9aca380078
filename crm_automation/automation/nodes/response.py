"""The response node (`response`): the reply to whoever started the run.

Config: `responseTemplate` (a template: {{Label}} references to earlier nodes, {{trigger.body.x}}),
optional `statusCode` (200 by default), `contentType` (application/json when the reply reads
as JSON, else text/plain) and `target` (one of the organization's webhook targets: the reply is
also POSTed there, signed with Standard Webhooks, as an HTTP request node's request is). The step
records the reply on the run (its result: `response`, `status`, `content_type`). For a workflow
started by an inbound webhook, the webhook's caller gets it as the HTTP answer when the run
reaches the node in time (webhooks/replies.py waits WEBHOOK_RESPONSE_SECONDS for it; later, the
caller got 202 with the run's id and the reply stays on the run, `GET /api/v1/runs/<id>/`).
Without a target it writes nothing, so a redelivered run renders it again; with one, the post is
a delivery under the step's key, made once."""

import json
from datetime import datetime
from typing import Any

from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, Outcome, Result
from crm_automation.webhooks.delivery import deliveries_send, result_of
from crm_automation.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookTarget

MAX_RESPONSE = 64 * 1024
SENDING, QUEUED, SUCCEEDED, FAILED = (DeliveryStatus.SENDING, DeliveryStatus.QUEUED, DeliveryStatus.SUCCEEDED,
                                      DeliveryStatus.FAILED)


def content_type_of(text: str, given: str = "") -> str:
    if given:
        return given
    try:
        json.loads(text)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


class Response(Action[tuple[Result, WebhookDelivery | None]]):
    type = "response"
    label = "Reply to the caller"
    external = True  # (a reply posted to a target is delivered after the commit; one without is done at once)
    required = ("responseTemplate",)
    optional = ("statusCode", "contentType", "target")
    templated = ("responseTemplate",)

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        code = config.get("statusCode", 200)
        if isinstance(code, bool) or not isinstance(code, int) or not 200 <= code <= 599:
            errors.append(("config.statusCode", "must be an HTTP status from 200 to 599"))
        kind = config.get("contentType", "")
        if not isinstance(kind, str) or len(kind) > 100 or "\n" in kind or "\r" in kind:
            errors.append(("config.contentType", "must be one line, e.g. application/json"))
        name = config.get("target")
        if name not in (None, "") and not (isinstance(name, str) and WebhookTarget.objects.filter(
                organization_id=organization_id, name=name).exists()):
            errors.append(("config.target", f"“{name}” is not a webhook target of this organization (the reply is "
                                            "posted there, signed)"))
        return errors

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> tuple[Result, WebhookDelivery | None]:
        text = ctx.render("responseTemplate", config["responseTemplate"])
        if len(text.encode()) > MAX_RESPONSE:
            raise ActionFailed(f"the reply rendered to more than {MAX_RESPONSE // 1024} KB")
        reply: Result = {"response": text, "status": config.get("statusCode", 200),
                         "content_type": content_type_of(text, config.get("contentType", ""))}
        if not config.get("target"):
            return reply, None
        target = WebhookTarget.objects.filter(organization_id=ctx.organization_id, name=config["target"]).first()
        if target is None:
            raise ActionFailed(f"webhook target “{config['target']}” no longer exists in this organization")
        body = json.dumps({"run_id": ctx.run_id, **reply}, ensure_ascii=False)
        return reply, WebhookDelivery(organization_id=ctx.organization_id, target=target, automation_key=ctx.key,
                                      run_id=ctx.run_id, method="POST", url=target.url, body=body)

    def apply(self, items: list[tuple[ExecutionContext, tuple[Result, WebhookDelivery | None]]]) -> list[Result]:
        made = {d.automation_key: d for d in WebhookDelivery.objects.bulk_create(
            [delivery for _, (_, delivery) in items if delivery is not None])}
        results = []
        for ctx, (reply, _) in items:
            delivery = made.get(ctx.key)
            results.append({**reply, "posted": result_of(delivery)} if delivery is not None else reply)
        return results

    def existing(self, keys: list[str]) -> dict[str, Result]:
        """A reply posted to a target was made once; one without a target is rendered again."""
        found = {}
        for delivery in WebhookDelivery.objects.filter(automation_key__in=keys):
            reply = json.loads(delivery.body or "{}")
            reply.pop("run_id", None)
            found[delivery.automation_key] = {**reply, "posted": result_of(delivery)}
        return found

    @staticmethod
    def _outcome(result: Result, delivery: WebhookDelivery) -> Outcome | None:
        result = {**result, "posted": result_of(delivery)}
        if delivery.status == SUCCEEDED:
            return True, result, ""
        if delivery.status == FAILED:
            return False, result, f"the reply was not posted: {delivery.error or 'the request failed'}"
        return None

    def deliver(self, items: list[tuple[ExecutionContext, Result]], deadline: float | None = None
                ) -> list[Outcome | None]:
        ids = [result["posted"]["delivery_id"] for _, result in items if result.get("posted")]
        sent = deliveries_send(delivery_ids=ids, deadline=deadline) if ids else {}
        outcomes: list[Outcome | None] = []
        for _, result in items:
            posted = result.get("posted")
            if not posted:
                outcomes.append((True, result, ""))
            elif posted["delivery_id"] in sent:
                outcomes.append(self._outcome(result, sent[posted["delivery_id"]]))
            else:
                outcomes.append(None)
        return outcomes

    def settle_existing(self, result: Result) -> Outcome | None:
        posted = result.get("posted")
        if not posted:
            return True, result, ""
        WebhookDelivery.objects.filter(pk=posted["delivery_id"], status=SENDING).update(status=QUEUED)
        return self._outcome(result, WebhookDelivery.objects.get(pk=posted["delivery_id"]))

    def retry(self, key: str) -> bool:
        WebhookDelivery.objects.filter(automation_key=key, status=FAILED).update(status=QUEUED, error="",
                                                                                finished_at=None)
        return True

    def in_flight(self, organization_id: int, since: datetime) -> bool:
        return False
