"""What happens when a step fails: each node's error policy, or the workflow's
(docs/product.md#error-policies).

A node's `onError` (in YAML, `data.onError`; in a definition, the action's `on_error`):

    policy: retry        # retry | skip | pause | abort
    maxAttempts: 4       # retry: tries in all, the first one included
    baseSeconds: 5       # retry: wait before the 2nd try; each next wait is `factor` times longer
    factor: 5            #        (5 s, 25 s, 125 s by default), ±20 % jitter
    then: pause          # retry: what happens after the last try (default: the workflow's policy)
    schedule: standard-webhooks  # instead of base × factor: the waits of the Standard Webhooks spec
                                 # (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h), or a list of
                                 # seconds; maxAttempts defaults to one more than its length

- retry: the step waits (durably, like a wait node) and runs again; only when the action says
  trying again cannot repeat an effect (an email whose outcome is unknown is never sent twice);
- skip: the failure is recorded and the run goes on after the step (the run ends partial);
- pause: the run is paused and the organization's admins are notified; a person retries the
  step, skips it, or cancels the run;
- abort: the run stops; the steps left are skipped with the reason (the run fails);
- fallback: the run goes on along the node's `error` edge instead (the node to run in its place:
  a backup provider, a task for the ops team), whose steps read the failure as
  {{<failed step>.error}}; the failure and the fallback are both on the run's record (the run
  ends partial). A fallback without an error edge stops the run, saying so.

The workflow's policy (`settings.errorPolicy`) is abort, skip, pause or fallback (every failed
node without a policy of its own follows its error edge): "stop at the first failed action" and
"continue with the next action" are abort and skip.
"""

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

POLICIES = ("retry", "skip", "pause", "abort", "fallback")
FINAL = ("skip", "pause", "abort", "fallback")
WORKFLOW_POLICY = {"stop": "abort", "continue": "skip", "pause": "pause", "fallback": "fallback"}
ERROR_HANDLE = "error"  # the edge a fallback follows
MAX_TRIES = 10
DEFAULT_RETRY = {"maxAttempts": 4, "baseSeconds": 5, "factor": 5}
SCHEDULES = {"standard-webhooks": [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]}
MAX_DELAY = 7 * 86400


@dataclass(frozen=True)
class Decision:
    policy: str  # skip | pause | abort | retry
    retry_at: datetime | None = None
    note: str = ""  # what was decided, in words, for the step's row


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(on_error, where: str = "on_error") -> list[tuple[str, str]]:
    if on_error is None:
        return []
    if not isinstance(on_error, dict):
        return [(where, 'must be a mapping, e.g. {"policy": "retry", "maxAttempts": 3}')]
    allowed = {"policy", "maxAttempts", "baseSeconds", "factor", "then", "schedule"}
    errors = [(f"{where}.{k}", f"unknown setting; onError takes {', '.join(sorted(allowed))}")
              for k in sorted(set(on_error) - allowed)]
    policy = on_error.get("policy")
    if policy not in POLICIES:
        return [*errors, (f"{where}.policy", f"must be one of {', '.join(POLICIES)}")]
    if policy != "retry":
        extra = sorted(set(on_error) & {"maxAttempts", "baseSeconds", "factor", "then", "schedule"})
        return errors + [(f"{where}.{k}", "only a retry policy takes this") for k in extra]
    schedule = on_error.get("schedule")
    if schedule is not None:
        delays = SCHEDULES.get(schedule) if isinstance(schedule, str) else schedule
        if not isinstance(delays, list) or not delays or len(delays) >= MAX_TRIES or not all(
                _whole(d) and 1 <= d <= MAX_DELAY for d in delays):
            errors.append((f"{where}.schedule", f"must be {', '.join(SCHEDULES)} or a list of 1 to {MAX_TRIES - 1} "
                                                f"waits in seconds (each at most {MAX_DELAY})"))
    tries, base, factor = (on_error.get(k, DEFAULT_RETRY[k]) for k in ("maxAttempts", "baseSeconds", "factor"))
    if schedule is not None and "maxAttempts" not in on_error:
        tries = 2  # (checked against the schedule's own length when it runs)
    if not _whole(tries) or not 2 <= tries <= MAX_TRIES:
        errors.append((f"{where}.maxAttempts", f"must be a whole number from 2 to {MAX_TRIES} (tries in all)"))
    if not _whole(base) or not 1 <= base <= 86400:
        errors.append((f"{where}.baseSeconds", "must be a whole number of seconds from 1 to 86400"))
    if not _whole(factor) or not 1 <= factor <= 10:
        errors.append((f"{where}.factor", "must be a whole number from 1 to 10"))
    if on_error.get("then", "abort") not in FINAL:
        errors.append((f"{where}.then", f"must be one of {', '.join(FINAL)}"))
    return errors


def decide(on_error: dict | None, workflow_handling: str, *, attempt: int, retry_safe: bool,
           now: datetime, simulating: bool = False) -> Decision:
    """What to do after the `attempt`-th try of a step failed."""
    fallback = WORKFLOW_POLICY.get(workflow_handling, "abort")
    rule = on_error or {"policy": fallback}
    if rule["policy"] != "retry":
        return Decision(rule["policy"])
    then = rule.get("then", fallback)
    delays = _schedule(rule)
    tries = rule.get("maxAttempts", len(delays) + 1 if delays else DEFAULT_RETRY["maxAttempts"])
    if attempt >= tries:
        return Decision(then, note=f"gave up after {attempt} tries")
    if simulating:
        return Decision(then, note=f"would be tried again up to {tries} times")
    if not retry_safe:
        return Decision(then, note="not tried again: it may already have had its effect")
    if delays:
        delay = delays[min(attempt, len(delays)) - 1]
    else:
        delay = rule.get("baseSeconds", DEFAULT_RETRY["baseSeconds"]) * rule.get(
            "factor", DEFAULT_RETRY["factor"]) ** (attempt - 1)
    # Jitter spreads the retries of many runs that failed together (an outage); whole seconds
    # keep runs that retry in the same second in one UPDATE when they park.
    at = now + timedelta(seconds=round(delay * random.uniform(0.8, 1.2)))
    return Decision("retry", retry_at=at.replace(microsecond=0) + timedelta(seconds=1),
                    note=f"try {attempt + 1} of {tries} at {at:%H:%M:%S}")


def _schedule(rule: dict) -> list[int]:
    schedule = rule.get("schedule")
    return SCHEDULES.get(schedule, []) if isinstance(schedule, str) else list(schedule or [])
