"""Standard Webhooks signatures, through the `standardwebhooks` package.

A secret is `whsec_` + base64 of 32 random bytes. A message is signed as
`v1,<base64 HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>`; during a secret's
grace period a sender lists two signatures separated by a space, and a receiver accepts either.
"""

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60  # the package's window, stated here for our messages


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(valid_secrets: list[str], *, message_id: str, timestamp: int, body: str) -> str:
    """The webhook-signature header: one `v1,<sig>` per secret (the new one first)."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return " ".join(Webhook(s).sign(msg_id=message_id, timestamp=when, data=body) for s in valid_secrets)


def headers(valid_secrets: list[str], *, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(valid_secrets, message_id=message_id, timestamp=timestamp, body=body)}


def verified(valid_secrets: list[str], *, body: str, headers: dict[str, str]) -> bool:
    """Whether any of the secrets signed this message. The package also checks the timestamp
    (±5 min); callers check it first to say which problem it is."""
    for secret in valid_secrets:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except Exception:  # noqa: BLE001 (any failure to verify is "not signed by this secret": malformed
            continue       # signatures make the package raise ValueError or binascii.Error, not its own error)
        return True
    return False
