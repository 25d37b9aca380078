"""Lifecycle events in the admin: a read-only log of what happened to workflows and runs (what the
organization's event subscriptions are sent), each linked to its workflow and run."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from crm_automation.automation.admin.links import run_link
from crm_automation.automation.models import LifecycleEvent
from crm_automation.crm.admin_scoping import ReadOnlyOrgScopedAdmin


@admin.register(LifecycleEvent)
class LifecycleEventAdmin(ReadOnlyOrgScopedAdmin):
    list_display = ("id", "type", "workflow_link", "run_link", "occurred_at", "organization")
    list_filter = ("type", "organization")
    show_full_result_count = False  # a run writes two: no COUNT(*) of the whole table per page
    fields = ("id", "type", "occurred_at", "workflow_link", "run_link", "data")
    readonly_fields = fields

    @admin.display(description="workflow")
    def workflow_link(self, obj) -> str:
        if not obj.workflow_id:
            return "—"
        name = (obj.data.get("workflow") or {}).get("name") or f"#{obj.workflow_id}"
        return format_html("<a href='{}'>{}</a>", reverse("admin:automation_workflow_change",
                                                          args=[obj.workflow_id]), name)

    @admin.display(description="run")
    def run_link(self, obj) -> str:
        return run_link(obj.run_id)
