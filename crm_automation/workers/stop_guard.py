"""A stop that cannot hang: SIGTERM ends the cluster within seconds even when its database is gone.

django-q2 stops a cluster by waiting: the sentinel waits for its pusher to stop pulling tasks and
for every worker to finish, and the qcluster process waits for the sentinel. Each of them may be
inside a database call at that moment (the ORM broker's pull, a task's query, the monitor saving
a result), and a database behind a dropped network never answers one: no error, no timeout. The
cluster then ignored SIGTERM until someone killed it.

So the `qcluster` process watches its own stop (a thread started by the first SIGTERM/SIGINT):

- while the stop goes on, it asks the database `SELECT 1` on a fresh connection every
  PROBE_EVERY seconds, giving each ask PROBE_TIMEOUT seconds. Two unanswered asks in a row: the
  workers cannot hand anything back anyway (handing back is a database write), so the cluster's
  processes are killed (SIGKILL) and qcluster exits with status 1. Runs they held are resumed
  by other workers once their leases expire, as after any crash (leases.py);
- a database that answers gets the graceful stop (workers/shutdown.py), but never longer than
  Q_TIMEOUT, past which django-q2 would kill a task itself.

A healthy cluster stops in a few seconds and never meets the guard.
"""

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)
PROBE_TIMEOUT = 2.0
PROBE_EVERY = 0.5
MISSES = 2  # unanswered asks in a row that mean "the database is gone"
FORCED_EXIT = 1


def database_answers(timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the database answers SELECT 1 within `timeout`, asked from a thread of its own on a
    connection of its own (Django's are per thread): a connect or a query into a dropped network
    can block for minutes, and the thread is then left behind (a daemon: it dies with us)."""
    answered = threading.Event()

    def ask() -> None:
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
            answered.set()
        except Exception:  # noqa: BLE001 (refused, reset, authentication: all mean "no answer")
            pass
        finally:
            connections.close_all()

    thread = threading.Thread(target=ask, name="stop-guard-probe", daemon=True)
    thread.start()
    thread.join(timeout)  # a refused connection fails at once; a dropped network takes the whole timeout
    return answered.is_set()


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children first found, then theirs), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # after "pid (comm) state"
        parents.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in parents.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


class StopGuard:
    """Started by the qcluster process's SIGTERM/SIGINT handler (shutdown.chain_signal_handlers)."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._forcing = threading.Event()
        self._forced = threading.Event()

    def start(self) -> None:
        if self._thread is None:  # a second signal changes nothing
            self._thread = threading.Thread(target=self._watch, name="stop-guard", daemon=True)
            self._thread.start()

    def keep_forced_exit(self) -> None:
        """Called once the cluster's sentinel has ended. Killing the sentinel frees the main thread,
        which would then exit 0 while the killed processes are still dying: a forced stop instead
        waits here for the guard, which exits 1 once they are gone."""
        if self._forcing.is_set():
            self._forced.wait(10)
            os._exit(FORCED_EXIT)

    def _watch(self) -> None:
        give_up_at = time.monotonic() + settings.Q_CLUSTER["timeout"]
        misses = 0
        while True:
            if time.monotonic() >= give_up_at:
                self._force(f"it was still stopping after Q_TIMEOUT ({settings.Q_CLUSTER['timeout']} s)")
            misses = 0 if database_answers() else misses + 1
            if misses >= MISSES:
                self._force(f"its database did not answer ({MISSES} tries, {PROBE_TIMEOUT:.0f} s each), so its "
                            "workers could not hand their work back")
            time.sleep(PROBE_EVERY)

    def _force(self, reason: str) -> None:
        self._forcing.set()
        logger.error("The worker cluster was asked to stop and %s: its processes are killed. Runs they held are "
                     "resumed by other workers once their leases expire.", reason)
        killed = descendants(os.getpid())
        for pid in killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(killed)
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._forced.set()
        os._exit(FORCED_EXIT)  # the main thread may itself be waiting on the dead cluster


def _wait_gone(pids: list[int], within: float = 5.0) -> None:
    """Wait until the killed processes are gone, so that whoever restarts the cluster on our exit
    never finds the old one still running beside the new: SIGKILL is delivered at once, but a
    process takes a moment to die (its memory is released first). Our own children are reaped;
    the workers, the sentinel's children, go to init when the sentinel dies."""
    deadline = time.monotonic() + within
    waiting = set(pids)
    while waiting and time.monotonic() < deadline:
        for pid in list(waiting):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if _gone(pid):
                waiting.discard(pid)
        if waiting:
            time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2:].split()[0] in {"Z", "X"}  # dead, waiting only to be reaped
