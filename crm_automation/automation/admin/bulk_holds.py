"""Bulk holds in the admin: what workflows held (or ran once as a digest) for imports and bulk
actions larger than their threshold; admins release a hold (a run per record) or discard it."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from crm_automation.automation.models import BulkHold
from crm_automation.automation.triggers.bulk import bulk_hold_discard, bulk_hold_release
from crm_automation.crm.admin_scoping import ReadOnlyOrgScopedAdmin
from crm_automation.refusals import Refused, reasons


@admin.register(BulkHold)
class BulkHoldAdmin(ReadOnlyOrgScopedAdmin):
    list_display = ("workflow", "mode", "status", "count", "size", "source", "created_at", "decided_by")
    list_filter = ("status", "mode", "source", "organization")
    list_select_related = ("workflow", "decided_by")
    fields = ("workflow", "mode", "status", "source", "size", "count", "operation", "created_at", "decided_by",
              "decided_at")
    readonly_fields = fields
    actions = ["release", "discard"]

    def _each(self, request, queryset, decide, done: str) -> None:
        for hold in queryset.filter(status=BulkHold.Status.PENDING):
            try:
                result = decide(hold_id=hold.pk, by=request.user)
            except (Refused, PermissionDenied) as exc:
                self.message_user(request, f"{hold.workflow}: {' '.join(reasons(exc))}", messages.ERROR)
            else:
                self.message_user(request, done.format(workflow=hold.workflow, runs=result), messages.SUCCESS)

    @admin.action(description="Release: run the workflow for each held record")
    def release(self, request, queryset) -> None:
        self._each(request, queryset, bulk_hold_release, "“{workflow}”: {runs} runs started.")

    @admin.action(description="Discard: no runs for the held records")
    def discard(self, request, queryset) -> None:
        self._each(request, queryset, bulk_hold_discard, "“{workflow}”: the hold was discarded; no run started.")
