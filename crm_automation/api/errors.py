"""Errors as integrations need them: 400 with the place of each problem (the same messages as
the admin), 403 for a role that does not allow it, 404 for what is not yours, 409 when the state
forbids it (a service's `Refused`) or someone saved meanwhile (`StaleEdit`), never a 500 for
input. Views raise or let through; this is the one place that chooses the status."""

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from crm_automation.automation.definition.documents import DocumentError
from crm_automation.refusals import Refused, StaleEdit


class Conflict(APIException):
    """The request is valid but the record's state forbids it (a transition, a delete)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "This is not possible in the current state."
    default_code = "conflict"


def _messages(exc: DjangoValidationError):
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
    return {"detail": exc.messages}


def _stale_body(exc: StaleEdit) -> dict:
    """What a 409 for a stale edit adds to its `detail`: each field changed meanwhile with why
    (the shape of a 400's field errors), and for a workflow what is saved now: send the change
    again with `If-Match: "<draft_revision>"` to make it on top of theirs."""
    body: dict = {field: [message] for field, message in exc.fields.items()}
    if exc.revision is not None:
        body["current"] = {"draft_revision": exc.revision,
                           "edited_by": exc.saved_by.get_username() if exc.saved_by is not None else None,
                           "edited_at": exc.saved_at.isoformat() if exc.saved_at is not None else None}
    return body


def exception_handler(exc, context):
    if isinstance(exc, StaleEdit):
        response = drf_handler(Conflict(exc.message), context)
        response.data.update(_stale_body(exc))
        return response
    if isinstance(exc, Refused):
        return drf_handler(Conflict(exc.message), context)
    if isinstance(exc, DocumentError):
        return Response({"errors": [{"place": place, "message": message, "line": line}
                                    for place, message, line in exc.errors]}, status=400)
    if isinstance(exc, DjangoValidationError):
        exc = ValidationError(_messages(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = PermissionDenied(str(exc) or "You may not do this.")
    elif isinstance(exc, ObjectDoesNotExist | Http404):
        exc = NotFound()
    return drf_handler(exc, context)
