"""The approvals inbox: questions of waiting runs the user may answer, with their context."""

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.selectors import open_approvals
from crm_automation.automation.services.runs import run_answer
from crm_automation.automation.wording import shorten
from crm_automation.web import selectors
from crm_automation.web.live import approvals_watch
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, back
from crm_automation.web.words import moment

SHOWN = 100


@org_page
def approvals(request):
    place = request.place
    live = approvals_watch(place.organization.pk)  # first: what changes while the page is drawn is the probe's
    steps = list(open_approvals(organization_id=place.organization.pk, user=request.user)[:SHOWN])
    selectors.name_records([step.run for step in steps])
    for step in steps:
        result = step.result or {}
        step.prompt = result.get("prompt", "")
        step.asked_at = moment(result.get("asked_at"))
        step.due = moment(result["timeout_at"]) if result.get("timeout_at") else ""
        step.who = "admins" if result.get("role") == "admin" else "ops members and admins"
    return render(request, "web/approvals.html", {"place": place, "section": "approvals", "steps": steps,
                                                   "live": live})


@require_POST
@org_page
def approval_answer(request, pk: int):
    """Approve or reject one question. The step must be one this user may answer in this
    organization (else 404: whether it exists elsewhere is not told)."""
    step = open_approvals(organization_id=request.place.organization.pk, user=request.user).filter(pk=pk).first()
    if step is None:
        raise Http404("No open question of yours with this id (answered already, timed out, or not yours).")
    decision = request.POST.get("decision", "")
    words = {questions.APPROVED: "approved", questions.REJECTED: "rejected"}
    attempt(request, lambda: run_answer(run_id=step.run_id, by=request.user, node_id=step.node_id, token=step.token,
                                        decision=decision, comment=request.POST.get("comment", "").strip()),
            f"You {words.get(decision, decision)} “{shorten((step.result or {}).get('prompt', ''), 80)}”; the run "
            "goes on.")
    return back(request, reverse("web:approvals"))
