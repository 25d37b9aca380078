"""Hostile input at the endpoints for integrations and releases: event subscriptions, a workflow's
rollout and mode, publishing to a share, the lifecycle list. Deep nesting, a huge body, another
organization's ids and a viewer's role each get a clear 4xx, and nothing changes."""

import json

import pytest
from django.test import Client

from crm_automation.automation.models import LifecycleEvent, Rollout, Workflow
from crm_automation.automation.services.workflows import workflow_update
from crm_automation.webhooks.models import EventSubscription, WebhookTarget
from tests.conftest import make_workflow

DEEP = json.loads("[" * 200 + "]" * 200)
HUGE = "x" * 1_500_000
EDIT = [{"id": "task", "type": "create_task", "config": {"title": "New kickoff"}}]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def edited(org, owner):
    made = make_workflow(org, actions=[{"id": "task", "type": "create_task", "config": {"title": "Kickoff"}}])
    workflow_update(workflow_id=made.pk, by=owner, actions=EDIT)
    return Workflow.objects.get(pk=made.pk)


def world() -> tuple:
    return (EventSubscription.objects.count(), WebhookTarget.objects.count(), Rollout.objects.count(),
            list(Workflow.objects.values_list("pk", "mode", "version", "current_version_id")),
            LifecycleEvent.objects.count())


@pytest.mark.parametrize("body", [
    json.dumps({"target": "ops", "url": "https://example.com/in", "event_types": DEEP}),
    json.dumps({"target": "ops", "url": "https://example.com/" + HUGE}),
    "{not json",
    json.dumps([1, 2, 3]),
])
@pytest.mark.parametrize("where", ["event-subscriptions", "rollout", "mode", "publish"])
def test_hostile_bodies_are_a_4xx_and_change_nothing(org, owner, edited, body, where):
    url = {"event-subscriptions": "/api/v1/event-subscriptions/",
           "rollout": f"/api/v1/workflows/{edited.pk}/rollout/",
           "mode": f"/api/v1/workflows/{edited.pk}/mode/",
           "publish": f"/api/v1/workflows/{edited.pk}/publish/"}[where]
    before = world()
    answer = logged_in(owner).post(url, body, content_type="application/json")
    assert 400 <= answer.status_code < 500, answer.content[:300]
    assert answer.json()  # says what is wrong
    assert world() == before


def test_another_organizations_ids_and_a_viewers_role_change_nothing(org, other_org, owner, viewer, outsider,
                                                                     edited):
    before = world()
    for person, expected in ((outsider, 404), (viewer, 403)):
        client = logged_in(person)
        assert client.post(f"/api/v1/workflows/{edited.pk}/publish/", {"share": 10},
                           content_type="application/json").status_code == expected
        assert client.post(f"/api/v1/workflows/{edited.pk}/rollout/", {"action": "abort"},
                           content_type="application/json").status_code in (expected, 409)
        assert client.post(f"/api/v1/workflows/{edited.pk}/mode/", {"mode": "shadow"},
                           content_type="application/json").status_code == expected
        assert client.post(f"/crm/automation/workflows/{edited.pk}/mode/").status_code == expected
        assert client.post(f"/crm/automation/workflows/{edited.pk}/publish/",
                           {"share": "10"}).status_code in (expected, 302 if expected == 404 else expected)
    assert logged_in(viewer).post("/api/v1/event-subscriptions/", {"target": "x", "url": "https://example.com/"},
                                  content_type="application/json").status_code == 403
    assert world() == before


@pytest.mark.parametrize("query", ["?after=" + "9" * 40, "?after=%00", "?type=" + "x" * 5000,
                                   "?workflow=1e9", "?cursor=not-a-cursor"])
def test_the_lifecycle_list_takes_hostile_queries_calmly(org, owner, query):
    make_workflow(org)
    answer = logged_in(owner).get("/api/v1/lifecycle-events/" + query)
    assert answer.status_code in (400, 404), answer.content[:300]
