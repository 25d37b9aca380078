"""Import YAML workflow documents (docs/product.md#documents) as drafts of one organization;
each file is checked on its own."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from crm_automation import bounded_reader
from crm_automation.automation.definition.documents import DocumentError
from crm_automation.automation.services.versions import workflow_import_yaml
from crm_automation.crm.models import Organization


class Command(BaseCommand):
    help = "Import workflows from YAML files (workflow documents) in DIR as drafts of an organization."

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory")
        parser.add_argument("--org", required=True, help="the organization's slug")
        parser.add_argument("--user", help="import as this user (their role applies); default: the system")

    def handle(self, *args, directory: str, org: str, user: str | None, **options) -> None:
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"There is no organization “{org}”.")
        by = None
        if user:
            by = get_user_model().objects.filter(username=user).first()
            if by is None:
                raise CommandError(f"There is no user “{user}”.")
        files = sorted(Path(directory).glob("*.y*ml"))
        if not files:
            raise CommandError(f"No .yaml files in {directory}.")
        failed = 0
        for path in files:
            try:
                with path.open("rb") as file:
                    text = bounded_reader.read_upload(file)
                workflow, notes = workflow_import_yaml(organization=organization, by=by, text=text)
            except bounded_reader.InputRefused as exc:
                failed += 1
                self.stderr.write(f"{path.name}: not imported: {exc}")
            except DocumentError as exc:
                failed += 1
                self.stderr.write(f"{path.name}: not imported\n" + "\n".join(f"  {m}" for m in exc.messages))
            except (PermissionDenied, ValidationError) as exc:
                failed += 1
                self.stderr.write(f"{path.name}: not imported: {' '.join(getattr(exc, 'messages', [str(exc)]))}")
            else:
                extra = "".join(f"; {n}" for n in notes)
                self.stdout.write(f"{path.name}: “{workflow.name}” ({workflow.get_status_display().lower()}){extra}")
        if failed:
            raise CommandError(f"{failed} of {len(files)} file(s) could not be imported (nothing of them was saved).")
