"""One outbound HTTP request, guarded: checked URL, pinned address, a time limit for the whole
request, no redirects followed, a bounded amount of the answer read."""

import json
import time
from dataclasses import dataclass

import httpx

from crm_automation.webhooks import guard
from crm_automation.webhooks.transport import PinnedBackend, PinnedTransport

READ_LIMIT = 64 * 1024  # of a response body; the rest is not read
USER_AGENT = "crm-automation-webhooks/1"


@dataclass
class Answer:
    """What one try got: a status and body, or an error (`refused`: no connection was made)."""

    address: str = ""
    status: int | None = None
    text: str = ""
    data: object = None  # the body as JSON, when it is JSON and was read whole
    truncated: bool = False
    location: str = ""
    error: str = ""
    refused: bool = False
    not_sent: bool = False  # no connection was made (refused, or the connect failed): nothing went out
    duration_ms: int = 0


def _read(response: httpx.Response) -> tuple[bytes, bool]:
    chunks, size = [], 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size > READ_LIMIT:
            return b"".join(chunks)[:READ_LIMIT], True
    return b"".join(chunks), False


def _decode(response: httpx.Response, raw: bytes, truncated: bool) -> tuple[str, object]:
    try:
        text = raw.decode(response.charset_encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know ("charset=x-bogus"): read it as UTF-8
        text = raw.decode("utf-8", errors="replace")
    data = None
    if not truncated and "json" in response.headers.get("content-type", "").lower():
        try:
            data = json.loads(text, parse_constant=lambda name: None)
        except ValueError:
            data = None
    return text, data


def call(*, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float) -> Answer:
    """Make the request. Never raises for what the network or the receiver does."""
    started = time.monotonic()
    answer = Answer()
    try:
        destination = guard.destination(url)
    except guard.Refused as exc:
        return Answer(error=f"refused: {exc}", refused=True)
    answer.address = destination.address
    backend = PinnedBackend(host=destination.host, address=destination.address, deadline=started + timeout)
    try:
        with httpx.Client(transport=PinnedTransport(backend), follow_redirects=False, trust_env=False,
                          timeout=httpx.Timeout(timeout)) as client, \
                client.stream(method, destination.url, content=body, headers={
                    # No compression is asked for: the raw bytes are the body.
                    "user-agent": USER_AGENT, "accept-encoding": "identity", **headers}) as response:
            raw, answer.truncated = _read(response)
            answer.status = response.status_code
            answer.location = response.headers.get("location", "")[:500]
            answer.text, answer.data = _decode(response, raw, answer.truncated)
    except httpx.ConnectTimeout:  # before anything was sent
        answer.error, answer.not_sent = f"no answer within {timeout:g} s (timed out)", True
    except httpx.ConnectError as exc:
        answer.error, answer.not_sent = f"the request failed: {type(exc).__name__}: {exc}"[:1000], True
    except httpx.TimeoutException:
        answer.error = f"no answer within {timeout:g} s (timed out)"
    except httpx.HTTPError as exc:
        answer.error = f"the request failed: {type(exc).__name__}: {exc}"[:1000]
    finally:
        answer.duration_ms = int((time.monotonic() - started) * 1000)
    return answer
