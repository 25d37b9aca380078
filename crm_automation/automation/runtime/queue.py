"""What we put on the django-q2 broker. Kept apart from the task bodies so that the save
path's nudger can enqueue without importing the engine."""

import os
from typing import Any

from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.humanhash import uuid
from django_q.tasks import async_task as _async_task

_broker: tuple[int, Broker] | None = None


def broker() -> Broker:
    """This process's broker for the tasks it puts on the queue, made once. django-q2 makes one
    for every task it is given: a new Redis client each time, and with the ORM broker its
    connection is handed back and borrowed again (on PostgreSQL, a pooled connection's health
    check and Django's set-up), which the save path's nudger paid on every nudge."""
    global _broker
    if _broker is None or _broker[0] != os.getpid():  # (a forked worker makes its own)
        _broker = (os.getpid(), get_broker())
    return _broker[1]


def async_task(func: str, *args: Any, **kwargs: Any) -> Any:
    """django-q2's `async_task` through this process's broker."""
    return _async_task(func, *args, broker=broker(), **kwargs)

DRAIN_TASK = "crm_automation.automation.runtime.tasks.drain_events"
CONTINUE_TASK = "crm_automation.automation.runtime.tasks.continue_runs"
SWEEP_TASK = "crm_automation.automation.runtime.tasks.sweep"
WATCH_TASK = "crm_automation.automation.runtime.tasks.watch"  # the circuit breaker and the alerts, every minute
IMPACT_TASK = "crm_automation.automation.runtime.tasks.impact_preview"
REGRESSION_TASK = "crm_automation.automation.runtime.tasks.regression_check"


def enqueue_drain() -> None:
    async_task(DRAIN_TASK, **DRAIN_OPTIONS)


DRAIN_OPTIONS: dict[str, Any] = {"save": False, "group": "automation-drain"}


def drain_task() -> dict[str, Any]:
    """A drain task as `enqueue_drain` puts it on the queue (django-q2's `async_task` package),
    for a pusher that hands it to its workers without a queue (workers/pg_broker.py)."""
    name, task_id = uuid()
    return {"id": task_id, "name": name, "func": DRAIN_TASK, "args": (), **DRAIN_OPTIONS, "kwargs": {},
            "started": timezone.now()}


def enqueue_continue(run_ids: list[int]) -> None:
    async_task(CONTINUE_TASK, run_ids, save=False, group="automation-continue")


def enqueue_sweep() -> None:
    async_task(SWEEP_TASK, save=False, group="automation-sweep")


def enqueue_impact(preview_id: int) -> None:
    async_task(IMPACT_TASK, preview_id, save=False, group="automation-impact")


def enqueue_regression(check_id: int) -> None:
    async_task(REGRESSION_TASK, check_id, save=False, group="automation-regression")
