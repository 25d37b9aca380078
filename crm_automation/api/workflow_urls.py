"""Workflows, runs and approvals over the API; the organization's unit prices."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from crm_automation.api.prices_views import PricesView
from crm_automation.api.rollout_views import RolloutView
from crm_automation.api.run_views import ApprovalViewSet, RunViewSet
from crm_automation.api.shadow_views import ModeView
from crm_automation.api.workflow_views import WorkflowViewSet

router = SimpleRouter()
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("runs", RunViewSet, basename="run")
router.register("approvals", ApprovalViewSet, basename="approval")

urlpatterns = [path("workflows/<int:pk>/rollout/", RolloutView.as_view(), name="workflow-rollout"),
               path("workflows/<int:pk>/mode/", ModeView.as_view(), name="workflow-mode"),
               *router.urls, path("prices/", PricesView.as_view(), name="prices")]
