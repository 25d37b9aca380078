"""django-q2's ORM broker, woken by PostgreSQL's LISTEN/NOTIFY instead of polling.

The stock ORM broker finds a new task by polling its table every `poll` seconds (0.05 here): on
average half of that between a nudge and a worker starting it, and twenty queries a second per
idle cluster. On PostgreSQL, a trigger on the task table sends a notification when a task's
INSERT commits (migration automation 0004: no extra statement per enqueue, whoever enqueues),
and an idle `dequeue` waits for one on a connection of its own, for at most WAIT_SECONDS: a
task reaches a worker within a few milliseconds, and an idle cluster looks once a second.
Nothing relies on a notification: a task is still a row, found by the next look if a
notification is lost, and a task whose lock expired (a worker died) is found the same way. A
pusher that cannot listen (the connection fails) polls as the stock broker does. A look locks
and returns its tasks in one statement (`_take`).

The pusher also listens for new events: a trigger on the outbox notifies EVENTS_CHANNEL when
events commit (migration automation 0011), and the pusher hands its workers a drain task of its
own making (`_with_drain`), so a saved change reaches a worker without a nudge through the queue
(the save path sends none: settings AUTOMATION["EVENTS_NOTIFY"]). A pusher that cannot listen
hands out a drain every POLLED_DRAIN_SECONDS instead.

Used when the ORM broker runs on PostgreSQL (settings.py, Q_LISTEN); SQLite keeps the stock broker.
"""

import contextlib
import logging
import os
import time
from hashlib import md5
from typing import Any

import psycopg
from django.db import connections
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage
from psycopg import sql

from crm_automation.automation.runtime.nudger import Nudger
from crm_automation.automation.runtime.queue import drain_task

logger = logging.getLogger(__name__)
WAIT_SECONDS = 1.0  # the longest an idle pusher waits before it looks again (and sees a stop)
RETRY_SECONDS = 30.0  # after a failed attempt to listen, poll this long before trying again
EVENTS_CHANNEL = "crm_automation_events"  # notified when events are written (automation migration 0011)
DRAIN_INTERVAL = Nudger.interval  # at most one drain handed out this often, as the nudger sends them
POLLED_DRAIN_SECONDS = 1.0  # a pusher that cannot listen hands out a drain this often


_TAKE = (f'UPDATE "{OrmQ._meta.db_table}" SET "lock" = %s WHERE "id" IN (SELECT "id" FROM "{OrmQ._meta.db_table}" '
         'WHERE "key" = %s AND "lock" < %s ORDER BY "id" LIMIT %s FOR UPDATE SKIP LOCKED) AND "lock" < %s '
         'RETURNING "id", "payload"')


def channel_of(list_key: str) -> str:
    """The queue's channel, as the trigger names it: an identifier of 29 characters whatever the
    cluster's name (md5 only names a channel here; nothing depends on it being hard to invert)."""
    return "django_q_" + md5(list_key.encode(), usedforsecurity=False).hexdigest()[:20]


class ListeningORM(ORM):
    def __init__(self, list_key: str = Conf.PREFIX) -> None:
        super().__init__(list_key=list_key)
        self._listener: psycopg.Connection[Any] | None = None
        self._listener_pid: int | None = None
        self._retry_at = 0.0
        self._drain_owed = False  # events were written since the last drain handed out
        self._drained_at = -DRAIN_INTERVAL  # when the last one was (time.monotonic())
        self._looked_at = -WAIT_SECONDS  # when the queue was last looked at (time.monotonic())
        self._full = False  # and that look took a whole batch: more may wait

    def dequeue(self) -> Any:
        listener = self._listening()
        if listener is None:
            # Nobody tells a pusher that cannot listen about new events: a drain every
            # POLLED_DRAIN_SECONDS, the watchdog's job otherwise (AUTOMATION WATCHDOG_SECONDS).
            self._drain_owed |= time.monotonic() - self._drained_at >= POLLED_DRAIN_SECONDS
            return self._with_drain(super().dequeue())  # looks, and sleeps `poll` if nothing is there
        # Look when the queue's channel spoke (what came before this look is seen by it), when
        # the last look filled a batch, or once a WAIT_SECONDS: a task whose notification was
        # lost, or whose worker died, is found. Events alone never make it look: under load a
        # notification comes with every run's commit, and each would have cost a query.
        tasks = self._take() if self._hear(listener, timeout=0) or self._look_due() else []
        deadline = time.monotonic() + WAIT_SECONDS
        while not tasks and not self._drain_due() and self._listener is not None:
            until = min(deadline, self._drained_at + DRAIN_INTERVAL) if self._drain_owed else deadline
            wait = until - time.monotonic()
            if wait <= 0:
                if not self._drain_owed:
                    tasks = self._take()  # waited WAIT_SECONDS for nothing: look anyway
                break
            if self._hear(listener, timeout=wait, stop_after=1) and self._listener is not None:
                tasks = self._take()  # (if listening failed, the next dequeue polls)
        return self._with_drain(tasks)

    def _look_due(self) -> bool:
        return self._full or time.monotonic() - self._looked_at >= WAIT_SECONDS

    def _hear(self, listener: psycopg.Connection[Any], *, timeout: float, stop_after: int | None = None) -> bool:
        """Take the notifications that came (waiting up to `timeout` for the first if none has):
        new events make a drain owed. True if the queue's channel was among them."""
        queue = False
        try:
            for notify in listener.notifies(timeout=timeout, stop_after=stop_after):
                if notify.channel == EVENTS_CHANNEL:
                    self._drain_owed = True
                else:
                    queue = True
        except psycopg.Error:
            logger.warning("The task queue's listening connection failed; polling until it is back",
                           exc_info=True)
            self._close_listener()
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._drain_owed = True  # (events may have come unheard)
            time.sleep(Conf.POLL)
            return True  # look again
        return queue

    def _drain_due(self) -> bool:
        return self._drain_owed and time.monotonic() - self._drained_at >= DRAIN_INTERVAL

    def _with_drain(self, tasks: list[tuple[Any, Any]] | None) -> list[tuple[Any, Any]] | None:
        """The tasks taken, and a drain of the outbox if one is due: handed to the workers
        straight from here (no row, no acknowledgement: the ack id is None), at most one per
        DRAIN_INTERVAL, as the save path's nudger sends them. One owed meanwhile is handed out
        when the interval ends: a drain ends when it finds nothing more (runtime/tasks.py), so
        every event written after a drain looked must be followed by another one."""
        if not self._drain_due():
            return tasks or None
        self._drain_owed, self._drained_at = False, time.monotonic()
        return [*(tasks or []), (None, SignedPackage.dumps(drain_task()))]

    def enqueue(self, task: Any) -> Any:
        """The stock enqueue without its `close_old_connections()` first: with the pool and
        CONN_MAX_AGE 0 (settings.py) that handed the caller's connection back to the pool and
        borrowed one again for the INSERT, a health check's round trip and Django's connection
        set-up for every task put on the queue (every nudge of the save path's nudger: about
        1 ms of its CPU). Each caller's connection is looked after where it lives: requests and
        tasks by Django and django-q2, the nudger's by its idle close and after a failed nudge."""
        return OrmQ.objects.using(Conf.ORM).create(key=self.list_key or Conf.CLUSTER_NAME, payload=task,
                                                   lock=timezone.now()).pk

    def _take(self) -> list[tuple[Any, Any]]:
        """The stock broker's look without its sleep, in one statement: lock up to `bulk` waiting
        tasks, oldest first, and return them. The stock look reads them, then locks each with a
        conditional UPDATE of its own (two round trips for a task). SKIP LOCKED and the
        re-checked `lock` do what its condition did: a task is never handed to two pushers."""
        self.get_connection()  # (as the stock broker: stale connections closed first)
        now = timezone.now()
        with connections[Conf.ORM].cursor() as cursor:
            cursor.execute(_TAKE, [self.timeout(None), self.list_key, now, Conf.BULK, now])
            taken = sorted(cursor.fetchall())
        self._looked_at, self._full = time.monotonic(), len(taken) >= Conf.BULK
        return taken

    def _listening(self) -> psycopg.Connection[Any] | None:
        """This process's listening connection (a forked pusher opens its own), or None."""
        if self._listener is not None and self._listener_pid == os.getpid() and not self._listener.closed:
            return self._listener
        self._listener = None
        if time.monotonic() < self._retry_at:
            return None
        params = connections[Conf.ORM].get_connection_params()
        for key in ("cursor_factory", "context", "prepare_threshold"):  # Django's own, not libpq's
            params.pop(key, None)
        params.setdefault("connect_timeout", 2)  # (unless the database URL sets its own)
        params["autocommit"] = True
        try:
            listener = psycopg.connect(**params)
            for channel in (channel_of(self.list_key), EVENTS_CHANNEL):
                listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except Exception:  # whatever stops it from listening, the pusher polls instead of dying
            logger.warning("Could not listen for new tasks; polling for %ss", RETRY_SECONDS, exc_info=True)
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return None
        self._listener, self._listener_pid = listener, os.getpid()
        # Events written while nobody listened (the cluster was down, the connection had failed)
        # notified no one: one drain looks for them now, not the watchdog seconds later.
        self._drain_owed = True
        return listener

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
        self._listener = None
