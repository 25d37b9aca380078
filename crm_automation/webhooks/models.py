"""Webhook data: inbound endpoints and the messages they received; outbound targets, the
deliveries made for workflow steps, and one attempt row per try (delivery as data)."""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from crm_automation.crm.models import Organization
from crm_automation.webhooks.fields import EncryptedSecretField


class SecretHolder(models.Model):
    """A signing secret (Standard Webhooks `whsec_<base64>`), and the one it replaced while its
    grace period lasts, so a sender or receiver can switch without missing a message."""

    # Encrypted at rest (fields.py): HMAC needs the secret itself, so it cannot be hashed.
    secret = EncryptedSecretField(editable=False)
    previous_secret = EncryptedSecretField(blank=True, editable=False)
    previous_valid_until = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        abstract = True

    def valid_secrets(self, now=None) -> list[str]:
        """The secrets that sign or verify now: the current one, then the previous one in its grace."""
        now = now or timezone.now()
        secrets = [self.secret]
        if self.previous_secret and self.previous_valid_until and self.previous_valid_until > now:
            secrets.append(self.previous_secret)
        return secrets

    @property
    def secret_hint(self) -> str:
        """Enough to tell secrets apart; the whole secret is shown only once."""
        return f"whsec_…{self.secret[-4:]}" if self.secret else ""


class WebhookEndpoint(SecretHolder):
    """An inbound endpoint: POST /api/v1/hooks/<public_id>/, signed with its secret."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False,
                                 help_text="The endpoint's id in its URL.")
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True, help_text="A disabled endpoint refuses every message.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_webhook_endpoint_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def path(self) -> str:
        return f"/api/v1/hooks/{self.public_id}/"


class WebhookReceipt(models.Model):
    """A message an endpoint accepted. Unique per (endpoint, webhook-id): a replay is refused by
    the database, and the receipt commits with the event it wrote (AutomationEvent.entity_id is
    this row's id)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="receipts")
    message_id = models.CharField(max_length=255, help_text="The sender's webhook-id.")
    size = models.PositiveIntegerField(help_text="Body size in bytes.")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "message_id"], name="uniq_webhook_message")]
        indexes = [models.Index(fields=["organization", "-received_at"])]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.endpoint_id}"


class WebhookTarget(SecretHolder):
    """An outbound receiver: the base URL http/request nodes may call through it, and the secret
    their requests are signed with. Workflows name it (`target: billing`); the secret never
    appears in a workflow. A receiver that answers 410 Gone disables it."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.SlugField(max_length=60, help_text="How workflows refer to it (config `target`).")
    url = models.URLField(max_length=2000, help_text="Requests go to this URL or below it (same scheme, host, "
                                                     "port, and a path under this one).")
    active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_webhook_target_name")]

    def __str__(self) -> str:
        return self.name


class ChatChannel(models.Model):
    """A Slack or Microsoft Teams channel workflows post to (`crm/post_slack`, `crm/post_teams`,
    `channel: sales-wins`): an incoming webhook URL, or for Slack a bot token and the channel's id.
    The URL and the token are credentials: encrypted at rest, written and never shown again."""

    class Kind(models.TextChoices):
        SLACK = "slack", "Slack"
        TEAMS = "teams", "Microsoft Teams"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    name = models.SlugField(max_length=60, help_text="How workflows refer to it (config `channel`).")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    webhook_url = EncryptedSecretField(blank=True, editable=False)
    bot_token = EncryptedSecretField(blank=True, editable=False)
    slack_channel = models.CharField(max_length=80, blank=True, help_text="Slack with a bot token: the channel's "
                                                                          "id (C0123…) or #name.")
    username = models.CharField(max_length=80, blank=True, help_text="Slack: the name posts show (optional).")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_chat_channel_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class EventSubscription(models.Model):
    """Lifecycle events (automation/lifecycle.py) sent to one of the organization's webhook targets,
    signed with its secret (Standard Webhooks): every type, or those listed. Each event's delivery
    is written in the event's own transaction (subscriptions.py), so it hears of what happens from
    the moment it exists (within the few seconds each process takes to learn of it)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(WebhookTarget, on_delete=models.CASCADE, related_name="subscriptions")
    event_types = models.JSONField(default=list, blank=True, help_text="The types it wants; empty: all of them.")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+", editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.target} ← {', '.join(self.event_types) or 'every event'}"

    def wants(self, type: str) -> bool:
        return not self.event_types or type in self.event_types


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """The request one workflow step makes, under the step's effect key (also its webhook-id, so a
    receiver deduplicates our retries). Made queued with the step, sent after the commit."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    target = models.ForeignKey(WebhookTarget, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="deliveries")
    # A post to Slack or Teams (nodes/post_chat.py): its URL is the channel's secret, so `url`
    # only names it ("slack:sales-wins").
    channel = models.ForeignKey(ChatChannel, on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="deliveries")
    # A lifecycle event's delivery to a subscription (subscriptions.py); retried on its schedule.
    subscription = models.ForeignKey(EventSubscription, on_delete=models.CASCADE, null=True, blank=True,
                                     related_name="deliveries")
    automation_key = models.CharField(max_length=100, unique=True)
    run_id = models.BigIntegerField(null=True, blank=True)
    method = models.CharField(max_length=10)
    url = models.CharField(max_length=2000)
    headers = models.JSONField(default=dict, blank=True, help_text="The node's own headers (not the signature).")
    body = models.TextField(blank=True, help_text="The JSON text sent (signed as it is).")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    response_json = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    sending_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [models.Index(fields=["organization", "-created_at"]),
                   # the few requests in flight, for fairness.py (an indexed look per delivery round)
                   models.Index(fields=["organization", "sending_since"], name="webhook_sending_idx",
                                condition=models.Q(status="sending"))]

    def __str__(self) -> str:
        return f"{self.method} {self.url} ({self.status})"


class WebhookAttempt(models.Model):
    """One try of a delivery: what came back (status, truncated body) or what went wrong."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    address = models.CharField(max_length=60, blank=True, help_text="The IP address connected to.")
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    error = models.TextField(blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="uniq_webhook_attempt")]

    def __str__(self) -> str:
        return f"#{self.number}: {self.status_code or self.error[:40]}"
