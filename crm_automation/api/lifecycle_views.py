"""Lifecycle events over the API: the organization's events with a cursor (any member), and the
subscriptions that send them to a webhook target (admins)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.api.pagination import Pages
from crm_automation.api.tenancy import require_role
from crm_automation.automation import lifecycle
from crm_automation.automation.models import LifecycleEvent, LifecycleType
from crm_automation.webhooks.models import EventSubscription, WebhookAttempt, WebhookDelivery
from crm_automation.webhooks.services import (
    event_subscription_create,
    event_subscription_delete,
    event_subscription_update,
)

AFTER_WINDOW = 1000  # ids looked at per call with `after`


class NewestEventsFirst(CursorPagination):
    """A cursor over the growing id: page 10,000 costs what page 1 costs."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = "-id"


class OldestEventsFirst(NewestEventsFirst):
    ordering = "id"


class LifecycleEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = LifecycleEvent
        fields = ["id", "type", "occurred_at", "workflow_id", "run_id", "data"]


class LifecycleEventList(generics.ListAPIView):
    """The organization's lifecycle events, newest first; with `after`, the events after that id,
    oldest first (how a consumer catches up: keep the last id you handled)."""

    serializer_class = LifecycleEventSerializer

    @property
    def paginator(self):
        if not hasattr(self, "_paginator"):
            self._paginator = OldestEventsFirst() if "after" in self.request.query_params else NewestEventsFirst()
        return self._paginator

    def _number(self, name: str) -> int | None:
        value = self.request.query_params.get(name) or ""
        if not value:
            return None
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise ValidationError({name: ["must be a whole number (an id)"]})
        return int(value)

    def get_queryset(self):
        organization = require_role(self.request, "viewer")
        events = LifecycleEvent.objects.filter(organization=organization)
        types = [t for t in self.request.query_params.get("type", "").split(",") if t]
        unknown = [t for t in types if t not in LifecycleType.values]
        if unknown:
            raise ValidationError({"type": [f"unknown event type “{unknown[0][:60]}”; known: "
                                            f"{', '.join(LifecycleType.values)}"]})
        if types:
            events = events.filter(type__in=types)
        for name, field in (("workflow", "workflow_id"), ("run", "run_id")):
            number = self._number(name)
            if number is not None:
                events = events.filter(**{field: number})
        after = self._number("after")
        if after is not None:
            # Up to where no earlier id can still commit: a consumer keeping the last id it handled
            # never misses one (lifecycle.settled); the rest comes in its next call.
            ids = list(events.filter(id__gt=after).order_by("id").values_list("id", flat=True)[:AFTER_WINDOW])
            events = events.filter(id__gt=after, id__lte=lifecycle.settled(after, ids))
        return events

    @extend_schema(parameters=[
        OpenApiParameter("type", str, description="Only these types (comma-separated), e.g. run.failed"),
        OpenApiParameter("workflow", int), OpenApiParameter("run", int),
        OpenApiParameter("after", int, description="Only events after this id, oldest first")])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class LifecycleEventDetail(generics.RetrieveAPIView):
    serializer_class = LifecycleEventSerializer

    def get_queryset(self):
        return LifecycleEvent.objects.filter(organization=require_role(self.request, "viewer"))


# --- Subscriptions --------------------------------------------------------------------------------
class SubscriptionSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="target.name", read_only=True)
    url = serializers.CharField(source="target.url", read_only=True)
    secret_hint = serializers.CharField(source="target.secret_hint", read_only=True)
    target_active = serializers.BooleanField(source="target.active", read_only=True)

    class Meta:
        model = EventSubscription
        fields = ["id", "target", "url", "secret_hint", "target_active", "event_types", "active",
                  "created_at"]


class SubscriptionInput(serializers.Serializer):
    target = serializers.CharField(max_length=60, help_text="An existing webhook target's name, or the name of "
                                                            "the new one made with `url`.")
    url = serializers.CharField(max_length=2000, required=False,
                                help_text="Make a new target with this URL; its signing secret is returned once.")
    event_types = serializers.ListField(child=serializers.CharField(max_length=60), required=False,
                                        help_text="The types wanted; empty or left out: all of them.")


class SubscriptionChange(serializers.Serializer):
    event_types = serializers.ListField(child=serializers.CharField(max_length=60), required=False)
    active = serializers.BooleanField(required=False)


class AttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookAttempt
        fields = ["number", "started_at", "duration_ms", "status_code", "error", "succeeded"]


class DeliverySerializer(serializers.ModelSerializer):
    attempts = AttemptSerializer(source="attempt_rows", many=True, read_only=True)
    webhook_id = serializers.CharField(source="automation_key", read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "webhook_id", "status", "response_status", "error", "body", "created_at", "finished_at",
                  "attempts"]


class SubscriptionList(generics.ListAPIView):
    """The organization's event subscriptions (admins)."""

    serializer_class = SubscriptionSerializer
    pagination_class = Pages

    def get_queryset(self):
        return (EventSubscription.objects.filter(organization=require_role(self.request, "admin"))
                .select_related("target").order_by("pk"))

    @extend_schema(request=SubscriptionInput, responses={201: SubscriptionSerializer})
    def post(self, request):
        organization = require_role(request, "admin")
        data = SubscriptionInput(data=request.data)
        data.is_valid(raise_exception=True)
        subscription, secret = event_subscription_create(
            organization=organization, by=request.user, target_name=data.validated_data["target"],
            url=data.validated_data.get("url"), event_types=data.validated_data.get("event_types"))
        body = SubscriptionSerializer(subscription).data
        if secret:
            body["secret"] = secret  # shown once: the receiver verifies signatures with it
        return Response(body, status=status.HTTP_201_CREATED)


def _own(request, pk: int) -> EventSubscription:
    organization = require_role(request, "admin")
    return get_object_or_404(EventSubscription.objects.select_related("target"), organization=organization, pk=pk)


class SubscriptionDetail(APIView):
    @extend_schema(responses=SubscriptionSerializer)
    def get(self, request, pk: int):
        return Response(SubscriptionSerializer(_own(request, pk)).data)

    @extend_schema(request=SubscriptionChange, responses=SubscriptionSerializer)
    def patch(self, request, pk: int):
        subscription = _own(request, pk)
        data = SubscriptionChange(data=request.data)
        data.is_valid(raise_exception=True)
        event_subscription_update(subscription_id=subscription.pk, by=request.user, **data.validated_data)
        return Response(SubscriptionSerializer(_own(request, pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, pk: int):
        event_subscription_delete(subscription_id=_own(request, pk).pk, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SubscriptionDeliveries(generics.ListAPIView):
    """What was sent to the subscription, newest first, with every attempt."""

    serializer_class = DeliverySerializer
    pagination_class = Pages

    def get_queryset(self):
        subscription = _own(self.request, self.kwargs["pk"])
        return subscription.deliveries.prefetch_related("attempt_rows").order_by("-pk")
