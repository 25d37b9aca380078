"""A workflow's pages beside the builder. No app_name: web/urls.py includes these into its
`web` namespace (web:yaml, web:versions, web:rollback, web:publish, web:simulate, web:graph, web:run-now)."""

from django.urls import path

from crm_automation.web.views import publishing, run_now
from crm_automation.web.views import workflow_pages as pages

ID = "<int:pk>"

urlpatterns = [
    path(f"workflows/{ID}/yaml/", pages.workflow_yaml, name="yaml"),
    path(f"workflows/{ID}/versions/", pages.workflow_versions, name="versions"),
    path(f"workflows/{ID}/rollback/", pages.workflow_rollback_view, name="rollback"),
    path(f"workflows/{ID}/publish/", publishing.workflow_publish_view, name="publish"),
    path(f"workflows/{ID}/simulate/", pages.workflow_simulate, name="simulate"),
    path(f"workflows/{ID}/graph/", pages.workflow_graph, name="graph"),
    path(f"workflows/{ID}/health/", pages.workflow_health, name="health"),
    path(f"workflows/{ID}/impact/", pages.workflow_impact, name="impact"),
    path(f"workflows/{ID}/run-now/", run_now.workflow_run_now, name="run-now"),
]
