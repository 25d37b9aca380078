"""Admin pages to simulate a workflow against a record and to start a manual workflow on one.
Thin views: simulation.py and launch.py do the work and check who may."""

import uuid
from typing import TYPE_CHECKING

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from crm_automation.automation.definition import catalog
from crm_automation.automation.services.simulation import simulate
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.crm.models import Deal, Lead
from crm_automation.refusals import Refused, reasons

if TYPE_CHECKING:
    from crm_automation.automation.admin.workflow_documents import WorkflowDocumentViews

    _Views = WorkflowDocumentViews  # mixed in before it (its `_workflow`), for the type checker
else:
    _Views = object

RECENT = 50


def _record(organization_id: int, entity: str | None, record_id: str) -> Deal | Lead | None:
    """The organization's deal or lead with this id, or None (another tenant's id included)."""
    try:
        pk = uuid.UUID(str(record_id).strip())
    except ValueError:
        return None
    model = Deal if entity == "deal" else Lead
    return model.objects.filter(organization_id=organization_id, pk=pk).first()


class WorkflowLaunchViews(_Views):
    """Mixed into WorkflowAdmin, after WorkflowDocumentViews (whose `_workflow` it uses)."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:object_id>/simulate/", view(self.simulate_view), name="automation_workflow_simulate"),
            path("<int:object_id>/start/", view(self.start_view), name="automation_workflow_start"),
            *super().get_urls(),
        ]

    def simulate_view(self, request, object_id: int):
        workflow = self._workflow(request, object_id)
        entity = catalog.TRIGGER_ENTITY.get(workflow.trigger_type)
        if request.method == "POST":
            record = _record(workflow.organization_id, entity, request.POST.get("record", ""))
            if record is None:
                self.message_user(request, f"Choose one of this organization's {entity}s.", messages.ERROR)
                return HttpResponseRedirect(request.get_full_path())
            number = request.POST.get("version") or None
            try:
                run = simulate(workflow_id=workflow.pk, by=request.user, record=record,
                               version_number=int(number) if number and number.isascii() and number.isdigit() else None)
            except PermissionDenied as exc:
                raise PermissionDenied(str(exc)) from None
            except ValidationError as exc:
                self.message_user(request, " ".join(exc.messages), messages.ERROR)
                return HttpResponseRedirect(request.get_full_path())
            self.message_user(request, "Simulated: the steps show what would happen. Nothing was sent and no "
                                       "record was changed.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:automation_workflowrun_change", args=[run.pk]))
        model = Deal if entity == "deal" else Lead
        records = list(model.objects.filter(organization_id=workflow.organization_id)
                       .order_by("-updated_at")[:RECENT]) if model else []
        return TemplateResponse(request, "admin/automation/workflow/simulate.html", {
            **self.admin_site.each_context(request), "workflow": workflow, "entity": entity, "records": records,
            "chosen": request.GET.get("record", ""), "versions": workflow.versions.order_by("-number"),
            "title": f"Simulate {workflow.name}", "opts": self.model._meta})

    def start_view(self, request, object_id: int):
        """GET: confirm starting the workflow on the record; POST: start it."""
        workflow = self._workflow(request, object_id)
        entity = catalog.MANUAL.get(workflow.trigger_type)
        record = _record(workflow.organization_id, entity or "deal", request.POST.get("record")
                         or request.GET.get("record", ""))
        if record is None or entity is None:
            raise Http404("No such record, or this workflow is not started by hand.")
        back = reverse(f"admin:crm_{entity}_change", args=[record.pk])
        if request.method != "POST":
            return TemplateResponse(request, "admin/automation/workflow/start.html", {
                **self.admin_site.each_context(request), "workflow": workflow, "record": record, "entity": entity,
                "back": back, "title": f"Start {workflow.name}", "opts": self.model._meta})
        try:
            run = workflow_start(workflow_id=workflow.pk, by=request.user, record=record)
        except (PermissionDenied, ValidationError, Refused) as exc:
            self.message_user(request, " ".join(reasons(exc)), messages.ERROR)
            return HttpResponseRedirect(back)
        link = reverse("admin:automation_workflowrun_change", args=[run.pk])
        self.message_user(request, f"Started “{workflow.name}”: run #{run.pk} ({link}).", messages.SUCCESS)
        return HttpResponseRedirect(back)
