"""The organization's event catalog (crm/business_events.py), on a page: everyone sees the events
other systems may send (the predeclared ones and the organization's own), how to send each one and
the newest events received; admins declare and delete their own (through the same record services
as the API and the admin: the declaration's checks, the role, an event a live workflow listens to
not deleted)."""

import json

from django.contrib import messages
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from crm_automation.automation.models import WorkflowDecision
from crm_automation.crm import business_events
from crm_automation.crm.models import BusinessEvent, EventType
from crm_automation.crm.services import record_create, record_delete
from crm_automation.refusals import Refused
from crm_automation.web.rows import with_values
from crm_automation.web.tenancy import Place, org_page
from crm_automation.web.views.common import attempt, back, forbidden, refusal_text

RECEIVED = 50  # the newest events shown
FORM = ("name", "description", "about", "fields")
FIELDS_EXAMPLE = '[{"key": "permit.number", "kind": "text", "required": true, "label": "Number"}]'


class PageRequest(HttpRequest):
    """The request an `org_page` view gets: the organization it acts in and the user's role there."""

    place: Place


def _event_type_of(request: PageRequest, pk: int) -> EventType:
    found = EventType.objects.filter(pk=pk, organization=request.place.organization).first()
    if found is None:
        raise Http404("No such event in your organization.")
    return found


def sending_example(declaration: business_events.Declaration) -> str:
    """The body another system sends for this event, as JSON (the API's and a signed webhook's)."""
    body: dict[str, object] = {"type": declaration.name, "idempotency_key": "<your unique id of this event>"}
    if declaration.about == "contact":
        body["contact"] = {"phone": "+1 555 0100"}
    elif declaration.about:
        body[declaration.about] = f"<the {declaration.about}'s id>"
    body["data"] = business_events.sample_data(declaration)
    return json.dumps(body, indent=2, ensure_ascii=False)


def _declare(request: PageRequest, typed: dict[str, str]) -> dict[str, list[str]]:
    """Declare the event the form describes; what is wrong, by form field ({} when declared)."""
    try:
        fields = json.loads(typed["fields"]) if typed["fields"].strip() else []
    except (ValueError, RecursionError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        return {"fields": [f"is not JSON{where}: write a list such as {FIELDS_EXAMPLE}, or leave it empty"]}
    values = {"name": typed["name"], "description": typed["description"], "about": typed["about"], "fields": fields}
    try:
        made = record_create(model=EventType, organization_id=request.place.organization.pk,
                             by=request.user, values=values, role="admin")
    except ValidationError as exc:
        return _by_field(exc, typed["name"])
    except Refused as exc:
        return {NON_FIELD_ERRORS: [refusal_text(exc)]}
    messages.success(request, f"Declared “{made.name}”: workflows listen to it with the trigger "
                              f"{business_events.trigger_type_of(made.name)}.")
    return {}


def _by_field(exc: ValidationError, name: str) -> dict[str, list[str]]:
    """The model's refusal by form field; the organization already having the name is the name's."""
    if not hasattr(exc, "error_dict"):
        return {NON_FIELD_ERRORS: exc.messages}
    found = exc.message_dict
    others = exc.error_dict.get(NON_FIELD_ERRORS, [])
    if any(error.code == "unique_together" for error in others):
        found.setdefault("name", []).append(f"“{name}” is already declared in your organization")
        found[NON_FIELD_ERRORS] = [m for e in others if e.code != "unique_together" for m in e.messages]
        if not found[NON_FIELD_ERRORS]:
            del found[NON_FIELD_ERRORS]
    return found


@require_http_methods(["GET", "POST"])
@org_page
def events_page(request: PageRequest) -> HttpResponse:
    place = request.place
    typed = {name: "" for name in FORM}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        if not place.can_manage:
            return forbidden(request, "Only admins declare the organization's own events.")
        typed = {name: request.POST.get(name, "").strip() for name in FORM}
        try:
            errors = _declare(request, typed)
        except PermissionDenied as exc:
            return forbidden(request, refusal_text(exc))
        if not errors:
            return redirect("web:events")
    # The declarations are shared (the predeclared ones are the module's): each goes with its example.
    catalog = [{"event": declaration, "example": sending_example(declaration)}
               for declaration in business_events.catalog(place.organization.pk).values()]
    received = list(BusinessEvent.objects.filter(organization=place.organization)
                    .select_related("contact").order_by("-received_at")[:RECEIVED])
    # What each event did: every candidate workflow's decision with its reason ("why not"), one query.
    decided: dict = {}
    for decision in WorkflowDecision.objects.filter(
            entity_id__in=[event.pk for event in received], event__organization_id=place.organization.pk,
    ).select_related("workflow").order_by("workflow__name"):
        decided.setdefault(decision.entity_id, []).append(decision)
    for event in received:
        with_values(event, data_json=json.dumps(event.data, indent=2, ensure_ascii=False),
                    decisions=decided.get(event.pk, []))
    return render(request, "web/events.html", {
        "place": place, "section": "events", "catalog": catalog, "received": received,
        "shown": RECEIVED, "abouts": EventType.About.choices, "typed": typed, "errors": errors,
        "others": [m for key, found in errors.items() if key not in FORM for m in found],
        "fields_example": FIELDS_EXAMPLE,
    }, status=400 if errors else 200)


@require_POST
@org_page
def event_type_delete(request: PageRequest, pk: int) -> HttpResponse:
    event_type = _event_type_of(request, pk)
    if not request.place.can_manage:
        return forbidden(request, "Only admins delete the organization's own events.")
    attempt(request, lambda: record_delete(record=event_type, by=request.user, role="admin"),
            f"Deleted “{event_type.name}” (the events received before are kept).")
    return back(request, reverse("web:events"))
