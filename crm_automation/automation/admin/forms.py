"""Admin forms that validate a workflow's definition where the ops user types it.

They validate with the same functions the services use, so every error shows on its field
before anything is written; the save itself then goes through the services (workflows.py).
"""

from django import forms
from django.core.exceptions import ValidationError

from crm_automation.automation.definition import catalog
from crm_automation.automation.definition.validation import DEFINITION_FIELDS, MAX_ACTIONS, validate_definition
from crm_automation.automation.models import Workflow, WorkflowStatus
from crm_automation.automation.services.monitoring import MAX_MINUTES
from crm_automation.automation.services.workflows import STALE_ACTIONS, editable_values, name_problems
from crm_automation.crm.admin_forms import ConcurrentEditForm, SafeJSONField

STEPS_HELP = ('The actions in order, as a JSON list: [{"type": "create_task", "config": {"title": "Kick off '
              '{{deal.title}}"}}, …]. Each may have a "label" and an "on_error" policy; the "id" shown on a saved '
              "one is its node id (keep it: edges and run history refer to it).")


def _field_of(where: str) -> str | None:
    """"conditions.rules[0].value" → "conditions", "actions[1].config" → "steps"; "" → None (the
    whole form)."""
    head = where.split(".", 1)[0].split("[", 1)[0]
    return "steps" if head == "actions" else head if head in DEFINITION_FIELDS else None


def _json_area(rows: int) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows, "cols": 80})


class WorkflowForm(ConcurrentEditForm):
    """The workflow's name and description (columns) and its draft's definition, a field per
    part: the services write them into the workflow's document."""

    # The draft revision the page showed: a change to the actions is refused if someone else has
    # saved the workflow since (a list of actions has no per-field value to compare).
    base_revision = forms.IntegerField(widget=forms.HiddenInput, required=False)
    trigger_type = forms.ChoiceField(choices=catalog.TRIGGER_CHOICES)
    trigger_config = SafeJSONField(required=False, initial=dict, widget=_json_area(2), help_text=(
        'For deal triggers: {"from_stage": "proposal", "to_stage": "won"}; each optional (any).'))
    conditions = SafeJSONField(required=False, initial=dict, widget=_json_area(4), help_text=(
        '{"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt", "value": 5000}]}'))
    error_handling = forms.ChoiceField(choices=Workflow.ErrorHandling.choices, initial=Workflow.ErrorHandling.STOP)
    reenrollment = forms.ChoiceField(
        label="Re-enrollment", choices=Workflow.Reenrollment.choices, initial=Workflow.Reenrollment.NOT_WHILE_RUNNING,
        help_text="Whether a record that already went through this workflow may go through it again.")
    timeout_seconds = forms.IntegerField(initial=60)
    # Not part of the document (reporting, not behaviour): services.monitoring sets it.
    minutes_saved = forms.IntegerField(
        label="Minutes saved per run", min_value=0, max_value=MAX_MINUTES, initial=0, required=False,
        help_text="Minutes of manual work one completed run replaces (0: not counted); the Health tab adds them up.")
    steps = SafeJSONField(label="Actions", required=False, initial=list, widget=_json_area(12), help_text=STEPS_HELP)
    graph = SafeJSONField(required=False, initial=dict, widget=_json_area(6), help_text=(
        'For workflows that branch: {"trigger": {"id": "trigger", "label": "…"}, "edges": [{"source": "trigger", '
        '"target": "send-email"}, …]}. Empty: the actions run one after the other.'))

    class Meta:
        model = Workflow
        fields = ["organization", "name", "description"]
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "cols": 80})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_revision"].initial = self.instance.draft_revision
        if self.instance.pk:
            self.initial.update({**editable_values(self.instance), "steps": self.instance.definition["actions"],
                                 "minutes_saved": self.instance.minutes_saved})
        # No maxlength in the page: a browser would cut a longer pasted name without a word;
        # the form refuses it and says how long it is.
        if "name" in self.fields:  # (not on a read-only page)
            self.fields["name"].widget.attrs.pop("maxlength", None)

    def stored_values(self, current: Workflow, names: list[str]) -> dict:
        """The draft's values too (editable_values). The actions are not compared with what the
        page showed: the draft revision says whether they are stale (_check_steps)."""
        values = {**super().stored_values(current, names), **editable_values(current)}
        return {name: values[name] for name in names if name in values}

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
        for name in ("trigger_config", "conditions", "graph"):
            if data.get(name) is None:
                data[name] = {}
        if data.get("steps") is None:
            data["steps"] = []
        steps = data["steps"]  # (an error added at a field takes the field out of `data`)
        definition = {name: data.get(name) for name in DEFINITION_FIELDS}
        unreadable = set(self.errors)  # already said: not valid JSON, not a choice …
        for where, message in validate_definition({**definition, "actions": steps}, org_id):
            field = _field_of(where)
            if field in self.fields and field not in unreadable:
                self.add_error(field, f"{where}: {message}")
            elif field is None:
                self.add_error(None, f"{where}: {message}" if where else message)
        self._check_steps(steps)
        return data

    def _check_steps(self, steps) -> None:
        if isinstance(steps, list) and len(steps) > MAX_ACTIONS and "steps" not in self.errors:
            self.add_error("steps", f"A workflow has at most {MAX_ACTIONS} actions; this one has {len(steps)}.")
        if not self.instance.pk or "steps" not in self.changed_data:
            return
        if not steps and self.instance.status == WorkflowStatus.ACTIVATED:
            self.add_error("steps", "An activated workflow needs at least one action; pause it first.")
        seen = self.data.get("base_revision")
        now = (Workflow.objects.select_for_update(no_key=True).values_list("draft_revision", flat=True)
               .get(pk=self.instance.pk))
        if seen not in (None, "") and str(now) != str(seen):
            self.add_error("steps", STALE_ACTIONS)  # the services' words for the same refusal
