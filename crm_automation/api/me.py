from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from crm_automation.api.tenancy import organization_of
from crm_automation.crm.selectors import user_org_roles


class MeView(APIView):
    """Who the token belongs to, and the organization and role the request acts with."""

    @extend_schema(responses=inline_serializer("Me", {
        "username": serializers.CharField(), "organization": serializers.CharField(),
        "role": serializers.CharField()}))
    def get(self, request):
        organization = organization_of(request)
        role = user_org_roles(request.user).get(organization.pk, "superuser" if request.user.is_superuser else "")
        return Response({"username": request.user.get_username(), "organization": organization.slug, "role": role})
