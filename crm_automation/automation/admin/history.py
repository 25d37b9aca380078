"""Read-only history: runs with their actions, events with their decisions, monthly usage."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from crm_automation.automation.models import (
    AutomationEvent,
    MonthlyUsage,
    WorkflowDecision,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.crm.admin_scoping import ReadOnlyInline, ReadOnlyOrgScopedAdmin

ENTITY_ADMIN = {"deal": "admin:crm_deal_change", "lead": "admin:crm_lead_change"}


def badge(value: str, label: str) -> str:
    return format_html('<span class="status-badge status-{}">{}</span>', value, label)


def entity_link(entity_type: str, entity_id) -> str:
    url = reverse(ENTITY_ADMIN[entity_type], args=[entity_id]) if entity_type in ENTITY_ADMIN else None
    label = f"{entity_type} {str(entity_id)[:8]}"
    return format_html("<a href='{}'>{}</a>", url, label) if url else label


class RunActionInline(ReadOnlyInline):
    model = WorkflowRunAction
    fields = ("position", "action_type", "status", "result", "error", "attempts", "started_at", "finished_at")
    readonly_fields = fields


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnlyOrgScopedAdmin):
    hide_free_plan = True
    list_display = ("started_at", "status_badge", "workflow_link", "trigger_type", "entity", "duration",
                    "what_went_wrong")
    list_filter = ("status", "trigger_type")
    list_select_related = ("workflow",)
    ordering = ("-started_at", "-id")
    inlines = [RunActionInline]
    fields = ("workflow", "version", "event", "trigger_type", "trigger_entity_type", "entity", "status",
              "metadata", "error", "attempts", "started_at", "finished_at", "duration")
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).filter(history_suppressed=False)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj) -> str:
        return badge(obj.status, obj.get_status_display())

    @admin.display(description="Workflow", ordering="workflow__name")
    def workflow_link(self, obj) -> str:
        return format_html("<a href='{}'>{}</a>",
                           reverse("admin:automation_workflow_change", args=[obj.workflow_id]), obj.workflow.name)

    @admin.display(description="Record")
    def entity(self, obj) -> str:
        return entity_link(obj.trigger_entity_type, obj.trigger_entity_id)

    @admin.display(description="Duration")
    def duration(self, obj) -> str:
        return "-" if obj.duration_ms is None else f"{obj.duration_ms} ms"

    @admin.display(description="What went wrong")
    def what_went_wrong(self, obj) -> str:
        return obj.error if len(obj.error) <= 120 else obj.error[:117] + "…"


class DecisionInline(ReadOnlyInline):
    model = WorkflowDecision
    fields = ("workflow", "version", "outcome", "reason", "created_at")
    readonly_fields = fields


@admin.register(AutomationEvent)
class AutomationEventAdmin(ReadOnlyOrgScopedAdmin):
    """Every trigger with, per candidate workflow, why it ran or did not."""

    hide_free_plan = False  # free orgs may ask why nothing fires: the decision says "plan"
    list_display = ("created_at", "kind", "entity", "depth", "processed_at")
    list_filter = ("kind",)
    ordering = ("-id",)
    inlines = [DecisionInline]
    fields = ("kind", "entity", "payload", "depth", "caused_by_run_id", "created_at", "processed_at", "error")
    readonly_fields = fields

    @admin.display(description="Record")
    def entity(self, obj) -> str:
        return entity_link(obj.entity_type, obj.entity_id)


@admin.register(MonthlyUsage)
class MonthlyUsageAdmin(ReadOnlyOrgScopedAdmin):
    list_display = ("organization", "month", "logged_runs", "suppressed_runs")
    list_select_related = ("organization",)
    ordering = ("-month",)
