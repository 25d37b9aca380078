"""Runs and approvals over the API: the run history (a cursor, newest first), one run with its
steps, what a person can do to a run (retry, resume, cancel; retry a workflow's failures since
a time), and the questions runs wait on that the caller may answer.

Thin views over `selectors` (reads) and `run_controls` (writes, which check roles); scoped to
the caller's organization, so another organization's run or question is a 404.
"""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.generics import get_object_or_404
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from crm_automation.api.document_formats import BoundedJSONParser
from crm_automation.api.pagination import NewestFirst
from crm_automation.api.refusals import BAD_INPUT, CONFLICT, FORBIDDEN, NOT_YOURS
from crm_automation.api.run_serializers import (
    AnswerSerializer,
    ApprovalSerializer,
    BulkRetryResultSerializer,
    BulkRetrySerializer,
    ResumeSerializer,
    RunDetailSerializer,
    RunFilterSerializer,
    RunSerializer,
)
from crm_automation.api.tenancy import organization_of
from crm_automation.api.workflow_views import ID
from crm_automation.automation.models import Workflow, WorkflowRun, WorkflowRunAction
from crm_automation.automation.nodes import approval as questions
from crm_automation.automation.selectors import open_approvals, runs_of_organization, version_labels
from crm_automation.automation.services.runs import run_answer, run_cancel, run_resume, run_retry, runs_retry_failed

FILTERS = {"workflow": "workflow_id", "status": "status", "trigger_type": "trigger_type",
           "entity_id": "trigger_entity_id", "since": "started_at__gte", "simulated": "simulated"}


def _control_schema(summary: str, request=None):
    return extend_schema(summary=summary, request=request, responses={
        200: RunDetailSerializer, 400: BAD_INPUT, 403: FORBIDDEN, 404: NOT_YOURS, 409: CONFLICT})


@extend_schema_view(
    list=extend_schema(summary="Run history, newest first (a cursor: `next` and `previous` links)",
                       parameters=[RunFilterSerializer]),
    retrieve=extend_schema(summary="A run with its steps", responses={200: RunDetailSerializer, 404: NOT_YOURS}),
)
class RunViewSet(GenericViewSet):
    serializer_class = RunSerializer
    pagination_class = NewestFirst
    parser_classes = [BoundedJSONParser]
    lookup_value_regex = ID
    queryset = WorkflowRun.objects.none()  # for the schema; get_queryset scopes by organization

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WorkflowRun.objects.none()
        organization = organization_of(self.request)
        if self.action == "list":
            return runs_of_organization(organization_id=organization.pk)
        # One run by id: also those kept without history (a paused one still needs a person).
        return WorkflowRun.objects.filter(organization=organization).select_related("workflow", "version")

    def _respond(self, run: WorkflowRun) -> Response:
        run = self.get_queryset().get(pk=run.pk)
        return Response(RunDetailSerializer(run, context={"labels": version_labels(run.version)}).data)

    def list(self, request):
        filters = RunFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        wanted = {FILTERS[name]: value for name, value in filters.validated_data.items() if value is not None}
        page = self.paginate_queryset(self.get_queryset().filter(**wanted))
        return self.get_paginated_response(RunSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return self._respond(self.get_object())

    @_control_schema("Retry a failed run from its failed steps (completed steps stay done)")
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        run = self.get_object()
        run_retry(run_id=run.pk, by=request.user)
        return self._respond(run)

    @_control_schema("Let a paused run go on: retry the step that paused it, or skip it", ResumeSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        run = self.get_object()
        body = ResumeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run_resume(run_id=run.pk, by=request.user, how=body.validated_data["how"])
        return self._respond(run)

    @_control_schema("Cancel an unfinished run: the steps not done are skipped")
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        run_cancel(run_id=run.pk, by=request.user)
        return self._respond(run)

    @extend_schema(summary="Retry a workflow's failed runs that started since a time (after an outage)",
                   operation_id="runs_retry_failed",
                   request=BulkRetrySerializer,
                   responses={200: BulkRetryResultSerializer, 400: BAD_INPUT, 403: FORBIDDEN})
    @action(detail=False, methods=["post"], url_path="retry", url_name="retry-failed")
    def retry_failed(self, request):
        body = BulkRetrySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        workflow = Workflow.objects.filter(pk=body.validated_data["workflow"],
                                           organization=organization_of(request)).first()
        if workflow is None:
            raise ValidationError({"workflow": "No workflow with this id in your organization."})
        retried, problems = runs_retry_failed(workflow_id=workflow.pk, by=request.user,
                                              since=body.validated_data["since"])
        return Response({"retried": retried, "problems": problems})


@extend_schema_view(list=extend_schema(summary="Questions runs wait on that you may answer, oldest first"))
class ApprovalViewSet(GenericViewSet):
    serializer_class = ApprovalSerializer
    parser_classes = [BoundedJSONParser]
    lookup_value_regex = ID
    queryset = WorkflowRunAction.objects.none()  # for the schema; get_queryset scopes by organization

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return WorkflowRunAction.objects.none()
        return open_approvals(organization_id=organization_of(self.request).pk, user=self.request.user)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        labels = {step.run.version_id: version_labels(step.run.version) for step in page}
        return self.get_paginated_response(ApprovalSerializer(page, many=True, context={"labels": labels}).data)

    @extend_schema(summary="Answer a question: approved or rejected, with a comment; the run goes on",
                   request=AnswerSerializer, responses={200: RunDetailSerializer, 400: BAD_INPUT, 403: FORBIDDEN,
                                                        404: NOT_YOURS, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def answer(self, request, pk=None):
        # Any question of the organization: one answered already is a 409, one for a higher
        # role a 403 (run_answer says which), another organization's a 404.
        step = get_object_or_404(WorkflowRunAction.objects.filter(
            run__organization=organization_of(request), action_type=questions.USER_INPUT), pk=pk)
        body = AnswerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = run_answer(run_id=step.run_id, by=request.user, node_id=step.node_id, token=step.token,
                         decision=body.validated_data["decision"], comment=body.validated_data["comment"])
        run = WorkflowRun.objects.select_related("workflow", "version").get(pk=run.pk)
        return Response(RunDetailSerializer(run, context={"labels": version_labels(run.version)}).data,
                        status=status.HTTP_200_OK)
