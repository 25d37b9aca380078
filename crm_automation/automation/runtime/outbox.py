"""The save path: record each CRM change as an outbox row, and nothing else (invariant 1).

The receiver adds one INSERT to the change's own transaction (a bulk INSERT for bulk
services). After commit it pokes the in-process nudger, which tells the workers from a
background thread, so a request never waits for the broker. With the listening ORM broker on
PostgreSQL the commit itself tells them (a trigger's NOTIFY, workers/pg_broker.py): no nudge.
"""

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connections, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

from crm_automation.automation.models import AutomationEvent
from crm_automation.automation.runtime.cause import current_cause
from crm_automation.automation.runtime.nudger import nudger
from crm_automation.bulk_insert import BULK_BATCH, bound_cursor, bulk_insert_values
from crm_automation.crm import sources
from crm_automation.crm.changes import JoinedInsert, RecordChange

_EVENT_COLUMNS = ("organization_id", "kind", "entity_type", "entity_id", "payload", "depth", "caused_by_run_id")
_INSERT_EVENT = "INSERT INTO {} ({}) VALUES ({})".format(
    AutomationEvent._meta.db_table, ", ".join(_EVENT_COLUMNS), ", ".join(["%s"] * len(_EVENT_COLUMNS))
)
_ENTITY_ID = AutomationEvent._meta.get_field("entity_id")
_PAYLOAD = AutomationEvent._meta.get_field("payload")


def _event_values(change: RecordChange, payload: dict[str, Any], depth: int, run_id: int | None,
                  connection: BaseDatabaseWrapper) -> tuple[Any, ...]:
    """One event's column values (_EVENT_COLUMNS): the UUID and JSON prepared by their fields,
    as the ORM would; created_at is the database's default."""
    return (change.organization_id, change.kind, change.entity_type,
            _ENTITY_ID.get_db_prep_save(change.entity_id, connection),
            _PAYLOAD.get_db_prep_save(payload, connection), depth, run_id)


def _insert_event(values: tuple[Any, ...], connection: BaseDatabaseWrapper) -> None:
    """One plain INSERT, no RETURNING and no model machinery: this runs on every save and the
    ORM's per-row overhead was a third of the whole cost (see benchmarks/run.py, part a). On
    PostgreSQL it binds on the server: the payload's JSON is not quoted in Python."""
    with bound_cursor(connection) as cursor:
        cursor.execute(_INSERT_EVENT, values)


def _nudge() -> None:
    if settings.AUTOMATION["NUDGE"] and not settings.AUTOMATION["EVENTS_NOTIFY"]:
        transaction.on_commit(nudger.poke)


def record_changes(sender: object, changes: Sequence[RecordChange], joined: bool = False,
                   **kwargs: object) -> JoinedInsert | None:
    """Receiver of `crm.changes.records_changed`: write the changes to the outbox. With
    `joined` (one change, not written yet), return the event's row for the sender to write
    with the change itself instead."""
    cause = current_cause()
    depth = 0 if cause is None else cause.depth + 1
    run_id = None if cause is None else cause.run_id
    # Where the change came from (crm/sources.py): a run's change is a workflow's, whatever
    # started the run; an import or bulk action adds its operation and size.
    source = {"source": sources.WORKFLOW} if cause is not None else sources.current_source().as_payload()
    if joined and len(changes) != 1:
        raise ValueError("joined=True takes one change: its row is written with it, or not at all")
    if len(changes) == 1:
        connection = connections[router.db_for_write(AutomationEvent)]
        values = _event_values(changes[0], {**changes[0].payload, **source}, depth, run_id, connection)
        if joined:
            return JoinedInsert(AutomationEvent._meta.db_table, _EVENT_COLUMNS, values, written=_nudge)
        _insert_event(values, connection)
    else:
        # One binary array per column (bulk_insert.py): the ORM's bulk_create quoted every
        # payload's JSON in Python, 60 % of the time it took to convert 5,000 leads.
        bulk_insert_values(AutomationEvent, [
            {"organization_id": c.organization_id, "kind": c.kind, "entity_type": c.entity_type,
             "entity_id": c.entity_id, "payload": {**c.payload, **source}, "depth": depth,
             "caused_by_run_id": run_id} for c in changes], batch_size=BULK_BATCH)
    _nudge()
    return None
