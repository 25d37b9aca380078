"""Writes to webhook endpoints, targets and event subscriptions: every surface (admin, API) goes through these.

Only organization admins manage them, and inbound endpoints only on a plan that includes
automation (Free does not: there they can be neither made nor changed, only deleted). A new or
rotated secret is returned once, to be shown once; afterwards only its last characters are ever
displayed.
"""

from datetime import timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from crm_automation.automation import lifecycle, plans
from crm_automation.automation.models import LifecycleType
from crm_automation.crm.models import Organization
from crm_automation.crm.selectors import user_has_role
from crm_automation.webhooks import guard, signing
from crm_automation.webhooks.models import EventSubscription, SecretHolder, WebhookEndpoint, WebhookTarget

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
    endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint_id)
    _check_admin(by, endpoint.organization_id)
    plans.require_automation(endpoint.organization)
    return endpoint, _rotate(endpoint, grace_hours)


@transaction.atomic
def webhook_endpoint_update(*, endpoint_id: int, by, name: str | None = None,
                            active: bool | None = None) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update(no_key=True).get(pk=endpoint_id)
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
    target = WebhookTarget.objects.select_for_update(no_key=True).get(pk=target_id)
    _check_admin(by, target.organization_id)
    return target, _rotate(target, grace_hours)


@transaction.atomic
def webhook_target_enable(*, target_id: int, by) -> WebhookTarget:
    """Send through a target again (after a 410 disabled it, or a person did)."""
    target = WebhookTarget.objects.select_for_update(no_key=True).get(pk=target_id)
    _check_admin(by, target.organization_id)
    target.active, target.disabled_at, target.disabled_reason = True, None, ""
    target.save(update_fields=["active", "disabled_at", "disabled_reason"])
    return target


@transaction.atomic
def webhook_target_disable(*, target_id: int, by, reason: str = "disabled by a person") -> WebhookTarget:
    target = WebhookTarget.objects.select_for_update(no_key=True).get(pk=target_id)
    _check_admin(by, target.organization_id)
    target.active, target.disabled_at, target.disabled_reason = False, timezone.now(), reason[:500]
    target.save(update_fields=["active", "disabled_at", "disabled_reason"])
    return target


@transaction.atomic
def webhook_target_update(*, target_id: int, by, url: str) -> WebhookTarget:
    """A target's URL (its name is what workflows refer to, so it does not change)."""
    target = WebhookTarget.objects.select_for_update(no_key=True).get(pk=target_id)
    _check_admin(by, target.organization_id)
    target.url = _target_url(url)
    target.save(update_fields=["url"])
    return target


# --- Event subscriptions (lifecycle events to a target) ------------------------------------------
def _event_types(value) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError({"event_types": ["must be a list of event types (an empty list: all of them)"]})
    known = set(LifecycleType.values)
    unknown = [item for item in value if item not in known]
    if unknown:
        raise ValidationError({"event_types": [f"unknown event type “{unknown[0][:60]}”; known: "
                                               f"{', '.join(sorted(known))}"]})
    return sorted(set(value))


@transaction.atomic
def event_subscription_create(*, organization: Organization, by, target_name: str | None = None,
                              url: str | None = None, event_types: list[str] | None = None,
                              ) -> tuple[EventSubscription, str | None]:
    """Send the organization's lifecycle events (those listed, or all) to a webhook target: an
    existing one by name, or a new one made from `target_name` and `url` (its secret is returned,
    once). It hears of what happens from now on."""
    _check_admin(by, organization.pk)
    types = _event_types(event_types)
    secret = None
    if url is not None:
        target, secret = webhook_target_create(organization=organization, name=target_name or "", url=url, by=by)
    else:
        found = WebhookTarget.objects.filter(organization=organization, name=target_name or "").first()
        if found is None:
            raise ValidationError({"target": [f"no webhook target “{str(target_name)[:60]}” in this organization; "
                                              "give a url to make one"]})
        target = found
    subscription = EventSubscription.objects.create(
        organization=organization, target=target, event_types=types,
        created_by=by if getattr(by, "pk", None) else None)
    lifecycle.forget_subscribers()  # this process at once (its own transaction sees the row) …
    transaction.on_commit(lifecycle.forget_subscribers)  # … and again once it is committed
    return subscription, secret


@transaction.atomic
def event_subscription_update(*, subscription_id: int, by, event_types: list[str] | None = None,
                              active: bool | None = None) -> EventSubscription:
    """Change what it wants, or switch it off and on. Switched on again, it goes on from then:
    what happened while it was off is in GET /api/v1/lifecycle-events/."""
    subscription = EventSubscription.objects.select_for_update(no_key=True).get(pk=subscription_id)
    _check_admin(by, subscription.organization_id)
    fields = []
    if event_types is not None:
        subscription.event_types = _event_types(event_types)
        fields.append("event_types")
    if active is not None and active != subscription.active:
        subscription.active = active
        fields.append("active")
    if fields:
        subscription.save(update_fields=fields)
    lifecycle.forget_subscribers()  # this process at once (its own transaction sees the row) …
    transaction.on_commit(lifecycle.forget_subscribers)  # … and again once it is committed
    return subscription


@transaction.atomic
def event_subscription_delete(*, subscription_id: int, by) -> None:
    subscription = EventSubscription.objects.select_for_update().get(pk=subscription_id)
    _check_admin(by, subscription.organization_id)
    subscription.delete()
