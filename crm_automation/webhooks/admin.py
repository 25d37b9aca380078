"""Webhooks in the admin: endpoints and targets (admins; a secret is shown once, in a message,
when it is made or rotated), and the received messages and deliveries as read-only logs."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Max
from django.utils.html import format_html

from crm_automation.automation import plans
from crm_automation.automation.admin.links import run_link
from crm_automation.automation.models import LifecycleType
from crm_automation.crm.admin_scoping import OrgScopedAdmin, OwnRowsFilter, ReadOnlyInline, ReadOnlyOrgScopedAdmin
from crm_automation.crm.models import Membership
from crm_automation.webhooks import guard, services
from crm_automation.webhooks.models import (
    ChatChannel,
    EventSubscription,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookReceipt,
    WebhookTarget,
)

ADMIN = Membership.Role.ADMIN
ONCE = "Store it now: it is not shown again."


class AdminsOnly(OrgScopedAdmin):
    form = forms.ModelForm  # saved through the services below, not record_update
    view_role = edit_role = add_role = delete_role = ADMIN

    def _each(self, request, queryset, change, done: str) -> None:
        count = 0
        for obj in queryset:
            try:
                change(obj)
                count += 1
            except (PermissionDenied, ValidationError) as exc:
                self.message_user(request, f"{obj}: {' '.join(getattr(exc, 'messages', [str(exc)]))}", messages.ERROR)
        if count:
            self.message_user(request, done.format(count=count), messages.SUCCESS)

    def _show_secret(self, request, obj, secret: str, what: str) -> None:
        self.message_user(request, format_html("{} secret of “{}”: <code>{}</code>. {}", what, obj, secret, ONCE),
                          messages.WARNING)


class EndpointForm(forms.ModelForm):
    """Refuses an organization whose plan does not include automation (a superuser sees every
    organization in the list; other admins are not offered those organizations at all)."""

    def clean(self) -> dict:
        super().clean()
        data = self.cleaned_data
        organization = data.get("organization") or (self.instance.organization if self.instance.pk else None)
        if organization is not None and not plans.includes_automation(organization.plan):
            raise ValidationError(plans.refusal(organization))
        return data


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AdminsOnly):
    form = EndpointForm
    hide_free_plan = True  # like workflows: automation is not part of the Free plan
    list_display = ("name", "organization", "active", "hook_url", "secret_hint", "last_received", "created_at")
    list_filter = ("active", "organization")
    list_select_related = ("organization",)
    search_fields = ("name",)
    actions = ["rotate", "rotate_now"]

    def get_fields(self, request, obj=None):
        return ("organization", "name") if obj is None else (
            "organization", "name", "active", "hook_url", "secret_hint", "rotated_at", "previous_valid_until",
            "created_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("organization", "hook_url", "secret_hint", "rotated_at", "previous_valid_until", "created_by",
                "created_at")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(last_received_at=Max("receipts__received_at"))

    @admin.display(description="URL (POST, signed)")
    def hook_url(self, obj) -> str:
        return format_html("<code>{}</code>", obj.path)

    @admin.display(description="last message", ordering="last_received_at")
    def last_received(self, obj):
        return getattr(obj, "last_received_at", None)

    def save_model(self, request, obj, form, change) -> None:
        if change:
            services.webhook_endpoint_update(endpoint_id=obj.pk, by=request.user, name=obj.name, active=obj.active)
            return
        endpoint, secret = services.webhook_endpoint_create(organization=obj.organization, name=obj.name,
                                                            by=request.user)
        obj.pk, obj.public_id, obj.secret = endpoint.pk, endpoint.public_id, endpoint.secret
        self._show_secret(request, endpoint, secret, "The")

    def delete_model(self, request, obj) -> None:
        services.webhook_endpoint_delete(endpoint_id=obj.pk, by=request.user)

    def delete_queryset(self, request, queryset) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def _rotate(self, request, queryset, grace_hours: int) -> None:
        def rotate(endpoint):
            endpoint, secret = services.webhook_endpoint_rotate(endpoint_id=endpoint.pk, by=request.user,
                                                                grace_hours=grace_hours)
            self._show_secret(request, endpoint, secret, "New")
        self._each(request, queryset, rotate, "Rotated {count} secret(s).")

    @admin.action(description="Rotate secret (the old one works 24 more hours)")
    def rotate(self, request, queryset) -> None:
        self._rotate(request, queryset, 24)

    @admin.action(description="Rotate secret now (the old one stops at once)")
    def rotate_now(self, request, queryset) -> None:
        self._rotate(request, queryset, 0)


@admin.register(WebhookTarget)
class WebhookTargetAdmin(AdminsOnly):
    list_display = ("name", "organization", "url", "active", "disabled_reason", "secret_hint", "created_at")
    list_filter = ("active", "organization")
    list_select_related = ("organization",)
    search_fields = ("name", "url")
    actions = ["rotate", "enable", "disable"]

    def get_fields(self, request, obj=None):
        return ("organization", "name", "url") if obj is None else (
            "organization", "name", "url", "active", "disabled_at", "disabled_reason", "secret_hint", "rotated_at",
            "previous_valid_until", "created_by", "created_at")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("organization", "name", "active", "disabled_at", "disabled_reason", "secret_hint", "rotated_at",
                "previous_valid_until", "created_by", "created_at")

    def save_model(self, request, obj, form, change) -> None:
        if change:
            services.webhook_target_update(target_id=obj.pk, by=request.user, url=obj.url)
            return
        target, secret = services.webhook_target_create(organization=obj.organization, name=obj.name, url=obj.url,
                                                        by=request.user)
        obj.pk, obj.secret = target.pk, target.secret
        self._show_secret(request, target, secret, "The signing")

    @admin.action(description="Rotate signing secret (both sign for 24 hours)")
    def rotate(self, request, queryset) -> None:
        def rotate(target):
            target, secret = services.webhook_target_rotate(target_id=target.pk, by=request.user)
            self._show_secret(request, target, secret, "New signing")
        self._each(request, queryset, rotate, "Rotated {count} secret(s).")

    @admin.action(description="Enable selected targets")
    def enable(self, request, queryset) -> None:
        self._each(request, queryset, lambda t: services.webhook_target_enable(target_id=t.pk, by=request.user),
                   "Enabled {count} target(s).")

    @admin.action(description="Disable selected targets")
    def disable(self, request, queryset) -> None:
        self._each(request, queryset, lambda t: services.webhook_target_disable(target_id=t.pk, by=request.user),
                   "Disabled {count} target(s).")


class SubscriptionForm(forms.ModelForm):
    event_types = forms.MultipleChoiceField(
        choices=LifecycleType.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="The events sent to the target; none ticked: every event.")

    class Meta:
        model = EventSubscription
        fields = ["organization", "target", "event_types", "active"]

    def clean(self) -> dict:
        data = super().clean() or {}
        organization, target = data.get("organization"), data.get("target")
        if organization is not None and target is not None and target.organization_id != organization.pk:
            self.add_error("target", "that target belongs to another organization")
        return data


@admin.register(EventSubscription)
class EventSubscriptionAdmin(AdminsOnly):
    """Lifecycle events (run failed, workflow activated …) sent to a webhook target, signed."""

    form = SubscriptionForm
    list_display = ("target", "organization", "types", "active", "created_at")
    list_filter = ("active", "organization")
    list_select_related = ("target", "organization")

    def get_readonly_fields(self, request, obj=None):
        return ("organization", "target") if obj is not None else ()

    @admin.display(description="events")
    def types(self, obj) -> str:
        return ", ".join(obj.event_types) or "all"

    def save_model(self, request, obj, form, change) -> None:
        types = form.cleaned_data.get("event_types") or []
        if change:
            services.event_subscription_update(subscription_id=obj.pk, by=request.user, event_types=types,
                                               active=form.cleaned_data.get("active"))
            return
        made, _ = services.event_subscription_create(organization=obj.organization, by=request.user,
                                                     target_name=obj.target.name, event_types=types)
        obj.pk = made.pk

    def delete_model(self, request, obj) -> None:
        services.event_subscription_delete(subscription_id=obj.pk, by=request.user)


class EndpointFilter(OwnRowsFilter):
    title = "endpoint"
    parameter_name = "endpoint"
    model = WebhookEndpoint
    field = "endpoint_id"


@admin.register(WebhookReceipt)
class WebhookReceiptAdmin(ReadOnlyOrgScopedAdmin):
    """Messages the endpoints accepted (refused ones are not recorded: their sender got a 4xx)."""

    # The event it wrote has this receipt's id as its entity_id (the outbox has no index to link by).
    list_display = ("message_id", "endpoint", "size", "received_at", "id")
    list_filter = (EndpointFilter, "organization")
    list_select_related = ("endpoint",)
    search_fields = ("message_id",)


class AttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ("number", "started_at", "duration_ms", "address", "status_code", "succeeded", "error", "response_body")
    readonly_fields = fields


class TargetFilter(OwnRowsFilter):
    title = "target"
    parameter_name = "target"
    model = WebhookTarget
    field = "target_id"


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyOrgScopedAdmin):
    """Requests http/request steps made: one attempt row per try, the step's run linked."""

    list_display = ("method", "url", "target", "status", "response_status", "attempts", "run_link", "created_at")
    list_filter = ("status", TargetFilter, "organization")
    list_select_related = ("target",)
    search_fields = ("url", "automation_key")
    inlines = [AttemptInline]
    fields = ("target", "method", "url", "headers", "body", "status", "attempts", "response_status", "response_body",
              "error", "automation_key", "run_link", "created_at", "finished_at")
    readonly_fields = fields

    @admin.display(description="run")
    def run_link(self, obj) -> str:
        return run_link(obj.run_id)


class ChatChannelForm(forms.ModelForm):
    """The webhook URL and the bot token are written, never shown: empty keeps what is stored."""

    new_webhook_url = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                      label="Incoming webhook URL", help_text=(
                                          "Slack's https://hooks.slack.com/services/… or Teams' incoming webhook. "
                                          "Stored encrypted; leave empty to keep the current one."))
    new_bot_token = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                    label="Slack bot token", help_text="xoxb-… (with the channel's id below), "
                                                                       "instead of a webhook URL.")

    class Meta:
        model = ChatChannel
        fields = ["organization", "name", "kind", "slack_channel", "username", "active"]

    def clean(self):
        data = super().clean()
        url, token = data.get("new_webhook_url", ""), data.get("new_bot_token", "")
        stored = self.instance if self.instance.pk else None
        has_url = bool(url or (stored and stored.webhook_url))
        has_token = bool(token or (stored and stored.bot_token))
        if url:
            try:
                guard.parse(url)
            except guard.Refused as exc:
                self.add_error("new_webhook_url", str(exc))
        if data.get("kind") == ChatChannel.Kind.TEAMS and not has_url:
            self.add_error("new_webhook_url", "Teams posts go to an incoming webhook URL: paste it here")
        if data.get("kind") == ChatChannel.Kind.SLACK and not (has_url or has_token):
            self.add_error("new_webhook_url", "give Slack's incoming webhook URL, or a bot token and a channel")
        if token and not data.get("slack_channel"):
            self.add_error("slack_channel", "a bot posts to a channel: give its id (C0123…) or #name")
        return data


@admin.register(ChatChannel)
class ChatChannelAdmin(AdminsOnly):
    """Slack and Teams channels workflows post to (crm/post_slack, crm/post_teams)."""

    form = ChatChannelForm
    list_display = ("name", "kind", "slack_channel", "active", "organization")
    list_filter = ("kind", "active", "organization")

    def save_model(self, request, obj, form, change) -> None:
        if form.cleaned_data.get("new_webhook_url"):
            obj.webhook_url = form.cleaned_data["new_webhook_url"]
        if form.cleaned_data.get("new_bot_token"):
            obj.bot_token = form.cleaned_data["new_bot_token"]
        # (Credentials are not form fields: the whole row is saved, by an admin of its organization.)
        obj.full_clean()
        obj.save()
