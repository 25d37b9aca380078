"""Which of the organization's records would start a workflow now, and for each one that would
not, why (the run-test's `candidates`, docs/product.md#simulate).

Every record of the kind the trigger is about (not archived), as it is now, is put through the one
matching rule (`triggers/matching.match`, as dispatch, the impact preview and "why not" use it)
with the event its trigger would carry for it (`on_demand.event_for`), asked `as_now`: a record
as it is now has no change, so per trigger family:

- a stage change or a deal's creation: the deal is in the trigger's `to` stage (the `from` stage
  is a change's, not asked) and the conditions hold;
- a record updated: the conditions hold (which fields changed, and crossing, are a change's);
- a deal staying in a stage: the deal is in that stage and the conditions hold; a deal's date:
  the conditions hold (the sweep decides when the date comes);
- created, converted, completed, deleted, started by a person: the conditions hold on the record;
- a business event: the conditions hold on the record it is about, with the declaration's sample data;
- a schedule, a webhook, a workflow started on no record: no record starts it (the answer says so).

Then the enrollment rules: a record the workflow took once ("once") or whose run is unfinished
("not while running") would not start now, and the reason says which. Records are paged in id
order (`cursor`: the last id of the previous page), at most `MAX_PAGE` a page; the totals count
the first `MAX_SCANNED` records.
"""

from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError

from crm_automation.automation.definition import catalog, context
from crm_automation.automation.models import Enrollment, Workflow, WorkflowRun, WorkflowStatus, WorkflowVersion
from crm_automation.automation.services.simulation import replayed_entity
from crm_automation.automation.triggers import matching, on_demand, relative_time
from crm_automation.crm.selectors import RECORD_MODELS, record_kind, user_has_role

MAX_PAGE = 50
MAX_SCANNED = 5000
CHUNK = 500  # records evaluated per query


@dataclass
class Candidates:
    """A page of candidates and the totals. `kind`: the records' ("" when the workflow starts on
    no record; `note` says so)."""

    kind: str
    entries: list[dict] = field(default_factory=list)
    cursor: str = ""
    next_cursor: str | None = None
    limit: int = MAX_PAGE
    records: int = 0  # records of the kind (not archived)
    scanned: int = 0  # of which the totals evaluated
    would_start: int = 0  # of those scanned
    note: str = ""

    def as_dict(self) -> dict:
        return {"candidates": self.entries,
                "candidates_page": {"cursor": self.cursor or None, "next_cursor": self.next_cursor,
                                    "limit": self.limit},
                "candidates_totals": {"records": self.records, "scanned": self.scanned,
                                      "would_start": self.would_start, "complete": self.scanned == self.records},
                "candidates_note": self.note}


def _as_now(workflow: Workflow, definition: dict) -> dict:
    """The definition the records are asked with: a deal staying in a stage is asked for that stage
    as a move's `to` stage (matching's stage check)."""
    config = dict(definition.get("trigger_config") or {})
    if workflow.trigger_type == relative_time.IN_STAGE and config.get("stage"):
        config["to_stage"] = config["stage"]
    return {**definition, "trigger_config": config}


def _cursor_key(kind: str, cursor: str) -> Any:
    """The id after which the page starts (a contact's is a number, the others' a uuid); a 400 at
    candidates_cursor when it cannot be one."""
    model = RECORD_MODELS[kind]
    try:
        return model._meta.pk.to_python(cursor)
    except ValidationError:
        raise ValidationError({"candidates_cursor": ["not a cursor of these candidates: use next_cursor as "
                                                     "given"]}) from None


def _held(workflow: Workflow, policy: str, entity_ids: list) -> dict[Any, str]:
    """{entity id: why it would not start} for the records the enrollment rules keep out now."""
    if policy == Workflow.Reenrollment.ONCE:
        rows = Enrollment.objects.filter(workflow=workflow, entity_id__in=entity_ids).values_list("entity_id",
                                                                                                   flat=True)
        return {e: "already enrolled: it went through the workflow before and the workflow enrolls a record only "
                   "once" for e in rows}
    if policy == Workflow.Reenrollment.NOT_WHILE_RUNNING:
        running = WorkflowRun.objects.filter(workflow=workflow, holds_enrollment=True, trigger_entity_id__in=entity_ids)
        return {e: "already enrolled: it has an unfinished run of the workflow"
                for e in running.values_list("trigger_entity_id", flat=True)}
    return {}


def _evaluate(workflow: Workflow, version: WorkflowVersion, records: list, maps) -> list[dict]:
    """Each record's entry: {record: {kind, id, title}, would_start, reason}."""
    slugs, names = maps
    definition = _as_now(workflow, version.definition)
    shared = {"stage_ids": {slug: pk for pk, slug in slugs.items()}}  # (no query per record)
    events = [on_demand.event_for(workflow, version, record, shared=shared) for record in records]
    loaded = context.load_records(events)
    held = _held(workflow, definition.get("reenrollment", Workflow.Reenrollment.EVERY_TIME),
                 [event.entity_id for event in events])
    entries = []
    for record, event in zip(records, events, strict=True):
        trigger = context.trigger_dict(event, slugs)

        def load(event=event, trigger=trigger) -> dict | None:
            return matching.record_context(event, loaded.get(event.entity_id), trigger)

        verdict = matching.match(event, definition, trigger, load, names, as_now=True)
        reason = verdict.reason
        would = verdict.matched and event.entity_id not in held
        if verdict.matched and not would:
            reason = held[event.entity_id]
        entries.append({"record": {"kind": record_kind(record), "id": str(record.pk),
                                   "title": str(record)}, "would_start": would, "reason": reason})
    return entries


def workflow_candidates(*, workflow_id: int, by, cursor: str = "", limit: int = MAX_PAGE,
                        version_number: int | None = None) -> Candidates:
    """A page of the records that would start the workflow (a version of it, the latest by
    default) now, each with why or why not, and the totals. Ops members and admins may."""
    workflow = Workflow.objects.select_related("organization").get(pk=workflow_id)
    if by is not None and not user_has_role(by, workflow.organization_id, "ops"):
        raise PermissionDenied("Only ops members and admins of this organization can test workflows.")
    limit = max(1, min(int(limit), MAX_PAGE))
    kind = replayed_entity(workflow.trigger_type, workflow.organization_id)
    if kind is None:
        how = catalog.trigger_label(workflow.trigger_type).lower()
        return Candidates(kind="", limit=limit, note=f"“{workflow.name}” starts on no record ({how}): there are no "
                                                     "candidate records.")
    versions = workflow.versions.order_by("-number")
    version = versions.filter(number=version_number).first() if version_number else versions.first()
    if version is None:
        raise ValidationError({"version": [f"“{workflow.name}” has no such version."]})
    records = RECORD_MODELS[kind].objects.filter(organization_id=workflow.organization_id,
                                                 archived_at__isnull=True).order_by("pk")
    maps = on_demand.stage_maps(workflow.organization_id)
    found = Candidates(kind=kind, cursor=cursor, limit=limit, records=records.count())
    page = records.filter(pk__gt=_cursor_key(kind, cursor)) if cursor else records
    rows = list(page[:limit + 1])
    found.entries = _evaluate(workflow, version, rows[:limit], maps)
    if len(rows) > limit:
        found.next_cursor = str(rows[limit - 1].pk)
    # The totals: the first MAX_SCANNED records, a chunk at a time (one query per chunk and kind).
    last = None
    while found.scanned < min(found.records, MAX_SCANNED):
        chunk = list((records.filter(pk__gt=last) if last is not None else records)[:CHUNK])
        if not chunk:
            break
        found.scanned += len(chunk)
        found.would_start += sum(entry["would_start"] for entry in _evaluate(workflow, version, chunk, maps))
        last = chunk[-1].pk
    notes = []
    if workflow.status != WorkflowStatus.ACTIVATED:
        notes.append(f"“{workflow.name}” is {workflow.get_status_display().lower()}: it starts nothing until it is "
                     "activated; these are the records its trigger would take.")
    if catalog.is_event(workflow.trigger_type):
        notes.append("The conditions are asked with the event declaration's sample data.")
    found.note = " ".join(notes)
    return found
