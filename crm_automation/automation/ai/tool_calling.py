"""The providers' native tool calling, for an agent step that may use CRM tools (ai/tools.py):
OpenAI-compatible Chat Completions (`tools`, the answer's `tool_calls`, `role: tool` results)
and Anthropic's Messages (`tools`, `tool_use` blocks, `tool_result` blocks).

A conversation is kept in one neutral shape, so a run resumed on another worker (or with the
other provider configured) rebuilds it from what the step recorded:

    {"role": "user", "content": "<the prompt>"}
    {"role": "assistant", "text": "…", "calls": [{"id": "…", "name": "create_task", "arguments": {…}}]}
    {"role": "tool", "results": [{"id": "…", "name": "create_task", "content": "<JSON text>"}]}

`arguments` is what the model sent, parsed (and bounded like any JSON a person sends); when it
is not a JSON object, it is kept as `{"_unreadable": "<the text>"}` and the tool refuses it.
"""

import json
from dataclasses import dataclass, field
from typing import Any

from crm_automation import bounded_reader
from crm_automation.automation.ai.providers import (
    ANTHROPIC,
    ANTHROPIC_VERSION,
    Provider,
    ProviderError,
    post_json,
)

Message = dict[str, Any]
UNREADABLE = "_unreadable"


@dataclass
class Reply:
    """One answer of the model: its text and the tools it asks to call (none: it has answered)."""

    text: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""

    def as_message(self) -> Message:
        return {"role": "assistant", "text": self.text, "calls": self.calls}


def converse(provider: Provider, *, system: str, transcript: list[Message], tools: list[dict[str, Any]],
             max_tokens: int) -> Reply:
    """Ask the model once with the conversation so far and the tools it may call. Raises
    ProviderError with a message for the step."""
    if provider.kind == ANTHROPIC:
        url = f"{provider.base_url}/v1/messages"
        headers = {"x-api-key": provider.api_key, "anthropic-version": ANTHROPIC_VERSION}
        body: dict[str, Any] = {"model": provider.model, "max_tokens": max_tokens, "system": system,
                                "messages": _anthropic_messages(transcript),
                                "tools": [{"name": t["name"], "description": t["description"],
                                           "input_schema": t["parameters"]} for t in tools]}
    else:
        url = f"{provider.base_url}/chat/completions"
        headers = {"authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}
        body = {"model": provider.model, "max_tokens": max_tokens,
                "messages": [{"role": "system", "content": system}, *_openai_messages(transcript)],
                "tools": [{"type": "function", "function": t} for t in tools]}
    answer = post_json(provider, url, headers, body, None)
    try:
        reply = _read_anthropic(answer) if provider.kind == ANTHROPIC else _read_openai(answer)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise ProviderError(f"the AI provider's answer has an unexpected shape ({type(exc).__name__}: {exc})"[:500]) \
            from None
    reply.model = reply.model or provider.model
    return reply


def _arguments(raw: object) -> dict[str, Any]:
    """The model's arguments as a JSON object, read as a person's JSON is (size, depth)."""
    try:
        value = bounded_reader.read_json(raw, bounded_reader.PAYLOAD) if isinstance(raw, str) else raw
        bounded_reader.check_value(value)
    except bounded_reader.InputRefused:
        value = None
    if isinstance(value, dict):
        return value
    return {UNREADABLE: (raw if isinstance(raw, str) else json.dumps(raw, default=str))[:500]}


def _read_openai(answer: dict[str, Any]) -> Reply:
    message = answer["choices"][0]["message"]
    if message.get("refusal"):
        raise ProviderError(f"the model refused: {str(message['refusal'])[:300]}")
    usage = answer.get("usage") or {}
    calls = [{"id": str(call.get("id") or f"call_{i}"), "name": str(call["function"]["name"]),
              "arguments": _arguments(call["function"].get("arguments") or "{}")}
             for i, call in enumerate(message.get("tool_calls") or [])]
    return Reply(text=message.get("content") or "", calls=calls, input_tokens=int(usage.get("prompt_tokens") or 0),
                 output_tokens=int(usage.get("completion_tokens") or 0), model=str(answer.get("model") or ""))


def _read_anthropic(answer: dict[str, Any]) -> Reply:
    blocks = answer["content"]
    usage = answer.get("usage") or {}
    calls = [{"id": str(b.get("id") or f"toolu_{i}"), "name": str(b["name"]), "arguments": _arguments(b.get("input"))}
             for i, b in enumerate(blocks) if b.get("type") == "tool_use"]
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    return Reply(text=text, calls=calls, input_tokens=int(usage.get("input_tokens") or 0),
                 output_tokens=int(usage.get("output_tokens") or 0), model=str(answer.get("model") or ""))


def _openai_messages(transcript: list[Message]) -> list[Message]:
    messages: list[Message] = []
    for entry in transcript:
        if entry["role"] == "user":
            messages.append({"role": "user", "content": entry["content"]})
        elif entry["role"] == "assistant":
            message: Message = {"role": "assistant", "content": entry.get("text") or None}
            if entry.get("calls"):
                message["tool_calls"] = [
                    {"id": c["id"], "type": "function",
                     "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                    for c in entry["calls"]]
            messages.append(message)
        else:
            messages += [{"role": "tool", "tool_call_id": r["id"], "content": r["content"]} for r in entry["results"]]
    return messages


def _anthropic_messages(transcript: list[Message]) -> list[Message]:
    messages: list[Message] = []
    for entry in transcript:
        if entry["role"] == "user":
            messages.append({"role": "user", "content": entry["content"]})
        elif entry["role"] == "assistant":
            blocks: list[Message] = [{"type": "text", "text": entry["text"]}] if entry.get("text") else []
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["name"], "input": c["arguments"]}
                       for c in entry.get("calls") or []]
            messages.append({"role": "assistant", "content": blocks})
        else:
            messages.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": r["id"], "content": r["content"]} for r in entry["results"]]})
    return messages
