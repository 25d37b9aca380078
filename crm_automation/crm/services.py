"""Writes to CRM records. Each service is one transaction and fires the automation triggers."""

import logging
from decimal import Decimal

from django.core import mail
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from crm_automation.crm import changes
from crm_automation.crm.models import Contact, Deal, EmailMessage, Lead, Stage, lead_converted_change

logger = logging.getLogger(__name__)


@transaction.atomic
def deal_move_to_stage(*, deal: Deal, stage: Stage) -> Deal:
    """Move a deal to another stage of its organization; fires `deal_stage_change`."""
    if stage.organization_id != deal.organization_id:
        raise ValidationError({"stage": "That stage belongs to another organization."})
    if deal.stage_id == stage.pk:
        return deal
    deal.stage = stage
    deal.save(update_fields=["stage", "updated_at"])
    return deal


def _first_stage(organization_id: int) -> Stage:
    stage = Stage.objects.filter(organization_id=organization_id, is_won=False, is_lost=False).first()
    if stage is None:
        raise ValidationError({"stage": "The organization has no open stage to put the deal in."})
    return stage


def _split_name(name: str) -> tuple[str, str]:
    first, _, last = name.strip().partition(" ")
    return first or name, last


@transaction.atomic
def lead_convert(*, lead: Lead, stage: Stage | None = None, amount: Decimal = Decimal("0")) -> Deal:
    """Convert a lead: create its Contact and Deal, link them, fire `lead_converted`."""
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    if lead.converted_at is not None:
        raise ValidationError({"lead": "This lead is already converted."})
    stage = stage or _first_stage(lead.organization_id)
    first, last = _split_name(lead.name)
    contact = Contact.objects.create(
        organization_id=lead.organization_id, first_name=first, last_name=last,
        email=lead.email, company=lead.company, source_lead=lead,
    )
    deal = Deal.objects.create(
        organization_id=lead.organization_id, title=lead.company or lead.name, amount=amount,
        stage=stage, contact=contact, owner_id=lead.owner_id, source_lead=lead,
    )
    lead.converted_at = timezone.now()
    lead.converted_contact = contact
    lead.converted_deal = deal
    lead.status = Lead.Status.CONVERTED
    lead.save()
    return deal


@transaction.atomic
def leads_convert_bulk(*, organization_id: int, lead_ids: list) -> int:
    """Convert many leads in one transaction with bulk inserts; fires one change per record.

    Returns how many leads were converted (already converted ones are left alone).
    """
    leads = list(
        Lead.objects.select_for_update()
        .filter(organization_id=organization_id, pk__in=lead_ids, converted_at__isnull=True)
        .order_by("pk")
    )
    if not leads:
        return 0
    stage = _first_stage(organization_id)
    now = timezone.now()
    contacts = []
    for lead in leads:
        first, last = _split_name(lead.name)
        contacts.append(Contact(organization_id=organization_id, first_name=first, last_name=last,
                                email=lead.email, company=lead.company, source_lead_id=lead.pk))
    contacts = Contact.objects.bulk_create(contacts, batch_size=1000)
    deals = [
        Deal(organization_id=organization_id, title=lead.company or lead.name, stage=stage,
             contact=contact, owner_id=lead.owner_id, source_lead_id=lead.pk)
        for lead, contact in zip(leads, contacts, strict=True)
    ]
    Deal.objects.bulk_create(deals, batch_size=1000)
    # One set-based UPDATE links every lead to what it became (bulk_update's per-row CASE
    # took seconds for thousands of leads).
    Lead.objects.filter(pk__in=[lead.pk for lead in leads]).update(
        converted_at=now, status=Lead.Status.CONVERTED,
        converted_contact=Subquery(Contact.objects.filter(source_lead=OuterRef("pk")).values("pk")[:1]),
        converted_deal=Subquery(Deal.objects.filter(source_lead=OuterRef("pk")).values("pk")[:1]),
    )
    for lead, deal in zip(leads, deals, strict=True):
        lead.converted_deal_id = deal.pk
    found = [
        changes.RecordChange(changes.DEAL_CREATED, organization_id, "deal", d.pk, {"to_stage_id": stage.pk})
        for d in deals
    ] + [lead_converted_change(lead) for lead in leads]
    changes.records_changed.send(sender=Lead, changes=found)
    return len(leads)


# --- Email outbox -----------------------------------------------------------------------------

INTERRUPTED = "Delivery was interrupted; not re-sent to avoid a duplicate. Resend it if needed."


def _send(email: EmailMessage, connection) -> None:
    """Send one claimed email and record the outcome on the instance (not saved)."""
    try:
        mail.EmailMessage(subject=email.subject, body=email.body, to=[email.to], connection=connection).send()
    except Exception as exc:  # any provider error: record it, the run shows it
        logger.warning("Email %s failed: %s", email.pk, exc)
        email.status, email.error = EmailMessage.Status.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    else:
        email.status = EmailMessage.Status.SENT


def emails_send_claimed(*, email_ids: list[int]) -> dict[int, EmailMessage]:
    """Send emails already claimed (status `sending`, committed) over one provider connection.

    Returns {id: email} with the final status. Rows in any other status are left alone.
    """
    emails = EmailMessage.objects.in_bulk(email_ids)
    claimed = [e for e in emails.values() if e.status == EmailMessage.Status.SENDING]
    if not claimed:
        return emails
    connection = mail.get_connection()
    for email in claimed:
        _send(email, connection)
    now = timezone.now()
    sent = [e.pk for e in claimed if e.status == EmailMessage.Status.SENT]
    EmailMessage.objects.filter(pk__in=sent).update(status=EmailMessage.Status.SENT, sent_at=now)
    for email in claimed:
        if email.status == EmailMessage.Status.SENT:
            email.sent_at = now
        else:
            EmailMessage.objects.filter(pk=email.pk).update(status=email.status, error=email.error)
    return emails


def email_mark_interrupted(*, email_id: int) -> EmailMessage:
    """A claimed email whose sender died: we cannot know whether the provider accepted it, and
    a duplicate email to a client is worse than an ops user pressing "resend"."""
    EmailMessage.objects.filter(pk=email_id, status=EmailMessage.Status.SENDING).update(
        status=EmailMessage.Status.FAILED, error=INTERRUPTED
    )
    return EmailMessage.objects.get(pk=email_id)


def email_resend(*, email_id: int) -> EmailMessage:
    """Send a failed or queued email (again), claiming it first so two clicks send it once."""
    claimed = EmailMessage.objects.filter(
        pk=email_id, status__in=[EmailMessage.Status.QUEUED, EmailMessage.Status.FAILED]
    ).update(status=EmailMessage.Status.SENDING, sending_since=timezone.now(), error="")
    if not claimed:
        return EmailMessage.objects.get(pk=email_id)
    return emails_send_claimed(email_ids=[email_id])[email_id]
