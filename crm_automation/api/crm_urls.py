"""CRM records over the API: deals, leads, contacts, tasks, stages."""

urlpatterns: list = []
