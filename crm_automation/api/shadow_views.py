"""Shadow mode over the API: what a workflow in shadow mode saw (any member), and switching it
between shadow and execute mode (admins)."""

from dataclasses import asdict

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.api.tenancy import workflow_of
from crm_automation.automation.models import Workflow
from crm_automation.automation.services import shadow

ModeAnswer = inline_serializer("WorkflowMode", {
    "mode": serializers.ChoiceField(choices=Workflow.Mode.choices),
    "shadow": inline_serializer("ShadowSummary", {
        "runs": serializers.IntegerField(), "by_status": serializers.DictField(child=serializers.IntegerField()),
        "effects": serializers.DictField(child=serializers.IntegerField()),
        "since": serializers.DateTimeField(allow_null=True)}),
    "detail": serializers.CharField()})


class ModeChange(serializers.Serializer):
    mode = serializers.ChoiceField(choices=Workflow.Mode.choices)


class ModeView(APIView):
    @extend_schema(summary="The workflow's mode, and what shadow mode saw", responses={200: ModeAnswer})
    def get(self, request, pk: int):
        workflow = workflow_of(request, pk)
        seen = shadow.summary(workflow)
        return Response({"mode": workflow.mode, "shadow": asdict(seen), "detail": seen.words()})

    @extend_schema(summary="Switch between shadow and execute mode (admins); says what shadow mode saw",
                   request=ModeChange, responses={200: ModeAnswer})
    def post(self, request, pk: int):
        workflow = workflow_of(request, pk)
        body = ModeChange(data=request.data)
        body.is_valid(raise_exception=True)
        workflow, seen = shadow.workflow_set_mode(workflow_id=workflow.pk, by=request.user,
                                                  mode=body.validated_data["mode"])
        return Response({"mode": workflow.mode, "shadow": asdict(seen), "detail": seen.words()})
