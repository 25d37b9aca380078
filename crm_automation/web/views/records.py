"""A simple record page for a deal or a lead: its fields, the runs it triggered, why each
workflow ran or not, and "Run workflow…" for the workflows started by hand."""

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from crm_automation.automation.selectors import decisions_of_record, runs_of_record
from crm_automation.automation.triggers.manual import manual_workflows, workflow_start
from crm_automation.crm.models import CustomField, Deal, Lead
from crm_automation.web.live import runs_watch
from crm_automation.web.rows import with_values
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, back, forbidden
from crm_automation.web.words import duration

KINDS: dict[str, type[Deal] | type[Lead]] = {"deal": Deal, "lead": Lead}
SHOWN = 20


def record_of(request, kind: str, pk):
    model = KINDS.get(kind)
    found = model.objects.filter(pk=pk, organization=request.place.organization).first() if model else None
    if found is None:
        raise Http404("No such record in your organization.")
    return found


@org_page
def record_page(request, kind: str, pk):
    record = record_of(request, kind, pk)
    runs = list(runs_of_record(entity_id=record.pk, organization_id=record.organization_id)
                .filter(simulated=False)[:SHOWN])
    for run in runs:
        with_values(run, took=duration(run.duration_ms))
    decisions = list(decisions_of_record(entity_id=record.pk, organization_id=record.organization_id)[:SHOWN])
    return render(request, "web/record.html", {
        "place": request.place, "record": record, "kind": kind, "runs": runs, "decisions": decisions,
        "live": runs_watch(record.organization_id, runs),
        "own_fields": [(f.label, shown_value(record.custom.get(f.key))) for f in CustomField.objects.filter(
            organization_id=record.organization_id, entity=kind)],
        "startable": manual_workflows(record) if request.place.can_edit else [],
        "title": record.title if kind == "deal" else record.name})


@require_POST
@org_page
def record_start(request, kind: str, pk):
    """Run a manual workflow on this record now."""
    record = record_of(request, kind, pk)
    if not request.place.can_edit:
        return forbidden(request, "Viewers cannot start workflows.")
    workflow_id = request.POST.get("workflow", "")
    chosen = next((w for w in manual_workflows(record) if str(w.pk) == workflow_id), None)
    if chosen is None:
        raise Http404("No workflow of yours that starts by hand on this record.")
    attempt(request, lambda: workflow_start(workflow_id=chosen.pk, by=request.user, record=record),
            lambda run: f"Started “{chosen.name}” (run #{run.pk}); its steps appear below as it goes.")
    return back(request, reverse("web:record", args=[kind, record.pk]))


def shown_value(value) -> str:
    """An own field's value as a person reads it: yes/no, a list joined, empty as a dash."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)
