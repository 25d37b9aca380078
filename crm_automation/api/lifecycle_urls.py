"""Lifecycle events and the subscriptions that deliver them (included in /api/v1/)."""

from django.urls import path

from crm_automation.api.lifecycle_views import (
    LifecycleEventDetail,
    LifecycleEventList,
    SubscriptionDeliveries,
    SubscriptionDetail,
    SubscriptionList,
)

urlpatterns = [
    path("lifecycle-events/", LifecycleEventList.as_view(), name="lifecycle-event-list"),
    path("lifecycle-events/<int:pk>/", LifecycleEventDetail.as_view(), name="lifecycle-event-detail"),
    path("event-subscriptions/", SubscriptionList.as_view(), name="event-subscription-list"),
    path("event-subscriptions/<int:pk>/", SubscriptionDetail.as_view(), name="event-subscription-detail"),
    path("event-subscriptions/<int:pk>/deliveries/", SubscriptionDeliveries.as_view(),
         name="event-subscription-deliveries"),
]
