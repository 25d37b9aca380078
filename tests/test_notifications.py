"""In-app notifications: the `notify` action (a workflow's desktop-notification node), exercised
directly with an ExecutionContext as the engine does, and the recipient's inbox in the admin."""

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from crm_automation.automation.definition.context import deal_dict, lead_dict
from crm_automation.automation.models import WorkflowRunAction
from crm_automation.automation.nodes import REGISTRY
from crm_automation.automation.nodes.base import ActionFailed, ExecutionContext
from crm_automation.automation.nodes.notify import Notify
from crm_automation.crm.models import Deal, Membership, Notification
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_user, make_workflow, stage

NOTIFY = Notify()
CHANGELIST = "admin:crm_notification_changelist"


def context(record, *, run_id: int = 1, position: int = 0) -> ExecutionContext:
    entity = "deal" if isinstance(record, Deal) else "lead"
    values = {"trigger": {"type": "deal_stage_change"}, entity: (deal_dict if entity == "deal" else lead_dict)(record)}
    return ExecutionContext(run_id=run_id, step=f"node:n{position}", organization_id=record.organization_id,
                            trigger_type="deal_stage_change" if entity == "deal" else "lead_created", depth=0,
                            template_context=values, record=record)


def notify(config: dict, record, **ctx_kwargs) -> dict:
    ctx = context(record, **ctx_kwargs)
    (result,) = NOTIFY.apply([(ctx, NOTIFY.prepare(config, ctx))])
    return result


def note(user, org, title: str, **extra) -> Notification:
    return Notification.objects.create(organization=org, user=user, title=title, **extra)


@pytest.fixture
def second_admin(org):
    return make_user("second", org, Membership.Role.ADMIN)


# --- The action ---------------------------------------------------------------------------------


def test_it_notifies_each_admin_by_default(org, deal, teammate, second_admin, outsider):
    result = notify({"title": "{{deal.title}} was won", "body": "Call {{deal.contact.first_name}}"}, deal)
    assert result == {"notified": ["owner", "second"], "count": 2, "title": "Website was won"}
    rows = Notification.objects.order_by("user__username")
    assert [(n.user.username, n.title, n.body) for n in rows] == [
        ("owner", "Website was won", "Call Ada"), ("second", "Website was won", "Call Ada")]
    first = rows[0]
    assert first.link == f"/admin/crm/deal/{deal.pk}/change/"
    assert (first.run_id, first.effect_key) == (1, "run:1:node:n0")
    assert first.automation_key == f"run:1:node:n0:{first.user_id}"
    assert first.organization == org and first.read_at is None


def test_it_notifies_all_members_or_only_the_owner(org, deal, owner, teammate, viewer):
    assert notify({"title": "x", "recipients": "members"}, deal)["notified"] == ["owner", "teammate", "viewer"]
    assert notify({"title": "x", "recipients": "owner"}, deal, position=1)["notified"] == ["owner"]


def test_it_notifies_a_leads_owner_with_a_link_to_the_lead(org, lead):
    result = notify({"title": "New lead {{lead.name}}", "recipients": "owner"}, lead)
    assert result == {"notified": ["owner"], "count": 1, "title": "New lead Grace Hopper"}
    assert Notification.objects.get().link == f"/admin/crm/lead/{lead.pk}/change/"


def test_recipients_stay_in_the_organization(org, deal, owner, outsider, other_org):
    # The outsider is an admin of their own organization and only a viewer here.
    Membership.objects.create(user=outsider, organization=org, role=Membership.Role.VIEWER)
    make_user("rival-admin", other_org, Membership.Role.ADMIN)
    make_user("gone", org, Membership.Role.ADMIN, is_active=False)
    assert notify({"title": "x"}, deal)["notified"] == ["owner"]
    assert notify({"title": "x", "recipients": "members"}, deal, position=1)["notified"] == ["outsider", "owner"]
    assert not Notification.objects.filter(user__username__in=["rival-admin", "gone"]).exists()
    assert set(Notification.objects.values_list("organization_id", flat=True)) == {org.pk}


def test_a_redelivered_step_finds_what_it_made_and_never_notifies_twice(org, deal, second_admin):
    ctx = context(deal, run_id=7, position=2)
    first = NOTIFY.apply([(ctx, NOTIFY.prepare({"title": "Won"}, ctx))])[0]
    assert NOTIFY.existing([ctx.key, "run:8:node:n0"]) == {ctx.key: {**first, "repeated_delivery": True}}
    # Even when the lookup is skipped, the unique key refuses a second notification.
    with pytest.raises(IntegrityError), transaction.atomic():
        NOTIFY.apply([(ctx, NOTIFY.prepare({"title": "Won"}, ctx))])
    assert Notification.objects.count() == 2


def test_many_runs_are_applied_together_and_found_together(org, deal, lead):
    deal_ctx, lead_ctx = context(deal, run_id=1), context(lead, run_id=2)
    results = NOTIFY.apply([(deal_ctx, NOTIFY.prepare({"title": "{{deal.title}}"}, deal_ctx)),
                            (lead_ctx, NOTIFY.prepare({"title": "{{lead.name}}", "recipients": "owner"}, lead_ctx))])
    assert [r["title"] for r in results] == ["Website", "Grace Hopper"]
    found = NOTIFY.existing([deal_ctx.key, lead_ctx.key])
    assert {k: v["title"] for k, v in found.items()} == {deal_ctx.key: "Website", lead_ctx.key: "Grace Hopper"}


def test_a_missing_owner_fails_clearly_and_notifies_nobody(org, deal):
    Deal.objects.filter(pk=deal.pk).update(owner=None)
    deal.refresh_from_db()
    with pytest.raises(ActionFailed, match="the deal has no owner, so there is nobody to notify"):
        notify({"title": "x", "recipients": "owner"}, deal)
    assert not Notification.objects.exists()


def test_an_owner_who_left_the_organization_is_not_notified(org, deal, owner):
    Membership.objects.filter(user=owner).delete()
    with pytest.raises(ActionFailed, match="owner is no longer an active member"):
        notify({"title": "x", "recipients": "owner"}, deal)


def test_an_organization_without_admins_fails_clearly(org, deal, teammate):
    Membership.objects.filter(role=Membership.Role.ADMIN).delete()
    with pytest.raises(ActionFailed, match="no active admins to notify"):
        notify({"title": "x"}, deal)


def test_a_title_that_renders_empty_fails_and_a_long_one_is_cut(org, deal, owner):
    deal.contact = None
    with pytest.raises(ActionFailed, match=r"rendered empty \(the deal has no contact\)"):
        notify({"title": "{{deal.contact.first_name}}"}, deal)
    ctx = context(deal)
    prepared = NOTIFY.prepare({"title": "{{deal.title}} " + "x" * 300}, ctx)
    assert len(prepared.title) == 200 and "title: cut to 200 characters" in ctx.notes


@pytest.mark.parametrize(("config", "where", "message"), [
    ({}, "config.title", "is required"),
    ({"title": ""}, "config.title", "is required"),
    ({"title": 5}, "config.title", "must be text"),
    ({"title": "a\nb"}, "config.title", "single line"),
    ({"title": "{{deal.secret}}"}, "config.title", "not a field this trigger provides"),
    ({"title": "x", "body": "{{lead.name}}"}, "config.body", "not a field this trigger provides"),
    ({"title": "x", "recipients": "everyone"}, "config.recipients", "must be one of admins, members, owner"),
    ({"title": "x", "emailCopy": "yes"}, "config.emailCopy", "must be true"),
    ({"title": "x", "cc": "y"}, "config.cc", "unknown setting"),
    ("x", "config", "must be an object"),
])
def test_bad_configs_are_refused_with_the_field_named(org, config, where, message):
    found = NOTIFY.validate(config, trigger_type="deal_stage_change", organization_id=org.pk)
    assert len(found) == 1, found
    assert found[0][0] == where and message in found[0][1]


def test_valid_configs_pass(org):
    for config in ({"title": "Won {{deal.title}}"}, {"title": "x", "body": "{{deal.owner.first_name}}",
                                                     "recipients": "owner"}, {"title": "x", "recipients": "members"}):
        assert NOTIFY.validate(config, trigger_type="deal_stage_change", organization_id=org.pk) == []


def test_a_workflow_step_notifies_through_the_engine(org, deal, owner):
    assert REGISTRY["notify"].type == "notify"
    make_workflow(org, actions=[{"type": "notify", "config": {"title": "{{deal.title}} was won"}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    step = WorkflowRunAction.objects.get()
    assert step.status == "completed", step.error
    assert step.result["notified"] == ["owner"] and step.result["title"] == "Website was won"
    assert Notification.objects.get().run_id == step.run_id


# --- The inbox in the admin ---------------------------------------------------------------------


def test_the_inbox_lists_only_the_persons_own_notifications(client, org, owner, teammate, outsider, other_org):
    note(owner, org, "Mine to read", link="/admin/crm/deal/1/change/")
    note(teammate, org, "The teammate's")
    note(outsider, other_org, "The outsider's")
    client.force_login(owner)
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "Mine to read" in page and "/admin/crm/deal/1/change/" in page
    assert "The teammate's" not in page and "The outsider's" not in page


def test_someone_elses_notification_is_not_shown_by_its_url(client, org, owner, teammate):
    theirs = note(teammate, org, "The teammate's")
    client.force_login(owner)
    response = client.get(reverse("admin:crm_notification_change", args=[theirs.pk]), follow=True)
    assert "The teammate's" not in response.content.decode()


def test_a_person_who_left_the_organization_no_longer_sees_its_notifications(client, org, owner):
    note(owner, org, "Old news")
    Membership.objects.filter(user=owner).delete()
    client.force_login(owner)
    assert "Old news" not in client.get(reverse(CHANGELIST)).content.decode()


def test_a_superuser_sees_everyones(client, org, owner, teammate):
    note(owner, org, "For the owner")
    note(teammate, org, "For the teammate")
    client.force_login(make_user("root", None, None, is_superuser=True))
    page = client.get(reverse(CHANGELIST)).content.decode()
    assert "For the owner" in page and "For the teammate" in page


def test_mark_as_read_marks_only_the_persons_own(client, org, owner, teammate):
    mine, also_mine = note(owner, org, "One"), note(owner, org, "Two")
    theirs = note(teammate, org, "Theirs")
    client.force_login(owner)
    response = client.post(reverse(CHANGELIST), {"action": "mark_read", "_selected_action": [
        mine.pk, also_mine.pk, theirs.pk]}, follow=True)
    assert "Marked 2 notification(s) as read." in response.content.decode()
    assert set(Notification.objects.filter(read_at__isnull=False).values_list("pk", flat=True)) == {
        mine.pk, also_mine.pk}
    note(owner, org, "Still unread")
    unread = client.get(reverse(CHANGELIST), {"read": "no"}).content.decode()
    assert "Still unread" in unread and "One" not in unread


def test_notifications_are_not_added_or_changed_in_the_admin(client, org, owner):
    mine = note(owner, org, "Read only")
    client.force_login(owner)
    assert client.get(reverse("admin:crm_notification_add")).status_code == 403
    url = reverse("admin:crm_notification_change", args=[mine.pk])
    assert client.get(url).status_code == 200
    client.post(url, {"title": "Changed"})
    assert Notification.objects.get(pk=mine.pk).title == "Read only"



def test_an_email_copy_goes_to_each_recipient_once_after_the_commit(org, deal, owner, teammate):
    from django.core import mail

    from crm_automation.crm.models import EmailMessage

    owner.email, teammate.email = "olive@example.com", "tim@example.com"
    owner.save()
    teammate.save()
    make_workflow(org, actions=[{"type": "notify", "config": {"title": "{{deal.title}} won", "recipients": "members",
                                                              "emailCopy": True}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    step = WorkflowRunAction.objects.get()
    assert step.status == "completed" and step.result["copies"] == {"olive@example.com": "sent",
                                                                    "tim@example.com": "sent"}
    assert sorted(m.to[0] for m in mail.outbox) == ["olive@example.com", "tim@example.com"]
    assert EmailMessage.objects.filter(status="sent").count() == 2 and Notification.objects.count() == 2


def test_a_refused_email_copy_fails_the_step_and_a_retry_sends_it(org, deal, owner, monkeypatch):
    from django.core import mail

    from crm_automation.automation.runtime.tasks import sweep
    from tests.conftest import time_passes

    owner.email = "olive@example.com"
    owner.save()
    refused = [ConnectionRefusedError(111, "refused")]

    def send(self, *args, **kwargs):
        if refused:
            raise refused.pop()
        mail.outbox.append(self)
        return 1

    monkeypatch.setattr(mail.EmailMessage, "send", send)
    make_workflow(org, actions=[{"type": "notify", "config": {"title": "Won", "emailCopy": True},
                                 "on_error": {"policy": "retry", "baseSeconds": 1}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    step = WorkflowRunAction.objects.get()
    assert step.status == "waiting" and "email copy to olive@example.com not sent" in step.error
    time_passes()
    sweep(fan_out=False)
    assert WorkflowRunAction.objects.get().status == "completed" and len(mail.outbox) == 1
    assert Notification.objects.count() == 1  # the notification itself was made once
