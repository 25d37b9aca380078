"""Admin forms that validate a workflow's definition where the ops user types it.

They validate with the same functions the services use, so every error shows on its field
before anything is written; the save itself then goes through the services (workflows.py).
"""

from django import forms
from django.core.exceptions import ValidationError

from crm_automation.automation.definition import error_policy
from crm_automation.automation.definition.validation import (
    DEFINITION_FIELDS,
    MAX_ACTIONS,
    TOO_LONG,
    plain_data_errors,
    validate_action,
    validate_definition,
)
from crm_automation.automation.models import Workflow, WorkflowStatus
from crm_automation.automation.services.workflows import STALE_ACTIONS, name_problems
from crm_automation.crm.admin_forms import ConcurrentEditForm


def _field_of(where: str) -> str:
    """"conditions.rules[0].value" → "conditions"; "" → None (the whole form)."""
    head = where.split(".", 1)[0].split("[", 1)[0]
    return head if head in DEFINITION_FIELDS else None


class WorkflowForm(ConcurrentEditForm):
    # The draft revision the page showed: a change to the actions is refused if someone else has
    # saved the workflow since (the actions inline has no per-field hidden values of its own).
    base_revision = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Workflow
        fields = ["organization", "name", "description", "trigger_type", "trigger_config",
                  "conditions", "error_handling", "reenrollment", "timeout_seconds", "graph"]
        widgets = {
            "graph": forms.Textarea(attrs={"rows": 6, "cols": 80}),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "trigger_config": forms.Textarea(attrs={"rows": 2, "cols": 80}),
            "conditions": forms.Textarea(attrs={"rows": 4, "cols": 80}),
        }

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_revision"].initial = self.instance.draft_revision
        # No maxlength in the page: a browser would cut a longer pasted name without a word;
        # the form refuses it and says how long it is.
        if "name" in self.fields:  # (not on a read-only page)
            self.fields["name"].widget.attrs.pop("maxlength", None)

    def organization_id(self) -> int | None:
        if self.instance.organization_id:
            return self.instance.organization_id
        org = self.cleaned_data.get("organization")
        return org.pk if org else None

    def clean_name(self) -> str:
        """The name at its field: never cut, free in the organization whatever its case (the
        same check as the services and the database constraint)."""
        name = (self.cleaned_data.get("name") or "").strip()
        org_id = self.organization_id()
        if org_id is not None:
            for _, message in name_problems(org_id, name, exclude=self.instance.pk):
                raise ValidationError(message[:1].upper() + message[1:] + ".")
        return name

    def clean(self):
        data = super().clean()
        org_id = self.organization_id()
        if org_id is None or not data.get("trigger_type"):
            return data
        for name in ("trigger_config", "conditions"):
            if data.get(name) is None:
                data[name] = {}
        if data.get("graph") is None:
            data["graph"] = {}
        definition = {name: data.get(name, getattr(self.instance, name)) for name in DEFINITION_FIELDS}
        # The actions inline validates its own rows; the graph's edges are checked with them when
        # the whole definition is saved (services.workflow_update), naming the edge.
        definition["actions"], definition["graph"] = [], {}
        for where, message in validate_definition(definition, org_id):
            field = _field_of(where)
            if field in self.fields and field not in self.errors:
                self.add_error(field, f"{where}: {message}")
            elif field is None:
                self.add_error(None, f"{where}: {message}" if where else message)
        return data


class ActionInlineFormSet(forms.BaseInlineFormSet):
    def kept_forms(self) -> list:
        kept = [f for f in self.forms if getattr(f, "cleaned_data", None) and not f.cleaned_data.get("DELETE")]
        return sorted(kept, key=lambda f: (f.cleaned_data.get("position") or 0, self.forms.index(f)))

    def actions(self) -> list[dict]:
        """The actions as the definition stores them, in the order the person set."""
        actions = []
        for form in self.kept_forms():
            action = {"id": form.instance.node_id if form.instance.pk else None,
                      "type": form.cleaned_data["action_type"], "config": form.cleaned_data.get("config")}
            if form.cleaned_data.get("label"):
                action["label"] = form.cleaned_data["label"]
            if form.cleaned_data.get("on_error"):
                action["on_error"] = form.cleaned_data["on_error"]
            actions.append(action)
        return actions

    def clean(self) -> None:
        super().clean()
        workflow: Workflow = self.instance
        if not workflow.organization_id or not workflow.trigger_type:
            return
        kept = self.kept_forms()
        for form in kept:
            config = form.cleaned_data.get("config")
            errors = plain_data_errors(config, "config")
            if all(message.startswith(TOO_LONG) for _, message in errors):  # else nothing more can be read
                too_long = {place for place, _ in errors}
                errors += [(place, message) for place, message in validate_action(
                    form.cleaned_data.get("action_type"), config, trigger_type=workflow.trigger_type,
                    organization_id=workflow.organization_id) if place not in too_long]
            errors += error_policy.validate(form.cleaned_data.get("on_error"))
            for where, message in errors:
                field = "on_error" if where.startswith("on_error") else "config" if where.startswith("config") else \
                    "action_type"
                form.add_error(field, f"{where}: {message}")
        if len(kept) > MAX_ACTIONS:
            raise ValidationError(f"A workflow has at most {MAX_ACTIONS} actions; this one has {len(kept)}.")
        if not kept and workflow.status == WorkflowStatus.ACTIVATED:
            raise ValidationError("An activated workflow needs at least one action; pause it first.")
        if workflow.pk and self.has_changed():
            seen = self.data.get("base_revision")
            now = Workflow.objects.select_for_update().values_list("draft_revision", flat=True).get(pk=workflow.pk)
            if seen not in (None, "") and str(now) != str(seen):
                raise ValidationError(STALE_ACTIONS)  # the services' words for the same refusal
