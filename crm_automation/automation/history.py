"""A run's visible history: one WorkflowRunAction row per step, written per segment.

Writing history never blocks the work (invariant 7): rows are written in a savepoint, and if
that fails the effects still commit and the run's counters stay right.
"""

import logging

from django.db import DatabaseError, transaction
from django.utils import timezone

from crm_automation.automation.actions import REGISTRY
from crm_automation.automation.models import StepStatus, WorkflowRunAction

logger = logging.getLogger(__name__)
FINISHED_STEPS = {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED}


class Segment:
    """History rows written at the end of one transaction."""

    def __init__(self) -> None:
        self.rows: list[tuple[object, int, dict]] = []

    @staticmethod
    def failure_text(state, position: int, error: str) -> str:
        action = REGISTRY.get(state.steps[position]["type"])
        label = action.label if action else state.steps[position]["type"]
        return f"Step {position + 1} ({label}) failed: {error}"

    def record(self, state, position: int, status: str, *, result=None, error="", ctx=None, started=None,
               new_attempt: bool = True, counts: bool = True) -> None:
        """Note a step's status. Rows are written for every run, even one whose history the plan's
        quota does not keep: they are its cursor (a run that waits or crashes resumes from them)
        and go with the run when it finishes. `counts=False`: not on the path, not an outcome."""
        if status in FINISHED_STEPS and counts:
            state.outcomes.append(status)
        if status == StepStatus.FAILED and not state.failure:
            state.failure = self.failure_text(state, position, error)
        result = dict(result or {})
        if ctx is not None and ctx.notes:
            result["notes"] = ctx.notes
        previous = state.history.get(position)
        now = timezone.now()
        attempts = (previous.attempts if previous else 0) + (1 if new_attempt or not previous else 0)
        values = {"action_type": state.steps[position]["type"], "status": status, "result": result,
                  "error": error[:4000], "attempts": attempts,
                  "started_at": started or (previous.started_at if previous else now),
                  "finished_at": now if status in FINISHED_STEPS else None}
        self.rows.append((state, position, values))

    def flush(self) -> None:
        """Write this segment's history rows: new ones in one INSERT; a step recorded again
        (an email moving from running to completed) replaces its row (one DELETE, one INSERT)."""
        if not self.rows:
            return
        try:
            with transaction.atomic():
                latest = {(state.run.pk, position): (state, position, values)
                          for state, position, values in self.rows}
                replaced = [state.history[pos].pk for state, pos, _ in latest.values()
                            if pos in state.history and state.history[pos].pk]
                if replaced:
                    WorkflowRunAction.objects.filter(pk__in=replaced).delete()
                rows = [WorkflowRunAction(run=state.run, position=position, **values)
                        for state, position, values in latest.values()]
                WorkflowRunAction.objects.bulk_create(rows)
                for row, (state, position, _) in zip(rows, latest.values(), strict=True):
                    state.history[position] = row
        except DatabaseError:
            logger.exception("Could not write run history; the actions themselves are unaffected")
        self.rows = []
