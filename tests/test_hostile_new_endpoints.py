"""Hostile input at this session's endpoints and forms: Live Debug, the record search, the live
probe, the custom-field API and the Fields page. Deep nesting, a huge body, another
organization's ids and a viewer's role each get a clear 4xx, and nothing changes."""

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.crm.models import CustomField, Deal, Task
from tests.conftest import make_workflow

DEEP = json.loads("[" * 200 + "]" * 200)
HUGE = "x" * 1_500_000


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def world() -> tuple:
    return (WorkflowRun.objects.count(), Task.objects.count(), CustomField.objects.count(),
            AutomationEvent.objects.count(), list(Deal.objects.values_list("pk", "custom", "updated_at")))


@pytest.mark.parametrize("body", [
    json.dumps({"record": {"type": "deal", "id": "x"}, "answers": DEEP}),  # nested past the reader's depth
    json.dumps({"record": {"type": "deal"}, "samples": {"a": HUGE}}),  # past the reader's size
    "{not json",
    json.dumps([1, 2, 3]),
])
def test_live_debug_refuses_hostile_bodies_with_a_400(org, owner, deal, body):
    workflow = make_workflow(org)
    before = world()
    answer = logged_in(owner).post(f"/crm/automation/workflows/{workflow.pk}/debug/", body,
                                   content_type="application/json")
    assert answer.status_code == 400 and answer.json()["error"]
    assert world() == before


def test_live_debug_on_another_organizations_workflow_or_as_a_viewer_changes_nothing(
        org, other_org, owner, viewer, outsider, deal):
    ours, theirs = make_workflow(org), make_workflow(other_org)
    before = world()
    body = json.dumps({"record": {"type": "deal", "id": str(deal.pk)}})
    assert logged_in(owner).post(f"/crm/automation/workflows/{theirs.pk}/debug/", body,
                                 content_type="application/json").status_code == 404
    assert logged_in(viewer).post(f"/crm/automation/workflows/{ours.pk}/debug/", body,
                                  content_type="application/json").status_code == 403
    assert logged_in(outsider).post(f"/crm/automation/workflows/{ours.pk}/debug/", body,
                                    content_type="application/json").status_code == 404
    assert world() == before


def test_the_record_search_and_the_probe_take_hostile_queries_calmly(org, owner, deal):
    client = logged_in(owner)
    long = client.get("/crm/automation/records/search/", {"type": "deal", "q": "a" * 100_000})
    assert long.status_code == 200 and long.json() == {"results": []}  # read to its first 100 characters
    assert client.get("/crm/automation/records/search/", {"type": "deal\x00"}).status_code == 400
    probe = Client().get("/crm/automation/live/", {"t": "A" * 200_000})
    assert probe.status_code == 403 and "reload" in probe.json()["error"]


@pytest.mark.parametrize(("payload", "says"), [
    ({"entity": "deal", "key": "tier", "label": "Tier", "kind": "choice", "choices": DEEP}, "nests more than"),
    ({"entity": "deal", "key": "tier", "label": "Tier", "kind": "choice", "choices": ["x"] * 500}, "choices"),
    ({"entity": "deal", "key": "tier", "label": "T" * 5000, "kind": "text"}, "label"),
    ({"entity": "invoice", "key": "tier", "label": "Tier", "kind": "text"}, "entity"),
    ({"entity": "deal", "key": "tier", "label": "Tier", "kind": "spreadsheet"}, "kind"),
])
def test_the_custom_field_api_refuses_hostile_definitions(org, owner, payload, says):
    client = APIClient()
    client.force_authenticate(owner)
    answer = client.post("/api/v1/custom-fields/", payload, format="json")
    assert 400 <= answer.status_code < 500 and says in json.dumps(answer.json())
    assert not CustomField.objects.exists()


def test_custom_values_nested_huge_or_foreign_are_refused_and_nothing_changes(org, other_org, owner, deal):
    CustomField.objects.create(organization=org, entity="deal", key="note", label="Note", kind="text")
    theirs = CustomField.objects.create(organization=other_org, entity="deal", key="secret", label="S", kind="text")
    client = APIClient()
    client.force_authenticate(owner)
    before = world()
    for custom in ({"note": DEEP}, {"note": "x" * 300_000}, {theirs.key: "x"}, DEEP):
        answer = client.patch(f"/api/v1/deals/{deal.pk}/", {"custom": custom}, format="json")
        assert 400 <= answer.status_code < 500, (answer.status_code, str(custom)[:60])
    assert client.get("/api/v1/custom-fields/", {"search": "secret"}).json()["results"] == []
    assert client.get(f"/api/v1/custom-fields/{theirs.pk}/").status_code == 404
    assert world() == before


def test_the_fields_page_refuses_viewers_and_other_organizations_fields(org, other_org, owner, viewer):
    theirs = CustomField.objects.create(organization=other_org, entity="deal", key="secret", label="S", kind="text")
    assert logged_in(viewer).post("/crm/automation/fields/", {"entity": "deal", "label": "X", "key": "x",
                                                             "kind": "text"}).status_code == 403
    assert logged_in(owner).post(f"/crm/automation/fields/{theirs.pk}/delete/").status_code == 404
    assert logged_in(owner).post(f"/crm/automation/fields/{theirs.pk}/rename/", {"label": "Mine"}).status_code == 404
    huge = logged_in(owner).post("/crm/automation/fields/", {"entity": "deal", "label": "L" * 10_000, "key": "k",
                                                            "kind": "choice", "choices": "a\n" * 10_000}, follow=True)
    assert huge.status_code == 200 and "at most" in huge.content.decode()
    assert list(CustomField.objects.values_list("key", flat=True)) == ["secret"]
    theirs.refresh_from_db()
    assert theirs.label == "S"
