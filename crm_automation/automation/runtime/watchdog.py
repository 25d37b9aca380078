"""A watchdog thread in every worker process: work nobody is doing is noticed within seconds.

django-q2's scheduler runs schedules at most once a minute, so the minute sweep alone would
leave a run whose worker died waiting up to 1½ minutes (after its 15 s lease). Each worker
process therefore starts this thread when django-q2 spawns it (the `post_spawn` signal). Every
AUTOMATION_WATCHDOG_SECONDS it asks indexed questions and queues one sweep when work is stuck:

- a run whose lease expired: its worker is dead (live workers renew theirs), or it stepped
  aside for another organization and its pause is over (fairness.py) — sweep now;
- a waiting run whose wake-up time has come — sweep now (it wakes it);
- the oldest event nobody holds, or the oldest run nobody leased, is the same one as at the
  last look: nothing is moving it (its nudge or its continuation task was lost) — sweep.
  During a busy backlog the oldest waiting item changes from look to look as the drains take
  them in order, so a backlog that is being worked on does not set off extra sweeps.

Every AUTOMATION_HEARTBEAT_SECONDS (30) it also touches the process's heartbeat row, so
operators can see which workers are alive (`manage.py automation_status`, health.py).
"""

import logging
import os
import random
import threading
import time

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

logger = logging.getLogger(__name__)


class Watch:
    def __init__(self) -> None:
        self.last_event: int | None = None
        self.last_run: int | None = None

    def work_is_stuck(self) -> bool:
        from crm_automation.automation.models import RunStatus, WorkflowRun
        from crm_automation.automation.runtime.tasks import abandoned_runs, forgotten_events

        now = timezone.now()
        if WorkflowRun.objects.filter(status=RunStatus.STARTED, lease_until__lt=now).exists():
            return True  # a worker died
        if WorkflowRun.objects.filter(status=RunStatus.WAITING, wake_at__lte=now).exists():
            return True  # a wait is over
        from crm_automation.crm.models import SmsMessage

        if WorkflowRun.objects.filter(status=RunStatus.WAITING, pk__in=SmsMessage.objects.filter(
                replied_at__isnull=False, reply_seen=False, run_id__isnull=False).values("run_id")).exists():
            return True  # a reply came while its run was busy (so it was not woken)
        event = forgotten_events().order_by("pk").values_list("pk", flat=True).first()
        run = abandoned_runs().filter(lease_until__isnull=True).order_by("pk").values_list("pk", flat=True).first()
        stuck = (event is not None and event == self.last_event) or (run is not None and run == self.last_run)
        self.last_event, self.last_run = event, run
        return stuck


def _warm_up() -> None:
    """Compile the drain's queries here, beside the worker, so that the first change it takes
    after starting (or after django-q2 recycles it) does not wait for them (compiled_query.py)."""
    from crm_automation import compiled_query
    from crm_automation.automation.runtime import tasks  # noqa: F401  (the modules that define them)

    try:
        compiled = compiled_query.warm_up()
        logger.debug("Compiled %s queries ahead of the first change", compiled)
    except Exception:  # an outage: they are compiled on first use instead
        logger.warning("Could not compile the drain's queries ahead of time", exc_info=True)


def _watch(interval: float) -> None:
    from crm_automation.automation.ops.health import heartbeat
    from crm_automation.automation.runtime.queue import enqueue_sweep

    watch = Watch()
    started_at, beat_every, next_beat = timezone.now(), settings.HEALTH["HEARTBEAT_SECONDS"], 0.0
    _warm_up()
    while True:
        # Jitter spreads the workers' checks, so N workers do not all ask at the same instant.
        time.sleep(interval * random.uniform(0.8, 1.2))
        try:
            close_old_connections()
            if time.monotonic() >= next_beat:  # operators see this worker (automation_status)
                heartbeat(started_at)
                next_beat = time.monotonic() + beat_every
            if watch.work_is_stuck():
                enqueue_sweep()
        except Exception:  # a database or broker outage: look again next time
            logger.warning("Automation watchdog check failed", exc_info=True)


def start_watchdog(sender: object = None, proc_name: str = "", **kwargs: object) -> None:
    """Receiver of django-q2's `post_spawn`, sent in each new worker process."""
    interval = settings.AUTOMATION["WATCHDOG_SECONDS"]
    threading.Thread(target=_watch, args=(interval,), name="automation-watchdog", daemon=True).start()
    logger.info("Automation worker (pid %s) is up; it checks for waiting work every %s s", os.getpid(), interval)
