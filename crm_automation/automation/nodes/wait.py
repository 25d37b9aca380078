"""The `wait` node: the run waits for a time, holding nothing.

A wait parks the run until its wake-up time, durably (the run is `waiting` with an indexed
`wake_at`, and nothing runs or polls for it meanwhile); a person may say "go on now".
Config: {"delayAmount": 24, "delayUnit": "hours"}, or {"until": "{{deal.close_date}}",
"offsetAmount": -1, "offsetUnit": "days"} (a date means the start of that day in TIME_ZONE).
"""

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TypeGuard

from django.utils import timezone

from crm_automation.automation import wording
from crm_automation.automation.definition import catalog
from crm_automation.automation.definition.templating import missing_link, resolve, template_paths
from crm_automation.automation.models import StepStatus
from crm_automation.automation.nodes.base import ActionFailed, describe_missing
from crm_automation.automation.nodes.flow import FlowNode, Problems, Steps

if TYPE_CHECKING:
    from crm_automation.automation.runtime.engine.walk import Place, RunState, StepRow

UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
MAX_WAIT = timedelta(days=366)


def whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def wake_time(config: dict[str, Any], context: dict[str, Any], now: datetime) -> datetime:
    """When a wait that starts `now` ends; ActionFailed when the date it waits for is missing."""
    if "until" not in config:
        return now + timedelta(seconds=config["delayAmount"] * UNITS[config["delayUnit"]])
    path = template_paths(config["until"])[0]
    value = resolve(context, path)
    if isinstance(value, str):  # a date carried as text (an event's data, a snapshot): ISO, as stored
        try:
            value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
        except ValueError:
            value = None
    if isinstance(value, datetime) and timezone.is_naive(value):
        value = timezone.make_aware(value)
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = timezone.make_aware(datetime.combine(value, time.min))
    else:
        missing = missing_link(context, path)
        raise ActionFailed(f"{describe_missing(missing) if missing else f'{path} is empty'}, so there is no date "
                           "to wait for")
    return moment + timedelta(seconds=config.get("offsetAmount", 0) * UNITS[config.get("offsetUnit", "days")])


class Wait(FlowNode):
    type = "wait"
    label = "Wait"
    example = '{"delayAmount": 24, "delayUnit": "hours"}'

    def validate(self, config: dict[str, Any], *, trigger_type: str, organization_id: int) -> Problems:
        allowed = {"delayAmount", "delayUnit", "until", "offsetAmount", "offsetUnit"}
        errors = [(f"config.{k}", f"unknown setting; a wait takes {', '.join(sorted(allowed))}")
                  for k in sorted(set(config) - allowed)]
        units = ", ".join(UNITS)
        if "until" in config:
            until = config["until"]
            paths = template_paths(until) if isinstance(until, str) and len(until) <= 200 else []
            fields = catalog.fields_for(trigger_type)
            if len(paths) != 1 or until.strip() != f"{{{{{paths[0]}}}}}" or fields.get(paths[0]) not in (
                    "date", "datetime"):
                dates = ", ".join(f"{{{{{f}}}}}" for f, kind in fields.items() if kind in ("date", "datetime")) \
                    or "none"
                errors.append(("config.until", f"must be one date (or date and time) field of the record or the "
                                               f"event; this trigger has {dates}"))
            amount, unit = config.get("offsetAmount", 0), config.get("offsetUnit", "days")
            if not whole(amount) or unit not in UNITS:
                errors.append(("config.offsetAmount", f"must be a whole number (negative for before) of {units}"))
            return errors
        amount, unit = config.get("delayAmount"), config.get("delayUnit")
        if not whole(amount) or amount < 0:
            errors.append(("config.delayAmount", "must be a whole number, 0 or more"))
        if unit not in UNITS:
            errors.append(("config.delayUnit", f"must be one of {units}"))
        if not errors and whole(amount) and timedelta(seconds=amount * UNITS[unit]) > MAX_WAIT:
            errors.append(("config.delayAmount", "a wait is at most 366 days"))
        return errors

    def describe(self, config: Any) -> str:
        if not isinstance(config, dict):
            return self.label
        if "until" in config:
            return f"Wait until {catalog.variable_name(str(config['until']).strip('{} '))}"
        return f"Wait {wording.counted(config.get('delayAmount'), config.get('delayUnit'))}"

    def run(self, steps: Steps, state: "RunState", place: "Place", previous: "StepRow | None") -> None:
        now = steps.now
        if previous is not None and previous.status == StepStatus.WAITING:
            wake = steps.due(state, previous, datetime.fromisoformat(previous.result["wake_at"]))
        else:
            try:
                wake = wake_time(state.node(place[0]).config, state.context_at(place), now)
            except ActionFailed as exc:
                steps.fail(state, place, str(exc))
                return
        if state.skips_wait(place[0]) and wake > now:  # fast-forwarded: the time it would wait is shown
            steps.record(state, place, StepStatus.COMPLETED, result={"would_wait_until": wake.isoformat()})
            steps.finished(state, place)
            return
        if wake <= now:
            state.stop_waiting(place)
            steps.record(state, place, StepStatus.COMPLETED, result={"waited_until": wake.isoformat()},
                         new_attempt=previous is None)
            steps.finished(state, place)
            return
        if previous is None or previous.status != StepStatus.WAITING:
            steps.record(state, place, StepStatus.WAITING, result={"wake_at": wake.isoformat()})
        state.wait(place, wake)
