"""The workflow list (/crm/automation): figures, the status toggle, clone, archive, delete a
draft, and the template gallery. Every write is a POST form that works without JavaScript."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from crm_automation.automation import workflow_templates as templates
from crm_automation.automation.ai import authoring, providers
from crm_automation.automation.definition import catalog
from crm_automation.automation.definition.documents import DocumentError
from crm_automation.automation.models import AlertIncident, Workflow, WorkflowStatus
from crm_automation.automation.ops import costs
from crm_automation.automation.services.shadow import workflow_set_mode
from crm_automation.automation.services.versions import workflow_clone
from crm_automation.automation.services.workflows import workflow_delete, workflow_transition
from crm_automation.web import selectors
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, back, forbidden, workflow_of
from crm_automation.web.views.history import history_context

STATUS_FILTERS = [("", "Active and inactive"), ("activated", "Active"), ("paused", "Paused"), ("draft", "Drafts"),
                  ("archived", "Archived"), ("all", "All, archived too")]


@org_page
def workflow_list(request):
    place = request.place
    filters = selectors.WorkflowFilters.from_query(request.GET)
    context = {
        "place": place,
        "section": "workflows",
        "workflows": selectors.workflow_list(place.organization, filters),
        "filters": filters,
        "status_filters": STATUS_FILTERS,
        "trigger_choices": [(value, label) for value, label in catalog.TRIGGER_CHOICES],
        "usage": selectors.usage(place.organization),
        "month": costs.organization_month(place.organization),  # hours saved and costs, all workflows
        "alerts": list(AlertIncident.objects.filter(organization=place.organization, closed_at__isnull=True)
                       .select_related("workflow")[:10]),
        **history_context(request),
    }
    return render(request, "web/workflow_list.html", context)


@require_POST
@org_page
def workflow_toggle(request, pk: int):
    """Activate or pause (never delete): the button says which; admins may."""
    workflow = workflow_of(request, pk)
    if not request.place.can_manage:
        return forbidden(request, "Only admins of this organization can switch workflows on and off.")
    name = "pause" if workflow.status == WorkflowStatus.ACTIVATED else "activate"
    acknowledged = request.POST.get("acknowledge_cycle") == "1"
    attempt(request, lambda: workflow_transition(workflow_id=workflow.pk, name=name, by=request.user,
                                                 acknowledge_cycle=acknowledged),
            f"“{workflow.name}” is {'paused: it no longer starts runs' if name == 'pause' else 'active'}.")
    return back(request)


@require_POST
@org_page
def workflow_mode(request, pk: int):
    """Shadow mode on or off (admins): leaving it says what it saw (services/shadow.py)."""
    workflow = workflow_of(request, pk)
    if not request.place.can_manage:
        return forbidden(request, "Only admins of this organization switch a workflow between shadow and execute "
                                  "mode.")
    mode = Workflow.Mode.EXECUTE if workflow.mode == Workflow.Mode.SHADOW else Workflow.Mode.SHADOW
    attempt(request, lambda: workflow_set_mode(workflow_id=workflow.pk, by=request.user, mode=mode),
            lambda done: (f"“{workflow.name}” is in shadow mode: it runs on real events, every effect is previewed "
                          "and nothing is sent." if mode == Workflow.Mode.SHADOW else
                          f"“{workflow.name}” executes again. {done[1].words()}"))
    return back(request)


@require_POST
@org_page
def workflow_clone_view(request, pk: int):
    workflow = workflow_of(request, pk)
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot make workflows.")
    copy = attempt(request, lambda: workflow_clone(workflow_id=workflow.pk, by=request.user),
                   lambda made: f"Made “{made.name}”, a draft copy of “{workflow.name}”.")
    return back(request) if copy is None else redirect("web:workflows")


@require_http_methods(["GET", "POST"])
@org_page
def workflow_archive(request, pk: int):
    """Asks first (what archiving means), then archives."""
    workflow = workflow_of(request, pk)
    if not request.place.can_manage:
        return forbidden(request, "Only admins of this organization can archive workflows.")
    if request.method == "POST":
        attempt(request, lambda: workflow_transition(workflow_id=workflow.pk, name="archive", by=request.user),
                f"“{workflow.name}” is archived: it will not run again; its runs and versions are kept.")
        return redirect("web:workflows")
    return render(request, "web/confirm.html", {
        "place": request.place, "title": f"Archive “{workflow.name}”?",
        "explanation": ["It stops starting runs for good (runs already under way finish).",
                        "Its run history and versions are kept; you can clone it to use it again.",
                        "Archiving cannot be undone."],
        "button": "Archive", "danger": True})


@require_http_methods(["GET", "POST"])
@org_page
def workflow_delete_view(request, pk: int):
    workflow = workflow_of(request, pk)
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot delete workflows.")
    if request.method == "POST":
        attempt(request, lambda: workflow_delete(workflow_id=workflow.pk, by=request.user),
                f"Deleted the draft “{workflow.name}”.")
        return redirect("web:workflows")
    return render(request, "web/confirm.html", {
        "place": request.place, "title": f"Delete the draft “{workflow.name}”?",
        "explanation": ["The draft and its versions are deleted. This cannot be undone."],
        "button": "Delete", "danger": True})


@require_http_methods(["GET", "POST"])
@org_page
def template_gallery(request):
    """The shipped templates, one line each; using one makes a draft the user then edits."""
    if request.method == "POST":
        if not request.place.can_edit:
            return forbidden(request, "Viewers cannot make workflows.")
        key = request.POST.get("template", "")
        try:
            made = attempt(request, lambda: templates.load(organization=request.place.organization, by=request.user,
                                                           key=key),
                           lambda made: f"Made the draft “{made.name}” from the template; review it, then activate it.")
        except templates.UnknownTemplate as exc:
            made = None
            messages.error(request, str(exc))
        except DocumentError as exc:
            made = None
            messages.error(request, "This template does not fit your organization: " + "; ".join(exc.messages[:3]))
        if made is not None:
            return redirect(reverse("web:workflows") + f"?q={made.name}")
        return redirect("web:templates")
    return render(request, "web/templates.html", {"place": request.place, "section": "templates",
                                                  "templates": templates.available()})


@require_http_methods(["GET", "POST"])
@org_page
def workflow_describe(request):
    """Describe a workflow in plain language; the AI model drafts it (ai/authoring.py) and the
    builder opens it with what the model assumed. Never activated here."""
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot make workflows.")
    description = request.POST.get("description", "") if request.method == "POST" else ""
    errors: list[str] = []
    if request.method == "POST":
        try:
            draft = authoring.workflow_draft_from_description(organization=request.place.organization,
                                                               by=request.user, description=description)
        except ValidationError as exc:
            errors = exc.messages
        else:
            messages.success(request, f"The AI model drafted “{draft.workflow.name}”. It is a draft: check every "
                                      "step, then activate it.")
            for assumption in draft.assumptions:
                messages.info(request, f"Assumed: {assumption}")
            return redirect("web:edit", pk=draft.workflow.pk)
    return render(request, "web/describe.html", {
        "place": request.place, "section": "workflows", "description": description, "errors": errors,
        "ai_ready": providers.configured() is not None, "ai_missing": providers.not_configured_message(),
        "limit": authoring.MAX_DESCRIPTION})
