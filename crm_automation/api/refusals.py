"""The shapes of the errors the workflow and run endpoints answer, for the schema.

Which status a refusal gets is decided in one place, errors.exception_handler, by its type
(crm_automation/refusals.py): bad input 400, a role 403, not now 409, a stale edit 409 with
what is saved now.
"""

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class CurrentSerializer(serializers.Serializer):
    draft_revision = serializers.IntegerField(help_text="Send it as If-Match to save on top of what is saved now.")
    edited_by = serializers.CharField(allow_null=True)
    edited_at = serializers.DateTimeField(allow_null=True)


class StaleSerializer(ErrorSerializer):
    current = CurrentSerializer(help_text="The workflow as saved now.")


class PlaceSerializer(serializers.Serializer):
    place = serializers.CharField(help_text='Where, e.g. "nodes[send-email].data.config.defaults.to".')
    message = serializers.CharField()
    line = serializers.IntegerField(allow_null=True, help_text="The line, for a YAML body.")


class DocumentErrorsSerializer(serializers.Serializer):
    errors = PlaceSerializer(many=True)  # type: ignore[assignment]  # (a declared field: DRF takes it out of the class, the attribute stays the base's)


NOT_YOURS = OpenApiResponse(ErrorSerializer, description="No such object in your organization.")
FORBIDDEN = OpenApiResponse(ErrorSerializer, description="Your role in the organization does not allow it.")
CONFLICT = OpenApiResponse(ErrorSerializer, description="The state (or the plan) forbids it; the reason says why.")
STALE = OpenApiResponse(StaleSerializer, description=(
    "Someone saved the workflow since the revision the change was made from (If-Match or draft_revision), or "
    "changed a field it changes; nothing was saved. Or the state forbids it (archived): then only `detail`."))
BAD_DOCUMENT = OpenApiResponse(DocumentErrorsSerializer, description=(
    "What is wrong with the document, and where; or which limit the body passed (at most 200,000 bytes, 24 levels "
    "of nesting and 20,000 values; no YAML anchors or aliases)."))
BAD_INPUT = OpenApiResponse(description="The input is invalid: the messages name the fields.")
