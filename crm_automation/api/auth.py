from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken


class TokenView(ObtainAuthToken):
    """POST {username, password} → {token}. Send it as `Authorization: Token <key>`."""

    @extend_schema(request=inline_serializer("TokenRequest", {"username": serializers.CharField(),
                                                              "password": serializers.CharField()}),
                   responses=inline_serializer("TokenResponse", {"token": serializers.CharField()}))
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)
