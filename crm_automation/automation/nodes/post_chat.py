"""Post to Slack or Microsoft Teams (`crm/post_slack`, `crm/post_teams`): `channel` (one of the
organization's chat channels: its webhook URL or bot token are the channel's, never the
workflow's) and `text` (a template; Slack's markdown, Teams' card text). Delivered after the
commit as an HTTP request node's is (webhooks/delivery.py): through the SSRF guard, each try
recorded, retried by the node's error policy, under the step's key."""

import json
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from crm_automation.automation.nodes.base import ActionFailed, ExecutionContext, Outcome, Result
from crm_automation.automation.nodes.queued import QueuedRowAction
from crm_automation.webhooks.delivery import deliveries_send, result_of
from crm_automation.webhooks.models import ChatChannel, DeliveryStatus, WebhookDelivery

MAX_TEXT = 3000  # Slack's section text limit; Teams takes more, but a post is not a document


class PostChat(QueuedRowAction[WebhookDelivery]):
    kind = ""
    model = WebhookDelivery
    id_key = "delivery_id"
    failed_words = "the post failed"
    stopped_words = "not posted"
    result_of = staticmethod(result_of)
    required = ("channel", "text")
    optional = ("title",)
    templated = ("text", "title")

    def in_flight(self, organization_id: int, since: datetime) -> bool:
        return WebhookDelivery.objects.filter(status=DeliveryStatus.SENDING, organization_id=organization_id,
                                              channel__isnull=False, sending_since__gte=since).exists()

    def _channels(self, organization_id: int) -> QuerySet[ChatChannel]:
        return ChatChannel.objects.filter(organization_id=organization_id, kind=self.kind)

    def validate(self, config: object, *, trigger_type: str, organization_id: int) -> list[tuple[str, str]]:
        errors = super().validate(config, trigger_type=trigger_type, organization_id=organization_id)
        if not isinstance(config, dict):
            return errors
        name = config.get("channel")
        if isinstance(name, str) and name and not self._channels(organization_id).filter(name=name).exists():
            known = list(self._channels(organization_id).values_list("name", flat=True)[:20])
            hint = f"use one of {', '.join(known)}" if known else "an admin adds one first (admin: Chat channels)"
            errors.append(("config.channel", f"“{name}” is not a {ChatChannel.Kind(self.kind).label} channel of this "
                                             f"organization; {hint}"))
        text = config.get("text")
        if isinstance(text, str) and len(text) > MAX_TEXT:
            errors.append(("config.text", f"at most {MAX_TEXT} characters"))
        return errors

    def body(self, channel: ChatChannel, text: str, title: str) -> dict[str, Any]:
        raise NotImplementedError

    def prepare(self, config: dict[str, Any], ctx: ExecutionContext) -> WebhookDelivery:
        channel = self._channels(ctx.organization_id).filter(name=config["channel"]).first()
        if channel is None:
            raise ActionFailed(f"chat channel “{config['channel']}” no longer exists in this organization")
        if not channel.active:
            raise ActionFailed(f"chat channel “{channel.name}” is disabled")
        text = ctx.render("text", config["text"]).strip()[:MAX_TEXT]
        if not text:
            raise ActionFailed("the message rendered empty; nothing was posted")
        title = ctx.render("title", config.get("title") or "").strip()[:200]
        return WebhookDelivery(organization_id=ctx.organization_id, channel=channel, automation_key=ctx.key,
                               run_id=ctx.run_id, method="POST", url=f"{self.kind}:{channel.name}",
                               body=json.dumps(self.body(channel, text, title), ensure_ascii=False))

    def apply(self, items: list[tuple[ExecutionContext, WebhookDelivery]]) -> list[Result]:
        return [result_of(d) for d in WebhookDelivery.objects.bulk_create([d for _, d in items])]

    def deliver(self, items: list[tuple[ExecutionContext, Result]], deadline: float | None = None
                ) -> list[Outcome | None]:
        ids = [result["delivery_id"] for _, result in items]
        sent = deliveries_send(delivery_ids=ids, deadline=deadline)
        return [self.outcome(sent[i]) if i in sent else None for i in ids]


class PostSlack(PostChat):
    type = "post_slack"
    label = "Post to Slack"
    kind = ChatChannel.Kind.SLACK

    def body(self, channel: ChatChannel, text: str, title: str) -> dict[str, Any]:
        post: dict[str, Any] = {"text": f"*{title}*\n{text}" if title else text}
        if channel.bot_token and channel.slack_channel:
            post["channel"] = channel.slack_channel
        if channel.username:
            post["username"] = channel.username
        return post


class PostTeams(PostChat):
    type = "post_teams"
    label = "Post to Microsoft Teams"
    kind = ChatChannel.Kind.TEAMS

    def body(self, channel: ChatChannel, text: str, title: str) -> dict[str, Any]:
        card: dict[str, Any] = {"@type": "MessageCard", "@context": "https://schema.org/extensions", "text": text,
                                "summary": (title or text)[:80]}
        if title:
            card["title"] = title
        return card
