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
import threading
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


def renew(token: str) -> int:
    return WorkflowRun.objects.filter(lease_owner=token, status=RunStatus.STARTED).update(
        lease_until=timezone.now() + lease_length())


@contextmanager
def heartbeat(token: str) -> Iterator[None]:
    """Renew the token's leases every third of the lease while the block runs.

    The thread touches the database only once a third of the lease has passed, so short
    executions (almost all) cost nothing; it uses its own connection and closes it."""
    stop = threading.Event()
    interval = settings.AUTOMATION["LEASE_SECONDS"] / 3

    def beat() -> None:
        try:
            while not stop.wait(interval):
                try:
                    renew(token)
                except Exception:  # the next beat tries again; the lease is long enough for one miss
                    logger.warning("Could not renew run leases", exc_info=True)
        finally:
            connections.close_all()

    thread = threading.Thread(target=beat, name=f"lease-heartbeat-{token[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)  # a beat in flight must not overwrite what the caller writes next
