"""/api/v1/ai-budget/: the organization's monthly AI budget (tokens) and this month's use.
Anyone of the organization reads it; an admin sets it (`PUT {"budget_tokens": 200000}`, null for
none) through the service, which checks the role and the value (automation/ai/budget.py)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.api.tenancy import require_role
from crm_automation.automation.ai import budget
from crm_automation.crm.models import Organization

BUDGET = inline_serializer("AiBudget", {
    "budget_tokens": serializers.IntegerField(allow_null=True), "used_tokens": serializers.IntegerField(),
    "since": serializers.DateField(), "renews": serializers.DateField(), "spent": serializers.BooleanField()})


def _body(organization: Organization) -> dict:
    use = budget.use(organization.pk, organization.ai_monthly_token_budget)
    return {"budget_tokens": use.budget, "used_tokens": use.tokens, "since": use.since, "renews": use.renews,
            "spent": use.spent}


class AiBudgetView(APIView):
    @extend_schema(responses=BUDGET)
    def get(self, request):
        return Response(_body(require_role(request, "viewer")))

    @extend_schema(request=inline_serializer("AiBudgetSet", {"budget_tokens": serializers.IntegerField(
        allow_null=True)}), responses=BUDGET)
    def put(self, request):
        organization = require_role(request, "viewer")  # (the service checks the admin role)
        if not isinstance(request.data, dict) or "budget_tokens" not in request.data:
            raise ValidationError({"budget_tokens": "is required: a whole number of tokens, or null for no budget"})
        changed = budget.ai_budget_set(organization_id=organization.pk, by=request.user,
                                       tokens=request.data["budget_tokens"])
        return Response(_body(changed))
