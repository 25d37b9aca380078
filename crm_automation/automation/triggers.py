"""The save path: record each CRM change as an outbox row, and nothing else (invariant 1).

The receiver adds one INSERT to the change's own transaction (a bulk INSERT for bulk
services). After commit it pokes the in-process nudger, which tells the workers from a
background thread, so a request never waits for the broker.
"""

import atexit
import contextvars
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections, connections, router, transaction

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


_EVENT_COLUMNS = ("organization_id", "kind", "entity_type", "entity_id", "payload", "depth", "caused_by_run_id")
_INSERT_EVENT = "INSERT INTO {} ({}) VALUES ({})".format(
    AutomationEvent._meta.db_table, ", ".join(_EVENT_COLUMNS), ", ".join(["%s"] * len(_EVENT_COLUMNS))
)
_ENTITY_ID = AutomationEvent._meta.get_field("entity_id")
_PAYLOAD = AutomationEvent._meta.get_field("payload")


def _insert_event(change, depth: int, run_id: int | None) -> None:
    """One plain INSERT, no RETURNING and no model machinery: this runs on every save and the
    ORM's per-row overhead was a third of the whole cost (see benchmarks/run.py, part a).
    The UUID and JSON values are prepared by their fields, as the ORM would; created_at is
    the database's default."""
    connection = connections[router.db_for_write(AutomationEvent)]
    params = (change.organization_id, change.kind, change.entity_type,
              _ENTITY_ID.get_db_prep_save(change.entity_id, connection),
              _PAYLOAD.get_db_prep_save(change.payload, connection), depth, run_id)
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_EVENT, params)


def record_changes(sender, changes, **kwargs) -> None:
    cause = _cause.get()
    depth = 0 if cause is None else cause.depth + 1
    run_id = None if cause is None else cause.run_id
    if len(changes) == 1:
        _insert_event(changes[0], depth, run_id)
    else:
        AutomationEvent.objects.bulk_create(
            [AutomationEvent(organization_id=c.organization_id, kind=c.kind, entity_type=c.entity_type,
                             entity_id=c.entity_id, payload=c.payload, depth=depth, caused_by_run_id=run_id)
             for c in changes],
            batch_size=1000,
        )
    if settings.AUTOMATION["NUDGE"]:
        transaction.on_commit(nudger.poke)


class Nudger:
    """Coalesces "events are waiting" pokes into at most one worker task per interval.

    Runs in a daemon thread per process (re-created after a fork). A poke still pending when
    the process exits (a management command, a script) is sent at exit. If the broker is down
    or the process dies before it nudges, the periodic sweep still finds the events.
    """

    interval = 0.02
    idle_close = 1.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._pending = threading.Event()
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._sending = threading.Lock()

    def poke(self) -> None:
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._wake = threading.Event()
                    self._pending = threading.Event()
                    self._sending = threading.Lock()
                    threading.Thread(target=self._loop, name="automation-nudger", daemon=True).start()
                    if self._pid is None:
                        atexit.register(self.flush)
                    self._pid = os.getpid()
        self._pending.set()
        self._wake.set()

    def _send(self) -> None:
        from crm_automation.automation.tasks import enqueue_drain

        with self._sending:
            if not self._pending.is_set():
                return
            try:
                enqueue_drain()
            except Exception:  # the sweep will pick the events up
                logger.warning("Could not nudge the automation workers", exc_info=True)
                close_old_connections()
            self._pending.clear()  # only now: a process exiting mid-send still sends at exit

    def flush(self) -> None:
        """At exit: wait for a send in progress, then send what is still pending."""
        if self._pid == os.getpid() and self._pending.is_set() and self._sending.acquire(timeout=5):
            self._sending.release()
            self._send()

    def _loop(self) -> None:
        wake = self._wake
        while True:
            if not wake.wait(timeout=self.idle_close):
                connections.close_all()  # idle: give this thread's database connection back
                wake.wait()
            wake.clear()
            self._send()
            time.sleep(self.interval)


nudger = Nudger()
