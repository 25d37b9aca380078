"""One time zone everywhere a person reads a time: the organization's.

The /crm/automation pages already render inside `timezone.override` (web/tenancy.org_page);
this middleware does the same for every other page a member opens, the admin above all, so the
admin's run page and the web run page show the same moment in the same zone, labelled
(config/formats/en/formats.py adds the zone's abbreviation to DATETIME_FORMAT).

Which organization: the one the person last chose on the pages (the session), else the first of
theirs by name, as `place_of` picks it. Someone in several organizations sees the admin's mixed
lists in that one zone, and every time says which zone it is in. The API is left alone: machines
get ISO 8601 in UTC whoever asks and however they authenticate.
"""

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from crm_automation.crm.models import Membership
from crm_automation.web.tenancy import SESSION_KEY


def zone_of(request: HttpRequest) -> zoneinfo.ZoneInfo | None:
    """The zone of the organization the request's person acts in; None for anyone else."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    zones = list(Membership.objects.filter(user=user).order_by("organization__name", "organization_id")
                 .values_list("organization__slug", "organization__time_zone"))
    if not zones:
        return None  # a superuser without an organization: the site's TIME_ZONE
    chosen = request.session.get(SESSION_KEY)
    name = next((zone for slug, zone in zones if slug == chosen), zones[0][1])
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):  # validated on save; a bad row must not break pages
        return None


class OrganizationTimeZoneMiddleware:
    """Activates the organization's zone for the view and its template; after AuthenticationMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            return self.get_response(request)  # (a TemplateResponse is rendered inside this call)
        finally:
            timezone.deactivate()  # a thread serves the next request with a clean slate

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs) -> None:
        match = request.resolver_match
        if (match is not None and "api" in match.namespaces) or getattr(view_func, "sessionless", False):
            return None
        zone = zone_of(request)
        if zone is not None:
            timezone.activate(zone)
        return None
