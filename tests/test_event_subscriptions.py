"""Event subscriptions: an admin sends lifecycle events to a webhook target; each event is one
delivery signed with Standard Webhooks (its webhook-id the same on every try), every attempt is
recorded as an HTTP request step's are, failures are tried again on a schedule, a 410 stops it;
only admins manage them and only their own organization's."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from crm_automation.automation.models import LifecycleEvent, WorkflowRun
from crm_automation.webhooks import signing, subscriptions
from crm_automation.webhooks.models import EventSubscription, WebhookAttempt, WebhookDelivery, WebhookTarget
from crm_automation.webhooks.services import event_subscription_create
from tests.conftest import drain, make_workflow, stage
from tests.http_receiver import Receiver


@pytest.fixture
def receiver(settings):
    server = Receiver()
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the stand-in is local: allowed explicitly
    yield server
    server.close()


def subscribe(org, owner, receiver, types=None) -> tuple[EventSubscription, str]:
    subscription, secret = event_subscription_create(
        organization=org, by=owner, target_name="ops-events", url=f"http://127.0.0.1:{receiver.port}/hooks/crm",
        event_types=types)
    assert secret is not None
    return subscription, secret


def win(org, deal) -> WorkflowRun:
    from crm_automation.crm.models import Deal
    from crm_automation.crm.services import deal_move_to_stage

    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()
    return WorkflowRun.objects.latest("pk")


def test_a_subscriber_hears_of_each_event_it_wants_signed_and_once(org, owner, deal, receiver):
    make_workflow(org)  # before the subscription: not delivered (it hears of what happens from now on)
    subscription, secret = subscribe(org, owner, receiver, types=["run.completed", "workflow.paused"])
    run = win(org, deal)
    assert subscriptions.deliver(org.pk) == 1
    assert subscriptions.deliver(org.pk) == 0  # nothing new: nothing sent again
    (request,) = receiver.requests
    body = json.loads(request["body"])
    event = LifecycleEvent.objects.get(run_id=run.pk, type="run.completed")
    assert body == {"type": "run.completed", "timestamp": event.occurred_at.isoformat(), "id": event.pk,
                    "data": event.data}
    assert request["headers"]["webhook-id"] == f"evt_{event.pk}_sub_{subscription.pk}"
    assert signing.verified([secret], body=request["body"], headers=request["headers"])
    assert not signing.verified([signing.new_secret()], body=request["body"], headers=request["headers"])
    delivery = WebhookDelivery.objects.get(subscription=subscription)
    assert delivery.status == "succeeded" and delivery.attempts == 1 and delivery.response_status == 200


def test_a_failure_is_tried_again_later_under_the_same_id_and_a_410_stops_it(org, owner, deal, receiver):
    make_workflow(org)
    subscription, _ = subscribe(org, owner, receiver, types=["run.completed"])
    receiver.reply(503, "busy")
    win(org, deal)
    subscriptions.deliver(org.pk)
    delivery = WebhookDelivery.objects.get(subscription=subscription)
    assert delivery.status == "failed" and delivery.attempts == 1 and "503" in delivery.error
    subscriptions.deliver(org.pk)
    assert len(receiver.requests) == 1  # not before its minute is up
    WebhookDelivery.objects.filter(pk=delivery.pk).update(finished_at=timezone.now() - timedelta(minutes=2))
    subscriptions.deliver(org.pk)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.attempts == 2
    first, second = receiver.requests
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert list(WebhookAttempt.objects.filter(delivery=delivery).values_list("status_code", "succeeded")) == [
        (503, False), (200, True)]
    # The receiver says it is gone: the target is disabled and nothing more is sent.
    receiver.reply(410, "gone")
    from crm_automation.crm.models import Deal
    from crm_automation.crm.services import deal_move_to_stage

    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "proposal"))
    win(org, deal)
    subscriptions.deliver(org.pk)
    assert not WebhookTarget.objects.get(name="ops-events").active
    WebhookDelivery.objects.update(finished_at=timezone.now() - timedelta(hours=1))
    subscriptions.deliver(org.pk)
    assert len(receiver.requests) == 3


def test_a_delivery_left_sending_by_a_dead_worker_is_sent_again(org, owner, deal, receiver):
    make_workflow(org)
    subscribe(org, owner, receiver, types=["run.completed"])
    win(org, deal)
    WebhookDelivery.objects.update(status="sending", sending_since=timezone.now() - timedelta(minutes=10))
    subscriptions.deliver(org.pk)
    assert WebhookDelivery.objects.get().status == "succeeded" and len(receiver.requests) == 1


def test_a_subscription_to_an_inside_address_is_refused_when_sent(org, owner, deal):
    make_workflow(org)
    subscription, _ = event_subscription_create(organization=org, by=owner, target_name="metadata",
                                                url="http://169.254.169.254/latest", event_types=["run.started"])
    win(org, deal)
    subscriptions.deliver(org.pk)
    delivery = WebhookDelivery.objects.get(subscription=subscription)
    assert delivery.status == "failed" and delivery.response_status is None
    assert "169.254.169.254" in delivery.error


def test_the_delivery_runs_every_minute_on_its_own_schedule(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="lifecycle-delivery")
    assert schedule.func == subscriptions.DELIVER_TASK and schedule.minutes == 1


# --- The API --------------------------------------------------------------------------------------
def test_an_admin_subscribes_over_the_api_and_reads_the_deliveries(org, owner, deal, receiver, client):
    client.force_login(owner)
    made = client.post("/api/v1/event-subscriptions/", {
        "target": "ops-events", "url": f"http://127.0.0.1:{receiver.port}/in", "event_types": ["run.started"]},
        content_type="application/json")
    assert made.status_code == 201, made.content
    body = made.json()
    assert body["secret"].startswith("whsec_") and body["event_types"] == ["run.started"]
    assert "secret" not in client.get(f"/api/v1/event-subscriptions/{body['id']}/").json()
    make_workflow(org)
    win(org, deal)
    subscriptions.deliver(org.pk)
    deliveries = client.get(f"/api/v1/event-subscriptions/{body['id']}/deliveries/").json()["results"]
    assert len(deliveries) == 1 and deliveries[0]["status"] == "succeeded"
    assert deliveries[0]["attempts"][0]["status_code"] == 200
    assert json.loads(deliveries[0]["body"])["type"] == "run.started"
    changed = client.patch(f"/api/v1/event-subscriptions/{body['id']}/", {"active": False},
                           content_type="application/json")
    assert changed.status_code == 200 and changed.json()["active"] is False
    assert client.delete(f"/api/v1/event-subscriptions/{body['id']}/").status_code == 204
    assert not EventSubscription.objects.exists()


def test_an_existing_target_can_be_named_instead_of_a_url(org, owner, receiver, client):
    subscribe(org, owner, receiver)
    client.force_login(owner)
    made = client.post("/api/v1/event-subscriptions/", {"target": "ops-events"}, content_type="application/json")
    assert made.status_code == 201 and "secret" not in made.json() and made.json()["event_types"] == []
    missing = client.post("/api/v1/event-subscriptions/", {"target": "nowhere"}, content_type="application/json")
    assert missing.status_code == 400 and "nowhere" in json.dumps(missing.json())


@pytest.mark.parametrize("body, place", [
    ({"target": "x", "url": "http://127.0.0.1/in", "event_types": ["run.exploded"]}, "event_types"),
    ({"target": "x", "url": "ftp://example.com/in"}, "url"),
    ({"target": "", "url": "https://example.com/in"}, "target"),
    ({"target": "x", "event_types": "run.started"}, "event_types"),
])
def test_bad_subscriptions_are_refused_with_the_place_and_nothing_is_made(org, owner, client, body, place):
    client.force_login(owner)
    refused = client.post("/api/v1/event-subscriptions/", body, content_type="application/json")
    assert refused.status_code == 400, refused.content
    assert place in json.dumps(refused.json())
    assert not EventSubscription.objects.exists() and not WebhookTarget.objects.exists()


def test_only_admins_of_the_organization_manage_subscriptions(org, owner, teammate, viewer, outsider, receiver,
                                                              client):
    subscription, _ = subscribe(org, owner, receiver)
    for person in (teammate, viewer):
        client.force_login(person)
        assert client.get("/api/v1/event-subscriptions/").status_code == 403
        assert client.post("/api/v1/event-subscriptions/", {"target": "ops-events"},
                           content_type="application/json").status_code == 403
    client.force_login(outsider)  # an admin of another organization
    assert client.get("/api/v1/event-subscriptions/").json()["results"] == []
    for method in ("get", "patch", "delete"):
        assert getattr(client, method)(f"/api/v1/event-subscriptions/{subscription.pk}/",
                                       content_type="application/json").status_code == 404
    assert client.get(f"/api/v1/event-subscriptions/{subscription.pk}/deliveries/").status_code == 404
    assert EventSubscription.objects.filter(pk=subscription.pk, active=True).exists()


# --- The admin ------------------------------------------------------------------------------------
def test_an_admin_subscribes_in_the_admin_and_reads_the_events(org, owner, other_org, receiver, client):
    from crm_automation.webhooks.services import webhook_target_create

    target, _ = webhook_target_create(organization=org, name="ops-events", url=f"http://127.0.0.1:{receiver.port}/",
                                      by=owner)
    theirs, _ = webhook_target_create(organization=other_org, name="theirs", url="https://example.com/", by=None)
    client.force_login(owner)
    form = client.get("/admin/webhooks/eventsubscription/add/").content.decode()
    assert "ops-events" in form and "theirs" not in form and "run.failed" in form
    added = client.post("/admin/webhooks/eventsubscription/add/", {
        "organization": org.pk, "target": target.pk, "event_types": ["run.failed", "workflow.activated"],
        "active": "on"})
    assert added.status_code == 302, added.content.decode()[:2000]
    subscription = EventSubscription.objects.get()
    assert subscription.event_types == ["run.failed", "workflow.activated"]
    refused = client.post("/admin/webhooks/eventsubscription/add/", {
        "organization": org.pk, "target": theirs.pk, "active": "on"})
    assert refused.status_code == 200 and EventSubscription.objects.count() == 1
    make_workflow(org, name="Kickoff")
    page = client.get("/admin/automation/lifecycleevent/").content.decode()
    assert "workflow.activated" in page and "Kickoff" in page
    event = LifecycleEvent.objects.get(type="workflow.activated")
    assert client.get(f"/admin/automation/lifecycleevent/{event.pk}/change/").status_code == 200


def test_a_delivery_is_written_with_its_event_and_a_rolled_back_change_leaves_none(org, owner, receiver):
    """The deliveries are written in the event's transaction: none is passed over however
    transactions interleave, and a change that rolls back leaves neither event nor delivery."""
    from django.db import transaction

    from crm_automation.automation.services.workflows import workflow_transition

    workflow = make_workflow(org, name="Kickoff")
    subscription, _ = subscribe(org, owner, receiver, types=["workflow.paused"])
    with pytest.raises(RuntimeError), transaction.atomic():
        workflow_transition(workflow_id=workflow.pk, name="pause", by=owner)
        assert WebhookDelivery.objects.filter(subscription=subscription).count() == 1  # in the same transaction
        raise RuntimeError("the change fails after the pause")
    assert not WebhookDelivery.objects.exists() and not LifecycleEvent.objects.filter(type="workflow.paused")
    workflow_transition(workflow_id=workflow.pk, name="pause", by=owner)
    event = LifecycleEvent.objects.get(type="workflow.paused")
    assert WebhookDelivery.objects.get().automation_key == f"evt_{event.pk}_sub_{subscription.pk}"


def test_a_reader_catching_up_never_passes_an_id_that_may_still_commit(org, owner, client):
    """Ids are taken at INSERT: an id below one already seen may commit later (another worker's
    transaction). `?after=` stops at such a hole until it fills, or until the event after it is
    old enough for the hole to be a rolled-back insert."""
    from crm_automation.automation import lifecycle

    for number in range(3):
        make_workflow(org, activate=False, name=f"Flow {number}")  # workflow.created × 3
    first, hole, last = LifecycleEvent.objects.filter(organization=org).order_by("id").values_list("id", flat=True)
    LifecycleEvent.objects.filter(pk=hole).delete()  # as if its transaction had not committed yet
    client.force_login(owner)
    listed = client.get(f"/api/v1/lifecycle-events/?after={first - 1}").json()["results"]
    assert [e["id"] for e in listed] == [first]
    LifecycleEvent.objects.filter(pk=last).update(
        occurred_at=timezone.now() - timedelta(seconds=lifecycle.SETTLE_SECONDS + 1))
    assert [e["id"] for e in client.get(f"/api/v1/lifecycle-events/?after={first}").json()["results"]] == [last]
