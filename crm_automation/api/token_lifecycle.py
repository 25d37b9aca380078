"""When a person's API tokens (django-rest-knox) end besides expiring or being revoked.

- A password change ends all of the person's tokens: whoever learnt the old password, or a
  token made with it, is out (Django already ends the sessions the same way).
- A removed membership (the row deleted, or moved to another person or organization) ends all
  of that person's tokens: a token is not tied to an organization, and one made while the person
  was a member must not outlive the membership. They sign in again for what they still belong to.

The receivers only delete token rows: no other work happens in them.
"""

import logging

from django.conf import settings
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver
from knox.models import get_token_model

from crm_automation.crm.models import Membership

log = logging.getLogger("crm_automation.auth")


def end_tokens(user_id: int, why: str) -> int:
    deleted, _ = get_token_model().objects.filter(user_id=user_id).delete()
    if deleted:
        log.info("Ended %d API token(s) of user %s: %s", deleted, user_id, why,
                 extra={"user_id": user_id, "tokens": deleted, "reason": why})
    return deleted


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def password_changed(sender, instance, created, **kwargs) -> None:
    # set_password() keeps the new raw password in `_password` until the save is done: every
    # way Django changes a password (admin form, password change view, changepassword) uses it.
    if not created and getattr(instance, "_password", None) is not None:
        end_tokens(instance.pk, "password changed")


@receiver(pre_save, sender=Membership)
def membership_moved(sender, instance, raw=False, **kwargs) -> None:
    if raw or instance.pk is None:
        return
    before = Membership.objects.filter(pk=instance.pk).values("user_id", "organization_id").first()
    if before and (before["user_id"], before["organization_id"]) != (instance.user_id, instance.organization_id):
        end_tokens(before["user_id"], "membership changed to another person or organization")


@receiver(post_delete, sender=Membership)
def membership_removed(sender, instance, **kwargs) -> None:
    end_tokens(instance.user_id, "membership removed")
