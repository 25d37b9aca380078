"""What agent and router steps asked the AI model: a read-only log with the prompts, the answer,
tokens and cost, linked to the step's run (the organization's AI bill, call by call)."""

from django.contrib import admin

from crm_automation.automation.admin.links import run_link
from crm_automation.automation.models import AiCall
from crm_automation.crm.admin_scoping import ReadOnlyOrgScopedAdmin


@admin.register(AiCall)
class AiCallAdmin(ReadOnlyOrgScopedAdmin):
    list_display = ("node_type", "status", "provider", "input_tokens", "output_tokens", "cost", "duration_ms",
                    "run_link", "created_at")
    list_filter = ("status", "node_type", "organization")
    search_fields = ("automation_key", "provider")
    fields = ("node_type", "status", "provider", "prompt", "system_prompt", "answer", "error", "attempts",
              "input_tokens", "output_tokens", "cost", "duration_ms", "automation_key", "run_link", "created_at",
              "finished_at")
    readonly_fields = fields

    @admin.display(description="prompt")
    def prompt(self, obj) -> str:
        return obj.request.get("prompt", "")

    @admin.display(description="instructions and data given")
    def system_prompt(self, obj) -> str:
        return obj.request.get("system", "")

    @admin.display(description="run")
    def run_link(self, obj) -> str:
        return run_link(obj.run_id)
