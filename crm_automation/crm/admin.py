from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from crm_automation.crm.admin_scoping import OrgScopedAdmin
from crm_automation.crm.models import (
    Contact,
    Deal,
    EmailMessage,
    Lead,
    Membership,
    Organization,
    Stage,
    Task,
)
from crm_automation.crm.selectors import user_has_role
from crm_automation.crm.services import email_resend, leads_convert_bulk

RUNS_SHOWN = 20


def runs_table(entity_id) -> str:
    """The runs a deal or lead triggered, newest first (read through the runs' index)."""
    from crm_automation.automation.models import WorkflowRun

    runs = list(WorkflowRun.objects.filter(trigger_entity_id=entity_id)
                .select_related("workflow").order_by("-started_at")[:RUNS_SHOWN])
    if not runs:
        return "No workflow has run for this record yet."
    rows = format_html_join(
        "", "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((reverse("admin:automation_workflowrun_change", args=[r.pk]),
          localtime(r.started_at).strftime("%Y-%m-%d %H:%M:%S"), r.workflow.name, r.get_status_display(),
          r.get_trigger_type_display()) for r in runs),
    )
    return format_html("<table><tr><th>Started</th><th>Workflow</th><th>Status</th><th>Trigger</th></tr>{}</table>",
                       rows)


def decisions_table(entity_id) -> str:
    """Why each candidate workflow did or did not run for this record's recent changes."""
    from crm_automation.automation.models import WorkflowDecision

    decisions = list(WorkflowDecision.objects.filter(entity_id=entity_id)
                     .select_related("workflow", "event").order_by("-event_id", "workflow_id")[:RUNS_SHOWN])
    if not decisions:
        return "No workflow has considered this record yet."
    rows = format_html_join(
        "", "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}: {}</td></tr>",
        ((reverse("admin:automation_automationevent_change", args=[d.event_id]),
          localtime(d.event.created_at).strftime("%Y-%m-%d %H:%M:%S"), d.event.get_kind_display(), d.workflow.name,
          d.get_outcome_display(), d.reason) for d in decisions),
    )
    return format_html("<table><tr><th>Change</th><th>Trigger</th><th>Workflow</th><th>Decision</th></tr>{}</table>",
                       rows)


class AutomationPanels:
    """Read-only fields for a deal's or lead's page: its runs, and why workflows did not run."""

    @admin.display(description="Workflow runs")
    def automation_runs(self, obj) -> str:
        return runs_table(obj.pk) if obj.pk else "-"

    @admin.display(description="Why workflows ran or not")
    def automation_decisions(self, obj) -> str:
        return decisions_table(obj.pk) if obj.pk else "-"


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "plan", "created_at")
    list_filter = ("plan",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organization", "role")
    list_filter = ("role", "organization")
    list_select_related = ("user", "organization")
    search_fields = ("user__username", "organization__name")


@admin.register(Stage)
class StageAdmin(OrgScopedAdmin):
    list_display = ("name", "slug", "organization", "order", "is_won", "is_lost")
    list_filter = ("organization",)
    edit_role = add_role = "admin"


@admin.register(Contact)
class ContactAdmin(OrgScopedAdmin):
    list_display = ("__str__", "email", "company", "organization")
    search_fields = ("first_name", "last_name", "email", "company")
    list_select_related = ("organization",)


@admin.register(Deal)
class DealAdmin(AutomationPanels, OrgScopedAdmin):
    list_display = ("title", "stage", "amount", "probability", "contact", "owner", "organization")
    list_filter = ("stage__slug", "organization")
    search_fields = ("title",)
    list_select_related = ("stage", "contact", "owner", "organization")
    readonly_fields = ("automation_runs", "automation_decisions")
    show_full_result_count = False


@admin.register(Lead)
class LeadAdmin(AutomationPanels, OrgScopedAdmin):
    list_display = ("name", "email", "company", "status", "converted_at", "organization")
    list_filter = ("status", "organization")
    search_fields = ("name", "email", "company")
    list_select_related = ("organization",)
    readonly_fields = ("converted_at", "converted_contact", "converted_deal", "automation_runs",
                       "automation_decisions")
    actions = ["convert_leads"]

    @admin.action(description="Convert selected leads to contacts and deals")
    def convert_leads(self, request, queryset) -> None:
        converted = 0
        for org_id in set(queryset.values_list("organization_id", flat=True)):
            if not user_has_role(request.user, org_id, self.edit_role):
                continue
            ids = list(queryset.filter(organization_id=org_id).values_list("pk", flat=True))
            converted += leads_convert_bulk(organization_id=org_id, lead_ids=ids)
        skipped = queryset.count() - converted
        self.message_user(request, f"Converted {converted} lead(s); {skipped} skipped "
                                   "(already converted or not yours to change).", messages.SUCCESS)


@admin.register(Task)
class TaskAdmin(OrgScopedAdmin):
    list_display = ("title", "status", "priority", "due_date", "assignee", "deal_link", "organization")
    list_filter = ("status", "priority", "organization")
    search_fields = ("title",)
    list_select_related = ("assignee", "deal", "organization")
    readonly_fields = ("automation_key",)

    @admin.display(description="Deal")
    def deal_link(self, obj):
        if obj.deal_id is None:
            return "-"
        return format_html("<a href='{}'>{}</a>", reverse("admin:crm_deal_change", args=[obj.deal_id]),
                           obj.deal.title)


@admin.register(EmailMessage)
class EmailMessageAdmin(OrgScopedAdmin):
    list_display = ("subject", "to", "status", "sent_at", "created_at", "organization")
    list_filter = ("status", "organization")
    search_fields = ("to", "subject")
    list_select_related = ("organization",)
    readonly_fields = ("status", "sent_at", "error", "automation_key", "deal", "lead")
    show_full_result_count = False
    actions = ["resend"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # the outbox is a log

    @admin.action(description="Send selected failed emails again")
    def resend(self, request, queryset) -> None:
        sent, skipped = 0, 0
        for email in queryset.filter(status=EmailMessage.Status.FAILED):
            if not user_has_role(request.user, email.organization_id, "ops"):
                skipped += 1
                continue
            sent += email_resend(email_id=email.pk).status == EmailMessage.Status.SENT
        self.message_user(request, f"Sent {sent} email(s) again; {skipped} skipped (not yours to send).",
                          messages.SUCCESS if sent else messages.WARNING)
