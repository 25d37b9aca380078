import uuid
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.utils import timezone

from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, Result
from crm_automation.bulk_insert import bulk_insert
from crm_automation.crm.models import Deal, Lead, Membership, Project, Task

OWNER = "owner"


def linked_deal(record: Deal | Lead | None) -> Deal | None:
    if isinstance(record, Deal):
        return record
    deal: Deal | None = getattr(record, "converted_deal", None)
    return deal


def linked_lead(record: Deal | Lead | None) -> Lead | None:
    return record if isinstance(record, Lead) else None


def linked_project(record: object) -> Project | None:
    return record if isinstance(record, Project) else None


class CreateTask(Action[Task]):
    type = "create_task"
    label = "Create task"
    required = ("title",)
    # project_id: the product documents' way to name the task's project ({{trigger.project.id}});
    # without it the task links to the run's own deal, lead or project.
    optional = ("description", "due_in_days", "priority", "assignee", "project_id")
    templated = ("title", "description", "project_id")

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        due = config.get("due_in_days")
        if due is not None and (not isinstance(due, int) or isinstance(due, bool) or not 0 <= due <= 3650):
            errors.append(("config.due_in_days", "must be a whole number of days from 0 to 3650"))
        priority = config.get("priority")
        if priority is not None and priority not in Task.Priority.values:
            errors.append(("config.priority", f"must be one of {', '.join(Task.Priority.values)}"))
        assignee = config.get("assignee")
        if assignee not in (None, "", OWNER) and not Membership.objects.filter(
            organization_id=organization_id, user__username=assignee
        ).exists():
            errors.append(("config.assignee", f"'{assignee}' is not a member of this organization (or use 'owner')"))
        return errors

    def _assignee(self, config: dict[str, Any], ctx: ExecutionContext) -> User | None:
        assignee = config.get("assignee")
        if not assignee:
            return None
        if assignee == OWNER:
            owner: User | None = getattr(ctx.record, "owner", None)
            return owner
        user = get_user_model().objects.filter(
            username=assignee, memberships__organization_id=ctx.organization_id
        ).first()
        if user is None:
            raise ActionFailed(f"assignee '{assignee}' is no longer a member of this organization")
        return user

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Task:
        title = ctx.render("title", config["title"]).strip()
        if not title:
            raise ActionFailed("the task title rendered empty")
        due = config.get("due_in_days")
        return Task(
            organization_id=ctx.organization_id,
            title=title[:300],
            description=ctx.render("description", config.get("description", "")),
            due_date=None if due is None else timezone.localdate() + timedelta(days=due),
            priority=config.get("priority") or Task.Priority.NORMAL,
            assignee=self._assignee(config, ctx),
            deal=linked_deal(ctx.record),
            lead=linked_lead(ctx.record),
            project=self._project(config, ctx),
            automation_key=ctx.key,
        )

    @staticmethod
    def _project(config: dict[str, Any], ctx: ExecutionContext) -> Project | None:
        """The project named by `project_id` (one of the organization's), else the run's own."""
        if not config.get("project_id"):
            return linked_project(ctx.record)
        text = ctx.render("project_id", config["project_id"]).strip()
        try:
            found = Project.objects.filter(organization_id=ctx.organization_id, pk=uuid.UUID(text)).first()
        except ValueError:
            found = None
        if found is None:
            raise ActionFailed(f"project_id “{text[:60]}” is not a project of this organization")
        return found

    @staticmethod
    def _result(task: Task) -> Result:
        return {"task_id": task.pk, "title": task.title,
                "assignee": task.assignee.username if task.assignee is not None else None}

    def apply(self, items: list[tuple[ExecutionContext, Task]]) -> list[Result]:
        tasks = bulk_insert([task for _, task in items])
        return [self._result(task) for task in tasks]

    def existing(self, keys: list[str]) -> dict[str, Result]:
        tasks = Task.objects.filter(automation_key__in=keys).select_related("assignee")
        return {t.automation_key: {**self._result(t), "repeated_delivery": True}
                for t in tasks if t.automation_key is not None}  # (none is None: filtered on)
