"""In-app alerts to an organization's admins about runs that need a person (a paused run)."""

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from crm_automation.automation import wording
from crm_automation.crm.models import Membership, Notification

if TYPE_CHECKING:
    from crm_automation.automation.models import WorkflowRun

TITLE_MAX = wording.limit_of(Notification, "title")


def organization_admins(organization_id: int, roles=(Membership.Role.ADMIN,)) -> list:
    # One filter(): the role and the organization hold for the same membership row.
    return list(get_user_model().objects.filter(
        is_active=True, memberships__organization_id=organization_id,
        memberships__role__in=roles).order_by("pk"))


def notify_admins(organization_id: int, *, title: str, body: str, link: str, key: str) -> list:
    """One in-app notification to each admin of the organization, keyed `<key>:<user>` so that
    telling the same thing again notifies nobody twice. Returns the admins."""
    admins = organization_admins(organization_id)
    Notification.objects.bulk_create([
        Notification(organization_id=organization_id, user=user, title=wording.shorten(title, TITLE_MAX),
                     body=body, link=link,
                     automation_key=f"{key}:{user.pk}"[:120]) for user in admins], ignore_conflicts=True)
    return admins


def question_asked(run, place: tuple[str, str], asked: dict) -> None:
    """Tell the people who may answer a user-input step that it waits for them."""
    roles = (Membership.Role.ADMIN,) if asked["role"] == "admin" else (Membership.Role.ADMIN, Membership.Role.OPS)
    link = reverse("admin:automation_workflowrun_answer", args=[run.pk])
    Notification.objects.bulk_create([
        Notification(organization_id=run.organization_id, user=user, run_id=run.pk,
                     title=wording.shorten(f"A workflow asks you: {asked['prompt']}", TITLE_MAX),
                     body=f"Run #{run.pk} waits for your answer.", link=link,
                     automation_key=_question_key(run.pk, place[0], place[1], user.pk))
        for user in organization_admins(run.organization_id, roles)], ignore_conflicts=True)


def _question_key(run_id: int, node_id: str, token: str, user_id: int | str) -> str:
    return f"run:{run_id}:ask:{node_id}:{token}:{user_id}"[:120]


def question_settled(run_id: int, node_id: str, token: str, outcome: str) -> None:
    """A question's notifications once it no longer waits (answered, timed out, the run
    cancelled): each says what became of it instead of "waits for your answer", and is done
    (read) for everyone it asked."""
    mine = Notification.objects.filter(automation_key__startswith=_question_key(run_id, node_id, token, ""))
    mine.update(body=f"Run #{run_id}: {outcome}")
    mine.filter(read_at__isnull=True).update(read_at=timezone.now())


def answered_words(decision: str, by: str, comment: str = "") -> str:
    """“approved by alice: “Go ahead”.”"""
    said = f": “{wording.shorten(comment, 300)}”" if comment else ""
    return f"{decision} by {by}{said}."


def run_paused(runs: "list[tuple[WorkflowRun, str]]") -> None:
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
                title=wording.shorten(f"Run #{run.pk} of “{run.workflow.name}” is paused and needs you", TITLE_MAX),
                body=f"{why}\nRetry the step, skip it, or cancel the run.",
                link=reverse("admin:automation_workflowrun_change", args=[run.pk]),
                automation_key=f"run:{run.pk}:paused:{pause}:{user.pk}"))
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
