"""What external actions that write one queued row per step share (an HTTP request's
`WebhookDelivery`, an AI node's `AiCall`): the row is made queued under the step's effect key,
sent or asked after the commit (queued → sending → succeeded / failed), and its status is the
step's outcome. Subclasses name the model, the result key of the row's id and how a row reads
as a step's result."""

from crm_automation.automation.nodes.base import Action

QUEUED, SENDING, SUCCEEDED, FAILED = "queued", "sending", "succeeded", "failed"


class QueuedRowAction(Action):
    external = True
    model = None  # a model with automation_key, status, error and finished_at
    id_key = ""  # the result's key holding the row's id ("delivery_id")
    failed_words = "it failed"  # the error of a failed row that gives none
    stopped_words = "not done"  # "not sent because the run stopped: …"

    @staticmethod
    def result_of(row) -> dict:
        raise NotImplementedError

    def existing(self, keys):
        return {row.automation_key: self.result_of(row) for row in self.model.objects.filter(automation_key__in=keys)}

    def outcome(self, row) -> tuple[bool, dict, str] | None:
        """(ok, result, error) for a settled row; None while it still waits."""
        if row.status == SUCCEEDED:
            return True, self.result_of(row), ""
        if row.status == FAILED:
            return False, self.result_of(row), row.error or self.failed_words
        return None

    def settle_existing(self, result: dict):
        """A resumed run found this step's row. Our lease means a row still `sending` was left by a
        worker that is gone: it is queued to be done again (under the same key), never marked
        done without an answer."""
        self.model.objects.filter(pk=result[self.id_key], status=SENDING).update(status=QUEUED)
        return self.outcome(self.model.objects.get(pk=result[self.id_key]))

    def retry(self, key: str) -> bool:
        """A failed row is queued again under the same key, so trying again is safe."""
        self.model.objects.filter(automation_key=key, status=FAILED).update(status=QUEUED, error="", finished_at=None)
        return True

    def cancel(self, key: str, reason: str) -> None:
        self.model.objects.filter(automation_key=key, status=QUEUED).update(
            status=FAILED, error=f"{self.stopped_words} because the run stopped: {reason}"[:2000])
