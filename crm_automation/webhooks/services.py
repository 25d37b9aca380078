"""Writes to webhook endpoints and targets: every surface (admin, API) goes through these.

Only organization admins manage them, and inbound endpoints only on a plan that includes
automation (Free does not: there they can be neither made nor changed, only deleted). A new or
rotated secret is returned once, to be shown once; afterwards only its last characters are ever
displayed.
"""

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm_automation.automation import plans
from crm_automation.crm.models import Organization
from crm_automation.crm.selectors import user_has_role
from crm_automation.webhooks import guard, signing
from crm_automation.webhooks.models import SecretHolder, WebhookEndpoint, WebhookTarget

MAX_GRACE_HOURS = 7 * 24


def _check_admin(by, organization_id: int) -> None:
    if by is not None and not user_has_role(by, organization_id, "admin"):
        raise PermissionDenied("Only admins of this organization can manage webhooks.")


def _name(name, field: str = "name") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError({field: ["is required"]})
    if len(name.strip()) > 100:
        raise ValidationError({field: ["is longer than 100 characters"]})
    return name.strip()


def _save_new(obj, field: str = "name"):
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        raise ValidationError({field: [f"“{getattr(obj, field)}” is already used in this organization"]}) from None
    return obj


def _rotate(obj: SecretHolder, grace_hours: int) -> str:
    if not isinstance(grace_hours, int) or isinstance(grace_hours, bool) or not 0 <= grace_hours <= MAX_GRACE_HOURS:
        raise ValidationError({"grace_hours": [f"must be a whole number of hours from 0 to {MAX_GRACE_HOURS}"]})
    now = timezone.now()
    secret = signing.new_secret()
    obj.previous_secret = obj.secret if grace_hours else ""
    obj.previous_valid_until = now + timedelta(hours=grace_hours) if grace_hours else None
    obj.secret, obj.rotated_at = secret, now
    obj.save(update_fields=["secret", "previous_secret", "previous_valid_until", "rotated_at"])
    return secret


# --- Inbound endpoints --------------------------------------------------------------------------
def webhook_endpoint_create(*, organization: Organization, name: str, by,
                            active: bool = True) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (returned once)."""
    _check_admin(by, organization.pk)
    plans.require_automation(organization)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(organization=organization, name=_name(name), secret=secret, active=bool(active),
                               created_by=by if getattr(by, "pk", None) else None)
    return _save_new(endpoint), secret


@transaction.atomic
def webhook_endpoint_rotate(*, endpoint_id: int, by, grace_hours: int = 24) -> tuple[WebhookEndpoint, str]:
    """A new secret; the old one keeps verifying for `grace_hours` (0: it stops at once)."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    _check_admin(by, endpoint.organization_id)
    plans.require_automation(endpoint.organization)
    return endpoint, _rotate(endpoint, grace_hours)


@transaction.atomic
def webhook_endpoint_update(*, endpoint_id: int, by, name: str | None = None,
                            active: bool | None = None) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    _check_admin(by, endpoint.organization_id)
    plans.require_automation(endpoint.organization)
    if name is not None:
        endpoint.name = _name(name)
    if active is not None:
        endpoint.active = bool(active)
    try:
        with transaction.atomic():
            endpoint.save(update_fields=["name", "active"])
    except IntegrityError:
        raise ValidationError({"name": [f"“{endpoint.name}” is already used in this organization"]}) from None
    return endpoint


def webhook_endpoint_delete(*, endpoint_id: int, by) -> None:
    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    _check_admin(by, endpoint.organization_id)
    endpoint.delete()


# --- Outbound targets ---------------------------------------------------------------------------
def _target_url(url) -> str:
    try:
        guard.parse(url)
    except guard.Refused as exc:
        raise ValidationError({"url": [str(exc)]}) from None
    return url.strip()


def webhook_target_create(*, organization: Organization, name: str, url: str, by) -> tuple[WebhookTarget, str]:
    """A new outbound target and its signing secret (returned once, for the receiver)."""
    _check_admin(by, organization.pk)
    target = WebhookTarget(organization=organization, name=_name(name), url=_target_url(url),
                           secret=signing.new_secret(), created_by=by if getattr(by, "pk", None) else None)
    try:
        target.full_clean(exclude=["organization", "secret", "created_by"], validate_unique=False)
    except ValidationError as exc:
        raise ValidationError(exc.message_dict) from None
    return _save_new(target), target.secret


@transaction.atomic
def webhook_target_rotate(*, target_id: int, by, grace_hours: int = 24) -> tuple[WebhookTarget, str]:
    """A new signing secret; requests are signed with both while the old one's grace lasts."""
    target = WebhookTarget.objects.select_for_update().get(pk=target_id)
    _check_admin(by, target.organization_id)
    return target, _rotate(target, grace_hours)


@transaction.atomic
def webhook_target_enable(*, target_id: int, by) -> WebhookTarget:
    """Send through a target again (after a 410 disabled it, or a person did)."""
    target = WebhookTarget.objects.select_for_update().get(pk=target_id)
    _check_admin(by, target.organization_id)
    target.active, target.disabled_at, target.disabled_reason = True, None, ""
    target.save(update_fields=["active", "disabled_at", "disabled_reason"])
    return target


@transaction.atomic
def webhook_target_disable(*, target_id: int, by, reason: str = "disabled by a person") -> WebhookTarget:
    target = WebhookTarget.objects.select_for_update().get(pk=target_id)
    _check_admin(by, target.organization_id)
    target.active, target.disabled_at, target.disabled_reason = False, timezone.now(), reason[:500]
    target.save(update_fields=["active", "disabled_at", "disabled_reason"])
    return target


@transaction.atomic
def webhook_target_update(*, target_id: int, by, url: str) -> WebhookTarget:
    """A target's URL (its name is what workflows refer to, so it does not change)."""
    target = WebhookTarget.objects.select_for_update().get(pk=target_id)
    _check_admin(by, target.organization_id)
    target.url = _target_url(url)
    target.save(update_fields=["url"])
    return target
