"""Load ready-made workflow templates as drafts of one organization (all of them, or those named)."""

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from crm_automation.automation import workflow_templates
from crm_automation.automation.definition.documents import DocumentError
from crm_automation.crm.models import Organization


class Command(BaseCommand):
    help = "Load ready-made workflow templates as drafts of an organization (default: every template)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("keys", nargs="*", metavar="KEY",
                            help=f"templates to load; one of {', '.join(workflow_templates.keys())}")
        parser.add_argument("--org", required=True, help="the organization's slug")
        parser.add_argument("--user", help="load as this user (their role applies); default: the system")

    def handle(self, *args, keys: list[str], org: str, user: str | None, **options) -> None:
        organization = Organization.objects.filter(slug=org).first()
        if organization is None:
            raise CommandError(f"There is no organization “{org}”.")
        by = None
        if user:
            by = get_user_model().objects.filter(username=user).first()
            if by is None:
                raise CommandError(f"There is no user “{user}”.")
        for key in keys:
            try:
                workflow_templates.get(key)
            except workflow_templates.UnknownTemplate as exc:
                raise CommandError(str(exc)) from None
        # All or nothing: a half-loaded set would be loaded again, with -2 keys, on a retry.
        wanted = list(dict.fromkeys(keys or workflow_templates.keys()))
        with transaction.atomic():
            loaded = [(key, self.load(organization, by, key)) for key in wanted]
        for key, workflow in loaded:
            renamed = f" (id “{workflow.key}”: “{key}” was taken)" if workflow.key != key else ""
            self.stdout.write(f"{key}: draft “{workflow.name}” #{workflow.pk}{renamed}")
        self.stdout.write(f"Loaded {len(loaded)} template(s) into {organization.name} as drafts.")

    def load(self, organization: Organization, by, key: str):
        try:
            return workflow_templates.load(organization=organization, by=by, key=key)
        except DocumentError as exc:
            raise CommandError(f"{key} does not fit {organization.name}; nothing was loaded:\n"
                               + "\n".join(f"  {m}" for m in exc.messages)) from None
        except (PermissionDenied, ValidationError) as exc:
            raise CommandError(f"{key}: {' '.join(getattr(exc, 'messages', [str(exc)]))}; nothing was loaded.") \
                from None
