from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from crm_automation.web.views import health, metrics

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("crm_automation.api.urls")),
    path("crm/automation", RedirectView.as_view(url="/crm/automation/", permanent=False)),
    path("crm/automation/", include("crm_automation.web.urls")),
    path("metrics", metrics.metrics, name="metrics"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
