"""GET /api/v1/mcp-calls/: the organization's log of MCP tool calls (api.models.McpCall), newest
first, for its admins (a cursor: page 1,000 costs what page 1 does). Read-only: the log is
written by the MCP server only (mcp_server/audit.py)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination

from crm_automation.api.models import McpCall
from crm_automation.api.refusals import FORBIDDEN
from crm_automation.api.tenancy import require_role


class McpCallSerializer(serializers.ModelSerializer):
    user = serializers.SerializerMethodField(help_text="Who called (their username); empty once they are deleted.")

    class Meta:
        model = McpCall
        fields = ["id", "created_at", "user", "token_id", "transport", "tool", "arguments", "outcome", "message",
                  "duration_ms"]
        read_only_fields = fields

    def get_user(self, call: McpCall) -> str | None:
        return call.user.get_username() if call.user is not None else None


class NewestCallsFirst(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    ordering = ("-created_at", "-id")


@extend_schema(summary="The organization's MCP tool calls, newest first (admins)", tags=["mcp"],
               responses={200: McpCallSerializer(many=True), 403: FORBIDDEN})
class McpCallList(ListAPIView):
    serializer_class = McpCallSerializer
    pagination_class = NewestCallsFirst
    queryset = McpCall.objects.none()  # for the schema; get_queryset scopes by organization

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return McpCall.objects.none()
        organization = require_role(self.request, "admin")
        return McpCall.objects.filter(organization=organization).select_related("user")
