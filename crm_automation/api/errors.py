"""Errors as integrations need them: 400 with the place of each problem (the same messages as
the admin), 404 for what is not yours, 409 when the state forbids it, never a 500 for input."""

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import status
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from crm_automation.automation.definition.documents import DocumentError


class Conflict(APIException):
    """The request is valid but the record's state forbids it (a transition, a delete)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "This is not possible in the current state."
    default_code = "conflict"


def _messages(exc: DjangoValidationError):
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for e in errors for m in e.messages] for field, errors in exc.error_dict.items()}
    return {"detail": exc.messages}


def exception_handler(exc, context):
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
