"""A simple record page for a deal, a lead, a contact or a project: its fields, the runs it
triggered, why each workflow ran or not, and "Run workflow…" for the workflows started by hand
(views/starts.py asks for their inputs)."""

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from crm_automation.automation.selectors import decisions_of_record, runs_of_record
from crm_automation.automation.triggers import on_demand
from crm_automation.automation.triggers.manual import manual_workflows
from crm_automation.crm import custom_fields
from crm_automation.crm.changes import stand_in
from crm_automation.crm.models import Contact, CustomField, Membership
from crm_automation.crm.selectors import record_in
from crm_automation.crm.services import record_update
from crm_automation.refusals import Refused, StaleEdit
from crm_automation.web.live import runs_watch
from crm_automation.web.rows import with_values
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import forbidden, refusal_text
from crm_automation.web.views.starts import start_page
from crm_automation.web.words import duration

SHOWN = 20


def record_of(request, kind: str, pk: str) -> Any:
    found = record_in(request.place.organization.pk, kind, pk)
    if found is None:
        raise Http404("No such record in your organization.")
    return found


def events_id(record) -> object:
    """The id a record's events and runs carry (a contact's is a stand-in uuid)."""
    return stand_in("contact", record.pk) if isinstance(record, Contact) else record.pk


def title_of(record) -> str:
    return getattr(record, "title", None) or getattr(record, "name", None) or str(record)


INPUT_TYPES = {"number": "number", "money": "number", "date": "date", "datetime": "datetime-local",
               "email": "email", "url": "url", "phone": "tel"}


def own_fields(record, kind: str, posted: dict | None = None, errors: dict | None = None) -> list[dict]:
    """The organization's own fields of this record: each with its value shown, the form's input
    for it (of its kind) and what was wrong with a value just sent."""
    fields = []
    for f in CustomField.objects.filter(organization_id=record.organization_id, entity=kind):
        value = (posted or {}).get(f.key, record.custom.get(f.key))
        fields.append({"key": f.key, "label": f.label, "kind": f.kind, "help": f.help_text,
                       "shown": shown_value(record.custom.get(f.key)), "value": "" if value is None else value,
                       "choices": f.choices, "input_type": INPUT_TYPES.get(f.kind, "text"),
                       "errors": (errors or {}).get(f"custom.{f.key}", [])})
    return fields


@org_page
def record_page(request, kind: str, pk: str):
    return _show(request, record_of(request, kind, pk), kind)


def _show(request, record, kind: str, posted: dict | None = None, errors: dict | None = None, status: int = 200):
    runs = list(runs_of_record(entity_id=events_id(record), organization_id=record.organization_id)
                .filter(simulated=False)[:SHOWN])
    for run in runs:
        with_values(run, took=duration(run.duration_ms))
    decisions = list(decisions_of_record(entity_id=events_id(record), organization_id=record.organization_id)[:SHOWN])
    return render(request, "web/record.html", {
        "place": request.place, "record": record, "kind": kind, "runs": runs, "decisions": decisions,
        "live": runs_watch(record.organization_id, runs),
        "own_fields": own_fields(record, kind, posted, errors),
        "startable": manual_workflows(record) if request.place.can_edit else [],
        "runnable": on_demand.startable_on(record) if request.place.can_manage else [],
        "members": list(Membership.objects.filter(organization_id=record.organization_id)
                        .values_list("user__username", flat=True).order_by("user__username")),
        "title": title_of(record)}, status=status)


@require_POST
@org_page
def record_own_fields(request, kind: str, pk: str):
    """Save the record's own fields from its page: each value checked by its kind, every problem
    said at its field, nothing saved when one is wrong."""
    record = record_of(request, kind, pk)
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot change records.")
    definitions = custom_fields.definitions(record.organization_id, kind)
    posted: dict[str, object] = {}
    for key, field in definitions.items():
        if field.kind == "choices":
            posted[key] = request.POST.getlist(f"custom.{key}")
        else:
            posted[key] = request.POST.get(f"custom.{key}", "").strip()
    # Every defined field is in the form: what is left empty is cleared (values of deleted fields go).
    values = {key: value for key, value in posted.items() if value not in ("", [], None)}
    try:
        clean = custom_fields.check_values(record.organization_id, kind, values)
        record_update(record=record, by=request.user, changes={"custom": clean})
    except ValidationError as exc:
        errors = exc.message_dict if hasattr(exc, "error_dict") else {"": exc.messages}
        if not any(key.startswith("custom.") for key in errors):
            messages.error(request, " ".join(m for found in errors.values() for m in found))
        return _show(request, record, kind, posted, errors, status=400)
    except (PermissionDenied, Refused, StaleEdit) as exc:
        messages.error(request, refusal_text(exc))
    else:
        messages.success(request, "Saved.")
    return redirect(reverse("web:record", args=[kind, record.pk]))


@org_page
def record_start(request, kind: str, pk: str):
    """Run a manual workflow on this record: its inputs first, if it declares any."""
    record = record_of(request, kind, pk)
    return start_page(request, record=record, organization_id=record.organization_id,
                      here=reverse("web:record-start", args=[kind, record.pk]),
                      title=f"On the {kind} “{title_of(record)}”")


@org_page
def workflow_start_page(request):
    """Run a workflow that starts on no record (from the workflow list)."""
    return start_page(request, record=None, organization_id=request.place.organization.pk,
                      here=reverse("web:workflow-start"), title="Started from the workflow list, on no record")


def shown_value(value) -> str:
    """An own field's value as a person reads it: yes/no, a list joined, empty as a dash."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
