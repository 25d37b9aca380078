"""Admin base classes that scope every page to the user's organizations and roles.

Roles: org admins do everything, ops edit, viewers read. A user sees only rows of the
organizations they are a member of; superusers see all. Django's model permissions are not
consulted: membership roles are the single source of truth for organization users.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.paginator import Paginator
from django.db import models
from django.db.models import QuerySet
from django.utils.functional import cached_property

from crm_automation.crm.admin_forms import ConcurrentEditForm
from crm_automation.crm.models import Membership, Organization
from crm_automation.crm.selectors import user_has_role, user_org_roles
from crm_automation.crm.services import record_delete, record_update


def is_org_scoped(model) -> bool:
    return any(f.name == "organization" and f.is_relation for f in model._meta.fields)


class OwnRowsFilter(admin.SimpleListFilter):
    """A list filter over a related model that offers only rows of the person's own
    organizations (never other tenants' names). Subclasses say which model, which field of the
    listed rows it filters, and how a choice reads."""

    model: type[models.Model] = Organization
    field = "organization_id"  # on the listed rows
    scope = "organization_id"  # on `model`: the path to its organization
    ordering: tuple[str, ...] = ("name",)
    limit: int | None = 200

    def label(self, row, several_orgs: bool) -> str:
        return str(row)

    def own_rows(self, request, model_admin):
        rows = self.model._default_manager.order_by(*self.ordering)
        org_ids = model_admin.visible_org_ids(request)
        if not request.user.is_superuser:
            rows = rows.filter(**{f"{self.scope}__in": org_ids})
        return rows[:self.limit], request.user.is_superuser or len(org_ids) > 1

    def lookups(self, request, model_admin):
        rows, several = self.own_rows(request, model_admin)
        return [(str(row.pk), self.label(row, several)) for row in rows]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class OrganizationFilter(OwnRowsFilter):
    title = parameter_name = "organization"
    scope = "pk"


class CappedCountPaginator(Paginator):
    """Counts at most `cap` rows, so a changelist over millions of rows never runs a full COUNT."""

    cap = 10_000
    object_list: QuerySet[Any]  # a changelist's

    @cached_property
    def count(self) -> int:
        return self.object_list.order_by()[: self.cap].count()


class OrgScopedAdmin(admin.ModelAdmin):
    form: type[forms.ModelForm] = ConcurrentEditForm
    org_path = "organization"  # the lookup from this model to its Organization
    view_role: str = Membership.Role.VIEWER
    edit_role: str = Membership.Role.OPS
    add_role: str = Membership.Role.OPS
    delete_role: str = Membership.Role.ADMIN
    hide_free_plan = False

    def visible_org_ids(self, request) -> list[int]:
        # Asked many times per page (every permission check): computed once per request.
        cache = request.__dict__.setdefault("_visible_org_ids", {})
        if self.hide_free_plan not in cache:
            ids = list(user_org_roles(request.user))
            if self.hide_free_plan and ids:
                ids = list(Organization.objects.filter(pk__in=ids).exclude(plan=Organization.Plan.FREE)
                           .values_list("pk", flat=True))
            cache[self.hide_free_plan] = ids
        return cache[self.hide_free_plan]

    def get_queryset(self, request):
        qs = super().get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(**{f"{self.org_path}__in": self.visible_org_ids(request)})

    def org_id_of(self, obj) -> int | None:
        value = obj
        for part in self.org_path.split("__"):
            value = getattr(value, part, None)
        return getattr(value, "pk", None)

    def _allowed(self, request, obj, role) -> bool:
        if request.user.is_superuser:
            return True
        if obj is None:
            ids = self.visible_org_ids(request)
            return any(user_has_role(request.user, org_id, role) for org_id in ids)
        org_id = self.org_id_of(obj)
        return org_id in self.visible_org_ids(request) and user_has_role(request.user, org_id, role)

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and self._allowed(request, None, self.view_role)

    def has_view_permission(self, request, obj=None) -> bool:
        return self._allowed(request, obj, self.view_role)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._allowed(request, obj, self.edit_role)

    def has_add_permission(self, request) -> bool:
        return self._allowed(request, None, self.add_role)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._allowed(request, obj, self.delete_role)

    def editable_org_ids(self, request) -> list[int]:
        return [o for o in self.visible_org_ids(request) if user_has_role(request.user, o, self.edit_role)]

    def get_list_filter(self, request):
        """"organization" in list_filter becomes a filter that lists only the person's own
        organizations, and only when they see more than one."""
        filters = []
        for item in super().get_list_filter(request):
            if item == "organization":
                if request.user.is_superuser or len(self.visible_org_ids(request)) > 1:
                    filters.append(OrganizationFilter)
            else:
                filters.append(item)
        return filters

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and self.org_path == "organization" and "organization" not in fields:
            fields.append("organization")  # a record never moves to another organization
        return fields

    def get_changeform_initial_data(self, request) -> dict:
        initial: dict[str, Any] = super().get_changeform_initial_data(request)
        orgs = self.editable_org_ids(request)
        if len(orgs) == 1:  # most people belong to one organization: do not make them pick it
            initial.setdefault("organization", orgs[0])
        return initial

    # Writes go through the services: only what the person changed, refused if someone else
    # changed the same field meanwhile (the form already said so), links checked by the model.
    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.full_clean()
            obj.save()
            return
        saved = record_update(record=obj, by=request.user, changes=form.changes(), expected=form.expected(),
                              role=self.edit_role)
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if k != "_state"})

    def delete_model(self, request, obj) -> None:
        record_delete(record=obj, by=request.user, role=self.delete_role)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            record_delete(record=obj, by=request.user, role=self.delete_role)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        """Only offer records of organizations the user may edit (no cross-tenant links)."""
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if request.user.is_superuser or field is None:
            return field
        model = db_field.related_model
        org_ids = self.editable_org_ids(request)
        if model is Organization:
            field.queryset = field.queryset.filter(pk__in=org_ids)
        elif is_org_scoped(model):
            field.queryset = field.queryset.filter(organization_id__in=org_ids)
        elif model.__name__ == "User":
            field.queryset = field.queryset.filter(memberships__organization_id__in=org_ids).distinct()
        return field


class ReadOnlyMixin:
    """Nobody adds, changes or deletes these rows from the admin."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyOrgScopedAdmin(ReadOnlyMixin, OrgScopedAdmin):
    """Logs and history: nobody adds, changes or deletes them from the admin."""

    paginator = CappedCountPaginator
    show_full_result_count = False


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request, obj=None) -> bool:
        return True  # the parent page already checked the organization and role

