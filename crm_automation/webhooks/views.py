"""Webhooks over the API: admins manage inbound endpoints; anyone with an endpoint's secret posts
to it (no session, no token: the signature is the authentication)."""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.api.pagination import Pages
from crm_automation.api.tenancy import require_role
from crm_automation.webhooks import inbound, replies
from crm_automation.webhooks.models import WebhookEndpoint
from crm_automation.webhooks.services import (
    webhook_endpoint_create,
    webhook_endpoint_delete,
    webhook_endpoint_rotate,
    webhook_endpoint_update,
)
from crm_automation.webhooks.throttling import InboundWebhookThrottle


class EndpointSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    url = serializers.SerializerMethodField()
    secret_hint = serializers.CharField(read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = ["id", "name", "active", "url", "secret_hint", "created_at", "rotated_at", "previous_valid_until"]
        read_only_fields = ["created_at", "rotated_at", "previous_valid_until"]

    def get_url(self, endpoint) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(endpoint.path) if request else endpoint.path


class EndpointWithSecret(EndpointSerializer):
    secret = serializers.CharField(read_only=True, help_text="Shown once: store it now.")

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]


class EndpointInput(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    active = serializers.BooleanField(required=False)


class RotateInput(serializers.Serializer):
    grace_hours = serializers.IntegerField(required=False, default=24, min_value=0, max_value=7 * 24,
                                           help_text="How long the old secret keeps working (0: not at all).")


def _with_secret(endpoint: WebhookEndpoint, secret: str, request) -> dict:
    """The one response that carries the secret (a new endpoint, a rotation)."""
    return {**EndpointWithSecret(endpoint, context={"request": request}).data, "secret": secret}


class EndpointListView(generics.ListAPIView):
    """Inbound webhook endpoints of the organization (admins only)."""

    serializer_class = EndpointSerializer
    pagination_class = Pages

    def get_queryset(self):
        organization = require_role(self.request, "admin")
        return WebhookEndpoint.objects.filter(organization=organization).order_by("name", "pk")

    @extend_schema(request=EndpointInput, responses={201: EndpointWithSecret})
    def post(self, request):
        organization = require_role(request, "admin")
        data = EndpointInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhook_endpoint_create(organization=organization, by=request.user, **data.validated_data)
        return Response(_with_secret(endpoint, secret, request), status=status.HTTP_201_CREATED)


def _own(request, public_id) -> WebhookEndpoint:
    organization = require_role(request, "admin")
    return get_object_or_404(WebhookEndpoint, organization=organization, public_id=public_id)


class EndpointDetailView(APIView):
    @extend_schema(responses=EndpointSerializer)
    def get(self, request, public_id):
        return Response(EndpointSerializer(_own(request, public_id), context={"request": request}).data)

    @extend_schema(request=EndpointInput(partial=True), responses=EndpointSerializer)
    def patch(self, request, public_id):
        endpoint = _own(request, public_id)
        data = EndpointInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        endpoint = webhook_endpoint_update(endpoint_id=endpoint.pk, by=request.user, **data.validated_data)
        return Response(EndpointSerializer(endpoint, context={"request": request}).data)

    @extend_schema(responses={204: None})
    def delete(self, request, public_id):
        webhook_endpoint_delete(endpoint_id=_own(request, public_id).pk, by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointRotateView(APIView):
    @extend_schema(request=RotateInput, responses=EndpointWithSecret)
    def post(self, request, public_id):
        endpoint = _own(request, public_id)
        data = RotateInput(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint, secret = webhook_endpoint_rotate(endpoint_id=endpoint.pk, by=request.user,
                                                   grace_hours=data.validated_data["grace_hours"])
        return Response(_with_secret(endpoint, secret, request))


Accepted = inline_serializer("WebhookAccepted", {"status": serializers.CharField(), "id": serializers.UUIDField(),
                                                 "webhook_id": serializers.CharField()})
RefusedBody = inline_serializer("WebhookRefused", {"detail": serializers.CharField(), "code": serializers.CharField()})


SIGNATURE_HEADERS = [
    OpenApiParameter(name, str, OpenApiParameter.HEADER, required=True, description=text) for name, text in (
        ("webhook-id", "The message's id: the same on every retry of it (replays are refused)."),
        ("webhook-timestamp", "Unix time in seconds when it was signed."),
        ("webhook-signature", "v1,<base64 HMAC-SHA256>; several separated by spaces."))]


class HookView(APIView):
    """POST a Standard Webhooks message to an endpoint: `webhook-id`, `webhook-timestamp` (Unix
    seconds, within 5 minutes) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of
    id.timestamp.body>` with the endpoint's secret). Answers 202 once the message is recorded;
    its workflows run afterwards."""

    authentication_classes: list = []  # the signature authenticates; no session, so no CSRF
    permission_classes = [AllowAny]
    throttle_classes = [InboundWebhookThrottle]  # per sender address, not the people's API budget

    @extend_schema(auth=[], request={"application/json": OpenApiTypes.OBJECT}, parameters=SIGNATURE_HEADERS,
                   responses={202: Accepted, **{code: OpenApiResponse(RefusedBody, description=why) for code, why in (
                       (400, "missing or malformed headers, or a body that is not JSON"),
                       (401, "bad signature, or a timestamp more than 5 minutes off"),
                       (403, "the endpoint is disabled, or its organization's plan does not include automation"),
                       (404, "no such endpoint"),
                       (409, "this webhook-id was received before (a replay)"), (413, "the body is too large"),
                       (415, "the body is not declared as JSON"),
                       (429, "more posts from this address than WEBHOOK_THROTTLE_RATE (see Retry-After)"))}})
    def post(self, request, public_id):
        try:
            body = self._body(request)
            receipt = inbound.webhook_receive(public_id=public_id, headers=request.headers, body=body,
                                              content_type=request.META.get("CONTENT_TYPE", ""))
        except inbound.Refused as refused:
            return Response({"detail": refused.message, "code": refused.code}, status=refused.status)
        accepted = {"status": "accepted", "id": receipt.pk, "webhook_id": receipt.message_id}
        if replies.replies_expected(receipt):  # a workflow answers the caller: wait for its reply, a while
            reply, run_ids = replies.await_reply(receipt)
            if reply is not None:
                return HttpResponse(reply.body, status=reply.status, content_type=reply.content_type,
                                    headers={"X-Run-Id": str(reply.run_id)})
            accepted["runs"] = run_ids  # the reply, when it comes, is on its run: GET /api/v1/runs/<id>/
        return Response(accepted, status=status.HTTP_202_ACCEPTED)

    @staticmethod
    def _body(request) -> bytes:
        """At most the limit (+1 byte, to tell it was over) is read, whatever the client declares."""
        limit = inbound.max_body()
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise inbound.Refused(413, "too_large", f"the body is larger than {limit // 1024} KB")
        stream = request.stream
        return stream.read(limit + 1) if stream is not None else b""


class HookEventView(HookView):
    """POST another system's business event to an endpoint, signed as any message to it (Standard
    Webhooks): the body is `{"type": "invoice.overdue", "idempotency_key": "…", "contact": {"phone":
    "+1 555 0100"}, "data": {"invoice": {"number": "INV-7", "amount_due": "120.00", …}}}`, checked
    against the event's declaration (400 `invalid_event` with `errors` by place, nothing recorded).
    Answers 202 with the event's id; the same idempotency key again answers with the first event
    (`duplicate`: true) and runs nothing."""

    @extend_schema(auth=[], request={"application/json": OpenApiTypes.OBJECT}, parameters=SIGNATURE_HEADERS,
                   responses={202: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
    def post(self, request, public_id):
        try:
            body = self._body(request)
            event, created = inbound.event_receive(public_id=public_id, headers=request.headers, body=body,
                                                   content_type=request.META.get("CONTENT_TYPE", ""))
        except inbound.EventRefused as refused:
            return Response({"detail": refused.message, "code": refused.code, "errors": refused.errors},
                            status=refused.status)
        except inbound.Refused as refused:
            return Response({"detail": refused.message, "code": refused.code}, status=refused.status)
        return Response({"status": "accepted", "event": event.pk, "type": event.name, "duplicate": not created},
                        status=status.HTTP_202_ACCEPTED)

