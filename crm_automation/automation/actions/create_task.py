from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from crm_automation.automation.actions.base import Action, ActionFailed, ExecutionContext
from crm_automation.crm.models import Deal, Lead, Membership, Task

OWNER = "owner"


def _owner_of(record):
    return getattr(record, "owner", None)


class CreateTask(Action):
    type = "create_task"
    label = "Create task"
    required = ("title",)
    optional = ("description", "due_in_days", "priority", "assignee")
    templated = ("title", "description")

    def validate(self, config, *, trigger_type, organization_id):
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
            errors.append(("config.assignee",
                               f"'{assignee}' is not a member of this organization (or use 'owner')"))
        return errors

    def _assignee(self, config, ctx: ExecutionContext):
        assignee = config.get("assignee")
        if not assignee:
            return None
        if assignee == OWNER:
            return _owner_of(ctx.record)
        user = get_user_model().objects.filter(
            username=assignee, memberships__organization_id=ctx.organization_id
        ).first()
        if user is None:
            raise ActionFailed(f"assignee '{assignee}' is no longer a member of this organization")
        return user

    def execute(self, config, ctx):
        existing = Task.objects.filter(automation_key=ctx.key).first()
        if existing is not None:
            return {"task_id": existing.pk, "title": existing.title, "repeated_delivery": True}
        title = ctx.render("title", config["title"]).strip()
        if not title:
            raise ActionFailed("the task title rendered empty")
        due = config.get("due_in_days")
        record = ctx.record
        task = Task.objects.create(
            organization_id=ctx.organization_id,
            title=title[:300],
            description=ctx.render("description", config.get("description", "")),
            due_date=None if due is None else timezone.localdate() + timedelta(days=due),
            priority=config.get("priority") or Task.Priority.NORMAL,
            assignee=self._assignee(config, ctx),
            deal=record if isinstance(record, Deal) else getattr(record, "converted_deal", None),
            lead=record if isinstance(record, Lead) else None,
            automation_key=ctx.key,
        )
        return {"task_id": task.pk, "title": task.title,
                "assignee": task.assignee.username if task.assignee else None}
