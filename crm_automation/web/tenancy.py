"""Which organization a page acts in, what the user's role there is, and the plan gate.

A user in several organizations picks one (`?org=<slug>`, remembered in the session); ids of
other organizations are simply not found (404). Times on the pages are shown in the
organization's time zone.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from crm_automation.automation import plans
from crm_automation.crm.models import Membership, Organization
from crm_automation.crm.selectors import ROLE_RANK

SESSION_KEY = "web_organization"


@dataclass(frozen=True)
class Place:
    """The organization a page shows and what the user may do there."""

    organization: Organization
    role: str  # viewer, ops or admin (a superuser counts as admin)
    others: tuple[Organization, ...]  # the user's other organizations, for the switcher

    def at_least(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]

    @property
    def can_edit(self) -> bool:
        return self.at_least("ops")

    @property
    def can_manage(self) -> bool:
        return self.at_least("admin")


def place_of(request) -> Place:
    memberships = list(Membership.objects.filter(user=request.user).select_related("organization")
                       .order_by("organization__name", "organization_id"))
    wanted = request.GET.get("org") or request.session.get(SESSION_KEY)
    chosen = next((m for m in memberships if m.organization.slug == wanted), None)
    if chosen is None and request.GET.get("org"):
        raise Http404("No such organization of yours.")
    chosen = chosen or (memberships[0] if memberships else None)
    if chosen is None:
        raise Http404("You are not a member of any organization.")
    if request.session.get(SESSION_KEY) != chosen.organization.slug:
        request.session[SESSION_KEY] = chosen.organization.slug
    role = "admin" if request.user.is_superuser else chosen.role
    others = tuple(m.organization for m in memberships if m.pk != chosen.pk)
    return Place(organization=chosen.organization, role=role, others=others)


def org_page(view: Callable) -> Callable:
    """A page of the automation module: logged in, a member, a plan that includes automation
    (Free gets a page that explains it, not a bare 403), times in the organization's zone."""

    @login_required
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        place = place_of(request)
        request.place = place
        with timezone.override(place.organization.time_zone):
            if not plans.includes_automation(place.organization.plan):
                return render(request, "web/plan_free.html", {"place": place}, status=200)
            return view(request, *args, **kwargs)

    return wrapped
