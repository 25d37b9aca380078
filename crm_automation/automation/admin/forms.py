"""Admin forms that validate a workflow's definition where the ops user types it."""

from django import forms
from django.core.exceptions import ValidationError

from crm_automation.automation import conditions
from crm_automation.automation.definitions import validate_action, validate_trigger
from crm_automation.automation.models import Workflow, WorkflowStatus


def _as_errors(errors: list[tuple[str, str]]) -> list[str]:
    return [f"{where}: {message}" for where, message in errors]


class WorkflowForm(forms.ModelForm):
    class Meta:
        model = Workflow
        fields = ["organization", "name", "description", "trigger_type", "trigger_config",
                  "conditions", "error_handling", "timeout_seconds"]
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "trigger_config": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "conditions": forms.Textarea(attrs={"rows": 4, "cols": 80}),
        }

    def clean_timeout_seconds(self) -> int:
        value = self.cleaned_data["timeout_seconds"]
        if not 1 <= value <= 3600:
            raise ValidationError("Use a timeout from 1 to 3600 seconds.")
        return value

    def clean(self):
        data = super().clean()
        org, trigger_type = data.get("organization"), data.get("trigger_type")
        if org is None or trigger_type is None:
            return data
        if data.get("trigger_config") is None:
            data["trigger_config"] = {}
        if data.get("conditions") is None:
            data["conditions"] = {}
        errors = validate_trigger(trigger_type, data.get("trigger_config"), org.pk)
        for where, message in errors:
            self.add_error("trigger_config" if where.startswith("trigger_config") else "trigger_type",
                           f"{where}: {message}")
        for where, message in conditions.validate(data.get("conditions"), trigger_type):
            self.add_error("conditions", f"{where}: {message}")
        return data


class ActionInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        workflow: Workflow = self.instance
        if not workflow.organization_id or not workflow.trigger_type:
            return
        kept = 0
        for form in self.forms:
            if not getattr(form, "cleaned_data", None) or form.cleaned_data.get("DELETE"):
                continue
            kept += 1
            errors = validate_action(form.cleaned_data.get("action_type"), form.cleaned_data.get("config") or {},
                                     trigger_type=workflow.trigger_type, organization_id=workflow.organization_id)
            for message in _as_errors(errors):
                form.add_error("config", message)
        if kept == 0 and workflow.status == WorkflowStatus.ACTIVATED:
            raise ValidationError("An activated workflow needs at least one action; pause it first.")
