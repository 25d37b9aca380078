"""Which organization an API request acts in, and what the caller may do there.

The organization is the caller's only one, or the one named by `X-Organization: <slug>` when
they belong to several. Everything an endpoint reads is scoped to it; an id of another
organization is simply not found (404, never 403: ids must not leak what exists elsewhere).
"""

from django.shortcuts import get_object_or_404
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError

from crm_automation.automation.models import Workflow
from crm_automation.crm.models import Organization
from crm_automation.crm.selectors import memberships_of, user_has_role

HEADER = "HTTP_X_ORGANIZATION"


def organization_of(request) -> Organization:
    """The request's organization (cached on the request)."""
    cached = getattr(request, "_api_organization", None)
    if cached is not None:
        return cached
    slug = request.META.get(HEADER, "").strip()
    memberships = memberships_of(request.user)  # (with the roles require_role reads next: one query for both)
    if slug:
        membership = next((m for m in memberships if m.organization.slug == slug), None)
        if membership is None and not request.user.is_superuser:
            raise NotFound(f"No organization “{slug}” of yours.")
        organization = membership.organization if membership else Organization.objects.filter(slug=slug).first()
        if organization is None:
            raise NotFound(f"No organization “{slug}”.")
    else:
        found = [m.organization for m in memberships]
        if not found:
            raise PermissionDenied("You are not a member of any organization.")
        if len(found) > 1:
            raise ValidationError({"X-Organization": "You belong to several organizations: name one with the "
                                                     "X-Organization header (its slug)."})
        organization = found[0]
    request._api_organization = organization
    return organization


def require_role(request, minimum: str) -> Organization:
    """The organization, if the caller has at least `minimum` (viewer < ops < admin) there."""
    organization = organization_of(request)
    if not user_has_role(request.user, organization.pk, minimum):
        raise PermissionDenied(f"This needs the {minimum} role in {organization.name}.")
    return organization


def workflow_of(request, pk: int) -> Workflow:
    """The request organization's workflow `pk`; another organization's is a 404 like a missing one."""
    return get_object_or_404(Workflow, organization=organization_of(request), pk=pk)
