"""Starting a workflow by hand, from where people are: a record's page (deal, lead, contact,
project) or the workflow list (a workflow started on no record). A workflow that declares inputs
asks for them first, each as a field of its kind, with its default filled in; what is wrong is
said at the field and nothing starts (triggers/manual.py checks and starts)."""

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from crm_automation.automation.triggers.manual import inputs_of, manual_workflows, workflow_start
from crm_automation.refusals import Refused
from crm_automation.web.views.common import back, forbidden, refusal_text

INPUT_TYPES = {"number": "number", "money": "number", "date": "date", "datetime": "datetime-local",
               "email": "email", "url": "url", "phone": "tel"}


def _fields(workflow: Any, posted: dict[str, str], errors: dict[str, list[str]]) -> list[dict]:
    fields = []
    for spec in inputs_of(workflow.current_version.definition):
        value = posted.get(spec.key, "" if spec.default is None else str(spec.default))
        fields.append({"key": spec.key, "label": spec.label, "kind": spec.kind, "required": spec.required,
                       "value": value, "choices": spec.choices, "input_type": INPUT_TYPES.get(spec.kind, "text"),
                       "errors": errors.get(f"input.{spec.key}", [])})
    return fields


def start_page(request, *, record, organization_id: int, here: str, title: str) -> HttpResponse:
    """GET: the chosen workflow's inputs (or straight to the start when it has none and the
    form says so); POST with `confirm`: start it."""
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot start workflows.")
    workflow_id = request.POST.get("workflow") or request.GET.get("workflow") or ""
    chosen = next((w for w in manual_workflows(record, organization_id)
                   if str(w.pk) == workflow_id and w.current_version is not None), None)
    if chosen is None or chosen.current_version is None:
        raise Http404("No activated workflow of yours starts by hand here.")
    posted = {key.removeprefix("input."): value for key, value in request.POST.items() if key.startswith("input.")}
    errors: dict[str, list[str]] = {}
    problem = ""
    declared = inputs_of(chosen.current_version.definition)
    if request.method == "POST" and (request.POST.get("confirm") or not declared):
        try:
            run = workflow_start(workflow_id=chosen.pk, by=request.user, record=record, input=posted)
        except ValidationError as exc:
            errors = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
            elsewhere = [m for key, found in errors.items() if not key.startswith("input.") for m in found]
            problem = "Nothing was started: " + "; ".join(elsewhere) if elsewhere else \
                "Nothing was started: correct the inputs below."
        except (PermissionDenied, Refused) as exc:
            problem = refusal_text(exc)
        else:
            messages.success(request, f"Started “{chosen.name}” (run #{run.pk}); its steps appear as it goes.")
            return back(request, reverse("web:run", args=[run.pk]))
    status = 400 if errors or problem else 200
    return render(request, "web/start.html", {
        "place": request.place, "workflow": chosen, "title": title, "action": here, "problem": problem,
        "fields": _fields(chosen, posted, errors), "back": request.POST.get("next") or request.GET.get("next") or "",
    }, status=status)
