"""A person's API tokens (django-rest-knox): made at sign-in, listed and revoked by their owner.

knox stores only a SHA-512 digest of each token (the secret is shown once, at sign-in) with an
expiry (API_TOKEN_TTL_HOURS). A token is named here by the first 16 characters of its digest:
that names it without telling anything about the secret. Ends besides expiry and revocation:
token_lifecycle.py.
"""

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from knox.models import get_token_model

from crm_automation.api.models import DEFAULT_MCP_SCOPES, SCOPES, TokenScopes

ID_LENGTH = 16


def token_id(token) -> str:
    return token.digest[:ID_LENGTH]


def tokens_of(user):
    """The person's live tokens, newest first."""
    return get_token_model().objects.filter(user=user, expiry__gt=timezone.now()).order_by("-created")


def scopes_of(token) -> list[str]:
    """What an MCP client may do with this token (models.SCOPES): the scopes it was made with, or
    DEFAULT_MCP_SCOPES for a token made without any."""
    row = TokenScopes.objects.filter(token=token).first()
    return list(row.scopes) if row is not None else list(DEFAULT_MCP_SCOPES)


def checked_scopes(value) -> list[str] | None:
    """The scopes a person asked for, in SCOPES' order (None: they asked for none). ValueError
    names what is wrong."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a list of scopes, e.g. [\"read\", \"draft\"]")
    unknown = sorted(set(value) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scope “{unknown[0]}”: choose from {', '.join(SCOPES)}")
    if not value:
        raise ValueError(f"at least one of {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in value]


@transaction.atomic
def token_create(*, user, scopes: list[str] | None = None) -> tuple:
    """A new token (never an old one again): (the row, the secret to hand out once), with
    `scopes` (checked_scopes) when given. Expired tokens of the person are deleted, and the
    oldest beyond API_TOKENS_PER_USER, so a client that signs in on every start cannot pile up
    rows (knox reads them all on each request)."""
    model = get_token_model()
    mine = model.objects.filter(user=user)
    mine.filter(expiry__lte=timezone.now()).delete()
    oldest = list(mine.order_by("-created").values_list("digest", flat=True)[settings.API_TOKENS_PER_USER - 1:])
    if oldest:
        model.objects.filter(digest__in=oldest).delete()
    instance, key = model.objects.create(user=user)
    if scopes is not None:
        TokenScopes.objects.create(token=instance, scopes=scopes)
    return instance, key


def token_revoke(*, user, public_id: str) -> int:
    """Ends the person's token named `public_id`; 0 when they have none by that id (someone
    else's token is not theirs to name)."""
    if len(public_id) != ID_LENGTH:
        return 0
    deleted, _ = get_token_model().objects.filter(user=user, digest__startswith=public_id).delete()
    return deleted


def tokens_revoke_all(*, user) -> int:
    deleted, _ = get_token_model().objects.filter(user=user).delete()
    return deleted
