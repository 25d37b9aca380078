from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from crm_automation.automation.actions.base import Action, ActionFailed, ExecutionContext
from crm_automation.crm.models import Deal, EmailMessage, Lead
from crm_automation.crm.services import email_deliver


class SendEmail(Action):
    type = "send_email"
    label = "Send email"
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

    def execute(self, config, ctx: ExecutionContext) -> dict:
        existing = EmailMessage.objects.filter(automation_key=ctx.key).first()
        if existing is None:
            to = ctx.render("to", config["to"]).strip()
            try:
                validate_email(to)
            except ValidationError:
                raise ActionFailed(f"recipient {to!r} is not an email address") from None
            record = ctx.record
            existing = EmailMessage.objects.create(
                organization_id=ctx.organization_id,
                to=to,
                subject=ctx.render("subject", config["subject"])[:300],
                body=ctx.render("body", config.get("body", "")),
                deal=record if isinstance(record, Deal) else getattr(record, "converted_deal", None),
                lead=record if isinstance(record, Lead) else None,
                automation_key=ctx.key,
            )
        return {"email_id": existing.pk, "to": existing.to, "subject": existing.subject}

    def after_commit(self, result, ctx):
        stale = timedelta(seconds=settings.AUTOMATION["LEASE_SECONDS"])
        email = email_deliver(email_id=result["email_id"], stale_after=stale)
        result = {**result, "delivery": email.status}
        if email.status == EmailMessage.Status.FAILED:
            return False, result, f"email could not be sent: {email.error}"
        return True, result, ""
