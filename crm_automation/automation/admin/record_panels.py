"""Automation panels on the deal and lead pages: the runs a record triggered, and why each
workflow did or did not run. Attached from this app, so the CRM app never imports automation."""

from django.contrib import admin
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from crm_automation.automation.definition import catalog
from crm_automation.automation.models import Workflow, WorkflowStatus
from crm_automation.automation.selectors import decisions_of_record, runs_of_record
from crm_automation.automation.triggers.manual import manual_workflows
from crm_automation.crm.admin import DealAdmin, LeadAdmin
from crm_automation.crm.models import Deal, Lead

SHOWN = 20


def _when(value) -> str:
    # As every other time in the admin and on the pages: the organization's zone, labelled.
    return date_format(localtime(value), "DATETIME_FORMAT")


def runs_table(record) -> str:
    runs = list(runs_of_record(entity_id=record.pk, organization_id=record.organization_id)[:SHOWN])
    if not runs:
        return "No workflow has run for this record yet."
    rows = format_html_join(
        "", "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((reverse("admin:automation_workflowrun_change", args=[r.pk]), _when(r.started_at), r.workflow.name,
          r.get_status_display(), r.get_trigger_type_display(), r.error) for r in runs),
    )
    all_runs = reverse("admin:automation_workflowrun_changelist") + f"?trigger_entity_id={record.pk}"
    return format_html("<table><tr><th>Started</th><th>Workflow</th><th>Status</th><th>Trigger</th>"
                       "<th>What went wrong</th></tr>{}</table><p><a href='{}'>All runs of this record</a> "
                       "(to retry, cancel or let waiting ones go on)</p>", rows, all_runs)


def decisions_table(record) -> str:
    decisions = list(decisions_of_record(entity_id=record.pk, organization_id=record.organization_id)[:SHOWN])
    if not decisions:
        return "No workflow has considered this record yet."
    rows = format_html_join(
        "", "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}: {}</td></tr>",
        ((reverse("admin:automation_automationevent_change", args=[d.event_id]), _when(d.event.created_at),
          d.event.get_kind_display(), d.workflow.name, d.get_outcome_display(), d.reason) for d in decisions),
    )
    return format_html("<table><tr><th>Change</th><th>Trigger</th><th>Workflow</th><th>Decision</th></tr>{}</table>",
                       rows)


def launch_panel(record) -> str:
    """Start a manual workflow on this record (a confirmation page), or simulate any workflow
    against it. Links only: the record's page is a form, and forms do not nest."""
    entity = "deal" if isinstance(record, Deal) else "lead"
    starts = format_html_join(" · ", "<a href='{}?record={}'>Start “{}”</a>", (
        (reverse("admin:automation_workflow_start", args=[w.pk]), record.pk, w.name) for w in manual_workflows(record)))
    workflows = [w for w in Workflow.objects.filter(organization_id=record.organization_id).exclude(
        status=WorkflowStatus.ARCHIVED).order_by("name") if catalog.TRIGGER_ENTITY.get(w.trigger_type) == entity]
    simulations = format_html_join(
        " · ", "<a href='{}?record={}'>{}</a>",
        ((reverse("admin:automation_workflow_simulate", args=[w.pk]), record.pk, w.name) for w in workflows))
    page = reverse("web:record", args=[entity, record.pk])
    return format_html("<p>{}</p><p>Simulate on this {} (nothing is sent, nothing changes): {}</p>"
                       "<p><a href='{}'>Open this {}'s automation page</a> (its runs, why workflows ran or not, "
                       "Run workflow…)</p>",
                       starts or "No workflow is started by hand on this record type.", entity,
                       simulations or "no workflow yet", page, entity)


class AutomationPanels:
    """Read-only fields for a deal's or lead's page: its runs, and why workflows did not run."""

    panels = ("automation_launch", "automation_runs", "automation_decisions")

    @admin.display(description="Start or simulate a workflow")
    def automation_launch(self, obj) -> str:
        return launch_panel(obj) if obj and obj.pk else "-"

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), *self.panels]

    def get_fields(self, request, obj=None):
        fields = [f for f in super().get_fields(request, obj) if f not in self.panels]
        return [*fields, *self.panels] if obj is not None else fields

    @admin.display(description="Workflow runs")
    def automation_runs(self, obj) -> str:
        return runs_table(obj) if obj and obj.pk else "-"

    @admin.display(description="Why workflows ran or not")
    def automation_decisions(self, obj) -> str:
        return decisions_table(obj) if obj and obj.pk else "-"


class DealWithAutomationAdmin(AutomationPanels, DealAdmin):
    pass


class LeadWithAutomationAdmin(AutomationPanels, LeadAdmin):
    pass


admin.site.unregister(Deal)
admin.site.register(Deal, DealWithAutomationAdmin)
admin.site.unregister(Lead)
admin.site.register(Lead, LeadWithAutomationAdmin)
