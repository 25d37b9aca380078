"""A watchdog thread in every worker process: work nobody is doing is noticed within seconds.

django-q2's scheduler runs schedules at most once a minute, so the minute sweep alone would
leave a run whose worker died waiting up to 1½ minutes (after its 15 s lease). Each worker
process therefore starts this thread when django-q2 spawns it (the `post_spawn` signal): every
AUTOMATION_WATCHDOG_SECONDS it asks two indexed questions — is there an unfinished run nobody
holds, an event nobody was told about? — and if so queues one sweep. Dies with its process.
"""

import logging
import os
import random
import threading
import time

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


def work_is_waiting() -> bool:
    from crm_automation.automation.tasks import abandoned_runs, forgotten_events

    return abandoned_runs().exists() or forgotten_events().exists()


def _watch(interval: float) -> None:
    from crm_automation.automation.queue import enqueue_sweep

    while True:
        # Jitter spreads the workers' checks, so N workers do not all ask at the same instant.
        time.sleep(interval * random.uniform(0.8, 1.2))
        try:
            close_old_connections()
            if work_is_waiting():
                enqueue_sweep()
        except Exception:  # a database or broker outage: look again next time
            logger.warning("Automation watchdog check failed", exc_info=True)


def start_watchdog(sender=None, proc_name: str = "", **kwargs) -> None:
    """Receiver of django-q2's `post_spawn`, sent in each new worker process."""
    interval = settings.AUTOMATION["WATCHDOG_SECONDS"]
    threading.Thread(target=_watch, args=(interval,), name="automation-watchdog", daemon=True).start()
    logger.info("Automation worker (pid %s) is up; it checks for waiting work every %s s", os.getpid(), interval)
