"""Runs, their steps and the questions they ask, over the API (read shapes and request bodies)."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crm_automation.automation.definition import catalog
from crm_automation.automation.models import RunStatus, StepStatus, WorkflowRun
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.services.runs import RESUME_WAYS


class RunSerializer(serializers.ModelSerializer):
    """One run; `version` is the number of the workflow version it executed."""

    workflow_name = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()
    entity_type = serializers.CharField(source="trigger_entity_type")
    entity_id = serializers.UUIDField(source="trigger_entity_id")
    duration_ms = serializers.IntegerField(allow_null=True)
    shadow = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowRun
        fields = ["id", "workflow", "workflow_name", "version", "status", "trigger_type", "entity_type", "entity_id",
                  "simulated", "shadow", "attempts", "error", "parent_run", "started_at", "finished_at",
                  "duration_ms"]
        read_only_fields = fields

    def get_shadow(self, run) -> bool:
        """A shadow-mode run: a real event walked as a simulation (every effect previewed)."""
        return bool(run.simulated and (run.metadata or {}).get("shadow"))

    def get_workflow_name(self, run) -> str:
        return getattr(run, "workflow_name", None) or run.workflow.name

    def get_version(self, run) -> int:
        return getattr(run, "version_number", None) or run.version.number


class StepSerializer(serializers.Serializer):
    """One node of the run at one token (a loop iteration), in the order the run reached it."""

    node_id = serializers.CharField()
    token = serializers.CharField(help_text="Which loop iteration: empty outside loops, 2.0 in nested ones.")
    label = serializers.SerializerMethodField(help_text="The node's label in the version the run executed.")  # type: ignore[assignment]  # (a declared field: DRF takes it out of the class, the attribute stays the base's)
    action_type = serializers.CharField()
    position = serializers.IntegerField()
    status = serializers.ChoiceField(choices=StepStatus.choices)
    input = serializers.JSONField()
    result = serializers.JSONField()
    error = serializers.CharField()
    attempts = serializers.IntegerField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.SerializerMethodField()

    def get_label(self, step) -> str:
        return self.context.get("labels", {}).get(step.node_id) or step.node_id

    def get_duration_ms(self, step) -> int | None:
        if step.started_at is None or step.finished_at is None:
            return None
        return int((step.finished_at - step.started_at).total_seconds() * 1000)


class RunDetailSerializer(RunSerializer):
    metadata = serializers.JSONField()
    steps = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "metadata", "steps"]
        read_only_fields = fields

    @extend_schema_field(StepSerializer(many=True))
    def get_steps(self, run) -> list[dict]:
        return list(StepSerializer(run.actions.order_by("position", "id"), many=True, context=self.context).data)


class RunFilterSerializer(serializers.Serializer):
    workflow = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    trigger_type = serializers.ChoiceField(choices=sorted(catalog.TRIGGER_TYPES), required=False)
    entity_id = serializers.UUIDField(required=False, help_text="The deal or lead the run is about.")
    since = serializers.DateTimeField(required=False, help_text="Runs started at or after this time (ISO 8601).")
    simulated = serializers.BooleanField(required=False, allow_null=True, default=None,
                                         help_text="Only simulations (true) or only real runs (false).")


class ResumeSerializer(serializers.Serializer):
    how = serializers.ChoiceField(choices=RESUME_WAYS, help_text="retry the step that paused the run, or skip it.")


class BulkRetrySerializer(serializers.Serializer):
    workflow = serializers.IntegerField(min_value=1, max_value=2**63 - 1)
    since = serializers.DateTimeField(help_text="Failed runs that started at or after this time are retried.")


class BulkRetryResultSerializer(serializers.Serializer):
    retried = serializers.IntegerField()
    problems = serializers.ListField(child=serializers.CharField(), help_text="Why the others were not.")


class ApprovalSerializer(serializers.Serializer):
    """A question a run waits on, which the caller may answer."""

    id = serializers.IntegerField(help_text="The question's step id: answer it at /approvals/{id}/answer/.")
    run = serializers.IntegerField(source="run_id")
    workflow = serializers.IntegerField(source="run.workflow_id")
    workflow_name = serializers.CharField(source="run.workflow.name")
    node_id = serializers.CharField()
    token = serializers.CharField()
    label = serializers.SerializerMethodField()  # type: ignore[assignment]  # (a declared field: DRF takes it out of the class, the attribute stays the base's)
    prompt = serializers.SerializerMethodField()
    role = serializers.SerializerMethodField(help_text="Who may answer: admin, or ops (and admins).")
    asked_at = serializers.DateTimeField(source="started_at", allow_null=True)
    timeout_at = serializers.SerializerMethodField()
    entity_type = serializers.CharField(source="run.trigger_entity_type")
    entity_id = serializers.UUIDField(source="run.trigger_entity_id")

    def get_label(self, step) -> str:
        labels = self.context.get("labels", {}).get(step.run.version_id, {})
        return labels.get(step.node_id) or step.node_id

    def get_prompt(self, step) -> str:
        return str((step.result or {}).get("prompt", ""))

    def get_role(self, step) -> str:
        return str((step.result or {}).get("role", "admin"))

    def get_timeout_at(self, step) -> str | None:
        return (step.result or {}).get("timeout_at")


class AnswerSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=[questions.APPROVED, questions.REJECTED])
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")
