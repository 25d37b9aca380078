"""Reads about who may see and do what in which organization."""

from decimal import Decimal

from crm_automation.crm.models import Membership, Stage

ROLE_RANK: dict[str, int] = {Membership.Role.VIEWER: 0, Membership.Role.OPS: 1, Membership.Role.ADMIN: 2}


def user_org_roles(user) -> dict[int, str]:
    """{organization id: role} for a user, cached on the user object for the request."""
    if not getattr(user, "is_authenticated", False):
        return {}
    cached = getattr(user, "_org_roles_cache", None)
    if cached is None:
        cached = dict(Membership.objects.filter(user=user).values_list("organization_id", "role"))
        user._org_roles_cache = cached
    return cached


def user_has_role(user, organization_id: int, minimum: str) -> bool:
    if getattr(user, "is_superuser", False):
        return True
    role = user_org_roles(user).get(organization_id)
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[minimum]


def stage_slugs(organization_id: int) -> list[str]:
    """The organization's stage slugs in pipeline order (for messages and choices)."""
    return list(Stage.objects.filter(organization_id=organization_id).order_by("order", "pk")
                .values_list("slug", flat=True))


def shown(value) -> str:
    """A value as an ops user should read it in a message: “Won”, 3000.00, empty."""
    if value is None or value == "":
        return "empty"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    return f"“{text[:80]}…”" if len(text) > 80 else f"“{text}”"
