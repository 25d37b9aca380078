"""/api/v1/: each group of endpoints lives in its own module and adds its routes here."""

from django.urls import URLPattern, URLResolver, include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from crm_automation.api.ai_budget import AiBudgetView
from crm_automation.api.auth import TokenDetailView, TokenListView, TokenView
from crm_automation.api.mcp_calls import McpCallList
from crm_automation.api.me import MeView
from crm_automation.api.root import ApiRootView

app_name = "api"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", ApiRootView.as_view(), name="root"),
    path("auth/token/", TokenView.as_view(), name="token"),
    path("auth/tokens/", TokenListView.as_view(), name="token-list"),
    re_path(r"^auth/tokens/(?P<public_id>[0-9a-f]{16})/$", TokenDetailView.as_view(), name="token-detail"),
    path("me/", MeView.as_view(), name="me"),
    path("mcp-calls/", McpCallList.as_view(), name="mcp-calls"),
    path("ai-budget/", AiBudgetView.as_view(), name="ai-budget"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]

urlpatterns += [
    path("", include("crm_automation.api.crm_urls")),
    path("", include("crm_automation.api.workflow_urls")),
    path("", include("crm_automation.webhooks.urls")),
    path("", include("crm_automation.api.lifecycle_urls")),
]
