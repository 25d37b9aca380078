"""Tell the workers "events are waiting", coalesced, from a background thread.

The save path only pokes (an in-memory flag); a daemon thread per process turns pokes into at
most one broker call per interval. A nudge is an optimisation, never a requirement: if the
broker is down or hangs, or the process dies before the nudge, the workers' watchdog and the
periodic sweep still find the events. So nothing here may ever block a request or a process
exit for long: broker calls have socket timeouts (settings.py), and at exit we wait at most
EXIT_WAIT seconds for the last nudge.
"""

import atexit
import logging
import os
import threading
import time

from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)
EXIT_WAIT = 1.5


class Nudger:
    interval = 0.02
    idle_close = 1.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._pending = threading.Event()
        self._pid: int | None = None
        self._lock = threading.Lock()
        self._sending = threading.Lock()

    def poke(self) -> None:
        if self._pid != os.getpid():  # first poke in this process (or after a fork)
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
        from crm_automation.automation.runtime.queue import enqueue_drain

        with self._sending:
            if not self._pending.is_set():
                return
            try:
                enqueue_drain()
            except Exception:  # the watchdog and the sweep will pick the events up
                logger.warning("Could not nudge the automation workers; they will find the events "
                               "within seconds anyway", exc_info=True)
                close_old_connections()
            self._pending.clear()  # only now: a process exiting mid-send still sends at exit

    def flush(self, wait: float = EXIT_WAIT) -> bool:
        """At exit: send what is still pending, waiting at most `wait` seconds. Returns whether
        the nudge went out (or nothing was pending) in time."""
        if self._pid != os.getpid() or not self._pending.is_set():
            return True
        done = threading.Event()

        def send_last() -> None:
            try:
                if self._sending.acquire(timeout=wait):
                    self._sending.release()
                    self._send()
            finally:
                done.set()

        threading.Thread(target=send_last, name="automation-nudger-exit", daemon=True).start()
        if not done.wait(wait):
            logger.warning("Exiting without nudging the workers (the broker did not answer within %ss); "
                           "they will find the events within seconds anyway", wait)
            return False
        return True

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
