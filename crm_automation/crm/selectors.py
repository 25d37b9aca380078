"""Reads about who may see and do what in which organization."""

import uuid
from decimal import Decimal
from typing import Any

from crm_automation.crm.models import Contact, Deal, Lead, Membership, Project, Stage

# The records workflows run on, by the name events, pages and the API give their kind.
RECORD_MODELS: dict[str, Any] = {"deal": Deal, "lead": Lead, "contact": Contact, "project": Project}


def record_kind(record: object) -> str:
    """"deal", "lead", "contact" or "project" for a record of one of those models, else ""."""
    return next((kind for kind, model in RECORD_MODELS.items() if isinstance(record, model)), "")


def record_in(organization_id: int, kind: str, raw: object) -> Any:
    """The organization's record of that kind with this id (a contact's is a number, the others' a
    uuid), or None: for an id that cannot be one, a record that does not exist, or another
    organization's (as unknown as one that never existed)."""
    model = RECORD_MODELS.get(kind)
    text = str(raw).strip() if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    if model is None or not text or len(text) > 64:
        return None
    if kind == "contact":
        key: Any = int(text) if text.isascii() and text.isdigit() and len(text) < 19 else None
    else:
        try:
            key = uuid.UUID(text)
        except ValueError:
            key = None
    return model.objects.filter(organization_id=organization_id, pk=key).first() if key is not None else None

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


def memberships_of(user) -> list[Membership]:
    """Every membership of the user with its organization, in one query; their roles are kept
    for the request as `user_org_roles` keeps them (the API reads both on every request)."""
    memberships = list(Membership.objects.filter(user=user).select_related("organization"))
    user._org_roles_cache = {m.organization_id: m.role for m in memberships}
    return memberships


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
