"""Control steps: wait, and continue-only-if (a condition gate).

They run inside the engine (no side effect, no outbox row): a wait parks the run until its
wake-up time, durably (the run is `waiting` with an indexed `wake_at`, and nothing runs or
polls for it meanwhile); a gate evaluates its rules against the record as it is *now* (after a
wait: "is the deal still in Proposal?") and, when false, ends the run there — the remaining
steps are not on the path. Each outcome is recorded on its step row and read back on resume,
never decided again.

Configs (seed-001 names):
- wait: {"delayAmount": 24, "delayUnit": "hours"}, or {"until": "{{deal.close_date}}",
  "offsetAmount": -1, "offsetUnit": "days"} (a date means the start of that day in TIME_ZONE).
- condition: {"combinator": "and", "rules": [{"field": "deal.stage", "operator": "eq",
  "value": "proposal"}]}, the same rules as a workflow's conditions.
"""

from datetime import date, datetime, time, timedelta

from django.utils import timezone

from crm_automation.automation import wording
from crm_automation.automation.definition import catalog, conditions, graph
from crm_automation.automation.definition.templating import lookup, missing_link, resolve, template_paths
from crm_automation.automation.nodes.base import ActionFailed, describe_missing

WAIT, CONDITION, PARALLEL, MERGE, LOOP = "wait", "condition", "parallel", "merge", "loop"
LABELS = {WAIT: "Wait", CONDITION: "Continue only if", PARALLEL: "Parallel", MERGE: "Merge", LOOP: "Loop"}
MERGE_STRATEGIES = ("wait-all", "first")
DEFAULT_ITERATIONS = 100
UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
MAX_WAIT = timedelta(days=366)


def is_control(step_type) -> bool:
    return step_type in LABELS


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(step_type: str, config, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
    if not isinstance(config, dict):
        example = {WAIT: '{"delayAmount": 24, "delayUnit": "hours"}', MERGE: '{"strategy": "wait-all"}',
                   LOOP: '{"loopMode": "count", "count": 3}', PARALLEL: "{}"}.get(
            step_type, '{"rules": [{"field": "deal.stage", "operator": "eq", "value": "proposal"}]}')
        return [("config", f"must be an object, e.g. {example}")]
    if step_type == PARALLEL:
        return [(f"config.{k}", "unknown setting; a parallel node takes none (its branches are its edges)")
                for k in sorted(config)]
    if step_type == MERGE:
        errors = [(f"config.{k}", "unknown setting; a merge takes strategy")
                  for k in sorted(set(config) - {"strategy"})]
        if config.get("strategy", "wait-all") not in MERGE_STRATEGIES:
            errors.append(("config.strategy", f"must be one of {', '.join(MERGE_STRATEGIES)}"))
        return errors
    if step_type == LOOP:
        return _validate_loop(config, trigger_type)
    if step_type == CONDITION:
        if not config.get("rules"):
            return [("config.rules", "a “continue only if” step needs at least one rule")]
        return [(f"config.{w.removeprefix('conditions.')}" if w != "conditions" else "config", m)
                for w, m in conditions.validate(config, trigger_type, organization_id=organization_id)]
    return _validate_wait(config, trigger_type)


def _validate_wait(config: dict, trigger_type: str) -> list[tuple[str, str]]:
    allowed = {"delayAmount", "delayUnit", "until", "offsetAmount", "offsetUnit"}
    errors = [(f"config.{k}", f"unknown setting; a wait takes {', '.join(sorted(allowed))}")
              for k in sorted(set(config) - allowed)]
    units = ", ".join(UNITS)
    if "until" in config:
        until = config["until"]
        paths = template_paths(until) if isinstance(until, str) and len(until) <= 200 else []
        fields = catalog.fields_for(trigger_type)
        if len(paths) != 1 or until.strip() != f"{{{{{paths[0]}}}}}" or fields.get(paths[0]) != "date":
            dates = ", ".join(f"{{{{{f}}}}}" for f, kind in fields.items() if kind == "date") or "none"
            errors.append(("config.until", f"must be one date field of the record; this trigger has {dates}"))
        amount, unit = config.get("offsetAmount", 0), config.get("offsetUnit", "days")
        if not _whole(amount) or unit not in UNITS:
            errors.append(("config.offsetAmount", f"must be a whole number (negative for before) of {units}"))
        return errors
    amount, unit = config.get("delayAmount"), config.get("delayUnit")
    if not _whole(amount) or amount < 0:
        errors.append(("config.delayAmount", "must be a whole number, 0 or more"))
    if unit not in UNITS:
        errors.append(("config.delayUnit", f"must be one of {units}"))
    if not errors and timedelta(seconds=amount * UNITS[unit]) > MAX_WAIT:
        errors.append(("config.delayAmount", "a wait is at most 366 days"))
    return errors


def _validate_loop(config: dict, trigger_type: str) -> list[tuple[str, str]]:
    allowed = {"loopMode", "items", "count", "maxIterations"}
    errors = [(f"config.{k}", f"unknown setting; a loop takes {', '.join(sorted(allowed))}")
              for k in sorted(set(config) - allowed)]
    mode = config.get("loopMode", "for-each" if "items" in config else "count")
    cap = config.get("maxIterations", DEFAULT_ITERATIONS)
    if not _whole(cap) or not 1 <= cap <= graph.MAX_ITERATIONS:
        errors.append(("config.maxIterations", f"must be a whole number from 1 to {graph.MAX_ITERATIONS}"))
    if mode == "count":
        count = config.get("count")
        if not _whole(count) or not 0 <= count <= graph.MAX_ITERATIONS:
            errors.append(("config.count", f"must be a whole number from 0 to {graph.MAX_ITERATIONS}"))
    elif mode == "for-each":
        items = config.get("items")
        if isinstance(items, str):
            paths = template_paths(items) if len(items) <= 200 else []
            if len(paths) != 1 or items.strip() != f"{{{{{paths[0]}}}}}":
                errors.append(("config.items", "must be one value in braces, e.g. {{Find Deals.rows}}, or a list"))
            elif paths[0] not in catalog.fields_for(trigger_type):
                errors.append(("config.items", f"{{{{{paths[0]}}}}} is not a value this node can read"))
        elif not isinstance(items, list):
            errors.append(("config.items", "is required: a list, or one value in braces that is a list"))
    else:
        errors.append(("config.loopMode", "must be for-each or count"))
    return errors


def loop_items(config: dict, context: dict) -> list:
    """The items a loop goes over, capped at maxIterations; ActionFailed if they are not a list."""
    cap = config.get("maxIterations", DEFAULT_ITERATIONS)
    if config.get("loopMode", "for-each" if "items" in config else "count") == "count":
        return list(range(min(config.get("count", 0), cap)))
    items = config.get("items")
    if isinstance(items, str):
        path = template_paths(items)[0]
        value = lookup(context, path)
        if value is None:
            missing = missing_link(context, path)
            raise ActionFailed(f"{describe_missing(missing) if missing else f'{path} is empty'}, so there is "
                               "nothing to loop over")
        if not isinstance(value, list | tuple):
            raise ActionFailed(f"{{{{{path}}}}} is not a list, so there is nothing to loop over")
        items = list(value)
    return items[:cap]


def label(step_type: str, config: dict) -> str:
    if step_type == WAIT and isinstance(config, dict):
        if "until" in config:
            return f"Wait until {catalog.variable_name(str(config['until']).strip('{} '))}"
        return f"Wait {wording.counted(config.get('delayAmount'), config.get('delayUnit'))}"
    return LABELS.get(step_type, step_type)


def wake_time(config: dict, context: dict, now: datetime) -> datetime:
    """When a wait that starts `now` ends; ActionFailed when the date it waits for is missing."""
    if "until" not in config:
        return now + timedelta(seconds=config["delayAmount"] * UNITS[config["delayUnit"]])
    path = template_paths(config["until"])[0]
    value = resolve(context, path)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = timezone.make_aware(datetime.combine(value, time.min))
    else:
        missing = missing_link(context, path)
        raise ActionFailed(f"{describe_missing(missing) if missing else f'{path} is empty'}, so there is no date "
                           "to wait for")
    return moment + timedelta(seconds=config.get("offsetAmount", 0) * UNITS[config.get("offsetUnit", "days")])


def gate(config: dict, trigger_type: str, context: dict) -> conditions.Outcome:
    return conditions.evaluate(config, trigger_type, context, lambda: context)
