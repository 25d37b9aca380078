"""Read-only history: runs with their actions, events with their decisions, monthly usage."""

from datetime import timedelta
from functools import partial

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from crm_automation.automation.models import (
    AutomationEvent,
    MonthlyUsage,
    RunStatus,
    Workflow,
    WorkflowDecision,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.services.runs import (
    open_questions,
    run_answer,
    run_cancel,
    run_resume,
    run_retry,
    run_wake_now,
)
from crm_automation.crm.admin_scoping import OwnRowsFilter, ReadOnlyInline, ReadOnlyOrgScopedAdmin
from crm_automation.refusals import Refused, reasons

ENTITY_ADMIN = {"deal": "admin:crm_deal_change", "lead": "admin:crm_lead_change"}


def badge(value: str, label: str) -> str:
    return format_html('<span class="status-badge status-{}">{}</span>', value, label)


def entity_link(entity_type: str, entity_id) -> str:
    url = reverse(ENTITY_ADMIN[entity_type], args=[entity_id]) if entity_type in ENTITY_ADMIN else None
    label = f"{entity_type} {str(entity_id)[:8]}"
    return format_html("<a href='{}'>{}</a>", url, label) if url else label


class RunActionInline(ReadOnlyInline):
    """A run's steps in the order it reached them: which node, which loop iteration, what went in
    and came out, and what went wrong (with the error policy applied, in the result)."""

    model = WorkflowRunAction
    fields = ("step", "node", "token", "action_type", "status", "result", "error", "attempts", "started_at",
              "finished_at")
    readonly_fields = fields
    verbose_name_plural = "steps"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("run__version")

    @admin.display(description="#")
    def step(self, obj) -> int:
        return obj.position + 1  # the order the run reached it, from 1

    @admin.display(description="Node")
    def node(self, obj) -> str:
        label = next((a.get("label") for a in obj.run.version.definition.get("actions") or []
                      if a.get("id") == obj.node_id), None)
        return f"{label} ({obj.node_id})" if label else obj.node_id


class NeedsAttentionFilter(admin.SimpleListFilter):
    """The dead-letter view: runs that failed or wait for a person, with their last error."""

    title = "needs attention"
    parameter_name = "attention"

    def lookups(self, request, model_admin):
        return [("yes", "Failed or paused (dead letter)")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status__in=[RunStatus.FAILED, RunStatus.PARTIAL, RunStatus.PAUSED])
        return queryset


class WorkflowFilter(OwnRowsFilter):
    """The person's own workflows."""

    title = parameter_name = "workflow"
    model, field = Workflow, "workflow_id"


class StartedFilter(admin.SimpleListFilter):
    """"Since when": with the status filter, the failed runs since an outage, to retry at once."""

    title = "started"
    parameter_name = "since"
    SPANS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}

    def lookups(self, request, model_admin):
        return [("1h", "In the last hour"), ("24h", "In the last 24 hours"), ("7d", "In the last 7 days"),
                ("30d", "In the last 30 days")]

    def queryset(self, request, queryset):
        span = self.SPANS.get(self.value() or "")
        return queryset.filter(started_at__gte=timezone.now() - span) if span else queryset


@admin.register(WorkflowRun)
class WorkflowRunAdmin(ReadOnlyOrgScopedAdmin):
    hide_free_plan = True
    list_display = ("started_at", "status_badge", "workflow_link", "trigger_type", "entity", "duration",
                    "what_went_wrong")
    list_filter = ("status", NeedsAttentionFilter, WorkflowFilter, StartedFilter, "trigger_type", "simulated")
    list_select_related = ("workflow",)
    ordering = ("-started_at", "-id")
    inlines = [RunActionInline]
    fields = ("workflow", "version", "event", "trigger_type", "trigger_entity_type", "entity", "status", "simulated",
              "parent_run", "question",
              "wake_at", "metadata", "error", "attempts", "started_at", "finished_at", "duration")
    readonly_fields = fields
    actions = ["retry_runs", "resume_retrying", "resume_skipping", "cancel_runs", "wake_runs"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(history_suppressed=False)

    def get_urls(self):
        return [path("<int:object_id>/answer/", self.admin_site.admin_view(self.answer_view),
                     name="automation_workflowrun_answer"), *super().get_urls()]

    def answer_view(self, request, object_id: int):
        """Answer a run's question (a user-input step): approve or reject, with a comment."""
        run = self.get_object(request, str(object_id))
        if run is None or not self.has_view_permission(request, run):
            raise Http404("No such run.")
        if request.method == "POST":
            try:
                run_answer(run_id=run.pk, by=request.user, node_id=request.POST.get("node_id", ""),
                           token=request.POST.get("token", ""), decision=request.POST.get("decision", ""),
                           comment=request.POST.get("comment", "").strip())
            except PermissionDenied as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return HttpResponseRedirect(request.path)
            except (ValidationError, Refused) as exc:
                self.message_user(request, " ".join(reasons(exc)), messages.ERROR)
                return HttpResponseRedirect(request.path)
            self.message_user(request, f"Answered: run #{run.pk} goes on.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:automation_workflowrun_change", args=[run.pk]))
        return TemplateResponse(request, "admin/automation/workflowrun/answer.html", {
            **self.admin_site.each_context(request), "run": run,
            "questions": [(step, questions.deadline(step.result)) for step in open_questions(run)],
            "title": f"Answer run #{run.pk}", "record_label": str(run.trigger_entity_id)[:8],
            "record_url": reverse(ENTITY_ADMIN[run.trigger_entity_type], args=[run.trigger_entity_id])
            if run.trigger_entity_type in ENTITY_ADMIN else "#"})

    @admin.display(description="Question")
    def question(self, obj) -> str:
        if not open_questions(obj):
            return "-"
        return format_html("<a class='button' href='{}'>Answer the open question</a>",
                           reverse("admin:automation_workflowrun_answer", args=[obj.pk]))

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # The deal and lead pages link here with ?trigger_entity_id=… (their runs, to cancel).
        return lookup == "trigger_entity_id" or super().lookup_allowed(lookup, value, request)

    def _control(self, request, queryset, service, done_text: str) -> None:
        done, problems = 0, []
        for run_id in queryset.values_list("pk", flat=True)[:500]:
            try:
                service(run_id=run_id, by=request.user)
                done += 1
            except (PermissionDenied, ValidationError, Refused) as exc:
                problems.append(" ".join(reasons(exc)))
        if done:
            self.message_user(request, f"{done} run(s) {done_text}.", messages.SUCCESS)
        for problem in sorted(set(problems))[:10]:
            self.message_user(request, problem, messages.WARNING)

    @admin.action(description="Retry selected failed runs from their failed steps")
    def retry_runs(self, request, queryset) -> None:
        self._control(request, queryset, run_retry, "will be retried from their failed steps (completed steps "
                                                    "are not repeated)")

    @admin.action(description="Paused runs: try the failed step again")
    def resume_retrying(self, request, queryset) -> None:
        self._control(request, queryset, partial(run_resume, how="retry"), "will try the failed step again")

    @admin.action(description="Paused runs: skip the failed step and go on")
    def resume_skipping(self, request, queryset) -> None:
        self._control(request, queryset, partial(run_resume, how="skip"), "will go on after the failed step")

    @admin.action(description="Cancel selected unfinished runs")
    def cancel_runs(self, request, queryset) -> None:
        self._control(request, queryset, run_cancel, "cancelled")

    @admin.action(description="Let selected waiting runs go on now")
    def wake_runs(self, request, queryset) -> None:
        self._control(request, queryset, run_wake_now, "will go on within seconds")

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj) -> str:
        label = obj.get_status_display() + (" (simulation)" if obj.simulated else "")
        return badge(obj.status, label)

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
