from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, Outcome, Result
from crm_automation.automation.nodes.create_task import linked_deal, linked_lead
from crm_automation.crm.email_delivery import email_mark_unknown, emails_deliver, emails_in_flight
from crm_automation.crm.models import EmailMessage

Status = EmailMessage.Status


class SendEmail(Action[EmailMessage]):
    """Writes a queued outbox row (committed with the run's other steps); after the commit the
    engine delivers it through `email_delivery`, one message at a time, each outcome recorded as
    it happens. A run resumed after a crash sends what is still queued and reports a message
    left in `sending` as unknown, never sending it twice."""

    type = "send_email"
    label = "Send email"
    external = True
    required = ("to", "subject")
    optional = ("body",)
    templated = ("to", "subject", "body")

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        to, subject = config.get("to"), config.get("subject")
        if isinstance(to, str) and to and "{{" not in to:
            try:
                validate_email(to)
            except ValidationError:
                errors.append(("config.to", f"“{to}” is not an email address"))
        if isinstance(subject, str) and ("\n" in subject or "\r" in subject):
            errors.append(("config.subject", "must be a single line (no line breaks)"))
        return errors

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> EmailMessage:
        to = ctx.render("to", config["to"]).strip()
        if not to:
            why = ctx.why_empty(config["to"])
            raise ActionFailed(f"{why}, so there is no recipient" if why else "the recipient rendered empty")
        try:
            validate_email(to)
        except ValidationError:
            raise ActionFailed(f"the recipient “{to}” is not an email address") from None
        # A value with a line break would be refused by the provider as a header injection.
        subject = " ".join(ctx.render("subject", config["subject"]).split())
        return EmailMessage(
            organization_id=ctx.organization_id, to=to, subject=subject[:300],
            body=ctx.render("body", config.get("body", "")),
            deal=linked_deal(ctx.record), lead=linked_lead(ctx.record),
            status=Status.QUEUED, automation_key=ctx.key,
        )

    @staticmethod
    def _result(email: EmailMessage) -> Result:
        return {"email_id": email.pk, "to": email.to, "subject": email.subject}

    def apply(self, items: list[tuple[ExecutionContext, EmailMessage]]) -> list[Result]:
        return [self._result(e) for e in EmailMessage.objects.bulk_create([email for _, email in items])]

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {email.automation_key: self._result(email)
                for email in EmailMessage.objects.filter(automation_key__in=keys)
                if email.automation_key is not None}  # (none is None: filtered on)

    @staticmethod
    def outcome(result: Result, email: EmailMessage) -> Outcome | None:
        """(ok, result, error) for a settled email; None while it still waits to be sent."""
        result = {**result, "delivery": email.status}
        if email.status == Status.SENT:
            return True, result, ""
        if email.status in (Status.QUEUED, Status.SENDING):  # not settled yet
            return None
        if email.status == Status.UNKNOWN:
            return False, result, f"email outcome unknown: {email.error}"
        return False, result, f"email not sent: {email.error}"

    def deliver(self, items: list[tuple[ExecutionContext, Result]], deadline: float | None = None
                ) -> list[Outcome | None]:
        """Send each waiting email (outside any transaction); None for those the deadline left
        unsent: they stay queued and the run is continued by another task."""
        ids = [result["email_id"] for _, result in items]
        sent = emails_deliver(email_ids=ids, deadline=deadline)
        return [None if result["email_id"] not in sent else self.outcome(result, sent[result["email_id"]])
                for _, result in items]

    def in_flight(self, organization_id: int, since: datetime) -> bool:
        return emails_in_flight(organization_id=organization_id, since=since)

    def retry(self, key: str) -> bool:
        """A refused email goes back to the queue; one whose outcome is unknown is never re-sent."""
        if EmailMessage.objects.filter(automation_key=key, status__in=[Status.UNKNOWN, Status.SENDING]).exists():
            return False
        EmailMessage.objects.filter(automation_key=key, status=Status.FAILED).update(status=Status.QUEUED, error="")
        return True

    def cancel(self, key: str, reason: str) -> None:
        """A queued email of a run that stopped is never sent: say why; one caught mid-handover
        is unknown, as on any resume."""
        EmailMessage.objects.filter(automation_key=key, status=Status.QUEUED).update(
            status=Status.FAILED, error=f"not sent because the run stopped: {reason}")
        for email_id in EmailMessage.objects.filter(automation_key=key, status=Status.SENDING).values_list(
                "pk", flat=True):
            email_mark_unknown(email_id=email_id)

    def settle_existing(self, result: Result) -> Outcome | None:
        """A resumed run found this step's email. The run's lease is ours, so an email still in
        `sending` was left by a worker that is gone: its outcome is unknown, never re-sent."""
        email = EmailMessage.objects.get(pk=result["email_id"])
        if email.status == Status.SENDING:
            email = email_mark_unknown(email_id=email.pk)
        return self.outcome(result, email)
