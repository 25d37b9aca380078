"""The http/request node (`http_request`): a signed JSON request to a webhook target.

    type: tool-call
    data:
      label: Notify billing
      config:
        toolName: http/request
        defaults:
          target: billing                      # a WebhookTarget of the organization: URL and secret
          url: "https://billing.example.com/hooks/deals"   # optional: the target's URL or below it
          method: POST                         # GET, POST (default), PUT, PATCH, DELETE
          headers: {X-Source: crm}             # Accept, Accept-Language, User-Agent, X-…
          body: {deal: "{{trigger.deal}}", note: "Won {{deal.title}}"}
      onError: {policy: retry, maxAttempts: 8, baseSeconds: 5, factor: 5, then: pause}

Body strings are templates; a string that is one placeholder ("{{trigger.deal}}") becomes the
value itself (an object, a number), any other string is rendered as text. The request is signed
with Standard Webhooks headers; its webhook-id is the step's effect key, the same on every retry.
The step's output is the answer: `{{Notify billing.status}}`, `{{Notify billing.body}}` (JSON, or
text cut to 10,000 characters), `{{Notify billing.body.id}}`.

Retries are the node's `onError`. Standard Webhooks' schedule (5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 14 h, 20 h, 24 h) is approached by `{policy: retry, maxAttempts: 8, baseSeconds: 5,
factor: 5}`: 5 s, 25 s, 2 min, 10 min, 52 min, 4.3 h, 21.7 h (± 20 % jitter), about a day in all.
"""

import json
import re

from crm_automation.automation.definition.templating import format_value, lookup, placeholders
from crm_automation.automation.nodes.base import ActionFailed, ExecutionContext, template_errors
from crm_automation.automation.nodes.queued import QueuedRowAction
from crm_automation.webhooks import guard
from crm_automation.webhooks.delivery import deliveries_send, result_of
from crm_automation.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookTarget

Status = DeliveryStatus
METHODS = ("POST", "GET", "PUT", "PATCH", "DELETE")
BODYLESS = ("GET", "DELETE")
MAX_BODY = 256 * 1024
MAX_HEADERS = 20
HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
PLAIN_HEADERS = {"accept", "accept-language", "user-agent"}
NOT_HEADERS = {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"}


def header_allowed(name: str) -> bool:
    lowered = name.lower()
    return lowered in PLAIN_HEADERS or (lowered.startswith("x-") and lowered not in NOT_HEADERS)


def _strings(value, where: str):
    """(place, text) of every string in a JSON value."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


class HttpRequest(QueuedRowAction):
    type = "http_request"
    label = "HTTP request"
    model = WebhookDelivery
    id_key = "delivery_id"
    failed_words = "the request failed"
    stopped_words = "not sent"
    result_of = staticmethod(result_of)
    required = ("target",)
    optional = ("url", "method", "headers", "body")
    templated = ("url",)

    def in_flight(self, organization_id: int, since) -> bool:
        return WebhookDelivery.objects.filter(status=DeliveryStatus.SENDING, organization_id=organization_id,
                                              sending_since__gte=since).exists()

    # --- Saving a workflow ---------------------------------------------------------------------
    def validate(self, config, *, trigger_type, organization_id):
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        target = self._target_errors(config.get("target"), organization_id, errors)
        method = config.get("method", "POST")
        if method not in METHODS:
            errors.append(("config.method", f"must be one of {', '.join(METHODS)}"))
        url = config.get("url")
        if isinstance(url, str) and url and "{{" not in url:
            try:
                parsed = guard.parse(url)
                if target is not None and not guard.within(parsed, guard.parse(target.url)):
                    errors.append(("config.url", f"must be the URL of target “{target.name}” ({target.url}) or "
                                                 "below it"))
            except guard.Refused as exc:
                errors.append(("config.url", str(exc)))
        errors += self._header_errors(config.get("headers"), trigger_type)
        body = config.get("body")
        if body is not None:
            if not isinstance(body, dict):
                errors.append(("config.body", 'must be a JSON object, e.g. {"deal": "{{trigger.deal}}"}'))
            elif method in BODYLESS:
                errors.append(("config.body", f"a {method} request has no body"))
            else:
                for where, text in _strings(body, "config.body"):
                    if "{{" in text:
                        errors += template_errors(where, text, trigger_type)
        return errors

    @staticmethod
    def _target_errors(name, organization_id, errors) -> WebhookTarget | None:
        if name in (None, ""):
            return None  # "is required", said by the base class
        target = WebhookTarget.objects.filter(organization_id=organization_id, name=name).first() \
            if isinstance(name, str) else None
        if target is None:
            known = list(WebhookTarget.objects.filter(organization_id=organization_id)
                         .values_list("name", flat=True)[:20])
            hint = f"use one of {', '.join(known)}" if known else "create one first (admin: Webhook targets)"
            errors.append(("config.target", f"“{name}” is not a webhook target of this organization; {hint}. "
                                            "Targets hold the URL and the signing secret, so no secret is ever "
                                            "written in a workflow"))
        return target

    @staticmethod
    def _header_errors(headers, trigger_type) -> list[tuple[str, str]]:
        if headers is None:
            return []
        if not isinstance(headers, dict):
            return [("config.headers", 'must be a mapping of header names to texts, e.g. {"X-Source": "crm"}')]
        errors = []
        if len(headers) > MAX_HEADERS:
            errors.append(("config.headers", f"at most {MAX_HEADERS} headers"))
        for name, value in headers.items():
            where = f"config.headers.{name}"
            if not HEADER_NAME.fullmatch(name) or not header_allowed(name):
                errors.append((where, "is not a header a node may set (Accept, Accept-Language, User-Agent, or "
                                      "X-…); credentials belong in a webhook target, never in a workflow"))
            elif not isinstance(value, str) or "\n" in value or "\r" in value or len(value) > 1000:
                errors.append((where, "must be one line of text (at most 1,000 characters)"))
            else:
                errors += template_errors(where, value, trigger_type)
        return errors

    # --- Running ----------------------------------------------------------------------------
    def prepare(self, config, ctx: ExecutionContext):
        name = config["target"]
        target = WebhookTarget.objects.filter(organization_id=ctx.organization_id, name=name).first()
        if target is None:
            raise ActionFailed(f"webhook target “{name}” no longer exists in this organization")
        if not target.active:
            raise ActionFailed(f"webhook target “{name}” is disabled: {target.disabled_reason or 'by a person'}")
        url = ctx.render("url", config["url"], strict=True).strip() if config.get("url") else target.url
        try:
            if not guard.within(guard.parse(url), guard.parse(target.url)):
                raise ActionFailed(f"the URL {url[:300]} is not under the URL of target “{name}” ({target.url})")
        except guard.Refused as exc:
            raise ActionFailed(f"the URL cannot be called: {exc}") from None
        headers = {}
        for header, template in (config.get("headers") or {}).items():
            value = ctx.render(f"headers.{header}", template).strip()
            if "\n" in value or "\r" in value:
                raise ActionFailed(f"header {header} rendered with a line break; nothing was sent")
            headers[header] = value[:1000]
        method = config.get("method", "POST")
        body = ""
        if method not in BODYLESS:
            data = self._render(config.get("body") or {}, ctx, "body")
            body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=format_value)
            if len(body.encode()) > MAX_BODY:
                raise ActionFailed(f"the body rendered to more than {MAX_BODY // 1024} KB; nothing was sent")
        return WebhookDelivery(organization_id=ctx.organization_id, target=target, automation_key=ctx.key,
                               run_id=ctx.run_id, method=method, url=url, headers=headers, body=body)

    def _render(self, value, ctx: ExecutionContext, where: str):
        if isinstance(value, dict):
            return {key: self._render(item, ctx, f"{where}.{key}") for key, item in value.items()}
        if isinstance(value, list):
            return [self._render(item, ctx, f"{where}[{i}]") for i, item in enumerate(value)]
        if not isinstance(value, str):
            return value
        found = list(placeholders(value.strip()))
        if len(found) == 1 and found[0].start == 0 and found[0].end == len(value.strip()):
            item = lookup(ctx.template_context, found[0].path)
            if item is None:
                ctx.render(where, value)  # notes that it was not a known value
                return None
            # As JSON data: a record or node output stays an object, dates and decimals become text.
            return json.loads(json.dumps(item, default=format_value))
        return ctx.render(where, value)

    def apply(self, items):
        return [self._queued(d) for d in WebhookDelivery.objects.bulk_create([d for _, d in items])]

    @staticmethod
    def _queued(delivery: WebhookDelivery) -> dict:
        result = result_of(delivery)
        result["request"] = {"body": delivery.body[:2000]} if delivery.body else {}
        return result

    def deliver(self, items, deadline: float | None = None):
        ids = [result["delivery_id"] for _, result in items]
        sent = deliveries_send(delivery_ids=ids, deadline=deadline)
        return [self.outcome(sent[i]) if i in sent else None for i in ids]

    # settle_existing, retry and cancel: QueuedRowAction (a delivery sent again keeps its webhook-id,
    # so receivers deduplicate it).
