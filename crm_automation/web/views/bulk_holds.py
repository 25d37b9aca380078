"""Bulk holds: what workflows held (or ran once as a digest) when one import or bulk action
changed more records than their trigger's `bulk: {mode: hold, over: N}` allows. Everyone sees
them; admins release a hold (a run per record) or discard it, through the services in
automation/bulk.py, which check the role and the hold's state again under a row lock."""

from uuid import UUID

from django.contrib import messages
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from crm_automation.automation.models import BulkHold, WorkflowDecision
from crm_automation.automation.triggers.bulk import bulk_hold_discard, bulk_hold_release
from crm_automation.crm.models import Deal, Lead
from crm_automation.web.rows import with_values
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, back, forbidden
from crm_automation.web.words import bulk_operation, bulk_source

SHOWN = 100
SAMPLE = 10
Status = BulkHold.Status
BADGES: dict[str, str] = {Status.PENDING: "waiting", Status.RELEASED: "completed", Status.DISCARDED: "cancelled"}
# The kinds of record with a page (web/views/records.py) and the field that names one.
RECORD_PAGES: dict[str, tuple[type[Deal] | type[Lead], str]] = {"deal": (Deal, "title"), "lead": (Lead, "name")}


def _holds(request):
    return BulkHold.objects.filter(organization=request.place.organization).select_related("workflow", "decided_by")


def hold_of(request, pk: int) -> BulkHold:
    """The hold if it is the page's organization's; otherwise 404, never 403."""
    found = _holds(request).filter(pk=pk).first()
    if found is None:
        raise Http404("No such bulk hold in your organization.")
    return found


def _dress(hold: BulkHold) -> BulkHold:
    return with_values(hold, badge=BADGES.get(hold.status, ""), source_words=bulk_source(hold.source),
                       operation_words=bulk_operation(hold.source, hold.size))


@org_page
def bulk_holds(request):
    """Pending holds first, then the decided ones and digests; newest first in each group (two
    reads of at most SHOWN rows; pending ones come straight off the (organization, status,
    -created_at) index)."""
    pending = list(_holds(request).filter(status=Status.PENDING)[:SHOWN])
    others = list(_holds(request).exclude(status=Status.PENDING)[:SHOWN])
    return render(request, "web/bulk_holds.html", {
        "place": request.place, "section": "bulk-holds", "holds": [_dress(h) for h in pending + others],
        "pending": len(pending)})


def sample_records(hold: BulkHold) -> list[dict]:
    """Some of the records the operation changed and the workflow matched: their names, and a
    link where a record page exists. The workflow's decisions are walked by its (workflow,
    created_at) index until SAMPLE of them belong to the operation (the payload has no index)."""
    rows = list(WorkflowDecision.objects.filter(workflow_id=hold.workflow_id,
                                                event__payload__bulk__id=hold.operation)
                .order_by("created_at", "pk").values_list("event__entity_type", "entity_id")[:SAMPLE])
    names: dict[UUID, str] = {}
    for kind, (model, field) in RECORD_PAGES.items():
        ids = [entity_id for entity_type, entity_id in rows if entity_type == kind]
        if ids:
            names.update(model.objects.filter(pk__in=ids, organization_id=hold.organization_id)
                         .values_list("pk", field))
    records = []
    for kind, entity_id in rows:
        name = names.get(entity_id)
        records.append({"kind": kind, "id": entity_id, "linked": name is not None,
                        "name": name or (f"a deleted {kind}" if kind in RECORD_PAGES else f"a {kind}")})
    return records


@org_page
def bulk_hold_detail(request, pk: int):
    hold = _dress(hold_of(request, pk))
    return render(request, "web/bulk_hold_detail.html", {
        "place": request.place, "section": "bulk-holds", "hold": hold, "records": sample_records(hold),
        "decidable": hold.status == Status.PENDING and request.place.can_manage})


def _already(hold: BulkHold) -> str:
    if hold.status == Status.DIGESTED:
        return "Nothing changed: this bulk change ran once as a digest; there is nothing to release or discard."
    who = f" by {hold.decided_by.get_username()}" if hold.decided_by else ""
    return f"Nothing changed: this hold was already {hold.status}{who}."


DECISIONS = {
    "release": (lambda hold, by: bulk_hold_release(hold_id=hold.pk, by=by),
                lambda started: f"Released: {started} run{'' if started == 1 else 's'} queued."),
    "discard": (lambda hold, by: bulk_hold_discard(hold_id=hold.pk, by=by),
                lambda _: "Discarded: nothing will run."),
}


@require_POST
@org_page
def bulk_hold_decide(request, pk: int, how: str):
    """Release or discard. A hold decided already (here, in the admin, or by someone else a
    moment ago) is left as it is and the page says so; the service refuses it under its lock
    even when two people press at once."""
    hold = hold_of(request, pk)
    if not request.place.can_manage:
        return forbidden(request, "Only admins of this organization can release or discard held runs.")
    here = reverse("web:bulk-hold", args=[hold.pk])
    if hold.status != Status.PENDING:
        messages.error(request, _already(hold))
        return back(request, here)
    call, done = DECISIONS[how]
    attempt(request, lambda: call(hold, request.user), done)
    return back(request, here)

