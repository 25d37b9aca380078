"""In-app alerts to an organization's admins about runs that need a person (a paused run)."""

from django.contrib.auth import get_user_model
from django.urls import reverse

from crm_automation.crm.models import Membership, Notification


def organization_admins(organization_id: int) -> list:
    # One filter(): the role and the organization hold for the same membership row.
    return list(get_user_model().objects.filter(
        is_active=True, memberships__organization_id=organization_id,
        memberships__role=Membership.Role.ADMIN).order_by("pk"))


def run_paused(runs: list[tuple[object, str]]) -> None:
    """Tell each organization's admins that these runs are paused and why. Keyed per run and
    pause, so a run delivered again does not alert twice."""
    admins: dict[int, list] = {}
    rows = []
    for run, why in runs:
        if run.organization_id not in admins:
            admins[run.organization_id] = organization_admins(run.organization_id)
        pause = (run.metadata or {}).get("pauses", 0)
        for user in admins[run.organization_id]:
            rows.append(Notification(
                organization_id=run.organization_id, user=user, run_id=run.pk,
                title=f"Run #{run.pk} of “{run.workflow.name}” is paused and needs you"[:200],
                body=f"{why}\nRetry the step, skip it, or cancel the run.",
                link=reverse("admin:automation_workflowrun_change", args=[run.pk]),
                automation_key=f"run:{run.pk}:paused:{pause}:{user.pk}"))
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
