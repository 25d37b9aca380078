"""A local fake of the AI providers' APIs (OpenAI-compatible Chat Completions and Anthropic's
Messages): the tests' HTTP server answers with scripted replies and records each request."""

import pytest

from tests.http_receiver import Receiver


@pytest.fixture
def model_server():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def openai(settings, model_server):
    settings.AI = {**settings.AI, "PROVIDER": "openai", "MODEL": "gpt-test", "API_KEY": "sk-test",
                   "BASE_URL": f"http://127.0.0.1:{model_server.port}/v1", "TIMEOUT_SECONDS": 2,
                   "PRICE_INPUT": 0.15, "PRICE_OUTPUT": 0.6}
    return model_server


@pytest.fixture
def anthropic(settings, model_server):
    settings.AI = {**settings.AI, "PROVIDER": "anthropic", "MODEL": "claude-test", "API_KEY": "ak-test",
                   "BASE_URL": f"http://127.0.0.1:{model_server.port}", "TIMEOUT_SECONDS": 2,
                   "PRICE_INPUT": 3, "PRICE_OUTPUT": 15}
    return model_server


def chat(content: str, prompt_tokens=120, completion_tokens=30) -> dict:
    return {"id": "chatcmpl-1", "model": "gpt-test-2026", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}


def tool_answer(data: dict) -> dict:
    return {"id": "msg_1", "type": "message", "model": "claude-test", "role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "answer", "input": data}],
        "usage": {"input_tokens": 200, "output_tokens": 20}}
