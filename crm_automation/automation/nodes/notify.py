"""The `notify` step: the workflow format's "desktop-notification" node, an in-app message to
people of the run's organization, read in the admin ("Notifications").

One Notification row per recipient. Every row of a step carries the step's key (`effect_key`,
indexed) and a per-recipient `automation_key` (unique): a redelivered run finds the step's rows
with one `IN` lookup, and even a lookup that was skipped cannot notify anyone twice.

With `emailCopy: true` each recipient who has an email address also gets the notification by
email: the copies are queued in the same transaction (keyed `<step key>:mail:<user id>`) and
delivered after it commits, like a send_email step's message, so the step is external: it
completes when every copy was sent, fails when one was refused (a retry sends the refused
ones again) and is never retried when a copy's outcome is unknown.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.urls import reverse

from crm_automation.automation import wording
from crm_automation.automation.nodes.base import Action, ActionFailed, ExecutionContext, Outcome, Result
from crm_automation.automation.nodes.create_task import linked_deal, linked_lead
from crm_automation.crm.email_delivery import email_mark_unknown, emails_deliver, emails_in_flight
from crm_automation.crm.models import Deal, EmailMessage, Lead, Membership, Notification, Project

ADMINS, MEMBERS, OWNER = "admins", "members", "owner"
RECIPIENTS = (ADMINS, MEMBERS, OWNER)
TITLE_MAX = wording.limit_of(Notification, "title")


@dataclass
class Prepared:
    title: str
    notifications: list[Notification]  # one per recipient, ordered by username
    emails: list[EmailMessage] = field(default_factory=list)  # the copies (emailCopy)


def _entity(record: object) -> str:
    return type(record).__name__.lower() if isinstance(record, Deal | Lead | Project) else "lead"


def record_link(record: Deal | Lead | Project | None) -> str:
    """The admin page of the run's deal, lead or project (a path of this site); none for a webhook."""
    return reverse(f"admin:crm_{_entity(record)}_change", args=[record.pk]) if record is not None else ""


class Notify(Action[Prepared]):
    type = "notify"
    label = "Desktop notification"
    external = True  # its email copies are delivered after the commit (none: it completes at once)
    required = ("title",)
    optional = ("body", "recipients", "emailCopy")
    templated = ("title", "body")

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        if not isinstance(config.get("emailCopy", False), bool):
            errors.append(("config.emailCopy", "must be true (also email each recipient) or false"))
        recipients = config.get("recipients")
        if recipients is not None and recipients not in RECIPIENTS:
            errors.append(("config.recipients", f"must be one of {', '.join(RECIPIENTS)} (default: {ADMINS})"))
        title = config.get("title")
        if isinstance(title, str) and ("\n" in title or "\r" in title):
            errors.append(("config.title", "must be a single line (no line breaks)"))
        return errors

    def _recipients(self, config: dict[str, Any], ctx: ExecutionContext) -> list[User]:
        """Active members of the run's organization, chosen by `recipients`. The membership
        conditions go in one filter() so they hold for the same membership row: an admin of
        another organization who is a mere member here is not an admin here."""
        who = config.get("recipients") or ADMINS
        if who not in RECIPIENTS:  # a definition saved before validation knew better
            raise ActionFailed(f"recipients '{who}' is not one of {', '.join(RECIPIENTS)}")
        membership: dict[str, object] = {"memberships__organization_id": ctx.organization_id}
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

    def _title(self, config: dict[str, Any], ctx: ExecutionContext) -> str:
        # One line: it is shown in a list, where a line break would break the row.
        title = " ".join(ctx.render("title", config["title"]).split())
        if not title:
            why = ctx.why_empty(config["title"])
            raise ActionFailed(f"the notification title rendered empty ({why})" if why
                               else "the notification title rendered empty")
        if len(title) > TITLE_MAX:
            ctx.notes.append(f"title: cut to {TITLE_MAX} characters")
        return title[:TITLE_MAX]

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> Prepared:
        title = self._title(config, ctx)
        body = ctx.render("body", config.get("body", ""))
        link = record_link(ctx.record)
        users = self._recipients(config, ctx)
        emails = [EmailMessage(organization_id=ctx.organization_id, to=user.email, subject=title[:300],
                               body=f"{body}\n\n{link}".strip(), deal=linked_deal(ctx.record),
                               lead=linked_lead(ctx.record), status=EmailMessage.Status.QUEUED,
                               automation_key=copy_key(ctx.key, user.pk))
                  for user in users if config.get("emailCopy") and user.email]
        return Prepared(title=title, emails=emails, notifications=[
            Notification(organization_id=ctx.organization_id, user=user, title=title, body=body, link=link,
                         run_id=ctx.run_id, effect_key=ctx.key, automation_key=f"{ctx.key}:{user.pk}")
            for user in users
        ])

    @staticmethod
    def _result(title: str, usernames: list[str], email_ids: list[int] | None = None) -> Result:
        result: Result = {"notified": usernames, "count": len(usernames), "title": title}
        if email_ids:
            result["email_ids"] = email_ids
        return result

    def apply(self, items: list[tuple[ExecutionContext, Prepared]]) -> list[Result]:
        # One INSERT for every recipient of every run in the group (and one for the copies).
        Notification.objects.bulk_create([n for _, prepared in items for n in prepared.notifications])
        EmailMessage.objects.bulk_create([e for _, prepared in items for e in prepared.emails])
        return [self._result(prepared.title, [n.user.username for n in prepared.notifications],
                             [e.pk for e in prepared.emails]) for _, prepared in items]

    def existing(self, keys: list[str]) -> dict[str, Result]:
        rows = (Notification.objects.filter(effect_key__in=keys).order_by("user__username")
                .values_list("effect_key", "title", "user__username", "user_id"))
        found: dict[str, tuple[str, list[str], list[str]]] = {}
        for key, title, username, user_id in rows:
            if key is None:  # (none is: filtered on)
                continue
            entry = found.setdefault(key, (title, [], []))
            entry[1].append(username)
            entry[2].append(copy_key(key, user_id))
        copies = dict(EmailMessage.objects.filter(automation_key__in=[k for e in found.values() for k in e[2]])
                      .values_list("automation_key", "pk"))
        return {key: {**self._result(title, usernames, [copies[k] for k in keys_ if k in copies]),
                      "repeated_delivery": True}
                for key, (title, usernames, keys_) in found.items()}

    @staticmethod
    def _outcome(result: Result, emails: list[EmailMessage]) -> Outcome | None:
        statuses = [e.status for e in emails]
        result = {**result, "copies": dict(zip([e.to for e in emails], statuses, strict=True))}
        if any(s in (EmailMessage.Status.QUEUED, EmailMessage.Status.SENDING) for s in statuses):
            return None
        bad = [e for e in emails if e.status != EmailMessage.Status.SENT]
        if not bad:
            return True, result, ""
        words = "outcome unknown" if any(e.status == EmailMessage.Status.UNKNOWN for e in bad) else "not sent"
        return False, result, f"email copy to {bad[0].to} {words}: {bad[0].error}"

    def deliver(self, items: list[tuple[ExecutionContext, Result]], deadline: float | None = None
                ) -> list[Outcome | None]:
        """Send the copies (one at a time, as any email); a step without copies is done at once."""
        ids = [i for _, result in items for i in result.get("email_ids", [])]
        sent = emails_deliver(email_ids=ids, deadline=deadline) if ids else {}
        outcomes: list[Outcome | None] = []
        for _, result in items:
            mine = result.get("email_ids", [])
            if any(i not in sent for i in mine):
                outcomes.append(None)  # the deadline came first: they wait for another task
            else:
                outcomes.append(self._outcome(result, [sent[i] for i in mine]))
        return outcomes

    def in_flight(self, organization_id: int, since: datetime) -> bool:
        return emails_in_flight(organization_id=organization_id, since=since)

    def settle_existing(self, result: Result) -> Outcome | None:
        emails = list(EmailMessage.objects.filter(pk__in=result.get("email_ids", [])).order_by("pk"))
        emails = [email_mark_unknown(email_id=e.pk) if e.status == EmailMessage.Status.SENDING else e
                  for e in emails]
        return self._outcome(result, emails)

    def retry(self, key: str) -> bool:
        copies = EmailMessage.objects.filter(automation_key__startswith=f"{key}:mail:")
        if copies.filter(status__in=[EmailMessage.Status.UNKNOWN, EmailMessage.Status.SENDING]).exists():
            return False
        copies.filter(status=EmailMessage.Status.FAILED).update(status=EmailMessage.Status.QUEUED, error="")
        return True

    def cancel(self, key: str, reason: str) -> None:
        copies = EmailMessage.objects.filter(automation_key__startswith=f"{key}:mail:")
        copies.filter(status=EmailMessage.Status.QUEUED).update(
            status=EmailMessage.Status.FAILED, error=f"not sent because the run stopped: {reason}")
        for email_id in copies.filter(status=EmailMessage.Status.SENDING).values_list("pk", flat=True):
            email_mark_unknown(email_id=email_id)


def copy_key(step_key: str, user_id: int) -> str:
    return f"{step_key}:mail:{user_id}"
