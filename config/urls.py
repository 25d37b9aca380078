from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from crm_automation.web.views import health, metrics


@cache_control(max_age=86400)
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    """Browsers ask for /favicon.ico on pages that name no icon (Swagger UI, the browsable API).
    Temporary: in production the static file's name carries its content hash, which changes."""
    return HttpResponseRedirect(static("favicon.ico"))


@csrf_exempt
def mcp(request: HttpRequest) -> HttpResponse:
    """The MCP server over streamable HTTP (api/mcp_server/http.py), imported at its first request:
    the MCP SDK costs a third of a second of CPU to import, which every process that loads these
    URLs paid (each web worker, each command), most of them never serving /mcp."""
    from crm_automation.api.mcp_server.http import mcp_endpoint

    return mcp_endpoint(request)


urlpatterns = [
    path("", RedirectView.as_view(url="/crm/automation/", permanent=False)),  # where ops teams start
    path("admin/", admin.site.urls),
    path("api/v1/", include("crm_automation.api.urls")),
    path("mcp", mcp, name="mcp"),
    path("crm/automation", RedirectView.as_view(url="/crm/automation/", permanent=False)),
    path("crm/automation/", include("crm_automation.web.urls")),
    path("metrics", metrics.metrics, name="metrics"),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
