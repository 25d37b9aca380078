"""Links between the admin's pages that several of them show."""

from django.urls import reverse
from django.utils.html import format_html


def run_link(run_id: int | None) -> str:
    """A link to the run's admin page ("—" for none): logs of AI calls, deliveries, lifecycle events."""
    if not run_id:
        return "—"
    return format_html("<a href='{}'>run #{}</a>", reverse("admin:automation_workflowrun_change", args=[run_id]),
                       run_id)
