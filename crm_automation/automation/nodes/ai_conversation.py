"""An agent step that may call CRM tools (config `tools`, `maxToolCalls`): model → tools → model,
until the model answers without asking for a tool.

Asked after the commit, like every AI question. Each model call is an `AiCall` row (tokens and
cost, the organization's bill): the step's own row (its effect key) is the first, the n-th
after it is keyed `<step key>:turn:<n>`; each keeps the model's reply. Each tool call is the
tool-call node's effect under `<step key>:call:<n>` (ai/tools.py). So a redelivered or retried
step replays its conversation from the rows: a reply already given is read, not asked again,
and the n-th tool call finds the effect it made instead of making it twice.

When the model asks for more than `maxToolCalls` calls the step fails ("… stopped after 5
calls") with every call it made recorded: a model that keeps calling tools is stuck, and
ending with a half-done answer would pass it on as if it were one. The node's error policy
decides what follows (its `error` edge, a pause, a retry that replays to the same point).
"""

from decimal import Decimal
from typing import Any

from django.db.models import F
from django.utils import timezone

from crm_automation.automation.ai import providers, tool_calling, tools
from crm_automation.automation.models import AiCall, AiCallStatus
from crm_automation.automation.nodes.base import ActionFailed, ExecutionContext
from crm_automation.workers import shutdown

Status = AiCallStatus
DEFAULT_TOOL_CALLS, MAX_TOOL_CALLS = 5, 20
TOOLS_TASK = ("You may call the tools you are given to look things up or act in the CRM; each call is recorded. "
              "When you are done, {finish}")
FINISH = {"text": "answer with the requested text only: no preamble, no quotes, no explanation.",
          "json": "answer with one JSON object only, no text around it."}


def turn_key(call: AiCall, turn: int) -> str:
    return call.automation_key if turn == 0 else f"{call.automation_key}:turn:{turn}"


class Conversation:
    """One step's conversation, replayed from its rows and continued."""

    def __init__(self, call: AiCall, ctx: ExecutionContext, provider: providers.Provider,
                 preview: tools.Preview | None = None) -> None:
        self.call, self.ctx, self.provider, self.preview = call, ctx, provider, preview
        request = call.request
        self.allowed: list[str] = list(request["tools"])
        self.limit: int = request.get("max_tool_calls", DEFAULT_TOOL_CALLS)
        self.definitions = tools.definitions(self.allowed)
        self.transcript: list[tool_calling.Message] = [{"role": "user", "content": request["prompt"]}]
        self.records: list[dict[str, Any]] = []
        self.usage: dict[str, Any] = {"input": 0, "output": 0, "cost": Decimal(0), "model_calls": 0}
        self.first: dict[str, Any] = {}  # the first reply, kept on the step's row

    def run(self, deadline: float | None = None) -> dict[str, Any]:
        """The step's row's fields once the conversation is over (answered or failed); past the
        `deadline` (the worker stops or its turn is over) between two model calls, the row queued
        again: the run is handed back and the next delivery goes on from the rows."""
        turn = 0
        while True:
            if turn and shutdown.past(deadline):
                return {"status": Status.QUEUED}
            try:
                reply = self._reply(turn)
            except (providers.ProviderError, ActionFailed) as exc:
                return self._end(Status.FAILED, error=f"model call {turn + 1}: {exc}")
            self.transcript.append(reply.as_message())
            if not reply.calls:
                try:
                    output = self._output(reply.text)
                except ActionFailed as exc:
                    return self._end(Status.FAILED, error=str(exc))
                return self._end(Status.SUCCEEDED, output=output)
            results = []
            for asked in reply.calls:
                n = len(self.records) + 1
                if n > self.limit:
                    return self._end(Status.FAILED, error=(
                        f"the model asked for more than maxToolCalls ({self.limit}) tool calls; stopped after "
                        f"{self.limit} calls without an answer"))
                done, result = tools.run(asked["name"], asked["arguments"], self.ctx, n, allowed=self.allowed,
                                         preview=self.preview)
                self.records.append({"n": n, "name": asked["name"][:60], "arguments": asked["arguments"],
                                     **({"result": result} if done else {"error": result["error"]})})
                results.append({"id": asked["id"], "name": asked["name"], "content": tools.answer_text(done, result)})
            self.transcript.append({"role": "tool", "results": results})
            turn += 1

    # --- Model calls ------------------------------------------------------------------------
    def _reply(self, turn: int) -> tool_calling.Reply:
        """The model's reply at `turn`: read from its row when given before, else asked now."""
        if turn == 0:
            row = self.call
            kept = (row.answer or {}).get("reply") or None  # ({} when the first call failed: ask again)
        else:
            key = turn_key(self.call, turn)
            if len(key) > 100:
                raise ActionFailed("the step's node id is too long to key another model call; shorten it")
            row, _ = AiCall.objects.get_or_create(automation_key=key, defaults={
                "organization_id": self.call.organization_id, "run_id": self.call.run_id, "node_type": "agent",
                "request": {"turn": turn, "of": self.call.pk}})
            kept = (row.answer or {}).get("reply") if row.status == Status.SUCCEEDED else None
        if kept is not None:
            reply = tool_calling.Reply(text=kept["text"], calls=kept["calls"], model=kept.get("model", ""),
                                       input_tokens=row.input_tokens, output_tokens=row.output_tokens)
            self._count(row.input_tokens, row.output_tokens, row.cost)
            if turn == 0:
                self.first = kept
            return reply
        if turn:
            AiCall.objects.filter(pk=row.pk).update(status=Status.SENDING, attempts=F("attempts") + 1)
        try:
            reply = tool_calling.converse(self.provider, system=self.call.request["system"],
                                          transcript=self.transcript, tools=self.definitions,
                                          max_tokens=self.call.request["max_tokens"])
        except providers.ProviderError as exc:
            if turn:
                AiCall.objects.filter(pk=row.pk).update(status=Status.FAILED, error=str(exc)[:2000],
                                                        provider=self.provider.name, finished_at=timezone.now())
            raise
        kept = {"text": reply.text, "calls": reply.calls, "model": reply.model}
        cost = self.provider.cost(reply.input_tokens, reply.output_tokens)
        fields: dict[str, Any] = {"answer": {"reply": kept}, "input_tokens": reply.input_tokens,
                                  "output_tokens": reply.output_tokens, "cost": cost,
                                  "provider": f"{self.provider.kind}:{reply.model}"}
        if turn:  # a turn's row is done; the step's own row is settled when the conversation ends
            fields.update(status=Status.SUCCEEDED, error="", finished_at=timezone.now())
        else:
            self.first = kept
        AiCall.objects.filter(pk=row.pk).update(**fields)
        self._count(reply.input_tokens, reply.output_tokens, cost)
        return reply

    def _count(self, input_tokens: int, output_tokens: int, cost: Decimal) -> None:
        self.usage["input"] += input_tokens
        self.usage["output"] += output_tokens
        self.usage["cost"] += cost or Decimal(0)
        self.usage["model_calls"] += 1

    def _output(self, text: str) -> Any:
        if self.call.request.get("format") != "json":
            if not text.strip():
                raise ActionFailed("the model's final answer was empty")
            return text.strip()
        data = providers.parse_json(text)
        if not isinstance(data, dict):
            raise ActionFailed(f"the model's final answer is not the JSON object asked for: {text[:200]!r}")
        return data

    def _end(self, status: str, *, output: Any = None, error: str = "") -> dict[str, Any]:
        usage = {**self.usage, "cost": str(self.usage["cost"].normalize())}
        answer: dict[str, Any] = {"reply": self.first or None, "tool_calls": self.records, "usage": usage}
        if status == Status.SUCCEEDED:
            answer["output"] = output
        return {"status": status, "answer": answer, "error": error[:2000]}


def system_prompt(output_format: str, context: str) -> str:
    from crm_automation.automation.nodes.ai import SYSTEM  # (ai.py imports this module)

    return SYSTEM.format(task=TOOLS_TASK.format(finish=FINISH[output_format]), context=context)
