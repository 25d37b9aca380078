"""The organization's own fields (crm/custom_fields.py), on a page: everyone sees them and where
workflows read them; admins add, rename and delete them (through the same record services as
the API and the admin: the definition's checks, the role, a field in use not deleted)."""

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from crm_automation.crm.custom_fields import used_by
from crm_automation.crm.models import CustomField
from crm_automation.crm.services import record_create, record_delete, record_update
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, back, forbidden


def _field_of(request, pk: int) -> CustomField:
    found = CustomField.objects.filter(pk=pk, organization=request.place.organization).first()
    if found is None:
        raise Http404("No such field in your organization.")
    return found


@require_http_methods(["GET", "POST"])
@org_page
def fields_page(request):
    place = request.place
    if request.method == "POST":
        if not place.can_manage:
            return forbidden(request, "Only admins define the organization's own fields.")
        kind = request.POST.get("kind", "")
        choices = [line.strip() for line in request.POST.get("choices", "").splitlines() if line.strip()]
        values = {"entity": request.POST.get("entity", ""), "key": request.POST.get("key", "").strip(),
                  "label": request.POST.get("label", "").strip(), "kind": kind,
                  "choices": choices if kind in ("choice", "choices") else [],
                  "help_text": request.POST.get("help_text", "").strip()}
        attempt(request, lambda: record_create(model=CustomField, organization_id=place.organization.pk,
                                               by=request.user, values=values, role="admin"),
                lambda made: f"Added “{made.label}”: workflows read it as {{{{{made.entity}.custom.{made.key}}}}}.")
        return back(request, reverse("web:fields"))
    fields = list(CustomField.objects.filter(organization=place.organization))
    for field in fields:
        field.path = f"{field.entity}.custom.{field.key}"
        field.readers = used_by(field)
    return render(request, "web/fields.html", {
        "place": place, "section": "fields", "fields": fields, "entities": CustomField.Entity.choices,
        "kinds": CustomField.Kind.choices})


@require_POST
@org_page
def field_rename(request, pk: int):
    field = _field_of(request, pk)
    if not request.place.can_manage:
        return forbidden(request, "Only admins rename the organization's own fields.")
    label = request.POST.get("label", "").strip()
    attempt(request, lambda: record_update(record=field, by=request.user, changes={"label": label}, role="admin"),
            f"Renamed to “{label}”; workflows go on reading it by its key.")
    return back(request, reverse("web:fields"))


@require_POST
@org_page
def field_delete(request, pk: int):
    field = _field_of(request, pk)
    if not request.place.can_manage:
        return forbidden(request, "Only admins delete the organization's own fields.")
    attempt(request, lambda: record_delete(record=field, by=request.user, role="admin"),
            f"Deleted “{field.label}” (the values records had for it are left in their data).")
    return back(request, reverse("web:fields"))
