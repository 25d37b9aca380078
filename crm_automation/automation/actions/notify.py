"""The `notify` step: the workflow format's "desktop-notification" node, an in-app message to
people of the run's organization, read in the admin ("Notifications").

One Notification row per recipient. Every row of a step carries the step's key (`effect_key`,
indexed) and a per-recipient `automation_key` (unique): a redelivered run finds the step's rows
with one `IN` lookup, and even a lookup that was skipped cannot notify anyone twice.

An email copy (`emailCopy`) is not offered: the outbox only sends what an external step hands to
the engine after commit, one email per step, so copies would need the engine's delivery and
retry paths to learn about several emails per step. A `send_email` step does it today.
"""

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.urls import reverse

from crm_automation.automation.actions.base import Action, ActionFailed, ExecutionContext
from crm_automation.crm.models import Deal, Membership, Notification

ADMINS, MEMBERS, OWNER = "admins", "members", "owner"
RECIPIENTS = (ADMINS, MEMBERS, OWNER)
TITLE_MAX = Notification._meta.get_field("title").max_length


@dataclass
class Prepared:
    title: str
    notifications: list[Notification]  # one per recipient, ordered by username


def _entity(record) -> str:
    return "deal" if isinstance(record, Deal) else "lead"


def record_link(record) -> str:
    """The admin page of the triggering deal or lead (a path of this site)."""
    return reverse(f"admin:crm_{_entity(record)}_change", args=[record.pk])


class Notify(Action):
    type = "notify"
    label = "Desktop notification"
    required = ("title",)
    optional = ("body", "recipients")
    templated = ("title", "body")

    def validate(self, config, *, trigger_type, organization_id):
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        if "emailCopy" in config:  # a clearer word than "unknown setting" for what people will try
            errors = [e for e in errors if e[0] != "config.emailCopy"]
            errors.append(("config.emailCopy", "is not supported yet; add a send_email step to email a copy"))
        recipients = config.get("recipients")
        if recipients is not None and recipients not in RECIPIENTS:
            errors.append(("config.recipients", f"must be one of {', '.join(RECIPIENTS)} (default: {ADMINS})"))
        title = config.get("title")
        if isinstance(title, str) and ("\n" in title or "\r" in title):
            errors.append(("config.title", "must be a single line (no line breaks)"))
        return errors

    def _recipients(self, config: dict, ctx: ExecutionContext) -> list:
        """Active members of the run's organization, chosen by `recipients`. The membership
        conditions go in one filter() so they hold for the same membership row: an admin of
        another organization who is a mere member here is not an admin here."""
        who = config.get("recipients") or ADMINS
        if who not in RECIPIENTS:  # a definition saved before validation knew better
            raise ActionFailed(f"recipients '{who}' is not one of {', '.join(RECIPIENTS)}")
        membership = {"memberships__organization_id": ctx.organization_id}
        if who == ADMINS:
            membership["memberships__role"] = Membership.Role.ADMIN
        elif who == OWNER:
            entity = _entity(ctx.record)
            owner_id = getattr(ctx.record, "owner_id", None)
            if owner_id is None:
                raise ActionFailed(f"the {entity} has no owner, so there is nobody to notify")
            membership["pk"] = owner_id
        users = list(get_user_model().objects.filter(is_active=True, **membership).order_by("username"))
        if not users:
            raise ActionFailed(
                f"the {_entity(ctx.record)}'s owner is no longer an active member of this organization"
                if who == OWNER else f"this organization has no active {who} to notify")
        return users

    def _title(self, config: dict, ctx: ExecutionContext) -> str:
        # One line: it is shown in a list, where a line break would break the row.
        title = " ".join(ctx.render("title", config["title"]).split())
        if not title:
            why = ctx.why_empty(config["title"])
            raise ActionFailed(f"the notification title rendered empty ({why})" if why
                               else "the notification title rendered empty")
        if len(title) > TITLE_MAX:
            ctx.notes.append(f"title: cut to {TITLE_MAX} characters")
        return title[:TITLE_MAX]

    def prepare(self, config, ctx):
        title = self._title(config, ctx)
        body = ctx.render("body", config.get("body", ""))
        link = record_link(ctx.record)
        return Prepared(title=title, notifications=[
            Notification(organization_id=ctx.organization_id, user=user, title=title, body=body, link=link,
                         run_id=ctx.run_id, effect_key=ctx.key, automation_key=f"{ctx.key}:{user.pk}")
            for user in self._recipients(config, ctx)
        ])

    @staticmethod
    def _result(title: str, usernames: list[str]) -> dict:
        return {"notified": usernames, "count": len(usernames), "title": title}

    def apply(self, items):
        # One INSERT for every recipient of every run in the group.
        Notification.objects.bulk_create([n for _, prepared in items for n in prepared.notifications])
        return [self._result(prepared.title, [n.user.username for n in prepared.notifications])
                for _, prepared in items]

    def existing(self, keys):
        rows = (Notification.objects.filter(effect_key__in=keys).order_by("user__username")
                .values_list("effect_key", "title", "user__username"))
        found: dict[str, tuple[str, list[str]]] = {}
        for key, title, username in rows:
            found.setdefault(key, (title, []))[1].append(username)
        return {key: {**self._result(title, usernames), "repeated_delivery": True}
                for key, (title, usernames) in found.items()}
