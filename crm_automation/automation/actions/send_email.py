from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from crm_automation.automation.actions.base import Action, ActionFailed, ExecutionContext
from crm_automation.automation.actions.create_task import linked_deal, linked_lead
from crm_automation.crm.models import EmailMessage
from crm_automation.crm.services import email_mark_interrupted, emails_send_claimed


class SendEmail(Action):
    """Writes an outbox row already claimed for sending (committed with the run's other
    steps), then sends it after commit. A crash between the two leaves the row in `sending`,
    which is reported as interrupted and never re-sent (at most once, see email_deliver)."""

    type = "send_email"
    label = "Send email"
    external = True
    required = ("to", "subject")
    optional = ("body",)
    templated = ("to", "subject", "body")

    def validate(self, config, *, trigger_type, organization_id):
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        to = config.get("to") if isinstance(config, dict) else None
        if isinstance(to, str) and to and "{{" not in to:
            try:
                validate_email(to)
            except ValidationError:
                errors.append(("config.to", f"'{to}' is not an email address"))
        return errors

    def prepare(self, config, ctx: ExecutionContext):
        to = ctx.render("to", config["to"]).strip()
        try:
            validate_email(to)
        except ValidationError:
            raise ActionFailed(f"recipient {to!r} is not an email address") from None
        return EmailMessage(
            organization_id=ctx.organization_id, to=to,
            subject=ctx.render("subject", config["subject"])[:300],
            body=ctx.render("body", config.get("body", "")),
            deal=linked_deal(ctx.record), lead=linked_lead(ctx.record),
            status=EmailMessage.Status.SENDING, sending_since=timezone.now(), automation_key=ctx.key,
        )

    @staticmethod
    def _result(email: EmailMessage) -> dict:
        return {"email_id": email.pk, "to": email.to, "subject": email.subject}

    def apply(self, items):
        return [self._result(e) for e in EmailMessage.objects.bulk_create([email for _, email in items])]

    def existing(self, keys):
        return {email.automation_key: {**self._result(email), "repeated_delivery": True}
                for email in EmailMessage.objects.filter(automation_key__in=keys)}

    @staticmethod
    def _outcome(result: dict, email: EmailMessage) -> tuple[bool, dict, str]:
        result = {**result, "delivery": email.status}
        if email.status == EmailMessage.Status.SENT:
            return True, result, ""
        return False, result, f"email could not be sent: {email.error}"

    def deliver(self, items):
        emails = emails_send_claimed(email_ids=[result["email_id"] for _, result in items])
        return [self._outcome(result, emails[result["email_id"]]) for _, result in items]

    def settle_existing(self, result: dict) -> tuple[bool, dict, str]:
        """A redelivered run found this step's email: report it, never send it twice."""
        email = EmailMessage.objects.get(pk=result["email_id"])
        if email.status == EmailMessage.Status.SENDING:
            email = email_mark_interrupted(email_id=email.pk)
        return self._outcome(result, email)
