"""The one signal the CRM sends when a record changes in a way automation may care about.

`records_changed` fires inside the same database transaction as the change, after the rows
are written. Arguments: ``changes``, a list of :class:`RecordChange`. It fires for:

- a Deal created (``deal_created``) or saved with a different stage (``deal_stage_change``),
- a Deal saved with other changed fields (``deal_updated``),
- a Lead created (``lead_created``), converted (``lead_converted``) or saved with changed fields
  (``lead_updated``),
- a Contact created (``contact_created``; the payload holds the contact: no record to load) or
  saved with changed fields (``contact_updated``, the contact as saved and ``changed``),
- a Project created (``project_created``), saved with changed fields (``project_updated``) or
  with its status moved to completed (``project_completed``, offered to ``project_updated``
  workflows too),
- a Deal, Lead, Contact or Project deleted (``deal_deleted`` …; entity type ``deleted``, the
  payload's ``record`` is the record as it was, in the shape workflows read),
- a Task saved from open to done (``task_completed``; about its deal or lead when it has one,
  the payload holds the task) or saved with other changed fields (``task_updated``, about the same
  record; a completion is one ``task_completed`` whose ``changed`` lists what the save changed),

One save is one change: a stage change that also changes the amount is one ``deal_stage_change``
whose payload's ``changed`` lists both (``{"amount": ["12000.00", "15000.00"], "stage": [3, 5]}``:
old and new, as JSON values; related records by id).

from ``Model.save()`` (admin, shell, services) and from the bulk services in ``services.py``.
It does not fire for ``QuerySet.update()`` or a plain ``bulk_create()``: use the services.
Receivers must only record the change (one INSERT); they must not do the work.

A sender may instead ask before writing, with ``joined=True``: each receiver then writes nothing
and returns a :class:`JoinedInsert` (or None), and the sender writes the change and those rows
in one statement (``deal_move_to_stage`` on PostgreSQL: a stage move is one round trip, not two),
calling each ``written`` only if the change was made.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.dispatch import Signal

DEAL_STAGE_CHANGE = "deal_stage_change"
DEAL_CREATED = "deal_created"
LEAD_CREATED = "lead_created"
LEAD_CONVERTED = "lead_converted"
DEAL_UPDATED = "deal_updated"
LEAD_UPDATED = "lead_updated"
CONTACT_CREATED = "contact_created"
TASK_COMPLETED = "task_completed"
CONTACT_UPDATED = "contact_updated"
TASK_UPDATED = "task_updated"
PROJECT_CREATED = "project_created"
PROJECT_UPDATED = "project_updated"
PROJECT_COMPLETED = "project_completed"
# A record deleted: the event carries the record as it was (`record`), since the row is gone.
DEAL_DELETED = "deal_deleted"
LEAD_DELETED = "lead_deleted"
CONTACT_DELETED = "contact_deleted"
PROJECT_DELETED = "project_deleted"
DELETED = {"deal": DEAL_DELETED, "lead": LEAD_DELETED, "contact": CONTACT_DELETED, "project": PROJECT_DELETED}
# The entity type of a deletion's event: no row to load (the record is in the payload).
GONE = "deleted"

# The fields whose changes are announced (model field names; foreign keys by their column).
DEAL_TRACKED = ("title", "amount", "probability", "close_date", "contact_id", "owner_id", "stage_id", "custom",
                "archived_at")
LEAD_TRACKED = ("name", "email", "company", "status", "source", "owner_id", "custom", "archived_at")
CONTACT_TRACKED = ("first_name", "last_name", "email", "phone", "company", "custom", "archived_at")
PROJECT_TRACKED = ("name", "status", "service_type", "start_date", "end_date", "contact_id", "deal_id", "owner_id",
                   "custom", "archived_at")
# Not the description: free text of any length does not travel in events.
TASK_TRACKED = ("title", "due_date", "priority", "status", "assignee_id")


def json_number(number: Decimal) -> int | float:
    """A Decimal as a JSON number: an int when whole, else a float."""
    return int(number) if number == number.to_integral_value() else float(number)


def json_value(value, *, numbers: bool = False):
    """A value as JSON, the one conversion everyone uses (automation's definition/coercion.py
    names it too): dates and times as ISO text, ids as text; a Decimal as its exact text
    ("15000.00", so a change's old and new values read alike), or with `numbers` as a JSON number
    (a function node's output, which people compare and add up)."""
    if value is None or isinstance(value, bool | int | float | str | dict | list):
        return value  # (a record's own fields, `custom`, are JSON already)
    if isinstance(value, Decimal):
        return json_number(value) if numbers else str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _stored(instance, name: str, value):
    """The value as the column holds it (15000 → Decimal("15000.00") for a money field), so an
    unchanged value assigned in another form is no change, and old and new read alike."""
    field = instance._meta.get_field(name)
    value = field.to_python(value)
    places = getattr(field, "decimal_places", None)
    if places is not None and value is not None:
        value = value.quantize(Decimal(1).scaleb(-places))
    return value


def changed_fields(before: dict, instance, fields) -> dict[str, list]:
    """{field: [old, new]} of the fields whose stored value differs from the instance's
    (`stage_id` is reported as `stage`)."""
    found = {}
    for name in fields:
        old, new = _stored(instance, name, before[name]), _stored(instance, name, getattr(instance, name))
        if old != new:
            found[name.removesuffix("_id")] = [json_value(old), json_value(new)]
    return found


def written(tracked, update_fields) -> tuple[str, ...]:
    """The tracked fields a save writes (all of them without update_fields)."""
    if update_fields is None:
        return tuple(tracked)
    wanted = set(update_fields)
    return tuple(name for name in tracked if name in wanted or name.removesuffix("_id") in wanted)


@dataclass(frozen=True, slots=True)
class RecordChange:
    kind: str
    organization_id: int
    entity_type: str  # "deal", "lead", "contact", "project", "task", "deleted" or "event"
    entity_id: uuid.UUID
    payload: dict = field(default_factory=dict)


records_changed = Signal(use_caching=True)  # sent on every save: cache the receiver lookup


@dataclass(frozen=True, slots=True)
class JoinedInsert:
    """A receiver's answer to ``joined=True``: the row it would insert for the change, for the
    sender to write in the change's own statement; `written` is called once it was (inside the
    sender's transaction, where the receiver would have run)."""
    table: str
    columns: tuple[str, ...]
    values: tuple[Any, ...]
    written: Callable[[], None]


def joined_inserts(sender: type, change: RecordChange) -> list[JoinedInsert]:
    """Ask the receivers for their rows of `change`, not yet written (``joined=True``)."""
    answers: list[Any] = [answer for _, answer in records_changed.send(sender=sender, changes=[change], joined=True)]
    return [answer for answer in answers if isinstance(answer, JoinedInsert)]


STAND_IN = uuid.UUID("2b0c6e0e-94d5-4c45-9a8e-5f2f3c1d7a60")


def stand_in(kind: str, pk) -> uuid.UUID:
    """A stable uuid for a record whose key is not one (contacts, tasks), as events need."""
    return uuid.uuid5(STAND_IN, f"{kind}:{pk}")
