"""A workflow's gradual rollout over the API: read it (any member), raise, hold or call it off
(admins). Publishing to a share is `POST /workflows/{id}/publish/` with `share`."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.api.tenancy import workflow_of
from crm_automation.automation.models import Rollout, Workflow
from crm_automation.automation.services import rollouts


class RolloutSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number")
    previous = serializers.IntegerField(source="previous.number")
    runs = serializers.SerializerMethodField(help_text="Finished and failed runs of each version since it began.")

    class Meta:
        model = Rollout
        fields = ["id", "version", "previous", "percent", "status", "steps", "margin", "min_runs", "held_reason",
                  "log", "started_at", "finished_at", "runs"]

    def get_runs(self, rollout: Rollout) -> dict:
        rates = rollouts.failure_rates(rollout)
        return {str(number): {"finished": rates.get(pk, (0, 0))[0], "failed": rates.get(pk, (0, 0))[1]}
                for number, pk in ((rollout.version.number, rollout.version_id),
                                   (rollout.previous.number, rollout.previous_id))}


class RolloutChange(serializers.Serializer):
    action = serializers.ChoiceField(choices=["raise", "hold", "abort"])
    percent = serializers.IntegerField(required=False, min_value=1, max_value=100,
                                       help_text="raise: the new share (100: every record).")
    reason = serializers.CharField(required=False, max_length=500, help_text="hold: why (shown on the workflow).")

    def validate(self, data: dict) -> dict:
        if data["action"] == "raise" and "percent" not in data:
            raise serializers.ValidationError({"percent": ["is required to raise the share"]})
        return data


class RolloutView(APIView):
    def _latest(self, workflow: Workflow) -> dict | None:
        rollout = workflow.rollouts.select_related("version", "previous").order_by("-started_at", "-pk").first()
        return RolloutSerializer(rollout).data if rollout is not None else None

    @extend_schema(summary="The workflow's latest rollout (null when it never had one)",
                   responses={200: RolloutSerializer})
    def get(self, request, pk: int):
        return Response({"rollout": self._latest(workflow_of(request, pk))})

    @extend_schema(summary="Raise the share, hold it, or call it off (admins)", request=RolloutChange,
                   responses={200: RolloutSerializer})
    def post(self, request, pk: int):
        workflow = workflow_of(request, pk)
        body = RolloutChange(data=request.data)
        body.is_valid(raise_exception=True)
        action = body.validated_data["action"]
        if action == "raise":
            rollouts.rollout_raise(workflow_id=workflow.pk, by=request.user, percent=body.validated_data["percent"])
        elif action == "hold":
            rollouts.rollout_hold(workflow_id=workflow.pk, by=request.user,
                                  reason=body.validated_data.get("reason", ""))
        else:
            rollouts.rollout_abort(workflow_id=workflow.pk, by=request.user)
        return Response({"rollout": self._latest(workflow)})
