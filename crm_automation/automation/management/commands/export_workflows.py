"""Write workflows as YAML documents (docs/product.md#documents), one per workflow:
DIR/<organization>/<workflow id>.yaml."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.versions import workflow_export_yaml


class Command(BaseCommand):
    help = "Export workflows to YAML files (workflow documents), one file per workflow."

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory")
        parser.add_argument("--org", help="only this organization (its slug)")

    def handle(self, *args, directory: str, org: str | None, **options) -> None:
        workflows = Workflow.objects.select_related("organization").order_by("organization__slug", "key")
        if org:
            workflows = workflows.filter(organization__slug=org)
            if not workflows.exists():
                raise CommandError(f"No workflows in an organization “{org}”.")
        count = 0
        for workflow in workflows:
            path = Path(directory) / workflow.organization.slug / f"{workflow.key}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(workflow_export_yaml(workflow), encoding="utf-8")
            count += 1
        self.stdout.write(self.style.SUCCESS(f"Wrote {count} workflow(s) under {directory}."))
