"""Run leases: who may work on a run, kept alive by a heartbeat while the worker lives.

A worker claims runs with a conditional UPDATE that sets an owner token and an expiry. While
it works, a heartbeat thread pushes the expiry forward every third of the lease, so a long run
(a slow email provider, a large group) never loses its lease, and a worker that dies (kill -9,
the task timeout) stops renewing: its runs are free again within one lease (15 s by default)
and the watchdog hands them to another worker.

`attempts` counts the claims that did not end cleanly, plus the current one: a run handed back
because the task's time was up is not counted against the give-up limit.
"""

import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import connections
from django.db.models import F, Q
from django.utils import timezone

from crm_automation.automation.models import RunStatus, WorkflowRun

logger = logging.getLogger(__name__)


def lease_length() -> timedelta:
    return timedelta(seconds=settings.AUTOMATION["LEASE_SECONDS"])


def claim_runs(run_ids: list[int]) -> tuple[str, list[WorkflowRun]]:
    """Lease the runs that are free: unfinished, and never leased or with an expired lease."""
    token = uuid.uuid4().hex
    now = timezone.now()
    WorkflowRun.objects.filter(pk__in=run_ids, status=RunStatus.STARTED).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    ).update(lease_until=now + lease_length(), lease_owner=token, attempts=F("attempts") + 1)
    runs = list(WorkflowRun.objects.filter(pk__in=run_ids, lease_owner=token, status=RunStatus.STARTED)
                .select_related("version", "event", "workflow").order_by("pk"))
    return token, runs


def leased_to(token: str) -> dict[str, object]:
    """The lease fields of a run inserted already claimed by `token` (its first claim: one attempt)."""
    return {"lease_owner": token, "lease_until": timezone.now() + lease_length(), "attempts": 1}


def hand_back(token: str, run_ids: list[int]) -> None:
    """Release runs we stop working on cleanly (time budget spent): free at once, and this
    claim is not counted as a failed attempt."""
    WorkflowRun.objects.filter(pk__in=run_ids, lease_owner=token, status=RunStatus.STARTED).update(
        lease_until=None, lease_owner="", attempts=F("attempts") - 1)


def step_aside(token: str, run_ids: list[int], pause: timedelta) -> None:
    """Release runs that give way to other organizations' work (fairness.py): free again after
    `pause`, when the watchdog resumes them as it does any lapsed lease; not counted as an attempt."""
    WorkflowRun.objects.filter(pk__in=run_ids, lease_owner=token, status=RunStatus.STARTED).update(
        lease_until=timezone.now() + pause, lease_owner="", attempts=F("attempts") - 1)


def back_off(token: str, run_ids: list[int], attempts: int) -> None:
    """Release runs whose execution raised: retried after 5, 10, 20, 40 … seconds."""
    delay = timedelta(seconds=5 * 2 ** max(0, attempts - 1))
    WorkflowRun.objects.filter(pk__in=run_ids, lease_owner=token, status=RunStatus.STARTED).update(
        lease_until=timezone.now() + delay)


def renew(*tokens: str) -> int:
    return WorkflowRun.objects.filter(lease_owner__in=tokens, status=RunStatus.STARTED).update(
        lease_until=timezone.now() + lease_length())


class _Keeper:
    """One thread per process renews the leases of every token held in that process.

    A thread started and joined per execution cost two thread hand-overs each time: 1–3 ms
    of a single change's drain, for a renewal that almost never happens. This one is started
    once (again after a fork: django-q2 forks its workers) and sleeps until a held token is due."""

    def __init__(self) -> None:
        self._due: dict[str, tuple[float, float]] = {}  # token → (next renewal, interval), monotonic
        self._changed = threading.Condition()
        self._renewing = threading.Lock()  # held while a renewal is in flight
        self._starting = threading.Lock()
        self._pid: int | None = None

    def hold(self, token: str, interval: float) -> None:
        if self._pid != os.getpid():  # first hold in this process (or after a fork)
            with self._starting:
                if self._pid != os.getpid():
                    self._changed = threading.Condition()
                    self._renewing = threading.Lock()
                    self._due = {}
                    threading.Thread(target=self._loop, args=(self._changed,), name="lease-heartbeat",
                                     daemon=True).start()
                    self._pid = os.getpid()
        with self._changed:
            self._due[token] = (time.monotonic() + interval, interval)
            self._changed.notify()

    def release(self, token: str) -> None:
        """After this returns, no renewal of the token is in flight or to come: a late beat must
        not overwrite what the caller writes next (a hand-back, a step aside)."""
        got = self._renewing.acquire(timeout=2)
        try:
            with self._changed:
                self._due.pop(token, None)
        finally:
            if got:
                self._renewing.release()

    def _loop(self, changed: threading.Condition) -> None:
        while True:
            with changed:
                now = time.monotonic()
                soonest = min((due for due, _ in self._due.values()), default=None)
                if soonest is None or soonest > now:
                    changed.wait(None if soonest is None else soonest - now)
                    continue
            with self._renewing:
                with changed:
                    now = time.monotonic()
                    tokens = [token for token, (due, _) in self._due.items() if due <= now]
                    for token in tokens:
                        interval = self._due[token][1]
                        self._due[token] = (now + interval, interval)
                if not tokens:
                    continue  # released meanwhile
                try:
                    renew(*tokens)
                except Exception:  # the next beat tries again; the lease is long enough for one miss
                    logger.warning("Could not renew run leases", exc_info=True)
                finally:
                    connections.close_all()  # this thread's own connection: renewals are rare


_keeper = _Keeper()


@contextmanager
def heartbeat(token: str) -> Iterator[None]:
    """Renew the token's leases every third of the lease while the block runs.

    The process's keeper thread touches the database only once a third of the lease has
    passed, so short executions (almost all) cost nothing; it uses its own connection."""
    _keeper.hold(token, settings.AUTOMATION["LEASE_SECONDS"] / 3)
    try:
        yield
    finally:
        _keeper.release(token)
