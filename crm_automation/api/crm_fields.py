"""Links in request bodies, resolved inside the request's organization.

A deal's stage, contact and owner, a task's deal: each is looked up among the rows of the
organization the request acts in (tenancy.organization_of). A row of another organization, or
none at all, is "not found in this organization" (400) — never the other tenant's row, and
never a hint that it exists. Values that cannot be an id at all (a dict, a NUL character, a
thousand characters) are refused before any query.
"""

import uuid

from django.contrib.auth import get_user_model
from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crm_automation.api.tenancy import organization_of
from crm_automation.crm.models import Contact, Deal, Lead, Project, Stage

LONGEST = 200  # no id, slug or username of ours is longer


class InOrganization(serializers.RelatedField):
    model: type[models.Model]  # set by each kind of link (MemberLink passes it)
    shown = "pk"  # what a link is written out as

    default_error_messages = {
        "not_found": "“{value}” was not found in this organization.",
        "incorrect_type": "Expected an id as text or a number, not {data_type}.",
    }

    def __init__(self, model: type[models.Model] | None = None, **kwargs) -> None:
        if not kwargs.get("read_only"):
            kwargs["queryset"] = (model or self.model)._default_manager.all()
        super().__init__(**kwargs)

    def use_pk_only_optimization(self) -> bool:
        return self.shown == "pk"

    def get_queryset(self):
        return super().get_queryset().filter(organization=organization_of(self.context["request"]))

    def lookup(self, value: str) -> dict | None:
        """The query for a value, or None when it cannot be an id of this kind."""
        return {"pk": value}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("incorrect_type", data_type=type(data).__name__)
        value = str(data).strip()
        query = self.lookup(value) if value and len(value) <= LONGEST and "\x00" not in value else None
        found = self.get_queryset().filter(**query).first() if query is not None else None
        if found is None:
            self.fail("not_found", value=value[:80])
        return found

    def to_representation(self, value):
        return getattr(value, self.shown)


def _number(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@extend_schema_field({"type": "string", "description": "The stage's slug (its numeric id is accepted too)."})
class StageLink(InOrganization):
    model, shown = Stage, "slug"

    def lookup(self, value):
        number = _number(value)
        return {"pk": number} if number is not None else {"slug": value}


@extend_schema_field(OpenApiTypes.INT)
class ContactLink(InOrganization):
    model = Contact

    def lookup(self, value):
        number = _number(value)
        return None if number is None else {"pk": number}


@extend_schema_field(OpenApiTypes.UUID)
class DealLink(InOrganization):
    model: type[models.Model] = Deal  # (LeadLink's is Lead)

    def lookup(self, value):
        found = _uuid(value)
        return None if found is None else {"pk": found}


@extend_schema_field(OpenApiTypes.UUID)
class LeadLink(DealLink):
    model = Lead


@extend_schema_field(OpenApiTypes.UUID)
class ProjectLink(DealLink):
    model = Project


@extend_schema_field({"type": "string", "description": "The username of a member of the organization."})
class MemberLink(InOrganization):
    """A person, by username, among the members of the organization."""

    shown = "username"

    def __init__(self, **kwargs) -> None:
        super().__init__(model=get_user_model(), **kwargs)

    def get_queryset(self):
        organization = organization_of(self.context["request"])
        return self.queryset.filter(memberships__organization=organization)

    def lookup(self, value):
        return {"username": value}
