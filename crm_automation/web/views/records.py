"""A simple record page for a deal, a lead, a contact or a project: its fields, the runs it
triggered, why each workflow ran or not, and "Run workflow…" for the workflows started by hand
(views/starts.py asks for their inputs)."""

import uuid

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse

from crm_automation.automation.selectors import decisions_of_record, runs_of_record
from crm_automation.automation.triggers.manual import manual_workflows
from crm_automation.crm.changes import stand_in
from crm_automation.crm.models import Contact, CustomField, Deal, Lead, Project
from crm_automation.web.live import runs_watch
from crm_automation.web.rows import with_values
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.starts import start_page
from crm_automation.web.words import duration

KINDS: dict[str, type[Deal] | type[Lead] | type[Contact] | type[Project]] = {
    "deal": Deal, "lead": Lead, "contact": Contact, "project": Project}
SHOWN = 20


def record_of(request, kind: str, pk: str):
    model = KINDS.get(kind)
    try:
        key = (int(pk) if kind == "contact" else uuid.UUID(pk)) if model else None
    except ValueError:
        key = None
    found = model.objects.filter(pk=key, organization=request.place.organization).first() if key else None
    if found is None:
        raise Http404("No such record in your organization.")
    return found


def events_id(record) -> object:
    """The id a record's events and runs carry (a contact's is a stand-in uuid)."""
    return stand_in("contact", record.pk) if isinstance(record, Contact) else record.pk


def title_of(record) -> str:
    return getattr(record, "title", None) or getattr(record, "name", None) or str(record)


@org_page
def record_page(request, kind: str, pk):
    record = record_of(request, kind, pk)
    runs = list(runs_of_record(entity_id=events_id(record), organization_id=record.organization_id)
                .filter(simulated=False)[:SHOWN])
    for run in runs:
        with_values(run, took=duration(run.duration_ms))
    decisions = list(decisions_of_record(entity_id=events_id(record), organization_id=record.organization_id)[:SHOWN])
    return render(request, "web/record.html", {
        "place": request.place, "record": record, "kind": kind, "runs": runs, "decisions": decisions,
        "live": runs_watch(record.organization_id, runs),
        "own_fields": [(f.label, shown_value(record.custom.get(f.key))) for f in CustomField.objects.filter(
            organization_id=record.organization_id, entity=kind)],
        "startable": manual_workflows(record) if request.place.can_edit else [],
        "title": title_of(record)})


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
