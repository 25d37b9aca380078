"""Import leads from a CSV file (columns: name, email, company) as one bulk operation: the
workflows listening to new leads run for each, once as a digest, or hold the runs for review,
as each one's bulk setting says (automation/bulk.py)."""

import csv
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from crm_automation.crm.models import Organization
from crm_automation.crm.services import IMPORT_FIELDS, leads_import


class Command(BaseCommand):
    help = "Import leads from a CSV file (name, email, company) into an organization, as one bulk operation."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="A UTF-8 CSV file with a header row: name, email, company.")
        parser.add_argument("--organization", required=True, help="The organization's slug.")
        parser.add_argument("--owner", help="The username that owns the imported leads (optional).")

    def handle(self, *args, **options) -> None:
        organization = Organization.objects.filter(slug=options["organization"]).first()
        if organization is None:
            raise CommandError(f"There is no organization “{options['organization']}”.")
        owner = None
        if options["owner"]:
            owner = get_user_model().objects.filter(username=options["owner"],
                                                    memberships__organization=organization).first()
            if owner is None:
                raise CommandError(f"“{options['owner']}” is not a member of {organization.name}.")
        try:
            with options["file"].open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                if not reader.fieldnames or "name" not in reader.fieldnames:
                    raise CommandError(f"The first row must name the columns ({', '.join(IMPORT_FIELDS)}).")
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}") from None
        try:
            made = leads_import(organization_id=organization.pk, rows=rows, owner=owner)
        except ValidationError as exc:
            raise CommandError("\n".join(exc.messages)) from None
        self.stdout.write(f"Imported {len(made)} leads into {organization.name} as one operation.")
