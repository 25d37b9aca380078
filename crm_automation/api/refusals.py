"""What the workflow and run endpoints answer when a service refuses, and the shapes of errors
for the schema.

The services raise Django's ValidationError both for bad input and for "not now": a
transition the status forbids, a plan's limit, a run that already ended. The endpoints that
only name a state change (publish, pause, cancel a run …) validate their input first with a
serializer, so what the service refuses there is the state: a 409 with its reason.
"""

from contextlib import contextmanager

from django.core.exceptions import ValidationError
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from crm_automation.api.errors import Conflict


@contextmanager
def refusals_as_conflicts():
    try:
        yield
    except ValidationError as exc:
        raise Conflict(" ".join(exc.messages)) from None


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class PlaceSerializer(serializers.Serializer):
    place = serializers.CharField(help_text='Where, e.g. "nodes[send-email].data.config.defaults.to".')
    message = serializers.CharField()
    line = serializers.IntegerField(allow_null=True, help_text="The line, for a YAML body.")


class DocumentErrorsSerializer(serializers.Serializer):
    errors = PlaceSerializer(many=True)


NOT_YOURS = OpenApiResponse(ErrorSerializer, description="No such object in your organization.")
FORBIDDEN = OpenApiResponse(ErrorSerializer, description="Your role in the organization does not allow it.")
CONFLICT = OpenApiResponse(ErrorSerializer, description="The state (or the plan) forbids it; the reason says why.")
BAD_DOCUMENT = OpenApiResponse(DocumentErrorsSerializer, description=(
    "What is wrong with the document, and where; or which limit the body passed (at most 200,000 bytes, 24 levels "
    "of nesting and 20,000 values; no YAML anchors or aliases)."))
BAD_INPUT = OpenApiResponse(description="The input is invalid: the messages name the fields.")
