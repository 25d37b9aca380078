from django.urls import include, path

from crm_automation.web import workflow_urls
from crm_automation.web.views import (
    approvals,
    builder,
    bulk_holds,
    costs,
    debugging,
    events,
    fields,
    history,
    live,
    notifications,
    records,
    workflows,
)

app_name = "web"
ID = "<int:pk>"

urlpatterns = [
    path("", workflows.workflow_list, name="workflows"),
    path("templates/", workflows.template_gallery, name="templates"),
    path("workflows/describe/", workflows.workflow_describe, name="describe"),
    path("workflows/new/", builder.builder_new, name="new"),
    path(f"workflows/{ID}/edit/", builder.builder_edit, name="edit"),
    path(f"workflows/{ID}/debug/", debugging.workflow_debug, name="debug"),
    path("records/search/", debugging.record_search, name="record-search"),
    path("", include(workflow_urls)),
    path(f"workflows/{ID}/toggle/", workflows.workflow_toggle, name="toggle"),
    path(f"workflows/{ID}/clone/", workflows.workflow_clone_view, name="clone"),
    path(f"workflows/{ID}/archive/", workflows.workflow_archive, name="archive"),
    path(f"workflows/{ID}/delete/", workflows.workflow_delete_view, name="delete"),
    path("runs/", history.run_history, name="runs"),
    path("runs/retry/", history.runs_bulk_retry, name="runs-retry"),
    path(f"runs/{ID}/", history.run_detail, name="run"),
    path(f"runs/{ID}/<slug:how>/", history.run_control, name="run-control"),
    path("approvals/", approvals.approvals, name="approvals"),
    path("fields/", fields.fields_page, name="fields"),
    path(f"fields/{ID}/rename/", fields.field_rename, name="field-rename"),
    path(f"fields/{ID}/delete/", fields.field_delete, name="field-delete"),
    path("events/", events.events_page, name="events"),
    path(f"events/{ID}/delete/", events.event_type_delete, name="event-type-delete"),
    path("live/", live.probe, name="live"),
    path("notifications/", notifications.notifications, name="notifications"),
    path("notifications/read/", notifications.notifications_read, name="notifications-read"),
    path(f"approvals/{ID}/answer/", approvals.approval_answer, name="approval-answer"),
    path("bulk-holds/", bulk_holds.bulk_holds, name="bulk-holds"),
    path(f"bulk-holds/{ID}/", bulk_holds.bulk_hold_detail, name="bulk-hold"),
    path(f"bulk-holds/{ID}/release/", bulk_holds.bulk_hold_decide, {"how": "release"}, name="bulk-hold-release"),
    path(f"bulk-holds/{ID}/discard/", bulk_holds.bulk_hold_decide, {"how": "discard"}, name="bulk-hold-discard"),
    path("records/<slug:kind>/<str:pk>/", records.record_page, name="record"),
    path("records/<slug:kind>/<str:pk>/start/", records.record_start, name="record-start"),
    path("records/<slug:kind>/<str:pk>/fields/", records.record_own_fields, name="record-fields"),
    path("start/", records.workflow_start_page, name="workflow-start"),
    path("costs/", costs.prices_page, name="prices"),
    path(f"workflows/{ID}/time-saved/", costs.workflow_time_saved, name="time-saved"),
]
