"""What we put on the django-q2 broker. Kept apart from the task bodies so that the save
path's nudger can enqueue without importing the engine."""

from django_q.tasks import async_task

DRAIN_TASK = "crm_automation.automation.runtime.tasks.drain_events"
CONTINUE_TASK = "crm_automation.automation.runtime.tasks.continue_runs"
SWEEP_TASK = "crm_automation.automation.runtime.tasks.sweep"
WATCH_TASK = "crm_automation.automation.runtime.tasks.watch"  # the circuit breaker and the alerts, every minute
IMPACT_TASK = "crm_automation.automation.runtime.tasks.impact_preview"
REGRESSION_TASK = "crm_automation.automation.runtime.tasks.regression_check"


def enqueue_drain() -> None:
    async_task(DRAIN_TASK, save=False, group="automation-drain")


def enqueue_continue(run_ids: list[int]) -> None:
    async_task(CONTINUE_TASK, run_ids, save=False, group="automation-continue")


def enqueue_sweep() -> None:
    async_task(SWEEP_TASK, save=False, group="automation-sweep")


def enqueue_impact(preview_id: int) -> None:
    async_task(IMPACT_TASK, preview_id, save=False, group="automation-impact")


def enqueue_regression(check_id: int) -> None:
    async_task(REGRESSION_TASK, check_id, save=False, group="automation-regression")
