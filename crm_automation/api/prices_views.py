"""The organization's unit prices (what its workflows' costs are priced at: automation/ops/costs.py).

GET for every member; PUT or PATCH for admins (the service checks), with any of the four prices
as a non-negative decimal; a bad one is a 400 that names it, and nothing is saved.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.api.parsers import BoundedJSONParser
from crm_automation.api.refusals import BAD_INPUT, FORBIDDEN
from crm_automation.api.tenancy import organization_of
from crm_automation.automation.models import UnitPrices
from crm_automation.automation.ops.costs import plain, prices_of
from crm_automation.automation.services.monitoring import PRICE_FIELDS, unit_prices_set


class PricesSerializer(serializers.Serializer):
    email = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0, help_text="Per email sent.")
    sms_segment = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0,
                                           help_text="Per SMS segment sent.")
    ai_1k_tokens = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0,
                                            help_text="Per 1,000 AI tokens (prompt and answer).")
    webhook_call = serializers.DecimalField(max_digits=12, decimal_places=6, min_value=0,
                                            help_text="Per webhook or HTTP request (each try).")
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True)


def _shown(prices: UnitPrices) -> dict:
    return {**{name: plain(getattr(prices, name)) for name in PRICE_FIELDS},
            "updated_at": prices.updated_at.isoformat() if prices.updated_at else None}


class PricesView(APIView):
    parser_classes = [BoundedJSONParser]

    @extend_schema(summary="The organization's unit prices (all 0 until an admin sets them)",
                   responses={200: PricesSerializer})
    def get(self, request):
        return Response(_shown(prices_of(organization_of(request).pk)))

    @extend_schema(summary="Set the organization's unit prices (admins): any of them, non-negative decimals",
                   request=PricesSerializer, responses={200: PricesSerializer, 400: BAD_INPUT, 403: FORBIDDEN})
    def put(self, request):
        if not isinstance(request.data, dict) or not request.data:
            raise ValidationError({"detail": [f"a JSON object with any of {', '.join(PRICE_FIELDS)}"]})
        prices = unit_prices_set(organization_id=organization_of(request).pk, by=request.user,
                                 values=dict(request.data))
        return Response(_shown(prices))

    patch = put
