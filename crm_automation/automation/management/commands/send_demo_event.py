"""Play the billing system: send an `invoice.overdue` event for a demo contact, named only by
phone, signed with the "Billing system" endpoint's secret (Standard Webhooks), to the running
server, as another system would (`--direct` records it in-process instead, for a server that is
not running)."""

import json
import os
import time
import uuid
from datetime import timedelta

import httpx
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from crm_automation.crm.business_events import event_receive
from crm_automation.crm.models import Contact, Organization
from crm_automation.webhooks import signing
from crm_automation.webhooks.models import WebhookEndpoint


class Command(BaseCommand):
    help = "Send the demo organization an invoice.overdue event, as its billing system would."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT', '8000')}",
                            help="The running server (make run's; PORT as for make run).")
        parser.add_argument("--days", type=int, default=21, help="How many days the invoice is overdue.")
        parser.add_argument("--direct", action="store_true", help="Record it in-process, without HTTP.")

    def handle(self, *args, url: str, days: int, direct: bool, **options) -> None:
        org = Organization.objects.filter(slug="demo").first()
        contact = Contact.objects.filter(organization=org).exclude(phone="").order_by("pk").first() if org else None
        if org is None or contact is None:
            raise CommandError("No demo contact with a phone: run `manage.py seed_demo` first.")
        number = f"INV-{timezone.now():%y%m%d-%H%M%S}"
        due = timezone.localdate() - timedelta(days=days)
        body = {"type": "invoice.overdue", "idempotency_key": f"{number}-overdue",
                "contact": {"phone": contact.phone},
                "data": {"invoice": {"number": number, "amount_due": "1250.00", "due_date": due.isoformat(),
                                     "days_overdue": days, "url": f"https://billing.example.com/{number}"}}}
        if direct:
            event, _ = event_receive(organization_id=org.pk, body=body, source="billing-demo")
            self.stdout.write(self.style.SUCCESS(f"Recorded {event.name} {event.pk} for {contact} ({contact.phone})."))
            return
        endpoint = WebhookEndpoint.objects.filter(organization=org, name="Billing system").first()
        if endpoint is None:
            raise CommandError("The demo has no 'Billing system' endpoint: run `manage.py seed_demo` first.")
        text = json.dumps(body)
        headers = signing.headers(endpoint.valid_secrets(), message_id=f"msg_{uuid.uuid4().hex}",
                                  timestamp=int(time.time()), body=text)
        target = f"{url.rstrip('/')}{endpoint.path}events/"
        try:
            answer = httpx.post(target, content=text, headers={**headers, "Content-Type": "application/json"},
                                timeout=10)
        except httpx.HTTPError as exc:
            raise CommandError(f"Could not reach {target} ({exc}); is `make run` running? (or use --direct)") \
                from None
        if answer.status_code != 202:
            raise CommandError(f"{target} answered {answer.status_code}: {answer.text[:500]}")
        self.stdout.write(self.style.SUCCESS(
            f"Sent invoice.overdue {number} ({days} days late) for {contact} by phone {contact.phone}: "
            f"{answer.json()}. The 'Overdue invoice reminder' workflow emails them."))
