"""“Run on a record…”: an admin starts an activated workflow that is not started by a person on a
record of the kind its trigger is about (a schedule's on no record), now, with a reason. The
record picker is the Simulate tab's; triggers/manual.workflow_start checks and starts
(on_demand.py), and its refusals are said on the page."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from crm_automation.automation.triggers import on_demand
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.refusals import Refused, reasons
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import forbidden, workflow_of
from crm_automation.web.views.workflow_pages import chosen_record, recent_records, tab_links


@require_http_methods(["GET", "POST"])
@org_page
def workflow_run_now(request, pk: int):
    workflow = workflow_of(request, pk)
    if not request.place.can_manage:
        return forbidden(request, "Only admins of this organization start a workflow that is not started by a "
                                  "person.")
    kind = on_demand.kind_of(workflow)
    context: dict = {"place": request.place, "section": "workflows", "workflow": workflow, "tab": "run-now",
                     "tabs": tab_links(workflow), "entity": kind, "errors": [], "field_errors": {},
                     "reason": request.POST.get("reason", "")}
    if workflow.started_by_a_person:
        context["errors"] = ["This workflow is started by a person: start it from the record's page (or the "
                             "workflow list for one started on no record)."]
        return render(request, "web/workflow_run_now.html", context)
    if kind is None:
        context["errors"] = [on_demand.unstartable(workflow)]
        return render(request, "web/workflow_run_now.html", context)
    organization_id = request.place.organization.pk
    chosen = chosen_record(organization_id, kind, request.POST.get("record") or request.GET.get("record") or "") \
        if kind else None
    status = 200
    if request.method == "POST":
        if kind and chosen is None:
            context["field_errors"] = {"record": [f"Choose the {kind} to run “{workflow.name}” on."]}
        else:
            try:
                run = workflow_start(workflow_id=workflow.pk, by=request.user, record=chosen,
                                     reason=request.POST.get("reason", ""))
            except ValidationError as exc:
                found = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
                context["field_errors"] = {("record" if key == "entity_type" else key): value
                                           for key, value in found.items() if key in ("entity_type", "reason")}
                context["errors"] = [m for key, value in found.items() if key not in ("entity_type", "reason")
                                     for m in value]
            except (PermissionDenied, Refused) as exc:
                context["errors"] = reasons(exc)
            else:
                messages.success(request, f"Started “{workflow.name}” (run #{run.pk}); its steps appear as it goes.")
                return redirect(reverse("web:run", args=[run.pk]))
        status = 400
    context.update(chosen=chosen, records=recent_records(organization_id, kind, chosen) if kind else [])
    return render(request, "web/workflow_run_now.html", context, status=status)
