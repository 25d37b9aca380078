"""`Authorization: Token <key>` with django-rest-knox's tokens, refusing malformed keys up front.

knox decodes the key as UTF-8 and looks its first characters up in the database: a header with
Latin-1 bytes was a UnicodeDecodeError, one with a NUL a PostgreSQL DataError, both 500s. A key
is always knox's hex string (no TOKEN_PREFIX is configured), so anything else is a 401 before
any of that.

A token made with MCP scopes (api/models.TokenScopes) is for an MCP client: on the REST API it
only reads (and manages tokens: lists them, revokes itself, makes tokens within its scopes), so a
token handed to an AI assistant with `read` cannot change anything through the API either. A
token made without scopes acts with the person's role, as it always did.
"""

import re

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.settings import knox_settings
from knox.signals import token_expired
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.permissions import SAFE_METHODS

from crm_automation.api.models import TokenScopes

TOKENS_PATH = "/api/v1/auth/tokens/"


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate(self, request):
        found = super().authenticate(request)
        if found is not None and request.method not in SAFE_METHODS and not request.path.startswith(TOKENS_PATH) \
                and TokenScopes.objects.filter(token=found[1]).exists():  # (one query, for writes only)
            raise PermissionDenied("This token was made with MCP scopes: on the REST API it can only read. Use a "
                                   "token made without scopes to change things through the API.")
        return found

    def authenticate_credentials(self, token: bytes):
        shape = rb"%s[0-9a-f]{%d}" % (re.escape(knox_settings.TOKEN_PREFIX.encode()),
                                      knox_settings.AUTH_TOKEN_CHARACTER_LENGTH)
        if not re.fullmatch(shape, token):
            raise AuthenticationFailed("Invalid token.")
        return super().authenticate_credentials(token)

    def _cleanup_token(self, auth_token) -> bool:
        """Whether this token has expired (then it is deleted). knox also reads all of the
        person's tokens on every request to delete their expired ones: `tokens.token_create`
        does that at each sign-in, so the API saves a query per request."""
        if auth_token.expiry is None or auth_token.expiry >= timezone.now():
            return False
        username = auth_token.user.get_username()
        auth_token.delete()
        token_expired.send(sender=self.__class__, username=username, source="auth_token")
        return True


class TokenScheme(OpenApiAuthenticationExtension):
    """The schema's security scheme for it (drf-spectacular's knox one matches knox's class only)."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
