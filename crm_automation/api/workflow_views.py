"""Workflows over the API: list, create from a document (JSON or YAML), read, change, delete a
draft; publish and the status transitions; run-test, a manual start, clone; versions, their
comparison and rollback.

Thin views (one write path): each validates its input, calls the service the admin calls
(`services`, `versioning`, `simulation`, `launch`), and serializes what it returns. The
organization is the caller's (tenancy.organization_of); another organization's id is a 404.
"""

from dataclasses import asdict

from django.db.models import F
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter
from rest_framework.mixins import DestroyModelMixin
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from crm_automation.api.document_formats import BODY_PARSERS, BoundedJSONParser, YAMLRenderer
from crm_automation.api.errors import Conflict
from crm_automation.api.refusals import BAD_DOCUMENT, BAD_INPUT, CONFLICT, FORBIDDEN, NOT_YOURS, STALE
from crm_automation.api.run_serializers import RunDetailSerializer, RunSerializer
from crm_automation.api.tenancy import organization_of, require_role
from crm_automation.api.workflow_serializers import (
    CloneSerializer,
    DiffQuerySerializer,
    DiffSerializer,
    RollbackSerializer,
    RunTestSerializer,
    TriggerSerializer,
    VersionSerializer,
    WorkflowFilterSerializer,
    WorkflowSerializer,
    document_of_body,
)
from crm_automation.automation.ai import authoring
from crm_automation.automation.models import Workflow
from crm_automation.automation.ops import costs, kpis
from crm_automation.automation.selectors import median_durations, version_labels
from crm_automation.automation.services import impact, monitoring, regression
from crm_automation.automation.services.candidates import workflow_candidates
from crm_automation.automation.services.simulation import simulate
from crm_automation.automation.services.versions import (
    versions_compare,
    workflow_clone,
    workflow_create_from_document,
    workflow_document,
    workflow_rollback,
    workflow_update_from_document,
)
from crm_automation.automation.services.workflows import (
    check_edit,
    workflow_allow_deletion,
    workflow_delete,
    workflow_publish,
    workflow_transition,
)
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.crm.selectors import record_in

JSON_ONLY = [BoundedJSONParser]  # bodies that are not a document
ID = r"\d{1,18}"  # a longer number is no id of ours (and would overflow the database's integer)


class WorkflowOrdering(OrderingFilter):
    """Workflows that never ran sort last both ways, the same on SQLite and PostgreSQL; ties
    by id, so pages do not overlap."""

    def filter_queryset(self, request, queryset, view):
        ordering = self.get_ordering(request, queryset, view) or []
        return queryset.order_by(*[F(term[1:]).desc(nulls_last=True) if term.startswith("-")
                                   else F(term).asc(nulls_last=True) for term in ordering], "id")


def _if_match(request) -> int | None:
    """The draft revision in `If-Match: "3"` (or W/"3"); None without the header or for *."""
    value = request.headers.get("If-Match", "").strip().removeprefix("W/").strip('"')
    if value in ("", "*"):
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise ValidationError({"If-Match": "must be the draft_revision the change was made from, e.g. \"3\"."})
    return int(value)


TRANSITION_DOC = {
    "publish": "Make a live workflow's saved edits the version new triggers run (admins).",
    "activate": "Make the workflow live: checks the definition and the plan's limits (admins).",
    "pause": "Stop new runs; runs under way finish (admins).",
    "archive": "Retire the workflow; it keeps its runs and versions (admins).",
}


class FailureKindSerializer(serializers.Serializer):
    kind = serializers.CharField()
    runs = serializers.IntegerField()

    def to_representation(self, instance):
        kind, runs = instance
        return {"kind": kind, "runs": runs}


class UsageSerializer(serializers.Serializer):
    emails = serializers.IntegerField(help_text="Emails sent.")
    sms_segments = serializers.IntegerField(help_text="SMS segments sent.")
    ai_tokens = serializers.IntegerField(help_text="AI tokens (prompt and answer).")
    webhook_calls = serializers.IntegerField(help_text="Webhook and HTTP requests made (each try).")


class CostsSerializer(serializers.Serializer):
    emails = serializers.DecimalField(max_digits=14, decimal_places=2)
    sms_segments = serializers.DecimalField(max_digits=14, decimal_places=2)
    ai_tokens = serializers.DecimalField(max_digits=14, decimal_places=2)
    webhook_calls = serializers.DecimalField(max_digits=14, decimal_places=2)
    total = serializers.DecimalField(max_digits=14, decimal_places=2)


class MonthSerializer(serializers.Serializer):
    month_start = serializers.DateTimeField()
    completed_runs = serializers.IntegerField()
    minutes_saved_per_run = serializers.IntegerField()
    hours_saved = serializers.DecimalField(max_digits=14, decimal_places=1,
                                           help_text="Completed runs × the minutes one replaces, in hours.")
    usage = UsageSerializer()
    costs = CostsSerializer()


class HealthSerializer(serializers.Serializer):
    runs = serializers.IntegerField(help_text="Runs of all time (the workflow's counter).")
    success_rate_all_time = serializers.FloatField(allow_null=True)
    success_rate_recent = serializers.FloatField(allow_null=True, help_text="Of the last 1,000 finished runs.")
    recent_runs = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    p95_seconds = serializers.FloatField(allow_null=True)
    runs_per_day = serializers.FloatField(help_text="Over the last 7 days.")
    failures = FailureKindSerializer(many=True, help_text="The last 1,000 failed runs by kind, most first.")
    retried_steps = serializers.IntegerField()
    retries_succeeded = serializers.IntegerField()
    retry_success_rate = serializers.FloatField(allow_null=True)
    backlog = serializers.IntegerField(help_text="The organization's changes waiting to be processed.")
    oldest_waiting_seconds = serializers.FloatField(allow_null=True)
    month = MonthSerializer(help_text="This month (from the 1st, in the organization's time zone): hours saved "
                                      "and what the runs used and cost at the organization's unit prices.")


class ImpactQuerySerializer(serializers.Serializer):
    days = serializers.ChoiceField(choices=impact.WINDOWS, default=30, help_text="How many days back.",
                                   error_messages={"invalid_choice": "must be one of "
                                                   + ", ".join(map(str, impact.WINDOWS)) + " (days back)"})


class ImpactSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    events = serializers.IntegerField(help_text="Recorded changes of the kind the workflow listens to.")
    entered = serializers.IntegerField(help_text="Of which would have started it.")
    seconds = serializers.FloatField()
    truncated = serializers.BooleanField(help_text="Only the first 200,000 changes were replayed.")
    skipped = serializers.ListField(child=serializers.DictField(), help_text="[{reason, events}]")
    reached = serializers.ListField(child=serializers.DictField(), help_text="[{node, runs}]: runs reaching each node")
    branches = serializers.ListField(child=serializers.DictField(), help_text="[{node, handle, runs}]")
    undecided = serializers.ListField(child=serializers.DictField(), help_text=(
        "[{node, runs}]: runs that would reach an AI router; the model is not asked, so the steps after it are "
        "not counted"))
    revision = serializers.IntegerField(help_text="The workflow's saved revision the preview replayed.")
    current = serializers.BooleanField(help_text="False when the workflow was saved since (a viewer reads the "
                                                 "latest preview; ops and admins get a new one).")
    finished_at = serializers.DateTimeField()


class RegressionDifferenceSerializer(serializers.Serializer):
    run = serializers.IntegerField(help_text="The run replayed (/runs/{id}/).")
    started_at = serializers.DateTimeField()
    reasons = serializers.ListField(child=serializers.CharField(), help_text="Each difference in words.")
    live_path = serializers.CharField(help_text="The steps the live version takes, in order, with the ways taken.")
    draft_path = serializers.CharField(help_text="The steps the saved edits would take.")
    record = serializers.CharField(help_text="Whether the record was read as recorded in the event or as it is now.")


class RegressionSerializer(serializers.Serializer):
    runs = serializers.IntegerField(help_text="How many of the latest runs a check replays.")
    checked = serializers.IntegerField(help_text="Runs replayed (fewer when the workflow has run less).")
    same = serializers.IntegerField()
    differ = serializers.IntegerField()
    differences = RegressionDifferenceSerializer(many=True)
    live_version = serializers.IntegerField(help_text="The live version compared with the saved edits.")
    revision = serializers.IntegerField(help_text="The workflow's saved revision checked.")
    current = serializers.BooleanField(help_text="False when the workflow was saved or ran since (a viewer reads "
                                                 "the latest check; ops and admins get a new one).")
    seconds = serializers.FloatField()
    finished_at = serializers.DateTimeField()


class DescribeSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=authoring.MAX_DESCRIPTION, help_text=(
        "What should start the workflow and what it should do, in plain language."))


class DraftedSerializer(WorkflowSerializer):
    assumptions = serializers.ListField(child=serializers.CharField(), help_text=(
        "What the AI model chose where the description left something open: check these in the draft."))


class AcknowledgeSerializer(serializers.Serializer):
    acknowledge_cycle = serializers.BooleanField(
        default=False, help_text="Go live although the workflow can start itself in a circle that a condition or "
                                 "a once-only rule stops (a guarded cycle; an unguarded one is always refused).")


class PublishSerializer(AcknowledgeSerializer):
    share = serializers.IntegerField(default=100, min_value=1, max_value=100, help_text=(
        "Release to this share of the records first (the same record always on the same version); 100: all."))
    steps = serializers.ListField(child=serializers.DictField(), required=False, max_length=10, help_text=(
        "Raise it on a schedule: [{\"percent\": 50, \"after_hours\": 24}, {\"percent\": 100, \"after_hours\": 24}]."))
    margin = serializers.IntegerField(required=False, min_value=0, max_value=100, help_text=(
        "Hold it when its failure rate exceeds the previous version's by this many points (default 10)."))


def _transition_schema(name: str):
    request = PublishSerializer if name == "publish" else AcknowledgeSerializer if name == "activate" else None
    return extend_schema(summary=f"{name.title()} the workflow", description=TRANSITION_DOC[name], request=request,
                         responses={200: WorkflowSerializer, 403: FORBIDDEN, 404: NOT_YOURS, 409: CONFLICT})


@extend_schema_view(
    list=extend_schema(summary="List workflows", parameters=[WorkflowFilterSerializer]),
    create=extend_schema(summary="Create a draft from a workflow document (JSON or YAML)",
                         description="The document as export writes it (`Content-Type: application/yaml`) or as "
                                     "JSON; its `id` (or `key`) is the workflow's key, made from the name when "
                                     "left out, with -2, -3 … when taken. It is always created as a draft "
                                     "(`_status` is not applied): activate it with /activate/. Ops and admins.",
                         responses={201: WorkflowSerializer, 400: BAD_DOCUMENT, 403: FORBIDDEN}),
    retrieve=extend_schema(summary="A workflow's document, status and figures", responses={
        200: WorkflowSerializer, 404: NOT_YOURS}),
    partial_update=extend_schema(
        summary="Change a workflow",
        description="The top-level keys given replace the current ones (`settings` key by key). A live "
                    "workflow's changes wait for publish. Send `If-Match: \"<draft_revision>\"` (or "
                    "`draft_revision` in the body) with changed nodes to refuse overwriting someone's newer edits.",
        parameters=[OpenApiParameter("If-Match", str, OpenApiParameter.HEADER, required=False)],
        responses={200: WorkflowSerializer, 400: BAD_DOCUMENT, 403: FORBIDDEN, 404: NOT_YOURS, 409: STALE}),
    destroy=extend_schema(summary="Delete a draft", description="Only drafts that never ran; archive the others.",
                          responses={204: None, 403: FORBIDDEN, 404: NOT_YOURS, 409: CONFLICT}),
)
class WorkflowViewSet(DestroyModelMixin, GenericViewSet):
    serializer_class = WorkflowSerializer
    parser_classes = BODY_PARSERS
    filter_backends = [SearchFilter, WorkflowOrdering]
    search_fields = ["name"]
    ordering_fields = ["name", "status", "created_at", "updated_at", "last_run_at", "run_count"]
    ordering = ["name"]
    lookup_value_regex = ID
    queryset = Workflow.objects.none()  # for the schema; get_queryset scopes by organization

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Workflow.objects.none()
        return (Workflow.objects.filter(organization=organization_of(self.request))
                .select_related("current_version", "rollout__version"))

    def _respond(self, workflow: Workflow, code: int = status.HTTP_200_OK) -> Response:
        workflow = self.get_queryset().get(pk=workflow.pk)  # fresh, with what the serializer reads
        context = {**self.get_serializer_context(), "medians": median_durations(workflow_ids=[workflow.pk])}
        return Response(WorkflowSerializer(workflow, context=context).data, status=code)

    def list(self, request):
        filters = WorkflowFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()).filter(**filters.validated_data))
        context = {**self.get_serializer_context(), "medians": median_durations(workflow_ids=[w.pk for w in page])}
        return self.get_paginated_response(WorkflowSerializer(page, many=True, context=context).data)

    def create(self, request):
        require_role(request, "ops")  # before the body is read: a reader cannot make us parse it
        document, tree, _ = document_of_body(request.data)
        workflow = workflow_create_from_document(organization=organization_of(request), by=request.user,
                                                 document=document, tree=tree)
        return self._respond(workflow, status.HTTP_201_CREATED)

    def retrieve(self, request, pk=None):
        return self._respond(self.get_object())

    @extend_schema(summary="Draft a workflow from a description (the AI model writes it; it is saved as a draft, "
                           "never activated)", request=DescribeSerializer,
                   responses={201: DraftedSerializer, 400: BAD_INPUT, 403: FORBIDDEN})
    @action(detail=False, methods=["post"], url_path="draft-from-description", parser_classes=JSON_ONLY)
    def draft_from_description(self, request):
        body = DescribeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        draft = authoring.workflow_draft_from_description(organization=organization_of(request), by=request.user,
                                                description=body.validated_data["description"])
        response = self._respond(draft.workflow, status.HTTP_201_CREATED)
        response.data["assumptions"] = draft.assumptions
        return response

    def partial_update(self, request, pk=None):
        workflow = self.get_object()
        check_edit(request.user, workflow)  # before the body is read (archived: a 409)
        document, tree, revision = document_of_body(request.data)
        expected = _if_match(request)
        if expected is None:
            expected = revision
        # Someone saved since `expected` (If-Match / draft_revision): a StaleEdit, a 409 saying
        # what is saved now (errors.exception_handler).
        workflow = workflow_update_from_document(workflow_id=workflow.pk, by=request.user, document=document,
                                                 tree=tree, expected_revision=expected)
        return self._respond(workflow)

    def perform_destroy(self, workflow):
        workflow_delete(workflow_id=workflow.pk, by=self.request.user)

    # --- Transitions ----------------------------------------------------------------------------
    def _transition(self, name: str) -> Response:
        workflow = self.get_object()
        given = self.request.data
        if not isinstance(given, dict):  # (a form's QueryDict is one too; `[1, 2]` is not a request)
            raise ValidationError({"non_field_errors": ["The body must be a JSON object, e.g. {\"share\": 10}."]})
        body = (PublishSerializer if name == "publish" else AcknowledgeSerializer)(data=given)
        body.is_valid(raise_exception=True)
        acknowledged = body.validated_data["acknowledge_cycle"]
        if name == "publish":
            workflow = workflow_publish(workflow_id=workflow.pk, by=self.request.user, acknowledge_cycle=acknowledged,
                                        share=body.validated_data["share"], steps=body.validated_data.get("steps"),
                                        margin=body.validated_data.get("margin"))
        elif name == "activate":
            workflow = workflow_transition(workflow_id=workflow.pk, name=name, by=self.request.user,
                                           acknowledge_cycle=acknowledged)
        else:
            workflow = workflow_transition(workflow_id=workflow.pk, name=name, by=self.request.user)
        return self._respond(workflow)

    @_transition_schema("publish")
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        return self._transition("publish")

    @_transition_schema("activate")
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        return self._transition("activate")

    @_transition_schema("pause")
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._transition("pause")

    @_transition_schema("archive")
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        return self._transition("archive")

    @extend_schema(summary="Allow (or stop allowing) the workflow's “Delete a record” steps to delete records",
                   request=inline_serializer("AllowDeletion", {"allowed": serializers.BooleanField()}),
                   description="Admins only: a workflow's document cannot grant itself deletions.")
    @action(detail=True, methods=["post"], url_path="allow-deletion", parser_classes=JSON_ONLY)
    def allow_deletion(self, request, pk=None):
        workflow = self.get_object()
        body = request.data if isinstance(request.data, dict) else {}
        if not isinstance(body.get("allowed"), bool):
            raise ValidationError({"allowed": ["true or false"]})
        workflow = workflow_allow_deletion(workflow_id=workflow.pk, by=request.user, allowed=body["allowed"])
        return self._respond(workflow)

    # --- Documents, testing, running ------------------------------------------------------------
    @extend_schema(summary="The workflow as a YAML file (the workflow document)",
                   responses={(200, "application/yaml"): OpenApiResponse(OpenApiTypes.STR, description="YAML"),
                              (404, "application/yaml"): NOT_YOURS})
    @action(detail=True, methods=["get"], renderer_classes=[YAMLRenderer])
    def export(self, request, pk=None):
        workflow = self.get_object()
        return Response(workflow_document(workflow),
                        headers={"Content-Disposition": f'attachment; filename="{workflow.key}.yaml"'})

    @extend_schema(summary="Simulate the workflow on a record (nothing is sent or changed), and which records "
                           "would start it now",
                   description="Every node runs as it would on the record as it is now, inside a transaction "
                               "that is rolled back; the simulated run (counted nowhere) shows what each step "
                               "would do. Beside it, `candidates`: the organization's records of the trigger's "
                               "kind as they are now, each `{record: {kind, id, title}, would_start, reason}` "
                               "(the trigger's `to` stage and conditions by the one matching rule, then the "
                               "re-enrollment rules), a page at a time (`candidates_cursor`, at most 50), with "
                               "`candidates_totals`. Without a record, the first candidate of the page that would "
                               "start is simulated (`simulation` says which, or why none was). Ops members and "
                               "admins.",
                   request=RunTestSerializer, responses={200: RunDetailSerializer, 400: BAD_INPUT, 403: FORBIDDEN,
                                                         404: NOT_YOURS})
    @action(detail=True, methods=["post"], url_path="run-test", parser_classes=JSON_ONLY)
    def run_test(self, request, pk=None):
        workflow = self.get_object()
        body = RunTestSerializer(data=request.data, context={"organization": workflow.organization})
        body.is_valid(raise_exception=True)
        given = body.validated_data
        found = workflow_candidates(workflow_id=workflow.pk, by=request.user, version_number=given.get("version"),
                                    cursor=given.get("candidates_cursor", ""), limit=given["candidates_limit"])
        record, said = given["record"], ""
        if record is None:
            first = next((entry for entry in found.entries if entry["would_start"]), None)
            if first is None:
                return Response({"simulation": "not run: no record was given and no record on this page of "
                                               "candidates would start the workflow now", **found.as_dict()})
            record = record_in(workflow.organization_id, first["record"]["kind"], first["record"]["id"])
            said = f"run on the first candidate that would start it: {first['record']['kind']} “{record}”"
        run = simulate(workflow_id=workflow.pk, by=request.user, record=record,
                       version_number=given.get("version"), sample=given.get("data"))
        answer = RunDetailSerializer(run, context={"labels": version_labels(run.version)}).data
        return Response({**answer, "simulation": said or "run on the record given", **found.as_dict()})

    @extend_schema(summary="Start an activated workflow on a record now",
                   description="A workflow whose trigger is “started by a person”: ops members and admins, with "
                               "its inputs. Any other activated workflow (a record's change, a date, a business "
                               "event, a schedule): admins only, with a `reason`, on a record of the kind its "
                               "trigger is about (a schedule's on none); it runs as if its trigger fired for the "
                               "record now, without requiring the trigger's own checks (the run's "
                               "`metadata.trigger_check` says what they say). Re-enrollment rules and the quota "
                               "apply. The run is queued; follow it at /runs/{id}/ (`metadata.started_by`, "
                               "`metadata.reason`).",
                   request=TriggerSerializer, responses={202: RunSerializer, 400: BAD_INPUT, 403: FORBIDDEN,
                                                         404: NOT_YOURS, 409: CONFLICT})
    @action(detail=True, methods=["post"], parser_classes=JSON_ONLY)
    def trigger(self, request, pk=None):
        workflow = self.get_object()
        body = TriggerSerializer(data=request.data, context={"organization": workflow.organization})
        body.is_valid(raise_exception=True)
        run = workflow_start(workflow_id=workflow.pk, by=request.user, record=body.validated_data["record"],
                             input=body.validated_data.get("input"), reason=body.validated_data.get("reason", ""))
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="The workflow's health: success rates, durations, runs per day, failures by kind, "
                           "retries, the organization's backlog", responses={200: HealthSerializer, 404: NOT_YOURS})
    @action(detail=True, methods=["get"])
    def health(self, request, pk=None):
        workflow = self.get_object()
        figures = kpis.workflow_health(workflow)
        return Response(HealthSerializer({**asdict(figures), "retry_success_rate": figures.retry_success_rate,
                                          "month": costs.workflow_month(workflow).as_data()}).data)

    @extend_schema(summary="Set the minutes of manual work one completed run of the workflow replaces",
                   request=inline_serializer("TimeSaved", {"minutes_saved": serializers.IntegerField(
                       min_value=0, max_value=monitoring.MAX_MINUTES)}),
                   description="Ops members and admins; 0 counts nothing. The health shows the hours saved this "
                               "month.", responses={200: WorkflowSerializer, 400: BAD_INPUT, 403: FORBIDDEN,
                                                    404: NOT_YOURS})
    @action(detail=True, methods=["post"], url_path="time-saved", parser_classes=JSON_ONLY)
    def time_saved(self, request, pk=None):
        workflow = self.get_object()
        body = request.data if isinstance(request.data, dict) else {}
        if "minutes_saved" not in body:
            raise ValidationError({"minutes_saved": ["required: a whole number of minutes (0: not counted)"]})
        workflow = monitoring.workflow_set_minutes_saved(workflow_id=workflow.pk, by=request.user,
                                                         minutes=body["minutes_saved"])
        return self._respond(workflow)

    @extend_schema(summary="What the workflow as saved would have done over the last days' recorded changes "
                           "(nothing is sent). Worked out by a worker: 202 while it is (ask again after "
                           "Retry-After seconds), then 200 with the figures for 10 minutes or until the workflow "
                           "changes. One replay per workflow and window is under way at a time: asking again "
                           "joins it. Ops and admins start one; a viewer joins one under way or reads the latest "
                           "(403 when there is none yet)", parameters=[ImpactQuerySerializer],
                   responses={200: ImpactSerializer, 202: OpenApiTypes.OBJECT, 400: BAD_INPUT, 403: FORBIDDEN,
                              404: NOT_YOURS, 409: CONFLICT})
    @action(detail=True, methods=["get"])
    def impact(self, request, pk=None):
        query = ImpactQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        workflow, days = self.get_object(), query.validated_data["days"]
        made = impact.preview_request(workflow, days=days, by=request.user)
        if made is None:
            raise PermissionDenied(f"No preview of this workflow over {days} days has been worked out yet; starting "
                                   f"one needs the {impact.START_ROLE} role.")
        if made.status == made.Status.DONE:
            return Response(ImpactSerializer({**made.result, "revision": made.revision, "finished_at": made.finished_at,
                                              "current": made.revision == workflow.draft_revision}).data)
        if made.status == made.Status.FAILED:
            raise Conflict(f"The preview could not be worked out: {made.error}. Ask again to try again.")
        # Being worked out by a worker (GitHub's statistics API does the same): ask again shortly.
        return Response({"status": made.status, "detail": "The preview is being worked out; ask again in a few "
                                                          "seconds."}, status=status.HTTP_202_ACCEPTED,
                        headers={"Retry-After": "2"})

    @extend_schema(summary="The regression check of the saved edits of a live workflow: its last runs (50 by "
                           "default) replayed through the live version and the edits, and the runs whose start, path "
                           "or effects would differ (nothing is sent). Worked out by a worker: 202 while it is, then "
                           "200, the same answer until the workflow is saved, published or runs again. Ops and "
                           "admins start one; a viewer joins one under way or reads the latest (403 when there is "
                           "none). 409 when there are no saved edits to check",
                   responses={200: RegressionSerializer, 202: OpenApiTypes.OBJECT, 403: FORBIDDEN, 404: NOT_YOURS,
                              409: CONFLICT})
    @action(detail=True, methods=["get"])
    def regression(self, request, pk=None):
        workflow = self.get_object()
        made = regression.check_request(workflow, by=request.user)
        if made is None:
            raise PermissionDenied("No regression check of these edits has been worked out yet; starting one needs "
                                   f"the {impact.START_ROLE} role.")
        if made.status == made.Status.DONE:
            last_run = regression.latest_run_id(workflow)
            return Response(RegressionSerializer({**made.result, "finished_at": made.finished_at,
                                                  "current": regression.is_current(made, workflow, last_run)}).data)
        if made.status == made.Status.FAILED:
            raise Conflict(f"The regression check could not be worked out: {made.error}. Ask again to try again.")
        return Response({"status": made.status, "detail": "The regression check is being worked out; ask again in a "
                                                          "few seconds."}, status=status.HTTP_202_ACCEPTED,
                        headers={"Retry-After": "2"})

    @extend_schema(summary="Copy the workflow into a new draft", request=CloneSerializer,
                   responses={201: WorkflowSerializer, 403: FORBIDDEN, 404: NOT_YOURS, 409: CONFLICT})
    @action(detail=True, methods=["post"], parser_classes=JSON_ONLY)
    def clone(self, request, pk=None):
        workflow = self.get_object()
        body = CloneSerializer(data=request.data, context={"organization_id": workflow.organization_id})
        body.is_valid(raise_exception=True)
        copy = workflow_clone(workflow_id=workflow.pk, by=request.user, name=body.validated_data.get("name"))
        return self._respond(copy, status.HTTP_201_CREATED)

    # --- Versions -------------------------------------------------------------------------------
    @extend_schema(summary="The workflow's versions, newest first (pages)", parameters=[
        OpenApiParameter("page", int), OpenApiParameter("page_size", int)], responses={
        200: inline_serializer("PaginatedVersionList", {
            "count": serializers.IntegerField(), "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True), "results": VersionSerializer(many=True)}),
        404: NOT_YOURS})
    @action(detail=True, methods=["get"])
    def versions(self, request, pk=None):
        workflow = self.get_object()
        page = self.paginate_queryset(workflow.versions.select_related("created_by").order_by("-number"))
        return self.get_paginated_response(VersionSerializer(page, many=True, context={"workflow": workflow}).data)

    @extend_schema(summary="What changed from one version to another", parameters=[DiffQuerySerializer],
                   responses={200: DiffSerializer, 400: BAD_INPUT, 404: NOT_YOURS})
    @action(detail=True, methods=["get"], url_path="versions/diff")
    def versions_diff(self, request, pk=None):
        workflow = self.get_object()
        query = DiffQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        diff = versions_compare(workflow, query.validated_data["from"], query.validated_data["to"])
        return Response(DiffSerializer(diff).data)

    @extend_schema(summary="Make an earlier version's definition current again (as a new version)",
                   description="A live workflow's rollback is published at once. History is never rewritten.",
                   request=RollbackSerializer, responses={200: WorkflowSerializer, 400: BAD_INPUT,
                                                          403: FORBIDDEN, 404: NOT_YOURS, 409: CONFLICT})
    @action(detail=True, methods=["post"], parser_classes=JSON_ONLY)
    def rollback(self, request, pk=None):
        workflow = self.get_object()
        body = RollbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        number = body.validated_data["version"]
        if not workflow.versions.filter(number=number).exists():
            raise ValidationError({"version": f"This workflow has no version {number}."})
        workflow = workflow_rollback(workflow_id=workflow.pk, by=request.user, number=number)
        return self._respond(workflow)
