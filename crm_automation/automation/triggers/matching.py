"""Whether a workflow's trigger fires for a recorded change, and when it does not, why, in words.

One rule for everyone who asks: dispatch (the decision it records for each event and candidate
workflow, which a record's page, the admin and the API show as "why didn't it run?") and the
impact preview (past changes replayed through a draft). The checks, cheapest first, the first
that fails decides:

1. `stage`: a stage change's from/to stages (names only, no query);
2. `endpoint`: the endpoint an inbound webhook came to;
3. `fields`: for a record-updated trigger, that the save changed a watched field;
4. `record`: that the record still exists (the first check that loads it);
5. `conditions`: the workflow's conditions (`trigger.*` rules first, which need no record);
6. `crossing`: for a record-updated trigger with `crossing`, that the record did not meet the
   conditions before the save.

Asked about a record as it is now (`as_now`: the run-test's candidates), nothing changed: the
checks about a change (the `from` stage, watched fields, crossing) are not asked, the `to` stage
is the record's stage now, and the conditions are asked as for any event.

Before any of them, `offered` tells whether the event is for the workflow at all: an event
addressed to one workflow (a due time, an occasion, a schedule's tick) is not a candidate of the
others, which get no decision. What a workflow's state adds (paused, a draft, the plan, the loop
guard) is dispatch's, not the trigger's.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from crm_automation.automation.definition import catalog, conditions, context
from crm_automation.automation.models import AutomationEvent, WorkflowDecision
from crm_automation.automation.triggers import record_changes

Outcome = WorkflowDecision.Outcome
# The checks, by name.
STAGE, ENDPOINT, FIELDS, RECORD = "stage", "endpoint", "fields", "record"
CONDITIONS, CROSSING = "conditions", "crossing"
# Each check in a few words, the same for every event it stops: how the impact preview groups
# the changes that would not have started the workflow.
SUMMARY = {
    STAGE: "the stage did not match",
    ENDPOINT: "the webhook came to another endpoint",
    FIELDS: "no watched field changed",
    RECORD: "the record no longer exists",
    CONDITIONS: "the conditions were false",
    CROSSING: "the record met the conditions before the change already",
}


class Verdict(NamedTuple):
    """A decision's outcome (a WorkflowDecision.Outcome), its reason as a person reads it, and
    the check that decided (one of SUMMARY's keys; "" when it matched)."""

    outcome: str
    reason: str
    check: str = ""

    @property
    def matched(self) -> bool:
        return self.outcome == Outcome.MATCHED


def offered(event: AutomationEvent, workflow_id: int) -> bool:
    """Whether an event of a kind the workflow listens to is for it: an addressed event (its
    payload names its workflow) is for that workflow only."""
    return event.kind not in catalog.ADDRESSED or event.payload.get("workflow_id") == workflow_id


def record_context(event: AutomationEvent, record, trigger: dict) -> dict | None:
    """What conditions and templates see for an event; None when its record was deleted (an
    event with no record to load, a webhook's or a new contact's, always has a context)."""
    if record is None and context.has_record(event.entity_type):
        return None
    return context.full_context(event, record, trigger)


def stage_mismatch(trigger_config: dict, trigger: dict, names: dict[str, str], *, as_now: bool = False) -> str | None:
    """Why the trigger's from/to stages do not match the workflow's, or None if they do (in
    the stages' names, as people know them). `as_now`: only the `to` stage, the deal's now."""
    for key in ("to_stage",) if as_now else ("from_stage", "to_stage"):
        wanted = trigger_config.get(key)
        if wanted and trigger.get(key) != wanted:
            label = key.replace("_", " ")
            slug: Any = trigger.get(key)  # (None: a change that names no stage)
            moved, listens = names.get(slug, slug), names.get(wanted, wanted)
            if as_now:
                return f"the deal is in “{moved}”; the workflow listens for a move to “{listens}”"
            return f"the deal moved {label.split()[0]} “{moved}”; the workflow listens for “{listens}”"
    return None


def match(event: AutomationEvent, definition: dict, trigger: dict, load: Callable[[], dict | None],
          names: dict[str, str], *, as_now: bool = False) -> Verdict:
    """Whether `definition` (a version's) starts for `event`, whose trigger data is `trigger`.

    `load` gives the event's record_context and is called only when a check needs the record
    (callers cache it per event and load records per batch); `names` maps the organization's
    stage slugs to their names. No query of its own: dispatch calls it per event and candidate.
    `as_now`: the event stands for a record as it is now, not a change (see above).
    """
    config = definition.get("trigger_config") or {}
    mismatch = stage_mismatch(config, trigger, names, as_now=as_now)
    if mismatch:
        return Verdict(Outcome.STAGE_FILTER, mismatch, STAGE)
    endpoint = config.get("endpoint")
    if endpoint and str(endpoint) != str(trigger.get("endpoint")):
        return Verdict(Outcome.ENDPOINT_FILTER, f"the webhook came to endpoint {trigger.get('endpoint')}; the "
                                             f"workflow listens to {endpoint}", ENDPOINT)
    trigger_type = definition.get("trigger_type") or event.kind
    updated = trigger_type in catalog.UPDATED and not as_now
    changed = record_changes.changed_of(event.payload)
    if updated:
        why = record_changes.unwatched(config, changed)
        if why:
            return Verdict(Outcome.FIELD_FILTER, why, FIELDS)
    full = load()
    if full is None:
        return Verdict(Outcome.RECORD_MISSING, f"the {event.entity_type} was deleted before the workflow ran", RECORD)
    outcome = conditions.evaluate(definition.get("conditions"), trigger_type, {"trigger": trigger}, lambda: full)
    if not outcome.passed:
        return Verdict(Outcome.CONDITION_FALSE, outcome.explanation, CONDITIONS)
    if updated and config.get("crossing"):
        why = record_changes.crossing(definition, trigger_type, trigger, full, changed)
        if why:
            return Verdict(Outcome.CONDITION_FALSE, why, CROSSING)
    return Verdict(Outcome.MATCHED, outcome.explanation)
