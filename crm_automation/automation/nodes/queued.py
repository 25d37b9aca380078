"""What external actions that write one queued row per step share (an HTTP request's
`WebhookDelivery`, an AI node's `AiCall`): the row is made queued under the step's effect key,
sent or asked after the commit (queued → sending → succeeded / failed), and its status is the
step's outcome. Subclasses name the model, the result key of the row's id and how a row reads
as a step's result."""

from typing import Any, ClassVar, Protocol

from django.db import models

from crm_automation.automation.nodes.base import Action, Outcome, Prepared, Result

QUEUED, SENDING, SUCCEEDED, FAILED = "queued", "sending", "succeeded", "failed"


class QueuedRow(Protocol):
    """The row of a queued effect (what `model` holds)."""

    pk: Any
    automation_key: str
    status: str
    error: str


class QueuedRowAction(Action[Prepared]):
    external = True
    # a model with automation_key, status, error and finished_at
    model: ClassVar[type[models.Model]]
    id_key = ""  # the result's key holding the row's id ("delivery_id")
    failed_words = "it failed"  # the error of a failed row that gives none
    stopped_words = "not done"  # "not sent because the run stopped: …"

    @staticmethod
    def result_of(row: Any, /) -> Result:
        """How a row reads as the step's result."""
        raise NotImplementedError

    def _rows(self) -> "models.QuerySet[Any]":
        return self.model._default_manager.all()

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {row.automation_key: self.result_of(row) for row in self._rows().filter(automation_key__in=keys)}

    def outcome(self, row: QueuedRow) -> Outcome | None:
        """(ok, result, error) for a settled row; None while it still waits."""
        if row.status == SUCCEEDED:
            return True, self.result_of(row), ""
        if row.status == FAILED:
            return False, self.result_of(row), row.error or self.failed_words
        return None

    def settle_existing(self, result: Result) -> Outcome | None:
        """A resumed run found this step's row. Our lease means a row still `sending` was left by a
        worker that is gone: it is queued to be done again (under the same key), never marked
        done without an answer."""
        self._rows().filter(pk=result[self.id_key], status=SENDING).update(status=QUEUED)
        return self.outcome(self._rows().get(pk=result[self.id_key]))

    def retry(self, key: str) -> bool:
        """A failed row is queued again under the same key, so trying again is safe."""
        self._rows().filter(automation_key=key, status=FAILED).update(status=QUEUED, error="", finished_at=None)
        return True

    def cancel(self, key: str, reason: str) -> None:
        self._rows().filter(automation_key=key, status=QUEUED).update(
            status=FAILED, error=f"{self.stopped_words} because the run stopped: {reason}"[:2000])
