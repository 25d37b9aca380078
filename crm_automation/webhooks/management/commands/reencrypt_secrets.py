"""Write every stored webhook secret again with the first FIELD_ENCRYPTION_KEYS key (after
prepending a new key; then the old one can be removed from the list)."""

from django.core.management.base import BaseCommand
from django.db import transaction

from crm_automation.webhooks.models import WebhookEndpoint, WebhookTarget


class Command(BaseCommand):
    help = "Re-encrypt webhook signing secrets with the newest FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args, **options) -> None:
        count = 0
        with transaction.atomic():
            for model in (WebhookEndpoint, WebhookTarget):
                for holder in model.objects.select_for_update(no_key=True).order_by("pk"):
                    holder.save(update_fields=["secret", "previous_secret"])  # read plain, written encrypted
                    count += 1
        self.stdout.write(f"Re-encrypted the secrets of {count} webhook endpoints and targets.")
