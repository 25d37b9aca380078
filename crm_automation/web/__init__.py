"""The ops team's pages at /crm/automation: server-rendered, on the same services and selectors
as the admin and the API."""
