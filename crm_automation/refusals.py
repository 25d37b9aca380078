"""What a service raises when it will not do what it was asked, by kind, so every surface can
answer by type and none reads the words:

- bad input (a field, a document, a value): Django's `ValidationError`, with its fields. The API
  answers 400; a form shows each message at its field.
- a role that does not allow it: Django's `PermissionDenied`. The API answers 403.
- well-formed, but not allowed now: `Refused` (the status forbids the transition, the plan's
  limit is reached, the run already ended, the hold was already decided). The API answers 409.
- someone saved since the caller read what it changes: `StaleEdit`, a `Refused` that says what
  is saved now, so a page can show it and offer to save on top of it. The API answers 409.

The API maps them in `api/errors.py`, the pages in `web/views/common.py` (`attempt`, and the
builder and YAML tab for a stale edit), the admin where it calls the service.
"""

from collections.abc import Mapping
from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError


class Refused(Exception):
    """The request is well-formed, but what it names does not allow it now. `message` is one
    sentence for the person, saying why and, where there is one, what to do instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def messages(self) -> list[str]:
        """As `ValidationError.messages`, for code that lists the reasons of several refusals."""
        return [self.message]


class StaleEdit(Refused):
    """Someone saved since the caller read what it changes; nothing was written.

    `fields`: field → why, for values changed since the caller read them (a form's fields, an
    API's `expected`). For a workflow, what is saved now: its `revision` (a save made on it
    keeps the caller's changes on top of theirs), who saved it (`saved_by`, a user or None) and
    when (`saved_at`)."""

    def __init__(self, message: str, *, fields: Mapping[str, str] | None = None, revision: int | None = None,
                 saved_by=None, saved_at: datetime | None = None) -> None:
        super().__init__(message)
        self.fields = dict(fields or {})
        self.revision, self.saved_by, self.saved_at = revision, saved_by, saved_at

    @classmethod
    def of_fields(cls, found: Mapping[str, str], **current) -> "StaleEdit":
        """The refusal of a write some of whose fields changed meanwhile (concurrency.conflicts)."""
        return cls(" ".join(found.values()), fields=found, **current)


def reasons(exc: ValidationError | PermissionDenied | Refused) -> list[str]:
    """The sentences a person reads for a refusal of any kind (a page's message, the admin's)."""
    if isinstance(exc, ValidationError | Refused):
        return list(exc.messages)
    return [str(exc) or "That is not allowed."]
