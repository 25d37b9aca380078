"""CRM records over the API: deals, leads, contacts, projects, tasks, stages, own fields, events."""

from rest_framework.routers import SimpleRouter

from crm_automation.api.crm_views import (
    ContactViewSet,
    CustomFieldViewSet,
    DealViewSet,
    EventTypeViewSet,
    EventViewSet,
    LeadViewSet,
    ProjectViewSet,
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
router.register("projects", ProjectViewSet, basename="project")
router.register("event-types", EventTypeViewSet, basename="event-type")
router.register("events", EventViewSet, basename="event")

urlpatterns = router.urls
