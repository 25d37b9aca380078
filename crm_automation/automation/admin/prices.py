"""An organization's unit prices in the admin: its admins set them (through the service, which
checks the role and every value again); everyone else in the organization reads them."""

from django import forms
from django.contrib import admin

from crm_automation.automation.models import UnitPrices
from crm_automation.automation.services.monitoring import PRICE_FIELDS, unit_prices_set
from crm_automation.crm.admin_scoping import OrgScopedAdmin
from crm_automation.crm.models import Membership


class UnitPricesForm(forms.ModelForm):
    class Meta:
        model = UnitPrices
        fields = ["organization", *PRICE_FIELDS]


@admin.register(UnitPrices)
class UnitPricesAdmin(OrgScopedAdmin):
    form = UnitPricesForm
    edit_role = add_role = delete_role = Membership.Role.ADMIN
    list_display = ("organization", *PRICE_FIELDS, "updated_by", "updated_at")
    list_select_related = ("organization", "updated_by")
    readonly_fields = ("updated_by", "updated_at")

    def save_model(self, request, obj, form, change) -> None:
        saved = unit_prices_set(organization_id=obj.organization_id, by=request.user,
                                values={name: form.cleaned_data[name] for name in PRICE_FIELDS})
        obj.pk, obj.updated_by, obj.updated_at = saved.pk, saved.updated_by, saved.updated_at
