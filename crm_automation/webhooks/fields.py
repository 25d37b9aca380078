"""Signing secrets encrypted at rest.

HMAC needs the secret itself, so it cannot be hashed like a password; it is stored encrypted
(Fernet: AES-128-CBC with HMAC-SHA256, from `cryptography`) so that a database dump or a backup
alone does not let anyone forge or read webhooks.

Keys come from settings.FIELD_ENCRYPTION_KEYS (environment variable of the same name, comma-
separated Fernet keys, newest first: values are written with the first and read with any, so
keys can be rotated by prepending a new one and running `manage.py reencrypt_secrets`). With no
keys set, one is derived from SECRET_KEY. A value written before encryption existed (plain
`whsec_…`) is still read, and is encrypted the next time its row is saved.
"""

import base64
import hashlib
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

TOKEN_PREFIX = "gAAAAA"  # every Fernet token starts so (version byte 0x80 and a 64-bit time)


@lru_cache(maxsize=4)
def _box(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = hashlib.sha256(b"crm-automation field encryption\x00" + secret_key.encode()).digest()
        keys = (base64.urlsafe_b64encode(derived).decode(),)
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS holds a key that is not a Fernet key ({exc}); "
                                   "make one with: python -c 'from cryptography.fernet import Fernet; "
                                   "print(Fernet.generate_key().decode())'") from None


def box() -> MultiFernet:
    return _box(tuple(getattr(settings, "FIELD_ENCRYPTION_KEYS", ())), settings.SECRET_KEY)


def encrypt(value: str) -> str:
    return box().encrypt(value.encode()).decode() if value else ""


def decrypt(stored: str) -> str:
    if not stored or not stored.startswith(TOKEN_PREFIX):
        return stored or ""  # empty, or written before encryption
    try:
        return box().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A stored webhook secret cannot be decrypted with FIELD_ENCRYPTION_KEYS (or the key derived from "
            "SECRET_KEY): was a key removed or SECRET_KEY changed? Put the old key back in the list.") from None


class EncryptedSecretField(models.TextField):
    """A text column that holds its value Fernet-encrypted; Python code sees the plain value.
    Not searchable or orderable by its value (nothing needs to be)."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "" or value.startswith(TOKEN_PREFIX):
            return value
        return encrypt(value)
