"""Tenants never mix (invariant 8): a record's links stay inside its organization.

Form choices are not enough (a person in two organizations could still post another one's
ids, and code paths other than forms exist), so the model checks on every save: each link
that is new or changed must point at a row of the record's own organization (for users: a
member of it), and a record never moves to another organization.

The check costs nothing when a link is unchanged, and nothing when the related object is
already in memory (the usual `deal.stage = stage`); otherwise one small query per changed link.
"""

from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.db import models


class TenantOwned(models.Model):
    # Foreign keys to organization-scoped rows, and to users who must be members.
    tenant_links: ClassVar[tuple[str, ...]] = ()
    member_links: ClassVar[tuple[str, ...]] = ()
    organization_id: int  # every subclass has an `organization` foreign key
    _link_attnames_of_class: ClassVar[list[str]]


    class Meta:
        abstract = True

    def save(self, *args, links_checked: bool = False, **kwargs) -> None:
        """`links_checked`: the caller already ran check_links, before opening a transaction
        of its own (an error raised inside `atomic(savepoint=False)` would break the caller's)."""
        if not links_checked:
            self.check_links(kwargs.get("update_fields"))
        super().save(*args, **kwargs)
        self._remember_links()

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._remember_links()
        return instance

    def _link(self, name: str) -> "models.ForeignKey[Any, Any]":
        field = self._meta.get_field(name)
        assert isinstance(field, models.ForeignKey), f"{name} is not a foreign key"
        return field

    def _link_attnames(self) -> list[str]:
        # Once per class: every row loaded remembers its links (a worker loads several per run).
        cls = type(self)
        if "_link_attnames_of_class" not in cls.__dict__:
            names = ["organization", *self.tenant_links, *self.member_links]
            cls._link_attnames_of_class = [self._link(name).attname for name in names]
        return cls._link_attnames_of_class

    def _remember_links(self) -> None:
        self._loaded_links = {a: self.__dict__.get(a) for a in self._link_attnames()}
        if self.custom_entity:
            self._loaded_custom = dict(self.__dict__.get("custom") or {})

    def _changed(self, attname: str, update_fields) -> bool:
        if update_fields is not None and attname not in update_fields and attname.removesuffix("_id") not in \
                update_fields:
            return False
        loaded = getattr(self, "_loaded_links", None)
        return loaded is None or loaded.get(attname) != getattr(self, attname)

    def _organization_of(self, field) -> int | None:
        value = getattr(self, field.attname)
        if field.is_cached(self):
            target = field.get_cached_value(self)
            if target is not None and target.pk == value:
                return target.organization_id
        return field.related_model._default_manager.filter(pk=value).values_list(
            "organization_id", flat=True).first()

    def link_errors(self, update_fields=None) -> dict[str, str]:
        from crm_automation.crm.models import Membership

        errors = {}
        loaded = getattr(self, "_loaded_links", None)
        if loaded is not None and loaded.get("organization_id") != self.organization_id:
            errors["organization"] = ("A record stays in the organization it was created in; create it again "
                                      "in the other organization instead.")
            return errors
        for name in self.tenant_links:
            field = self._link(name)
            if getattr(self, field.attname) is None or not self._changed(field.attname, update_fields):
                continue
            if self._organization_of(field) != self.organization_id:
                errors[name] = f"That {field.verbose_name} belongs to another organization."
        for name in self.member_links:
            field = self._link(name)
            user_id = getattr(self, field.attname)
            if user_id is None or not self._changed(field.attname, update_fields):
                continue
            if not Membership.objects.filter(user_id=user_id, organization_id=self.organization_id).exists():
                errors[name] = f"That {field.verbose_name} is not a member of this organization."
        return errors

    def clean(self) -> None:
        super().clean()
        errors = self.link_errors()
        if errors:
            raise ValidationError(errors)
        if self.custom_entity and self.organization_id:  # a form's errors, at the field (save checks again)
            from crm_automation.crm.custom_fields import check_values

            try:
                self.custom = check_values(self.organization_id, self.custom_entity, self.__dict__.get("custom"))
            except ValidationError as exc:
                raise ValidationError({"custom": [f"{place.removeprefix('custom.')}: {' '.join(messages)}"
                                                  for place, messages in exc.message_dict.items()]}) from None

    # The record whose organization's own fields it carries in `custom` (crm/custom_fields.py).
    custom_entity: ClassVar[str] = ""

    def check_links(self, update_fields=None) -> None:
        """The links stay in the organization; the values of its own fields are of their kinds
        (normalized here, on every path that saves)."""
        errors = self.link_errors(update_fields)
        if errors:
            raise ValidationError(errors)
        if self.custom_entity and (update_fields is None or "custom" in update_fields):
            custom = self.__dict__.get("custom")
            if custom != getattr(self, "_loaded_custom", {}):
                from crm_automation.crm.custom_fields import check_values

                self.custom = check_values(self.organization_id, self.custom_entity, custom)
