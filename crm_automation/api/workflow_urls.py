"""Workflows, runs and approvals over the API; the organization's unit prices."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from crm_automation.api.prices_views import PricesView
from crm_automation.api.run_views import ApprovalViewSet, RunViewSet
from crm_automation.api.workflow_views import WorkflowViewSet

router = SimpleRouter()
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("runs", RunViewSet, basename="run")
router.register("approvals", ApprovalViewSet, basename="approval")

urlpatterns = [*router.urls, path("prices/", PricesView.as_view(), name="prices")]
