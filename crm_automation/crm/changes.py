"""The one signal the CRM sends when a record changes in a way automation may care about.

`records_changed` fires inside the same database transaction as the change, after the rows
are written. Arguments: ``changes``, a list of :class:`RecordChange`. It fires for:

- a Deal created (``deal_created``) or saved with a different stage (``deal_stage_change``),
- a Lead created (``lead_created``) or converted (``lead_converted``),

from ``Model.save()`` (admin, shell, services) and from the bulk services in ``services.py``.
It does not fire for ``QuerySet.update()`` or a plain ``bulk_create()``: use the services.
Receivers must only record the change (one INSERT); they must not do the work.
"""

import uuid
from dataclasses import dataclass, field

from django.dispatch import Signal

DEAL_STAGE_CHANGE = "deal_stage_change"
DEAL_CREATED = "deal_created"
LEAD_CREATED = "lead_created"
LEAD_CONVERTED = "lead_converted"


@dataclass(frozen=True, slots=True)
class RecordChange:
    kind: str
    organization_id: int
    entity_type: str  # "deal" or "lead"
    entity_id: uuid.UUID
    payload: dict = field(default_factory=dict)


records_changed = Signal(use_caching=True)  # sent on every save: cache the receiver lookup
