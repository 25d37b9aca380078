"""Included in /api/v1/ (crm_automation/api/urls.py)."""

from django.urls import path

from crm_automation.webhooks import sms_views, views

urlpatterns = [
    path("webhook-endpoints/", views.EndpointListView.as_view(), name="webhook-endpoint-list"),
    path("webhook-endpoints/<uuid:public_id>/", views.EndpointDetailView.as_view(), name="webhook-endpoint-detail"),
    path("webhook-endpoints/<uuid:public_id>/rotate/", views.EndpointRotateView.as_view(),
         name="webhook-endpoint-rotate"),
    path("hooks/<uuid:public_id>/", views.HookView.as_view(), name="webhook-hook"),
    path("hooks/<uuid:public_id>/events/", views.HookEventView.as_view(), name="webhook-hook-events"),
    path("sms/<uuid:public_id>/status/", sms_views.SmsStatusView.as_view(), name="sms-status"),
    path("sms/<uuid:public_id>/inbound/", sms_views.SmsInboundView.as_view(), name="sms-inbound"),
]
