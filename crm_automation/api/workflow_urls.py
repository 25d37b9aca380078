"""Workflows, runs and approvals over the API."""

urlpatterns: list = []
