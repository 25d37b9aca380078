"""A run's visible history: one WorkflowRunAction row per step, written per segment.

Writing history never blocks the work (invariant 7): rows are written in a savepoint, and if
that fails the effects still commit and the run's counters stay right.
"""

import logging

from django.db import DatabaseError, transaction
from django.utils import timezone

from crm_automation.automation.models import StepStatus, WorkflowRunAction
from crm_automation.automation.nodes import REGISTRY

logger = logging.getLogger(__name__)
FINISHED_STEPS = {StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED}


class Segment:
    """History rows written at the end of one transaction."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, tuple[str, str]], tuple[object, tuple[str, str], dict]] = {}

    @staticmethod
    def failure_text(state, place: tuple[str, str], error: str) -> str:
        node = state.node(place[0])
        action = REGISTRY.get(node.type)
        label = node.label or (action.label if action else node.type)
        where = f" in iteration {place[1]}" if place[1] else ""
        return f"Step {node.index + 1} ({label}){where} failed: {error}"

    def has(self, state, place: tuple[str, str], *, finished: bool = False) -> bool:
        """Whether this segment recorded the place (as finished, if asked)."""
        entry = self.rows.get((state.run.pk, place))
        return entry is not None and (not finished or entry[2]["status"] in FINISHED_STEPS)

    def record(self, state, place: tuple[str, str], status: str, *, result=None, error="", ctx=None,
               started=None, new_attempt: bool = True, counts: bool = True) -> None:
        """Note a step's status. Rows are written for every run, even one whose history the plan's
        quota does not keep: they are its cursor (a run that waits or crashes resumes from them)
        and go with the run when it finishes. `counts=False`: not an outcome of the run."""
        if status in FINISHED_STEPS and counts:
            state.outcomes.append(status)
        if status == StepStatus.FAILED and not state.failure:
            state.failure = self.failure_text(state, place, error)
        result = dict(result or {})
        if status == StepStatus.COMPLETED:
            state.remember(place, result)
        if ctx is not None and ctx.notes:
            result["notes"] = ctx.notes
        previous = state.history.get(place)
        earlier = self.rows.get((state.run.pk, place))
        now = timezone.now()
        attempts = (previous.attempts if previous else 0) + (1 if new_attempt or not previous else 0)
        if earlier is not None:  # recorded twice in one segment (a loop's start and end)
            attempts, position, first = earlier[2]["attempts"], earlier[2]["position"], earlier[2]["started_at"]
        else:
            position = previous.position if previous else state.next_position
            if previous is None:
                state.next_position += 1
            first = previous.started_at if previous else now
        values = {"action_type": state.node(place[0]).type, "status": status, "result": result,
                  "input": state.step_input(place),
                  "error": error[:4000], "attempts": attempts, "position": position,
                  "started_at": started or first,
                  "finished_at": now if status in FINISHED_STEPS else None}
        self.rows[(state.run.pk, place)] = (state, place, values)

    def flush(self) -> None:
        """Write this segment's history rows: new ones in one INSERT; a step recorded again
        (an email moving from running to completed) replaces its row (one DELETE, one INSERT)."""
        if not self.rows:
            return
        try:
            with transaction.atomic():
                latest = list(self.rows.values())
                replaced = [state.history[place].pk for state, place, _ in latest
                            if place in state.history and state.history[place].pk]
                if replaced:
                    WorkflowRunAction.objects.filter(pk__in=replaced).delete()
                rows = [WorkflowRunAction(run=state.run, node_id=place[0], token=place[1], **values)
                        for state, place, values in latest]
                WorkflowRunAction.objects.bulk_create(rows)
                for row, (state, place, _) in zip(rows, latest, strict=True):
                    state.history[place] = row
        except DatabaseError:
            logger.exception("Could not write run history; the actions themselves are unaffected")
        self.rows = {}
