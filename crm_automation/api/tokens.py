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

ID_LENGTH = 16


def token_id(token) -> str:
    return token.digest[:ID_LENGTH]


def tokens_of(user):
    """The person's live tokens, newest first."""
    return get_token_model().objects.filter(user=user, expiry__gt=timezone.now()).order_by("-created")


@transaction.atomic
def token_create(*, user) -> tuple:
    """A new token (never an old one again): (the row, the secret to hand out once). Expired
    tokens of the person are deleted, and the oldest beyond API_TOKENS_PER_USER, so a client that
    signs in on every start cannot pile up rows (knox reads them all on each request)."""
    model = get_token_model()
    mine = model.objects.filter(user=user)
    mine.filter(expiry__lte=timezone.now()).delete()
    oldest = list(mine.order_by("-created").values_list("digest", flat=True)[settings.API_TOKENS_PER_USER - 1:])
    if oldest:
        model.objects.filter(digest__in=oldest).delete()
    return model.objects.create(user=user)


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
