"""What the automation saves and costs: the organization's month (hours saved, what its
workflows used and cost) and its unit prices, which admins set here; the minutes a workflow's run
saves, set from its Health tab by ops members and admins. The services (services/monitoring.py)
check the role and every value again; a refusal is the page's message and nothing is saved."""

from decimal import Decimal

from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from crm_automation.automation.ops import costs
from crm_automation.automation.services.monitoring import (
    PRICE_FIELDS,
    unit_prices_set,
    workflow_set_minutes_saved,
)
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, back, forbidden, workflow_of

PRICE_LABELS = {"email": "Per email sent", "sms_segment": "Per SMS segment sent",
                "ai_1k_tokens": "Per 1,000 AI tokens", "webhook_call": "Per webhook or HTTP request"}
USAGE_LABELS = {"emails": "Emails sent", "sms_segments": "SMS segments sent", "ai_tokens": "AI tokens",
                "webhook_calls": "Webhook and HTTP requests"}


def usage_rows(usage: costs.Usage, cost: dict[str, Decimal]) -> list[tuple[str, int, Decimal]]:
    """(what, how many, cost) for a page's table."""
    return [(label, getattr(usage, kind), cost[kind]) for kind, label in USAGE_LABELS.items()]


@require_http_methods(["GET", "POST"])
@org_page
def prices_page(request):
    organization = request.place.organization
    if request.method == "POST":
        if not request.place.can_manage:
            return forbidden(request, "Only admins of this organization can set its prices.")
        values = {name: request.POST.get(name, "") for name in PRICE_FIELDS if name in request.POST}
        attempt(request, lambda: unit_prices_set(organization_id=organization.pk, by=request.user, values=values),
                "Prices saved: this month's costs are priced with them.")
        return back(request, reverse("web:prices"))
    prices = costs.prices_of(organization.pk)
    month = costs.organization_month(organization)
    return render(request, "web/prices.html", {
        "place": request.place, "section": "prices", "month": month, "rows": usage_rows(month.usage, month.costs),
        "prices": [(name, PRICE_LABELS[name], costs.plain(getattr(prices, name))) for name in PRICE_FIELDS]})


@require_POST
@org_page
def workflow_time_saved(request, pk: int):
    workflow = workflow_of(request, pk)
    if not request.place.can_edit:
        return forbidden(request, "Viewers read the time a workflow saves; ops members and admins set it.")
    attempt(request, lambda: workflow_set_minutes_saved(workflow_id=workflow.pk, by=request.user,
                                                        minutes=request.POST.get("minutes_saved", "")),
            lambda saved: f"Each completed run of “{saved.name}” now counts {saved.minutes_saved} minute(s) saved.")
    return back(request, reverse("web:health", args=[workflow.pk]))
