"""The `agent` and `router` nodes (docs/product.md#ai-nodes): a language model writes text or
JSON, or picks one of the node's routes.

    - id: draft-sms                       - id: sentiment-router
      type: workflow                        type: workflow
      data:                                 data:
        subtype: agent                        subtype: router
        label: Draft SMS                      label: Sentiment Router
        config:                               config:
          additionalPrompt: "Write …"           classificationPrompt: "Read '{{Send SMS.reply}}' …"
          outputFormat: text   # or json        routes:
          maxTokens: 400                          - {id: route-0, label: positive}
                                                  - {id: route-1, label: negative}

Prompts are templates, rendered as data by the sandboxed template engine (templating.py): a
prompt can only read the values the workflow may read, never run code. The model also gets the
workflow's context (the trigger, the record, earlier steps' outputs) as JSON, cut to a size.

Like an HTTP request, the step is external: its question (`AiCall`) is written with the step,
under the step's effect key, and asked after the transaction commits, so no lock is held while
the model thinks and a redelivered run finds the answer instead of paying for it twice. A
failure (timeout, a refusal, a route that is not one of the node's) is a step failure that the
node's error policy handles (`onError: {policy: retry}` asks again). Tokens and cost are
recorded on the step. A router's answer is checked against its routes: the model's JSON is
`{"route": <label>, "reason": …}` and a label that is not a route fails the step — never a guess.
"""

import json
import time
from decimal import Decimal
from typing import Any

from django.db.models import F
from django.utils import timezone

from crm_automation.automation.ai import budget, providers, tools
from crm_automation.automation.definition.templating import format_value
from crm_automation.automation.models import AiCall, AiCallStatus
from crm_automation.automation.nodes import ai_conversation
from crm_automation.automation.nodes.base import ActionFailed, ExecutionContext, Outcome, Result
from crm_automation.automation.nodes.queued import QueuedRowAction
from crm_automation.workers import shutdown

Status = AiCallStatus
MAX_TOKENS = 4000
MAX_CONTEXT = 12_000  # characters of context JSON given to the model
MAX_ROUTES = 20
ROUTE_ID = "route-{}"
SYSTEM = ("You are one step of a CRM workflow run by an operations team. The workflow's data is below as "
          "JSON; use it, and do not invent facts that are not in it. {task}\n\nWorkflow data:\n{context}")
AGENT_TASKS = {"text": "Answer with the requested text only: no preamble, no quotes, no explanation.",
               "json": "Answer with one JSON object only, no text around it."}
ROUTER_TASK = ("Classify as asked. Choose exactly one route from this list: {routes}. Answer with JSON "
               '{{"route": <one of the routes, spelled exactly>, "reason": <one short sentence>}}.')


def context_json(template_context: dict[str, Any]) -> str:
    """The run's values as JSON for the model: each value once (a node's output is in the context
    under its id and its label), cut to MAX_CONTEXT characters."""
    seen: set[int] = set()
    values: dict[str, Any] = {}
    for key, value in template_context.items():
        if not isinstance(key, str):
            continue
        if isinstance(value, dict | list):
            if id(value) in seen:
                continue
            seen.add(id(value))
        values[key] = value
    text = json.dumps(values, ensure_ascii=False, default=format_value, sort_keys=True)
    return text if len(text) <= MAX_CONTEXT else text[:MAX_CONTEXT] + " …(cut)"


def route_schema(labels: list[str]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["route", "reason"],
            "properties": {"route": {"type": "string", "enum": labels}, "reason": {"type": "string"}}}


def result_of(call: AiCall) -> Result:
    """A step's result: what it asked's outcome, tokens and cost; `output` is {{Label}}."""
    result: Result = {"ai_call_id": call.pk, "status": call.status}
    if call.provider:
        result["model"] = call.provider
    answer = call.answer or {}
    if call.attempts:
        result.update(tokens={"input": call.input_tokens, "output": call.output_tokens},
                      cost_usd=str(call.cost.normalize() if call.cost else Decimal(0)), duration_ms=call.duration_ms)
    if "tool_calls" in answer:  # an agent with tools: every call, and what all its model calls cost
        usage = answer.get("usage") or {}
        result.update(tool_calls=answer["tool_calls"], model_calls=usage.get("model_calls", 0),
                      tokens={"input": usage.get("input", 0), "output": usage.get("output", 0)},
                      cost_usd=usage.get("cost", "0"))
    if call.status == Status.SUCCEEDED:
        result["output"] = answer.get("output")
        if "handle" in answer:
            result["handle"] = answer["handle"]
    return result


class AiNode(QueuedRowAction[AiCall]):
    """What agent and router share: the question row, asking after the commit, retries."""

    model = AiCall
    id_key = "ai_call_id"
    failed_words = "the model gave no answer"
    stopped_words = "not asked"
    result_of = staticmethod(result_of)
    prompt_setting = ""

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if isinstance(config, dict) and "maxTokens" in config:
            value = config["maxTokens"]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKENS:
                errors.append(("config.maxTokens", f"must be a whole number from 1 to {MAX_TOKENS}"))
        return errors

    # --- Running ----------------------------------------------------------------------------
    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> AiCall:
        # (A simulation never asks the model: it stands in for the answer, or debug types it.)
        if providers.configured() is None and not ctx.simulating:
            raise ActionFailed(f"nothing was asked: {providers.not_configured_message()}")
        spent = budget.refusal(ctx.organization_id)
        if spent is not None:
            raise ActionFailed(spent)
        prompt = ctx.render(self.prompt_setting, config[self.prompt_setting]).strip()
        if not prompt:
            raise ActionFailed(f"{self.prompt_setting} rendered empty; nothing was asked")
        request = {"prompt": prompt, "max_tokens": config.get("maxTokens", self.default_tokens),
                   **self.question(config, context_json(ctx.template_context))}
        return AiCall(organization_id=ctx.organization_id, automation_key=ctx.key, run_id=ctx.run_id,
                      node_type=self.type, request=request)

    def apply(self, items: list[tuple[ExecutionContext, AiCall]]) -> list[Result]:
        return [result_of(call) for call in AiCall.objects.bulk_create([call for _, call in items])]

    def deliver(self, items: list[tuple[ExecutionContext, Result]], deadline: float | None = None
                ) -> list[Outcome | None]:
        """Ask each question outside any transaction, one at a time, until the deadline: those not
        reached keep waiting (their run is handed back)."""
        outcomes: list[Outcome | None] = []
        for ctx, result in items:
            if shutdown.past(deadline):
                outcomes.append(None)
                continue
            call_id = result["ai_call_id"]
            if AiCall.objects.filter(pk=call_id, status=Status.QUEUED).update(
                    status=Status.SENDING, attempts=F("attempts") + 1):
                self._ask(AiCall.objects.get(pk=call_id), ctx, deadline)
            outcomes.append(self.outcome(AiCall.objects.get(pk=call_id)))
        return outcomes

    def _ask(self, call: AiCall, ctx: ExecutionContext, deadline: float | None = None) -> None:
        provider = providers.configured()
        started = time.monotonic()
        fields: dict[str, Any] = {"finished_at": None}
        if provider is None:
            fields.update(status=Status.FAILED, error=f"nothing was asked: {providers.not_configured_message()}")
        elif call.request.get("tools"):
            fields.update(ai_conversation.Conversation(call, ctx, provider).run(deadline))
        else:
            request = call.request
            try:
                completion = providers.complete(
                    provider, system=request["system"], prompt=request["prompt"], max_tokens=request["max_tokens"],
                    schema=request.get("schema"))
            except providers.ProviderError as exc:
                fields.update(status=Status.FAILED, error=str(exc), provider=provider.name)
            else:
                fields.update(provider.usage(completion))
                try:
                    fields.update(status=Status.SUCCEEDED, answer=self.read(call.request, completion), error="")
                except ActionFailed as exc:
                    fields.update(status=Status.FAILED, error=str(exc), answer={"raw": completion.text[:2000]})
        fields.update(finished_at=None if fields.get("status") == Status.QUEUED else timezone.now(),
                      duration_ms=int((time.monotonic() - started) * 1000))
        AiCall.objects.filter(pk=call.pk, status=Status.SENDING).update(**fields)

    # settle_existing, retry and cancel: QueuedRowAction (a question left `sending` by a worker
    # that is gone is asked again: an answer costs tokens, never a side effect).

    # --- Per node type --------------------------------------------------------------------
    default_tokens = 500

    def question(self, config: dict[str, Any], context: str) -> dict[str, Any]:
        """The system prompt and the schema of the answer."""
        raise NotImplementedError

    def read(self, request: dict[str, Any], completion: providers.Completion) -> dict[str, Any]:
        """The step's output from the model's answer; ActionFailed when it is not usable."""
        raise NotImplementedError


class Agent(AiNode):
    type = "agent"
    label = "AI agent"
    required = ("additionalPrompt",)
    optional = ("outputFormat", "maxTokens", "tools", "maxToolCalls")
    templated = ("additionalPrompt",)
    prompt_setting = "additionalPrompt"

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        if config.get("outputFormat", "text") not in AGENT_TASKS:
            errors.append(("config.outputFormat", "must be text (the answer as text) or json (a JSON object whose "
                                                  "fields later steps read as {{Label.field}})"))
        if "tools" in config:
            problem = tools.check_config(config["tools"])
            if problem:
                errors.append(("config.tools", problem))
        if "maxToolCalls" in config:
            value, top = config["maxToolCalls"], ai_conversation.MAX_TOOL_CALLS
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                errors.append(("config.maxToolCalls", f"must be a whole number from 1 to {top}"))
            elif "tools" not in config:
                errors.append(("config.maxToolCalls", "limits the calls of the agent's tools: set tools too"))
        return errors

    def question(self, config: dict[str, Any], context: str) -> dict[str, Any]:
        output = config.get("outputFormat", "text")
        if config.get("tools"):
            return {"format": output, "system": ai_conversation.system_prompt(output, context),
                    "tools": list(config["tools"]),
                    "max_tool_calls": config.get("maxToolCalls", ai_conversation.DEFAULT_TOOL_CALLS)}
        request: dict[str, Any] = {"format": output, "system": SYSTEM.format(task=AGENT_TASKS[output], context=context)}
        if output == "json":
            request["schema"] = providers.ANY_OBJECT
        return request

    def read(self, request: dict[str, Any], completion: providers.Completion) -> dict[str, Any]:
        if request.get("format") != "json":
            text = completion.text.strip()
            if not text:
                raise ActionFailed("the model's answer was empty")
            return {"output": text}
        if not isinstance(completion.data, dict):
            raise ActionFailed(f"the model's answer is not the JSON object asked for: {completion.text[:200]!r}")
        data = completion.data
        return {"output": data}


class Router(AiNode):
    type = "router"
    label = "AI router"
    required = ("classificationPrompt", "routes")
    optional = ("maxTokens",)
    templated = ("classificationPrompt",)
    prompt_setting = "classificationPrompt"
    default_tokens = 200

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        routes = config.get("routes") if isinstance(config, dict) else None
        if routes in (None, ""):
            return errors
        if not isinstance(routes, list) or not 2 <= len(routes) <= MAX_ROUTES:
            return [*errors, ("config.routes", f"must be a list of 2 to {MAX_ROUTES} routes, e.g. "
                                               "[{id: route-0, label: positive}, {id: route-1, label: negative}]")]
        labels: set[str] = set()
        for i, route in enumerate(routes):
            where = f"config.routes[{i}]"
            if not isinstance(route, dict) or set(route) - {"id", "label"}:
                errors.append((where, "must be {id: route-N, label: <a word the model answers with>}"))
                continue
            label = route.get("label")
            if route.get("id") != ROUTE_ID.format(i):
                errors.append((f"{where}.id", f"must be {ROUTE_ID.format(i)} (routes are numbered in order)"))
            if not isinstance(label, str) or not label.strip() or len(label) > 60:
                errors.append((f"{where}.label", "must be a short name of the route (1 to 60 characters)"))
            elif label.strip().casefold() in labels:
                errors.append((f"{where}.label", f"“{label}” is the label of another route"))
            else:
                labels.add(label.strip().casefold())
        return errors

    @staticmethod
    def labels(config: dict[str, Any]) -> list[str]:
        return [route["label"].strip() for route in config["routes"]]

    def question(self, config: dict[str, Any], context: str) -> dict[str, Any]:
        labels = self.labels(config)
        return {"routes": labels, "schema": route_schema(labels),
                "system": SYSTEM.format(task=ROUTER_TASK.format(routes=", ".join(labels)), context=context)}

    def read(self, request: dict[str, Any], completion: providers.Completion) -> dict[str, Any]:
        labels = request["routes"]
        if not isinstance(completion.data, dict):
            raise ActionFailed(f"the model's answer is not the JSON asked for ({completion.text[:200]!r}); no route "
                               "was taken")
        data = completion.data
        chosen = data.get("route")
        by_name = {label.casefold(): i for i, label in enumerate(labels)}
        index = by_name.get(chosen.strip().casefold()) if isinstance(chosen, str) else None
        if index is None:
            raise ActionFailed(f"the model chose {json.dumps(chosen, ensure_ascii=False)[:100]}, which is not a route "
                               f"of this router ({', '.join(labels)}); no route was taken")
        reason = data.get("reason")
        return {"output": {"route": labels[index], "reason": str(reason)[:500] if reason else ""},
                "handle": ROUTE_ID.format(index)}
