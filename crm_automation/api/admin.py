"""The log of MCP calls in the admin: read-only, each person sees their organizations' calls
(crm/admin_scoping.py), the organization's admins only (as GET /api/v1/mcp-calls/)."""

from django.contrib import admin

from crm_automation.api.models import McpCall
from crm_automation.crm.admin_scoping import CappedCountPaginator, ReadOnlyOrgScopedAdmin
from crm_automation.crm.models import Membership


@admin.register(McpCall)
class McpCallAdmin(ReadOnlyOrgScopedAdmin):
    view_role = Membership.Role.ADMIN
    list_display = ["created_at", "tool", "outcome", "user", "organization", "transport", "duration_ms", "message"]
    list_filter = ["outcome", "transport", "tool", "organization"]
    list_select_related = ["user", "organization"]
    search_fields = ["tool", "message", "user__username", "token_id"]
    date_hierarchy = "created_at"
    paginator = CappedCountPaginator
    show_full_result_count = False
    fields = readonly_fields = ("created_at", "organization", "user", "token_id", "transport", "tool", "arguments",
                                "outcome", "message", "duration_ms")
