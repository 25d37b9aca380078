"""What the email and SMS steps share: an outbox row per step (queued → sending → sent | failed |
unknown, committed with the run's other steps), delivered after the commit one message at a time,
and never sent twice: a message left in `sending` by a worker that is gone is unknown, and one
whose outcome is unknown is never queued again. Subclasses name the model, the result's key of
its row's id, what a message is called, and how a row is marked unknown and delivered."""

from datetime import datetime
from typing import Any, ClassVar

from crm_automation.automation.nodes.base import Action, ExecutionContext, Outcome, Result

QUEUED, SENDING, SENT, FAILED, UNKNOWN = "queued", "sending", "sent", "failed", "unknown"


class OutboxAction(Action[Any]):
    external = True
    model: ClassVar[Any]  # EmailMessage, SmsMessage
    id_key = ""  # "email_id", "sms_id"
    what = ""  # "email", "SMS": how the step's errors name a message

    # The delivery module's (crm/email_delivery.py, crm/sms/delivery.py):
    def mark_unknown(self, pk: int) -> Any:
        """Mark a message left `sending` unknown; the row."""
        raise NotImplementedError

    def deliver_rows(self, ids: list[int], deadline: float | None) -> dict[int, Any]:
        """Send these queued messages until `deadline`: {id: row} of those attempted."""
        raise NotImplementedError

    def in_flight_rows(self, organization_id: int, since: datetime) -> bool:
        """Whether one of the organization's messages is being handed over right now."""
        raise NotImplementedError

    def outcome(self, result: Result, row: Any) -> Outcome | None:
        """(ok, result, error) for a settled message; None while it still waits to be sent."""
        result = {**result, "delivery": row.status}
        if row.status == SENT:
            return True, result, ""
        if row.status in (QUEUED, SENDING):
            return None
        if row.status == UNKNOWN:
            return False, result, f"{self.what} outcome unknown: {row.error}"
        return False, result, f"{self.what} not sent: {row.error}"

    def deliver(self, items: list[tuple[ExecutionContext, Result]], deadline: float | None = None
                ) -> list[Outcome | None]:
        """Send each waiting message (outside any transaction); None for those the deadline left
        unsent: they stay queued and the run is continued by another task."""
        sent = self.deliver_rows([result[self.id_key] for _, result in items], deadline)
        return [None if result[self.id_key] not in sent else self.outcome(result, sent[result[self.id_key]])
                for _, result in items]

    def in_flight(self, organization_id: int, since: datetime) -> bool:
        return self.in_flight_rows(organization_id, since)

    def retry(self, key: str) -> bool:
        """A refused message goes back to the queue; one whose outcome is unknown is never sent again."""
        if self.model.objects.filter(automation_key=key, status__in=[UNKNOWN, SENDING]).exists():
            return False
        self.model.objects.filter(automation_key=key, status=FAILED).update(status=QUEUED, error="")
        return True

    def cancel(self, key: str, reason: str) -> None:
        """A queued message of a run that stopped is never sent: say why; one caught mid-handover
        is unknown, as on any resume."""
        self.model.objects.filter(automation_key=key, status=QUEUED).update(
            status=FAILED, error=f"not sent because the run stopped: {reason}")
        for pk in self.model.objects.filter(automation_key=key, status=SENDING).values_list("pk", flat=True):
            self.mark_unknown(pk)

    def settle_existing(self, result: Result) -> Outcome | None:
        """A resumed run found this step's message. The run's lease is ours, so a message still
        `sending` was left by a worker that is gone: its outcome is unknown, never re-sent."""
        row = self.model.objects.get(pk=result[self.id_key])
        if row.status == SENDING:
            row = self.mark_unknown(row.pk)
        return self.outcome(result, row)
