"""CRM records over the API: deals, leads, contacts, tasks, stages."""

from rest_framework.routers import SimpleRouter

from crm_automation.api.crm_views import (
    ContactViewSet,
    CustomFieldViewSet,
    DealViewSet,
    LeadViewSet,
    StageViewSet,
    TaskViewSet,
)

router = SimpleRouter()
router.register("deals", DealViewSet, basename="deal")
router.register("leads", LeadViewSet, basename="lead")
router.register("contacts", ContactViewSet, basename="contact")
router.register("tasks", TaskViewSet, basename="task")
router.register("stages", StageViewSet, basename="stage")
router.register("custom-fields", CustomFieldViewSet, basename="custom-field")

urlpatterns = router.urls
