"""The language-model provider behind `agent` and `router` nodes and AI authoring.

One provider per installation, set by environment variables (config/settings.py `AI`):

- ``AI_PROVIDER``: ``openai`` (any OpenAI-compatible Chat Completions endpoint: OpenAI, a local
  Ollama or vLLM) or ``anthropic`` (Anthropic's Messages API);
- ``AI_MODEL``: the model name (``gpt-4o-mini``, ``llama3.1``, ``claude-sonnet-4-5`` …);
- ``AI_API_KEY``: the key (not needed for a local endpoint);
- ``AI_BASE_URL``: the endpoint (default ``https://api.openai.com/v1`` or
  ``https://api.anthropic.com``; ``http://127.0.0.1:11434/v1`` for Ollama);
- ``AI_TIMEOUT_SECONDS``, ``AI_PRICE_INPUT_PER_MILLION``, ``AI_PRICE_OUTPUT_PER_MILLION``
  (US dollars per million tokens, for the cost recorded on each step).

The requests are plain HTTPS calls with httpx (no SDK: two small JSON shapes, and tests run
against a fake server). Structured answers use each API's own mechanism: a JSON schema
``response_format`` for OpenAI-compatible endpoints, a forced tool call for Anthropic; the
caller still checks the answer, since a local model may ignore the schema.
"""

import json
from dataclasses import dataclass
from decimal import Decimal

import httpx
from django.conf import settings

from crm_automation import bounded_reader

OPENAI, ANTHROPIC = "openai", "anthropic"
DEFAULT_URLS = {OPENAI: "https://api.openai.com/v1", ANTHROPIC: "https://api.anthropic.com"}
ANTHROPIC_VERSION = "2023-06-01"
ANSWER_TOOL = "answer"
ANY_OBJECT = {"type": "object"}  # a schema that asks for a JSON object of any shape
USER_AGENT = "crm-automation-ai/1"
HOW_TO_SET_UP = ("set AI_PROVIDER (openai for OpenAI or any OpenAI-compatible endpoint such as Ollama or vLLM, "
                 "or anthropic), AI_MODEL and AI_API_KEY (and AI_BASE_URL for a local endpoint), then restart")


class ProviderError(Exception):
    """The provider gave no usable answer; the message is shown on the step."""


@dataclass(frozen=True)
class Provider:
    kind: str
    model: str
    base_url: str
    api_key: str
    timeout: float
    price_input: Decimal  # US dollars per million tokens
    price_output: Decimal

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.model}"

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        return ((self.price_input * input_tokens + self.price_output * output_tokens) / 1_000_000).quantize(
            Decimal("0.000001"))

    def usage(self, completion: "Completion") -> dict:
        """What an answer cost, as the `AiCall` fields that keep it."""
        return {"provider": f"{self.kind}:{completion.model}", "input_tokens": completion.input_tokens,
                "output_tokens": completion.output_tokens,
                "cost": self.cost(completion.input_tokens, completion.output_tokens)}


@dataclass
class Completion:
    text: str  # the answer as text (the JSON of a structured answer)
    data: object  # a structured answer, parsed; None for text or an answer that is not JSON
    input_tokens: int
    output_tokens: int
    model: str


def configured() -> Provider | None:
    """The provider the settings describe, or None when AI is not set up."""
    config = settings.AI
    kind, model = config["PROVIDER"].lower(), config["MODEL"]
    if kind not in DEFAULT_URLS or not model:
        return None
    base_url = (config["BASE_URL"] or DEFAULT_URLS[kind]).rstrip("/")
    if not config["API_KEY"] and base_url == DEFAULT_URLS[kind]:
        return None  # the hosted APIs need a key; a local endpoint may not
    return Provider(kind=kind, model=model, base_url=base_url, api_key=config["API_KEY"],
                    timeout=float(config["TIMEOUT_SECONDS"]), price_input=Decimal(str(config["PRICE_INPUT"])),
                    price_output=Decimal(str(config["PRICE_OUTPUT"])))


def not_configured_message() -> str:
    problem = settings.AI["PROVIDER"]
    if problem and problem.lower() not in DEFAULT_URLS:
        return f"AI_PROVIDER “{problem}” is not a provider this version knows; {HOW_TO_SET_UP}"
    return f"no AI provider is set up: {HOW_TO_SET_UP}"


def complete(provider: Provider, *, system: str, prompt: str, max_tokens: int, schema: dict | None = None,
             timeout: float | None = None) -> Completion:
    """Ask the model once. `schema`: the JSON schema the answer must follow (a structured
    answer, parsed into `data`). Raises ProviderError with a message for the step."""
    request = _anthropic if provider.kind == ANTHROPIC else _openai
    url, headers, body, read = request(provider, system, prompt, max_tokens, schema)
    answer = post_json(provider, url, headers, body, timeout)
    try:
        return read(answer, schema is not None)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ProviderError(f"the AI provider's answer has an unexpected shape ({type(exc).__name__}: {exc})"[:500]) \
            from None


def post_json(provider: Provider, url: str, headers: dict, body: dict, timeout: float | None) -> dict:
    """One request to the provider; its JSON answer, or ProviderError with a message for the step."""
    limit = min(provider.timeout, timeout) if timeout else provider.timeout
    try:
        with httpx.Client(timeout=httpx.Timeout(limit), trust_env=False, follow_redirects=False) as client:
            response = client.post(url, json=body, headers={"user-agent": USER_AGENT, **headers})
    except httpx.TimeoutException:
        raise ProviderError(f"the AI provider did not answer within {limit:g} s") from None
    except httpx.HTTPError as exc:
        raise ProviderError(f"the AI provider could not be reached: {type(exc).__name__}: {exc}"[:500]) from None
    if response.status_code != 200:
        raise ProviderError(f"the AI provider answered {response.status_code}: {_error_text(response)}")
    try:
        answer = response.json()
    except ValueError:
        raise ProviderError("the AI provider's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise ProviderError("the AI provider's answer is not a JSON object")
    return answer


def _error_text(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
        text = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        text = None
    return str(text or response.text or response.reason_phrase)[:300]


def _openai(provider, system, prompt, max_tokens, schema):
    body = {"model": provider.model, "max_tokens": max_tokens,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
    if schema == ANY_OBJECT:
        body["response_format"] = {"type": "json_object"}
    elif schema is not None:
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": ANSWER_TOOL, "schema": schema, "strict": True}}
    headers = {"authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}

    def read(answer: dict, structured: bool) -> Completion:
        message = answer["choices"][0]["message"]
        if message.get("refusal"):
            raise ProviderError(f"the model refused: {message['refusal'][:300]}")
        text = message.get("content") or ""
        usage = answer.get("usage") or {}
        return Completion(text=text, data=parse_json(text) if structured else None,
                          input_tokens=int(usage.get("prompt_tokens") or 0),
                          output_tokens=int(usage.get("completion_tokens") or 0), model=answer.get("model") or
                          provider.model)

    return f"{provider.base_url}/chat/completions", headers, body, read


def _anthropic(provider, system, prompt, max_tokens, schema):
    body = {"model": provider.model, "max_tokens": max_tokens, "system": system,
            "messages": [{"role": "user", "content": prompt}]}
    if schema is not None:
        body["tools"] = [{"name": ANSWER_TOOL, "description": "Give the answer.", "input_schema": schema}]
        body["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
    headers = {"x-api-key": provider.api_key, "anthropic-version": ANTHROPIC_VERSION}

    def read(answer: dict, structured: bool) -> Completion:
        blocks = answer["content"]
        usage = answer.get("usage") or {}
        tokens = {"input_tokens": int(usage.get("input_tokens") or 0),
                  "output_tokens": int(usage.get("output_tokens") or 0), "model": answer.get("model") or provider.model}
        if structured:
            used = [b for b in blocks if b.get("type") == "tool_use" and b.get("name") == ANSWER_TOOL]
            if used:
                data = used[0].get("input")
                try:
                    bounded_reader.check_value(data)  # the model's data is read like a person's
                except bounded_reader.InputRefused as exc:
                    raise ProviderError(f"the AI provider's answer cannot be used: {exc}") from None
                return Completion(text=json.dumps(data, ensure_ascii=False), data=data, **tokens)
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        return Completion(text=text, data=parse_json(text) if structured else None, **tokens)

    return f"{provider.base_url}/v1/messages", headers, body, read


def parse_json(text: str):
    """A structured answer given as text: JSON, possibly in a ``` fence (local models do that);
    None when it is not JSON (the caller says so, with the tokens it cost)."""
    cleaned = text.strip()
    if cleaned.startswith("```"):
        cleaned = cleaned.strip("`")
        cleaned = cleaned.removeprefix("json").strip()
    try:
        return bounded_reader.read_json(cleaned, bounded_reader.PAYLOAD)
    except bounded_reader.InputRefused:
        return None
