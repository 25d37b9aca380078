from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django_fsm.admin import FSMAdminMixin

from crm_automation.automation.admin.forms import WorkflowForm
from crm_automation.automation.admin.history import badge
from crm_automation.automation.admin.workflow_documents import WorkflowDocumentViews
from crm_automation.automation.admin.workflow_launch import WorkflowLaunchViews
from crm_automation.automation.definition import catalog, graph
from crm_automation.automation.models import Workflow, WorkflowStatus, WorkflowVersion
from crm_automation.automation.services.monitoring import workflow_set_minutes_saved
from crm_automation.automation.services.shadow import workflow_set_mode
from crm_automation.automation.services.versions import workflow_export_yaml
from crm_automation.automation.services.workflows import (
    EDITABLE_FIELDS,
    can_edit,
    workflow_allow_deletion,
    workflow_create,
    workflow_transition,
    workflow_update,
)
from crm_automation.crm.admin_scoping import OrgScopedAdmin, ReadOnlyInline
from crm_automation.refusals import Refused, reasons

ACTION_EXAMPLES = [
    ("send_email", '{"to": "{{deal.contact.email}}", "subject": "Welcome", "body": "Hi {{deal.contact.first_name}}"}'),
    ("create_task", '{"title": "Kick off {{deal.title}}", "due_in_days": 2, "priority": "high", '
                    '"assignee": "owner" or a username}'),
    ("update_field", '{"field": "probability", "value": 100}; deal fields: title, amount, probability, '
                     'close_date, stage; lead fields: name, email, company, status'),
    ("wait", '{"delayAmount": 24, "delayUnit": "hours"} (seconds, minutes, hours, days), or '
             '{"until": "{{deal.close_date}}", "offsetAmount": -1, "offsetUnit": "days"}'),
    ("condition", '{"rules": [{"field": "deal.stage", "operator": "eq", "value": "proposal"}]}: '
                  'continue only if true (checked when the step is reached, e.g. after a wait); else the run ends'),
]


class WorkflowVersionInline(ReadOnlyInline):
    model = WorkflowVersion
    fields = ("number", "created_at", "created_by", "changes")
    readonly_fields = fields
    ordering = ("-number",)
    verbose_name_plural = "Versions (immutable; runs point at the one they executed)"

    @admin.display(description="Changes")
    def changes(self, obj) -> str:
        url = reverse("admin:automation_workflow_version", args=[obj.workflow_id, obj.number])
        return format_html("<a href='{}'>compare, roll back</a>", url)


@admin.register(Workflow)
class WorkflowAdmin(WorkflowLaunchViews, WorkflowDocumentViews, FSMAdminMixin, OrgScopedAdmin):
    change_form_template = "admin/automation/workflow/change_form.html"
    form = WorkflowForm
    fsm_fields = ["status"]
    hide_free_plan = True
    list_display = ("name", "trigger_type", "action_count", "status_badge", "last_run_at", "run_count",
                    "success_rate", "organization")
    list_filter = ("status", "trigger_type", "organization")
    show_full_result_count = False
    search_fields = ("name", "description")
    list_select_related = ("organization",)
    readonly_fields = ("status", "version", "run_count", "success_count", "failure_count", "last_run_at",
                       "created_by", "created_at", "updated_at", "authoring_help", "flow", "document_yaml",
                       "allows_deletion")
    inlines = [WorkflowVersionInline]
    fieldsets = [
        (None, {"fields": ("organization", "name", "description", "status", "version", "base_revision")}),
        ("Trigger", {"fields": ("trigger_type", "trigger_config", "conditions", "authoring_help")}),
        ("Execution", {"fields": ("error_handling", "reenrollment", "timeout_seconds", "allows_deletion",
                                  "minutes_saved")}),
        ("Actions", {"fields": ("steps",)}),
        ("Flow", {"fields": ("flow",)}),
        ("Graph", {"fields": ("graph",), "classes": ("collapse",), "description": (
            "Leave empty for steps that run one after the other. For branches, parallel paths and loops, list "
            "the edges between node ids (shown on each step), e.g. {\"edges\": [{\"source\": \"trigger\", "
            "\"target\": \"check-amount\"}, {\"source\": \"check-amount\", \"target\": \"big-deal-task\", "
            "\"sourceHandle\": \"condition-true\"}]}. Handles: condition-true / condition-false, branch-0, "
            "branch-1 … (parallel), loop-body / loop-done (loop). Editing the YAML (export, import) is easier "
            "for large graphs.")}),
        ("Activity", {"fields": ("run_count", "success_count", "failure_count", "last_run_at",
                                 "created_by", "created_at", "updated_at")}),
    ]

    def get_fieldsets(self, request, obj=None):
        """A person who may not change the workflow reads its document (the fields to edit are
        parts of it: they have no columns to show read-only)."""
        if obj is not None and not self.has_change_permission(request, obj):
            return [(None, {"fields": ("organization", "name", "description", "status", "version")}),
                    ("Document", {"fields": ("document_yaml",)}), ("Flow", {"fields": ("flow",)}),
                    *self.fieldsets[-1:]]
        return self.fieldsets

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj) -> str:
        shown = badge(obj.status, obj.get_status_display())
        return format_html("{} {}", shown, badge("simulated", "Shadow")) if obj.mode == "shadow" else shown

    @admin.display(description="Actions")
    def action_count(self, obj) -> int:
        return len(obj.document.get("nodes") or []) - 1  # the trigger is a node too

    @admin.display(description="Document (the draft, as export writes it)")
    def document_yaml(self, obj) -> str:
        if obj is None or not obj.pk:
            return "-"
        return format_html('<pre class="workflow-document">{}</pre>', workflow_export_yaml(obj))

    @admin.display(description="Fields, operators and actions")
    def authoring_help(self, obj) -> str:
        trigger_type = obj.trigger_type if obj and obj.trigger_type else "deal_stage_change"
        fields = format_html_join(", ", "{} <code>{}</code>", ((catalog.variable_name(f), f)
                                                               for f in catalog.fields_for(trigger_type)))
        operators = format_html_join(", ", "<code>{}</code> ({})", catalog.OPERATORS.items())
        actions = format_html_join("", "<li><code>{}</code>: {}</li>", ACTION_EXAMPLES)
        return format_html(
            "<p>Fields for <code>{}</code> (in conditions and as <code>{{{{field}}}}</code> in texts): {}</p>"
            "<p>Operators: {}</p><p>Action configs:</p><ul>{}</ul>",
            trigger_type, fields, operators, actions)

    @admin.display(description="Flow (as saved)")
    def flow(self, obj) -> str:
        """The saved graph in words: each step, what it is, and where each of its ways out leads."""
        if obj is None or not obj.pk:
            return "-"
        definition = obj.definition
        if graph.problems(definition):
            return "The edges do not fit the steps; see the errors when saving."
        flow = graph.build(definition)
        names = {node_id: node.label or node_id for node_id, node in flow.nodes.items()}
        names[flow.trigger] = "Trigger"
        rows = []
        for node_id in [flow.trigger, *flow.nodes]:
            node = flow.nodes.get(node_id)
            ways = [(f"{handle} → " if handle else "→ ") + (
                f"back to {names[target]} (next iteration)" if flow.ends_iteration(node_id, target) else names[target])
                for handle, target in flow.targets(node_id)] or ["(ends here)"]
            kind = node.type if node else obj.get_trigger_type_display()
            inside = f", in loop {names[flow.loop_of[node_id]]}" if node_id in flow.loop_of else ""
            rows.append((names[node_id], node_id, kind, inside, "; ".join(ways)))
        return format_html("<table><tr><th>Step</th><th>Kind</th><th>Ways out</th></tr>{}</table>",
                           format_html_join("", "<tr><td>{} <code>{}</code></td><td>{}{}</td><td>{}</td></tr>", rows))

    @admin.display(description="Success rate")
    def success_rate(self, obj) -> str:
        if not obj.run_count:
            return "-"
        return f"{100 * obj.success_count / obj.run_count:.0f}%"

    def has_change_permission(self, request, obj=None) -> bool:
        """Admins edit anything not archived; ops edit drafts; archived is read-only for all."""
        if obj is None:
            return super().has_change_permission(request, obj)
        allowed = request.user.is_superuser or can_edit(request.user, obj)
        return allowed and obj.status != WorkflowStatus.ARCHIVED and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        # Archive instead: runs and decisions refer to the workflow.
        return False

    # Every write goes through the services (one write path): nothing is saved by the form or
    # the inline themselves. The forms have already validated with the services' own checks
    # and locked the row, so the service call below cannot fail on what the person typed.
    def save_model(self, request, obj, form, change) -> None:
        pass

    def save_formset(self, request, form, formset, change) -> None:
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    def save_related(self, request, form, formsets, change) -> None:
        for formset in formsets:
            self.save_formset(request, form, formset, change)
        by = None if request.user.is_superuser else request.user
        if not change:
            data = {name: form.cleaned_data[name] for name in EDITABLE_FIELDS if name in form.cleaned_data}
            workflow = workflow_create(organization=form.cleaned_data["organization"], by=by,
                                       actions=form.cleaned_data["steps"], **data)
        else:
            changes = {name: value for name, value in form.changes().items() if name in EDITABLE_FIELDS}
            expected = {name: value for name, value in form.expected().items() if name in changes}
            actions = form.cleaned_data["steps"] if "steps" in form.changed_data else None
            workflow = form.instance
            if changes or actions is not None:
                workflow = workflow_update(workflow_id=form.instance.pk, by=by, changes=changes, actions=actions,
                                           expected=expected,
                                           expected_revision=form.cleaned_data.get("base_revision"))
        if "minutes_saved" in form.changed_data:
            workflow = workflow_set_minutes_saved(workflow_id=workflow.pk, by=by,
                                                  minutes=form.cleaned_data["minutes_saved"] or 0)
        form.instance.__dict__.update({k: v for k, v in workflow.__dict__.items() if k != "_state"})
        form.instance._state.adding = False

    def construct_change_message(self, request, form, formsets, add=False):
        if add:
            return [{"added": {}}]
        changed = [name for name in form.changed_data if name != "base_revision"]
        return [{"changed": {"fields": changed}}] if changed else []

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ValidationError, Refused) as exc:  # a race the form could not see: say so, change nothing
            self.message_user(request, "Not saved: " + " ".join(reasons(exc)), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    # Transition buttons: django-fsm-2's mixin applies a transition without asking who clicked,
    # so every transition goes through the service, which checks the role and the reasons.
    def _apply_fsm_transition(self, *, obj, transition_name, request, kwargs=None) -> bool:
        try:
            workflow = workflow_transition(workflow_id=obj.pk, name=transition_name, by=request.user)
        except (PermissionDenied, ValidationError, Refused) as exc:
            self.message_user(request, " ".join(reasons(exc)), messages.ERROR)
            return False
        self.message_user(request, f"“{workflow.name}” is now {workflow.get_status_display().lower()}.",
                          messages.SUCCESS)
        return True

    @admin.action(description="Pause selected workflows")
    def pause_selected(self, request, queryset) -> None:
        self._bulk_transition(request, queryset, "pause")

    @admin.action(description="Activate selected workflows")
    def activate_selected(self, request, queryset) -> None:
        self._bulk_transition(request, queryset, "activate")

    @admin.action(description="Allow the selected workflows to delete records (their “Delete a record” steps)")
    def allow_deletion_selected(self, request, queryset) -> None:
        self._allow_deletion(request, queryset, True)

    @admin.action(description="Stop the selected workflows from deleting records")
    def forbid_deletion_selected(self, request, queryset) -> None:
        self._allow_deletion(request, queryset, False)

    def _allow_deletion(self, request, queryset, allowed: bool) -> None:
        done, refused = 0, []
        for workflow in queryset:
            try:
                workflow_allow_deletion(workflow_id=workflow.pk, by=request.user, allowed=allowed)
                done += 1
            except PermissionDenied as exc:
                refused.append(f"{workflow.name}: {exc}")
        if done:
            may = "may now" if allowed else "may no longer"
            self.message_user(request, f"{done} workflow(s) {may} delete records.", messages.SUCCESS)
        if refused:
            self.message_user(request, " ".join(refused), messages.ERROR)

    @admin.action(description="Switch to shadow mode (real events, every effect previewed, nothing sent)")
    def shadow_selected(self, request, queryset) -> None:
        self._set_mode(request, queryset, "shadow")

    @admin.action(description="Switch to execute mode (says what shadow mode saw)")
    def execute_selected(self, request, queryset) -> None:
        self._set_mode(request, queryset, "execute")

    def _set_mode(self, request, queryset, mode: str) -> None:
        for workflow in queryset:
            try:
                workflow, seen = workflow_set_mode(workflow_id=workflow.pk, by=request.user, mode=mode)
            except (PermissionDenied, ValidationError) as exc:
                self.message_user(request, f"{workflow.name}: {' '.join(reasons(exc))}", messages.ERROR)
                continue
            said = f" {seen.words()}" if mode == "execute" else " Its runs preview every effect; nothing is sent."
            self.message_user(request, f"“{workflow.name}” is in {mode} mode.{said}", messages.SUCCESS)

    actions = ["activate_selected", "pause_selected", "allow_deletion_selected", "forbid_deletion_selected",
               "shadow_selected", "execute_selected"]

    def _bulk_transition(self, request, queryset, name) -> None:
        done, problems = 0, []
        for workflow in queryset:
            try:
                workflow_transition(workflow_id=workflow.pk, name=name, by=request.user)
                done += 1
            except (PermissionDenied, ValidationError, Refused) as exc:
                problems.append(" ".join(reasons(exc)))
        if done:
            self.message_user(request, f"{name.capitalize()}d {done} workflow(s).", messages.SUCCESS)
        for problem in problems:
            self.message_user(request, problem, messages.ERROR)
