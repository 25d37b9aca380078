"""The person's notifications in this organization (a workflow's notify step, a question to
answer, the circuit breaker, an alert): newest first; opening the list marks nothing, the
button does."""

from django.shortcuts import render
from django.views.decorators.http import require_POST

from crm_automation.crm.models import Notification
from crm_automation.crm.services import notifications_mark_all_read
from crm_automation.web.tenancy import org_page
from crm_automation.web.views.common import attempt, back

SHOWN = 100


def mine(request):
    return Notification.objects.filter(user=request.user, organization=request.place.organization)


@org_page
def notifications(request):
    return render(request, "web/notifications.html", {
        "place": request.place, "section": "notifications", "notifications": list(mine(request)[:SHOWN])})


@require_POST
@org_page
def notifications_read(request):
    attempt(request, lambda: notifications_mark_all_read(user=request.user,
                                                         organization_id=request.place.organization.pk),
            lambda count: f"Marked {count} notifications read." if count else "Nothing was unread.")
    return back(request)
