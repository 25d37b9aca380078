"""Admin pages for a workflow's documents and versions: export and import YAML, start from a
ready-made template, compare two versions, roll back, clone. Thin views: the services in
versioning.py (and workflow_templates) do the work."""

from typing import TYPE_CHECKING

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from crm_automation import bounded_reader
from crm_automation.automation import workflow_templates
from crm_automation.automation.definition import documents
from crm_automation.automation.services.versions import (
    versions_compare,
    workflow_clone,
    workflow_document,
    workflow_export_yaml,
    workflow_import_yaml,
    workflow_rollback,
)
from crm_automation.automation.services.workflows import has_unpublished_changes, workflow_publish
from crm_automation.crm.models import Organization
from crm_automation.refusals import Refused, reasons

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    from crm_automation.automation.models import Workflow

    _Admin = ModelAdmin[Workflow]  # what the mixin is mixed into (WorkflowAdmin), for the type checker
else:
    _Admin = object


class WorkflowDocumentViews(_Admin):
    """Mixed into WorkflowAdmin: every view checks the same permissions as the change page."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="automation_workflow_import"),
            path("templates/", view(self.templates_view), name="automation_workflow_templates"),
            path("<int:object_id>/export/", view(self.export_view), name="automation_workflow_export"),
            path("<int:object_id>/clone/", view(require_POST(self.clone_view)), name="automation_workflow_clone"),
            path("<int:object_id>/versions/<int:number>/", view(self.version_view),
                 name="automation_workflow_version"),
            path("<int:object_id>/versions/<int:number>/rollback/", view(require_POST(self.rollback_view)),
                 name="automation_workflow_rollback"),
            path("<int:object_id>/publish/", view(self.publish_view), name="automation_workflow_publish"),
            *super().get_urls(),
        ]

    def _workflow(self, request, object_id):
        """The workflow if this person may see it; 404 otherwise (another tenant's id included)."""
        workflow = self.get_object(request, str(object_id))
        if workflow is None or not self.has_view_permission(request, workflow):
            raise Http404("No such workflow.")
        return workflow

    def _change_url(self, workflow) -> str:
        return reverse("admin:automation_workflow_change", args=[workflow.pk])

    def _refused(self, request, exc: PermissionDenied | ValidationError | Refused) -> None:
        self.message_user(request, " ".join(reasons(exc)), messages.ERROR)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        workflow = self.get_object(request, object_id)
        extra = {**(extra_context or {}),
                 "unpublished": workflow is not None and has_unpublished_changes(workflow)}
        return super().change_view(request, object_id, form_url, extra)

    def publish_view(self, request, object_id):
        """GET: what publishing would change (live version → saved edits); POST: publish."""
        workflow = self._workflow(request, object_id)
        if request.method == "POST":
            try:
                workflow = workflow_publish(workflow_id=workflow.pk, by=request.user)
            except (PermissionDenied, ValidationError, Refused) as exc:
                self._refused(request, exc)
            else:
                self.message_user(request, f"“{workflow.name}” is live: version {workflow.version} runs for new "
                                           "triggers; runs already under way finish on their version.",
                                  messages.SUCCESS)
            return HttpResponseRedirect(self._change_url(workflow))
        live = workflow_document(workflow, workflow.current_version) if workflow.current_version else {}
        return TemplateResponse(request, "admin/automation/workflow/publish.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": workflow,
            "title": f"Publish “{workflow.name}”?", "workflow": workflow,
            "diff": documents.compare(live, workflow_document(workflow)),
            "can_publish": has_unpublished_changes(workflow),
        })

    def export_view(self, request, object_id):
        workflow = self._workflow(request, object_id)
        response = HttpResponse(workflow_export_yaml(workflow), content_type="application/yaml; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{workflow.key}.yaml"'
        return response

    def clone_view(self, request, object_id):
        workflow = self._workflow(request, object_id)
        try:
            copy = workflow_clone(workflow_id=workflow.pk, by=request.user)
        except PermissionDenied as exc:
            self._refused(request, exc)
            return HttpResponseRedirect(self._change_url(workflow))
        self.message_user(request, f"“{copy.name}” is a new draft copied from “{workflow.name}”.", messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(copy))

    def version_view(self, request, object_id, number):
        workflow = self._workflow(request, object_id)
        previous = workflow.versions.filter(number__lt=number).order_by("-number").values_list("number", flat=True)
        asked = request.GET.get("against")
        against = bounded_reader.read_int(asked) if asked else (previous[0] if previous else number)
        if against is None:
            return HttpResponseBadRequest(f"?against= must be a version number of this workflow, e.g. {number}.",
                                          content_type="text/plain; charset=utf-8")
        try:
            diff = versions_compare(workflow, against, number)
        except ValidationError as exc:
            raise Http404(" ".join(exc.messages)) from None
        return TemplateResponse(request, "admin/automation/workflow/version.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "original": workflow,
            "title": f"{workflow.name}: version {number} against version {against}",
            "workflow": workflow, "number": number, "against": against, "diff": diff,
            "numbers": list(workflow.versions.values_list("number", flat=True)),
            "can_roll_back": self.has_change_permission(request, workflow) and number != workflow.version,
        })

    def rollback_view(self, request, object_id, number):
        workflow = self._workflow(request, object_id)
        try:
            workflow = workflow_rollback(workflow_id=workflow.pk, by=request.user, number=number)
        except (PermissionDenied, ValidationError, Refused) as exc:
            self._refused(request, exc)
        else:
            self.message_user(request, f"Rolled back: version {workflow.version} has the definition of version "
                                       f"{number}. Earlier versions are kept.", messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(workflow))

    def _target_orgs(self, request):
        """The organizations this person may add workflows to (ops or admin there)."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.user.is_superuser:
            return Organization.objects.order_by("name")
        return Organization.objects.filter(pk__in=self.editable_org_ids(request)).order_by("name")

    def templates_view(self, request):
        """GET: the ready-made templates; POST (key, organization): load one as a draft."""
        orgs = self._target_orgs(request)
        errors = []
        if request.method == "POST":
            chosen = request.POST.get("organization", "")
            org = (orgs.filter(pk=bounded_reader.read_int(chosen)).first() if bounded_reader.read_int(chosen)
                   else orgs[0] if len(orgs) == 1 else None)
            key = request.POST.get("key", "")
            if org is None:
                errors = ["Choose the organization the workflow goes into."]
            else:
                try:
                    workflow = workflow_templates.load(organization=org, by=request.user, key=key)
                except workflow_templates.UnknownTemplate as exc:
                    errors = [str(exc)]
                except documents.DocumentError as exc:
                    errors = [f"This template does not fit {org.name}:", *exc.messages]
                except (PermissionDenied, ValidationError) as exc:
                    errors = list(getattr(exc, "messages", [str(exc)]))
                else:
                    self.message_user(request, f"“{workflow.name}” is a new draft in {org.name}, made from a "
                                               "template: review it, then activate it.", messages.SUCCESS)
                    return HttpResponseRedirect(self._change_url(workflow))
        return TemplateResponse(request, "admin/automation/workflow/templates.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Start from a template",
            "templates": workflow_templates.available(), "orgs": orgs, "errors": errors,
        })

    def import_view(self, request):
        orgs = self._target_orgs(request)
        errors, text = [], ""
        if request.method == "POST":
            upload = request.FILES.get("file")
            try:
                text = bounded_reader.read_upload(upload) if upload else request.POST.get("text", "")
            except bounded_reader.InputRefused as exc:
                text, errors = "", [f"{exc}."]
            chosen = bounded_reader.read_int(request.POST.get("organization"))
            org = (orgs.filter(pk=chosen).first() if chosen else None) or (orgs[0] if len(orgs) == 1 else None)
            if org is None and not errors:
                errors = ["Choose the organization the workflow goes into."]
            elif not errors:
                try:
                    workflow, notes = workflow_import_yaml(organization=org, by=request.user, text=text)
                except documents.DocumentError as exc:
                    errors = exc.messages
                except (PermissionDenied, ValidationError) as exc:
                    errors = list(getattr(exc, "messages", [str(exc)]))
                else:
                    self.message_user(request, f"Imported “{workflow.name}” ({workflow.get_status_display().lower()})"
                                      + "".join(f"; {n}" for n in notes) + ".", messages.SUCCESS)
                    return HttpResponseRedirect(self._change_url(workflow))
        return TemplateResponse(request, "admin/automation/workflow/import.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Import a workflow (YAML)",
            "errors": errors, "text": text, "orgs": orgs, "chosen": slugify(request.POST.get("organization", "")),
        }, status=400 if errors else 200)
