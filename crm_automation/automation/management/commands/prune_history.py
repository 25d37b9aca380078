"""Delete run history older than each organization's plan keeps (what the daily schedule does)."""

from django.core.management.base import BaseCommand

from crm_automation.automation.ops.retention import prune_history


class Command(BaseCommand):
    help = "Delete finished runs, decisions and events older than each plan's RUN_HISTORY_DAYS."

    def handle(self, *args, **options) -> None:
        removed = prune_history()
        self.stdout.write(f"Deleted {removed['runs']} runs (with their steps), {removed['decisions']} decisions "
                          f"and {removed['events']} events past their plan's retention.")
