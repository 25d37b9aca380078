"""The response node (`response`): the reply to whoever started the run.

Config: `responseTemplate` (a template: {{Label}} references to earlier nodes, {{trigger.body.x}}),
optional `statusCode` (200 by default) and `contentType` (application/json when the reply reads
as JSON, else text/plain). The step records the reply on the run (its result: `response`,
`status`, `content_type`). For a workflow started by an inbound webhook, the webhook's caller gets
it as the HTTP answer when the run reaches the node in time (webhooks/views.py waits
WEBHOOK_RESPONSE_SECONDS for it; later, the caller got 202 with the run's id and the reply stays on
the run, `GET /api/v1/runs/<id>/`). It writes nothing else, so a redelivered run renders it again
and nothing is done twice."""

import json
from typing import Any

from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, Result

MAX_RESPONSE = 64 * 1024


def content_type_of(text: str, given: str = "") -> str:
    if given:
        return given
    try:
        json.loads(text)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


class Response(Action[Result]):
    type = "response"
    label = "Reply to the caller"
    required = ("responseTemplate",)
    optional = ("statusCode", "contentType")
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
        return errors

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Result:
        text = ctx.render("responseTemplate", config["responseTemplate"])
        if len(text.encode()) > MAX_RESPONSE:
            raise ActionFailed(f"the reply rendered to more than {MAX_RESPONSE // 1024} KB")
        return {"response": text, "status": config.get("statusCode", 200),
                "content_type": content_type_of(text, config.get("contentType", ""))}

    def apply(self, items: list[tuple[ExecutionContext, Result]]) -> list[Result]:
        return [reply for _, reply in items]

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {}  # nothing was written: the reply is rendered again
