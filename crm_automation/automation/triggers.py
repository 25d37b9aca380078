"""The save path: record each CRM change as an outbox row, and nothing else (invariant 1).

The receiver adds one INSERT to the change's own transaction (a bulk INSERT for bulk
services). After commit it pokes the in-process nudger, which tells the workers from a
background thread, so a request never waits for the broker.
"""

import contextvars
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, transaction

from crm_automation.automation.models import AutomationEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cause:
    run_id: int
    depth: int  # depth of the event the run is handling


_cause: contextvars.ContextVar[Cause | None] = contextvars.ContextVar("automation_cause", default=None)


@contextmanager
def caused_by(run_id: int, depth: int):
    """Changes made inside carry this run as their cause (the loop guard reads the depth)."""
    token = _cause.set(Cause(run_id, depth))
    try:
        yield
    finally:
        _cause.reset(token)


def record_changes(sender, changes, **kwargs) -> None:
    cause = _cause.get()
    depth = 0 if cause is None else cause.depth + 1
    run_id = None if cause is None else cause.run_id
    rows = [
        AutomationEvent(organization_id=c.organization_id, kind=c.kind, entity_type=c.entity_type,
                        entity_id=c.entity_id, payload=c.payload, depth=depth, caused_by_run_id=run_id)
        for c in changes
    ]
    if len(rows) == 1:
        rows[0].save(force_insert=True)
    else:
        AutomationEvent.objects.bulk_create(rows, batch_size=1000)
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(nudger.poke)


class Nudger:
    """Coalesces "events are waiting" pokes into at most one worker task per interval.

    Runs in a daemon thread per process (re-created after a fork). If the broker is down or
    the process dies before it nudges, the periodic sweep still finds the events.
    """

    interval = 0.02

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._pid: int | None = None
        self._lock = threading.Lock()

    def poke(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._wake = threading.Event()
                    threading.Thread(target=self._loop, name="automation-nudger", daemon=True).start()
                    self._pid = os.getpid()
        self._wake.set()

    def _loop(self) -> None:
        from crm_automation.automation.tasks import enqueue_drain

        wake = self._wake
        while True:
            wake.wait()
            wake.clear()
            try:
                enqueue_drain()
            except Exception:  # the sweep will pick the events up
                logger.warning("Could not nudge the automation workers", exc_info=True)
                close_old_connections()
            time.sleep(self.interval)


nudger = Nudger()
