"""CRM records over the API: deals, leads, contacts, tasks and stages.

Every query is scoped to the request's organization, so an id of another organization is a
404. Reads need any membership (viewer and up); writes go through the services of
crm/services.py, which check the role again, validate, and fire the automation triggers (a
deal PATCHed to another stage fires `deal_stage_change` like any save). Who may do what
follows the admin: ops and admins add and change records, admins delete them and manage the
pipeline's stages.
"""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission, IsAuthenticated
from rest_framework.response import Response

from crm_automation.api.crm_filters import (
    BoundedSearch,
    DealFilters,
    Filters,
    LeadFilters,
    StableOrdering,
    TaskFilters,
    own_field_filter,
    with_own_fields,
)
from crm_automation.api.crm_serializers import (
    BusinessEventSerializer,
    ContactSerializer,
    CustomFieldSerializer,
    DealSerializer,
    EventTypeSerializer,
    LeadConvertSerializer,
    LeadSerializer,
    ProjectSerializer,
    RecordAutomationSerializer,
    StageSerializer,
    TaskSerializer,
)
from crm_automation.api.errors import Conflict
from crm_automation.api.parsers import PARSERS
from crm_automation.api.tenancy import organization_of, require_role
from crm_automation.automation.selectors import decisions_of_record, runs_of_record
from crm_automation.crm import business_events
from crm_automation.crm.models import (
    BusinessEvent,
    Contact,
    CustomField,
    Deal,
    EventType,
    Lead,
    Membership,
    Project,
    Stage,
    Task,
)
from crm_automation.crm.services import lead_convert, record_create, record_delete, record_update

AUTOMATION_SHOWN = 100  # newest runs and decisions on a record's automation page


class HasRole(BasePermission):
    """Reading needs a membership; adding needs the view's write role. Changing or deleting a
    record is checked once the record is found in the organization, so an id of another
    organization is a 404 for everyone, never a 403."""

    def has_permission(self, request, view) -> bool:
        adding = request.method not in SAFE_METHODS and not view.detail
        require_role(request, view.write_role if adding else Membership.Role.VIEWER)
        return True

    def has_object_permission(self, request, view, obj) -> bool:
        if request.method not in SAFE_METHODS:
            require_role(request, view.delete_role if request.method == "DELETE" else view.write_role)
        return True


class RecordViewSet(viewsets.ModelViewSet):
    permission_classes = [IsAuthenticated, HasRole]
    parser_classes = PARSERS
    filter_backends = [BoundedSearch, StableOrdering]
    queryset: QuerySet[Any]  # each kind of record's
    filters_class: type[Filters] | None = None  # the list's query parameters
    write_role = Membership.Role.OPS
    delete_role = Membership.Role.ADMIN
    related: tuple[str, ...] = ()

    def get_queryset(self):
        model = self.queryset.model
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no organization
            return model.objects.none()
        return model.objects.filter(organization=organization_of(self.request)).select_related(*self.related)

    def filter_queryset(self, queryset):
        if self.action != "list":  # a record is found by its id alone, whatever the query string
            return queryset
        queryset = super().filter_queryset(queryset)
        if self.filters_class is not None:
            filters = self.filters_class(data=self.request.query_params.dict())
            filters.is_valid(raise_exception=True)
            queryset = filters.apply(queryset)
        archived = self.request.query_params.get("archived")
        if archived is not None and hasattr(self.queryset.model, "archived_at"):
            if archived not in ("true", "false"):
                raise ValidationError({"archived": ["true (only archived records) or false (only the others)"]})
            queryset = queryset.filter(archived_at__isnull=archived == "false")
        entity = getattr(self.queryset.model, "custom_entity", "")
        wanted = {name: value for name, value in self.request.query_params.items() if name.startswith("custom.")}
        if entity and wanted:
            queryset = with_own_fields(queryset, own_field_filter(organization_of(self.request).pk, entity, wanted))
        return queryset

    def perform_create(self, serializer) -> None:
        values, _ = serializer.values()
        serializer.instance = record_create(model=self.queryset.model, organization_id=organization_of(self.request).pk,
                                            by=self.request.user, values=values, role=self.write_role)

    def perform_update(self, serializer) -> None:
        values, expected = serializer.values()
        serializer.instance = record_update(record=serializer.instance, by=self.request.user, changes=values,
                                            expected=expected, role=self.write_role)

    def perform_destroy(self, instance) -> None:
        try:
            record_delete(record=instance, by=self.request.user, role=self.delete_role)
        except ProtectedError as exc:
            kinds = ", ".join(sorted({str(o._meta.verbose_name_plural) for o in exc.protected_objects}))
            raise Conflict(f"“{instance}” is still used by {len(exc.protected_objects)} {kinds}; move or delete "
                           "those first.") from None


class AutomationOfRecord:
    """`GET …/{id}/automation/`: the runs a deal or lead triggered and why each candidate
    workflow ran or not (read-only; the same selectors as the record's admin page)."""

    @extend_schema(responses=RecordAutomationSerializer,
                   description=f"The newest {AUTOMATION_SHOWN} runs the record triggered, and the newest "
                               f"{AUTOMATION_SHOWN} decisions: for each change of the record, each candidate "
                               "workflow's outcome and its reason (matched, stage filter, condition false, paused …).")
    @action(detail=True, methods=["get"])
    def automation(self, request, pk=None):
        record = self.get_object()
        scope = {"entity_id": record.pk, "organization_id": record.organization_id}
        document = {"runs": runs_of_record(**scope)[:AUTOMATION_SHOWN],
                    "decisions": decisions_of_record(**scope)[:AUTOMATION_SHOWN]}
        return Response(RecordAutomationSerializer(document).data)


@extend_schema_view(list=extend_schema(parameters=[DealFilters]))
class DealViewSet(AutomationOfRecord, RecordViewSet):
    """Deals. Changing `stage` fires the workflows of the `deal_stage_change` trigger."""

    queryset = Deal.objects.all()
    serializer_class = DealSerializer
    related = ("stage", "owner")
    filters_class = DealFilters
    search_fields = ["title"]
    ordering_fields = ["created_at", "updated_at", "title", "amount", "probability", "close_date", "stage__order"]
    ordering = ["-created_at"]


@extend_schema_view(list=extend_schema(parameters=[LeadFilters]))
class LeadViewSet(AutomationOfRecord, RecordViewSet):
    """Leads. `status` “converted” comes only from `POST …/{id}/convert/`."""

    queryset = Lead.objects.all()
    serializer_class = LeadSerializer
    related = ("owner",)
    filters_class = LeadFilters
    search_fields = ["name", "email", "company"]
    ordering_fields = ["created_at", "updated_at", "name", "company", "status"]
    ordering = ["-created_at"]

    @extend_schema(request=LeadConvertSerializer, responses={201: DealSerializer},
                   description="Create the lead's contact and deal (fires `lead_converted`); the answer is the "
                               "new deal. A lead converts once: again is a 409.")
    @action(detail=True, methods=["post"], serializer_class=LeadConvertSerializer)
    def convert(self, request, pk=None):
        lead = self.get_object()
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        deal = lead_convert(lead=lead, by=request.user, **body.validated_data)
        return Response(DealSerializer(deal, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)


class ContactViewSet(RecordViewSet):
    queryset = Contact.objects.all()
    serializer_class = ContactSerializer
    search_fields = ["first_name", "last_name", "email", "company"]
    ordering_fields = ["created_at", "first_name", "last_name", "company"]
    ordering = ["-created_at"]


@extend_schema_view(list=extend_schema(parameters=[TaskFilters]))
class TaskViewSet(RecordViewSet):
    queryset = Task.objects.all()
    serializer_class = TaskSerializer
    related = ("assignee",)
    filters_class = TaskFilters
    search_fields = ["title"]
    ordering_fields = ["created_at", "due_date", "priority", "status", "title"]
    ordering = ["-created_at"]


class StageViewSet(RecordViewSet):
    """The pipeline's stages, in order. Admins of the organization manage them."""

    queryset = Stage.objects.all()
    serializer_class = StageSerializer
    write_role = Membership.Role.ADMIN
    search_fields = ["name", "slug"]
    ordering_fields = ["order", "name", "slug"]
    ordering = ["order"]


class CustomFieldViewSet(RecordViewSet):
    """The organization's own fields on deals, leads and contacts. Members read them; admins
    define, rename and delete them. A field a live workflow reads is not deleted (409 naming the
    workflows)."""

    queryset = CustomField.objects.all()
    serializer_class = CustomFieldSerializer
    write_role = Membership.Role.ADMIN
    search_fields = ["label", "key"]
    ordering_fields = ["entity", "position", "label", "key", "created_at"]
    ordering = ["entity", "position"]

    def perform_destroy(self, instance) -> None:
        try:
            record_delete(record=instance, by=self.request.user, role=self.delete_role)
        except DjangoValidationError as exc:
            raise Conflict(" ".join(exc.messages)) from None


class ProjectViewSet(AutomationOfRecord, RecordViewSet):
    """Projects: the work sold in a won deal. Saves fire `project_created`, `project_updated` and,
    when the status becomes completed, `project_completed`."""

    queryset = Project.objects.all()
    serializer_class = ProjectSerializer
    related = ("owner",)
    search_fields = ["name", "service_type"]
    ordering_fields = ["created_at", "updated_at", "name", "status", "start_date", "end_date"]
    ordering = ["-created_at"]


class EventTypeViewSet(RecordViewSet):
    """The organization's own events, next to the predeclared ones (`GET …/catalog/` lists them
    all with their fields). Members read them; admins declare, describe and delete them. An event a
    live workflow listens to is not deleted (409 naming the workflows)."""

    queryset = EventType.objects.all()
    serializer_class = EventTypeSerializer
    write_role = Membership.Role.ADMIN
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]

    @extend_schema(responses={200: OpenApiTypes.OBJECT},
                   description="Every event of the organization's catalog: the predeclared ones and its own, each "
                               "with the record it is about, its data's fields (key, kind, required) and the trigger "
                               "type of the workflows it starts.")
    @action(detail=False, methods=["get"])
    def catalog(self, request):
        known = business_events.catalog(organization_of(request).pk)
        return Response({"results": [declaration.as_dict() for declaration in known.values()]})

    def perform_destroy(self, instance) -> None:
        try:
            record_delete(record=instance, by=self.request.user, role=self.delete_role)
        except DjangoValidationError as exc:
            raise Conflict(" ".join(exc.messages)) from None


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    """Events other systems sent. `POST` sends one (ops and admins): `{"type": "invoice.overdue",
    "idempotency_key": "inv-7-overdue", "contact": {"phone": "+1 555 0100"}, "data": {"invoice":
    {"number": "INV-7", "amount_due": "120.00", "due_date": "2026-12-01"}}}`. The contact is named by
    id, email or phone (or `"contact": <id>`); `deal`, `lead` and `project` by id. It is checked against
    the event's declaration (400 naming each field), stored and starts the workflows that listen to it
    (201). The same idempotency key again answers 200 with the first event and runs nothing."""

    permission_classes = [IsAuthenticated, HasRole]
    parser_classes = PARSERS
    serializer_class = BusinessEventSerializer
    write_role = Membership.Role.OPS
    delete_role = Membership.Role.ADMIN
    queryset = BusinessEvent.objects.all()

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return BusinessEvent.objects.none()
        return BusinessEvent.objects.filter(organization=organization_of(self.request)).order_by("-received_at")

    @extend_schema(request={"application/json": OpenApiTypes.OBJECT},
                   responses={201: BusinessEventSerializer, 200: BusinessEventSerializer})
    def create(self, request):
        event, created = business_events.event_receive(organization_id=organization_of(request).pk,
                                                       body=request.data, source="api", by=request.user)
        return Response(BusinessEventSerializer(event).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

