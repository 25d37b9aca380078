"""Signing in to the API and managing one's own tokens.

POST /api/v1/auth/token/ {username, password} → a new token each time (django-rest-knox: stored
as a digest, expiring after API_TOKEN_TTL_HOURS); send it as `Authorization: Token <key>`.
Wrong credentials are a 400; too many failures for a username or from an address a 429
(django-axes, login_guard.py). GET /api/v1/auth/tokens/ lists the caller's live tokens,
DELETE /api/v1/auth/tokens/{id}/ revokes one, DELETE /api/v1/auth/tokens/ all of them.

Scopes (models.SCOPES: read, draft, run) say what an MCP client may do with a token; sign-in and
POST /api/v1/auth/tokens/ (a new token for the signed-in person) take them as `scopes`. A token
made without scopes reads only over MCP and acts with the person's role on the REST API, as
before; a token made with scopes only reads on the REST API (token_auth.py). A token may only
make tokens with scopes it holds itself, so a leaked read-only token cannot make a token that
starts runs.
"""

from django.conf import settings
from django.contrib.auth import authenticate, user_logged_in
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.api.document_formats import BoundedJSONParser
from crm_automation.api.login_guard import lockout_message
from crm_automation.api.models import SCOPES, TokenScopes
from crm_automation.api.tokens import (
    checked_scopes,
    scopes_of,
    token_create,
    token_id,
    token_revoke,
    tokens_of,
    tokens_revoke_all,
)

WRONG = "The username or password is not right (both are case-sensitive)."


class LockedOut(APIException):
    """429 with Retry-After (DRF's exception handler sends `wait` as that header)."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"

    def __init__(self):
        super().__init__(lockout_message())
        self.wait = int(settings.AXES_COOLOFF_TIME.total_seconds())


class ScopesField(serializers.JSONField):
    """A list of scopes (tokens.checked_scopes); left out: none asked for."""

    def to_internal_value(self, data):
        try:
            return checked_scopes(super().to_internal_value(data))
        except ValueError as exc:
            raise serializers.ValidationError(f"Must be {exc}.") from None


SCOPES_HELP = (f"What an MCP client may do with the token, some of {', '.join(SCOPES)}. Left out: read only over "
               "MCP, the person's role on the REST API; given: the REST API only reads with the token.")


class NewTokenRequest(serializers.Serializer):
    scopes = ScopesField(required=False, help_text=SCOPES_HELP)


class Credentials(NewTokenRequest):
    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})

    def validate(self, attrs):
        request = self.context["request"]
        # axes' backend (first in AUTHENTICATION_BACKENDS) refuses a locked-out username or
        # address before the password is even checked, and counts this attempt if it fails.
        user = authenticate(request=request, username=attrs["username"], password=attrs["password"])
        if getattr(request, "axes_locked_out", False):
            raise LockedOut()
        if user is None:
            raise serializers.ValidationError(WRONG, code="authorization")
        attrs["user"] = user
        return attrs


class TokenInfo(serializers.Serializer):
    id = serializers.CharField(help_text="Names the token for DELETE /api/v1/auth/tokens/{id}/ (not the secret).")
    starts_with = serializers.CharField(help_text="The first characters of the token, to recognise it.")
    created = serializers.DateTimeField()
    expiry = serializers.DateTimeField(help_text="After this the token no longer works.")
    current = serializers.BooleanField(help_text="The token this request was made with.")
    scopes = serializers.ListField(child=serializers.CharField(), help_text=SCOPES_HELP)


def _info(token, request) -> dict:
    current = getattr(request.auth, "digest", None) == token.digest
    return {"id": token_id(token), "starts_with": token.token_key[:8], "created": token.created,
            "expiry": token.expiry, "current": current, "scopes": scopes_of(token)}


NEW_TOKEN = inline_serializer("NewToken", {
    "token": serializers.CharField(help_text="Send as `Authorization: Token <token>`; shown only now."),
    "id": serializers.CharField(), "expiry": serializers.DateTimeField(),
    "scopes": serializers.ListField(child=serializers.CharField())})


Refusal = inline_serializer("AuthRefusal", {"detail": serializers.CharField()})


class TokenView(APIView):
    """Trade a username and password for a new API token."""

    authentication_classes: list = []  # the body is the credential: no session, so no CSRF
    permission_classes = [AllowAny]
    parser_classes = [BoundedJSONParser, FormParser, MultiPartParser]  # `[`×100000 is a 400, not a 500

    @extend_schema(auth=[], request=Credentials, tags=["auth"], responses={
        200: NEW_TOKEN,
        400: OpenApiResponse(description="a missing field, an unreadable body, or a wrong username or password"),
        429: OpenApiResponse(Refusal, description="too many failed sign-ins for this username or from this "
                                                  "address (LOGIN_FAILURE_LIMIT); try again after Retry-After "
                                                  "seconds")})
    def post(self, request):
        credentials = Credentials(data=request.data, context={"request": request})
        credentials.is_valid(raise_exception=True)
        user = credentials.validated_data["user"]
        instance, key = token_create(user=user, scopes=credentials.validated_data.get("scopes"))
        user_logged_in.send(sender=user.__class__, request=request, user=user)  # last_login, axes' log
        return _new(instance, key)


def _new(instance, key: str) -> Response:
    return Response({"token": key, "id": token_id(instance), "expiry": instance.expiry,
                     "scopes": scopes_of(instance)})


def _scoped(request) -> bool:
    """Whether the request came with a token made with MCP scopes."""
    return (request.auth is not None and hasattr(request.auth, "digest")
            and TokenScopes.objects.filter(token=request.auth).exists())


class TokenListView(APIView):
    """The caller's live tokens; POST makes another (e.g. for an MCP client, with scopes); DELETE
    ends all of them (signs out every client)."""

    parser_classes = [BoundedJSONParser]

    @extend_schema(operation_id="auth_tokens_create", tags=["auth"], request=NewTokenRequest,
                   responses={200: NEW_TOKEN, 400: OpenApiResponse(description="an unknown scope, or one that the "
                                                                               "token making it does not hold")})
    def post(self, request):
        body = NewTokenRequest(data=request.data)
        body.is_valid(raise_exception=True)
        scopes = body.validated_data.get("scopes")
        if scopes is None and _scoped(request):
            scopes = scopes_of(request.auth)  # within its own scopes: never a token that writes on the REST API
        if request.auth is not None and hasattr(request.auth, "digest"):
            # Made with a token (not a signed-in session): no scope the token itself lacks.
            held = scopes_of(request.auth)
            beyond = [scope for scope in scopes or [] if scope not in held]
            if beyond:
                raise serializers.ValidationError({"scopes": [
                    f"This token does not hold the “{beyond[0]}” scope, so it cannot give it to another; sign in "
                    "with your password to make that token."]})
        instance, key = token_create(user=request.user, scopes=scopes)
        return _new(instance, key)

    @extend_schema(operation_id="auth_tokens_list", tags=["auth"], responses=TokenInfo(many=True))
    def get(self, request):
        return Response(TokenInfo([_info(token, request) for token in tokens_of(request.user)], many=True).data)

    @extend_schema(operation_id="auth_tokens_revoke_all", tags=["auth"], responses={204: None})
    def delete(self, request):
        if _scoped(request):
            raise PermissionDenied("A token made with MCP scopes revokes only itself "
                                   "(DELETE /api/v1/auth/tokens/{its id}/), not every token of its person.")
        tokens_revoke_all(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenDetailView(APIView):
    """Revoke one of the caller's tokens (another person's id is a 404)."""

    @extend_schema(operation_id="auth_tokens_revoke", tags=["auth"],
                   responses={204: None, 404: OpenApiResponse(description="no token of yours has this id")})
    def delete(self, request, public_id: str):
        if not token_revoke(user=request.user, public_id=public_id):
            raise NotFound("You have no token with this id.")
        return Response(status=status.HTTP_204_NO_CONTENT)
