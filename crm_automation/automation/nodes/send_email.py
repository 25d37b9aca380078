from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from crm_automation.automation.nodes.base import ActionFailed, ExecutionContext, Result
from crm_automation.automation.nodes.create_task import linked_deal, linked_lead
from crm_automation.automation.nodes.outbox import OutboxAction
from crm_automation.bulk_insert import bulk_insert
from crm_automation.crm.email_delivery import email_mark_unknown, emails_deliver, emails_in_flight
from crm_automation.crm.models import EmailMessage

Status = EmailMessage.Status


class SendEmail(OutboxAction):
    """Writes a queued outbox row (committed with the run's other steps); after the commit the
    engine delivers it through `email_delivery`, one message at a time, each outcome recorded as
    it happens. A run resumed after a crash sends what is still queued and reports a message
    left in `sending` as unknown, never sending it twice."""

    type = "send_email"
    label = "Send email"
    model, id_key, what = EmailMessage, "email_id", "email"
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
            status=Status.QUEUED, automation_key=ctx.key, run_id=ctx.run_id,
        )

    @staticmethod
    def _result(email: EmailMessage) -> Result:
        return {"email_id": email.pk, "to": email.to, "subject": email.subject}

    def apply(self, items: list[tuple[ExecutionContext, EmailMessage]]) -> list[Result]:
        return [self._result(e) for e in bulk_insert([email for _, email in items])]

    def existing(self, keys: list[str]) -> dict[str, Result]:
        return {email.automation_key: self._result(email)
                for email in EmailMessage.objects.filter(automation_key__in=keys)
                if email.automation_key is not None}  # (none is None: filtered on)

    def mark_unknown(self, pk: int) -> Any:
        return email_mark_unknown(email_id=pk)

    def deliver_rows(self, ids: list[int], deadline: float | None) -> dict[int, Any]:
        return emails_deliver(email_ids=ids, deadline=deadline)

    def in_flight_rows(self, organization_id: int, since: datetime) -> bool:
        return emails_in_flight(organization_id=organization_id, since=since)
