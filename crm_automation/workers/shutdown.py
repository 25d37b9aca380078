"""A worker cluster asked to stop hands its work back at once instead of finishing its backlog.

django-q2 stops a cluster gracefully: the pusher stops taking tasks, and each worker finishes the
task it runs and the ones already fetched (up to Q_WORKERS² of them). Ours drain until their
time budget (AUTOMATION_DRAIN_SECONDS, 30 s) is spent, so a stop during a busy backlog took
60-90 s: longer than Docker's (10 s) or Kubernetes' (30 s) grace period, which then kill the
workers: the crash path, with an email caught mid-hand-over left "unknown".

So a stop is also a flag every process of the cluster sees: a shared byte made when this
module is imported in the `qcluster` process (Django's setup, before the cluster forks its
sentinel and workers, which inherit it). `manage.py qcluster` (this app:
django-q2's command with this flag added) sets it when it gets SIGTERM or SIGINT, as Docker and
Kubernetes send them: to that first process only. (A worker process that gets SIGTERM itself
dies: django-q2 kills a task past Q_TIMEOUT that way. So under systemd use KillMode=mixed, which
signals the main process and leaves the rest to it; docs/operations.md.)
Work checks `requested()` where it checks its deadline: no new events or runs are claimed, no
further email, webhook or AI call is started; what is left is handed back (queued as a
continuation for the next cluster) exactly as when the time budget runs out. A step in
progress finishes first: nothing is cut in half. A stop that cannot finish because the database
is gone is ended by force within seconds (stop_guard.py).
"""

import multiprocessing
import signal
import time
from collections.abc import Callable

# A byte in shared memory, not a multiprocessing.Event: an Event's checks take a lock shared by
# every process of the cluster, and a worker killed (-9) while holding it would block the others
# for ever. Writing and reading one byte needs no lock.
_STOPPING = multiprocessing.get_context("fork").RawValue("b", 0)


def requested() -> bool:
    return bool(_STOPPING.value)


def request(*_) -> None:
    _STOPPING.value = 1


def past(deadline: float | None) -> bool:
    """Time to stop starting new work: the deadline passed or the cluster is stopping."""
    return bool(_STOPPING.value) or (deadline is not None and time.monotonic() >= deadline)


def chain_signal_handlers(*also: Callable[[], None]) -> None:
    """In the qcluster process, after django-q2 installed its handlers: set the flag first, then
    call `also` (the stop guard, stop_guard.py), then django-q2's handler, which waits for the
    cluster to stop."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(number, frame, previous=previous):
            request()
            for call in also:
                call()
            if callable(previous):
                previous(number, frame)

        signal.signal(signum, handler)
