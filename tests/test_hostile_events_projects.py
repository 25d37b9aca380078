"""Hostile input at the business events, event declarations, projects, signed event webhooks,
manual starts and the record pages, as an attacker would send it: bodies that are not objects,
deep nesting, huge values, NUL characters, wrong types, another organization's ids, a viewer's
or an ops member's role. Each gets a clear 4xx (never a 500) and nothing changes: no event, no
declaration, no project, no receipt, no run; another tenant's record is never linked."""

import json
import time

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from crm_automation.automation.models import AutomationEvent, Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.crm.models import (
    BusinessEvent,
    Contact,
    CustomField,
    Deal,
    EventType,
    Lead,
    Project,
    Task,
)
from crm_automation.webhooks import signing
from crm_automation.webhooks.models import WebhookReceipt
from crm_automation.webhooks.services import webhook_endpoint_create
from tests.conftest import drain, make_workflow, stage

DEEP = json.loads("[" * 200 + "]" * 200)  # past every reader's depth (64 for bodies)
NESTED_30 = json.loads('{"a": ' * 30 + "1" + "}" * 30)  # inside a body's depth, past the data's
PAID = {"type": "invoice.paid", "contact": {"email": "ada@example.com"},
        "data": {"invoice": {"number": "INV-1", "amount_paid": 5}}}
INPUTS = [{"key": "reason", "label": "Reason", "kind": "text", "required": True},
          {"key": "days", "label": "Days", "kind": "number", "default": 3},
          {"key": "urgency", "kind": "choice", "choices": ["low", "high"], "default": "low"}]
TASK = [{"type": "create_task", "label": "T", "config": {"title": "{{trigger.input.reason}}"}}]


def api(user=None) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def said(answer) -> str:
    """The answer's body as text, whatever its shape."""
    try:
        return json.dumps(answer.json(), ensure_ascii=False)
    except ValueError:
        return answer.content.decode(errors="replace")


def world() -> tuple:
    """Everything a refused request must leave as it was (events announced are drained first, so
    an event that slipped through would show as a run too)."""
    drain()
    return (BusinessEvent.objects.count(), AutomationEvent.objects.filter(entity_type="event").count(),
            AutomationEvent.objects.count(), WorkflowRun.objects.count(), WebhookReceipt.objects.count(),
            EventType.objects.count(), Project.objects.count(), Task.objects.count(),
            sorted(Contact.objects.values_list("pk", "custom")), sorted(Deal.objects.values_list("pk", "updated_at")))


@pytest.fixture
def ada(org):
    return Contact.objects.create(organization=org, first_name="Ada", last_name="Lovelace", email="ada@example.com",
                                  phone="(555) 010-0100")


@pytest.fixture
def theirs(other_org, outsider):
    """Another organization's contact, deal, lead and project."""
    eve = Contact.objects.create(organization=other_org, first_name="Eve", email="eve@rival.example",
                                 phone="(555) 020-0200")
    deal = Deal.objects.create(organization=other_org, title="Their deal", amount=100,
                               stage=stage(other_org, "new"), contact=eve, owner=outsider)
    lead = Lead.objects.create(organization=other_org, name="Their lead", email="lead@rival.example")
    project = Project.objects.create(organization=other_org, name="Their project", contact=eve, deal=deal)
    drain()
    return {"contact": eve, "deal": deal, "lead": lead, "project": project}


@pytest.fixture
def listening(org):
    """Workflows that would run if a refused event slipped through."""
    for name in ("invoice.paid", "contract.signed", "change_order.signed", "invoice.overdue"):
        make_workflow(org, name=name, trigger_type=f"event:{name}", trigger_config={},
                      actions=[{"type": "create_task", "label": "T", "config": {"title": "ran"}}])


# --- /api/v1/events/ ---------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "place", "words"), [
    ([PAID], "detail", "send an object"),
    ("invoice.paid", "detail", "send an object"),
    ({**PAID, "type": {"name": "invoice.paid"}}, "type", "is not an event of this organization"),
    ({**PAID, "type": "invoice." + "p" * 10_000}, "type", "is not an event of this organization"),
    ({**PAID, "type": "invoice.paid\x00"}, "type", "NUL"),
    ({**PAID, "type": ["invoice.paid"]}, "type", "is not an event of this organization"),
    ({**PAID, "data": {"invoice": DEEP}}, "detail", "nests more than"),
    ({**PAID, "data": {"invoice": {"number": NESTED_30, "amount_paid": 5}}}, "data.invoice.number", "must be text"),
    ({**PAID, "data": {"invoice": {"number": "x" * 1_000_000, "amount_paid": 5}}}, "detail", "larger than"),
    ({**PAID, "data": {"invoice": {"number": "x" * 900_000, "amount_paid": 5}}}, "data", "bytes as JSON"),
    ({**PAID, "data": "x" * 10_000}, "data", "must be an object"),
    ({**PAID, "data": {"invoice": {"number": "1", "amount_paid": {"$gt": 0}}}}, "data.invoice.amount_paid",
     "is not a number"),
    ({**PAID, "data": {"invoice": {"number": "1", "amount_paid": "1e999"}}}, "data.invoice.amount_paid",
     "below"),
    ({**PAID, "data": {"invoice": {"number": "1", "amount_paid": "NaN"}}}, "data.invoice.amount_paid", "number"),
    ({**PAID, "idempotency_key": "k" * 10_000}, "idempotency_key", "at most"),
    ({**PAID, "idempotency_key": {"key": "inv-1"}}, "idempotency_key", "must be text"),
    ({**PAID, "idempotency_key": ["inv-1"]}, "idempotency_key", "must be text"),
    ({**PAID, "contact": {"id": "1; DROP TABLE crm_contact"}}, "contact", "no contact with id"),
    ({**PAID, "contact": {"phone": "x" * 10_000}}, "contact", "must be text"),
    ({**PAID, "contact": {"phone": "not a phone"}}, "contact", "is not a phone number"),
    ({**PAID, "contact": {"id": 1, "email": "ada@example.com"}}, "contact", "one of id, email or phone"),
    ({**PAID, "contact": {"name": "Ada"}}, "contact", "one of id, email or phone"),
    ({**PAID, "contact": {"email": {"$ne": None}}}, "contact", "must be text"),
    ({**PAID, "contact": {"email": "%"}}, "contact", "no contact"),
    ({**PAID, "contact": True}, "contact", "must be text"),
    ({**PAID, "contact": ["ada@example.com"]}, "contact", "must be text"),
    ({**PAID, "contact": 10 ** 30}, "contact", "no contact"),
    ({**PAID, "contact": -1}, "contact", "no contact"),
    # Digits that are not ASCII: "²".isdigit() is true, int("²") is not a number.
    ({**PAID, "contact": {"id": "²"}}, "contact", "no contact"),
    ({**PAID, "contact": "²"}, "contact", "no contact"),
    ({**PAID, "deal": {"id": "x"}}, "deal", "not found in this organization"),
    ({**PAID, "project": "../../etc/passwd"}, "project", "not found in this organization"),
    ({**PAID, "organization": 2}, "organization", "unknown key"),
])
def test_a_hostile_event_is_a_400_at_its_place_and_stores_nothing(org, owner, ada, listening, body, place, words):
    before = world()
    answer = api(owner).post("/api/v1/events/", body, format="json")
    assert answer.status_code == 400, (answer.status_code, said(answer)[:300])
    assert place in answer.json() and words in json.dumps(answer.json()[place], ensure_ascii=False), said(answer)[:500]
    assert world() == before


def test_another_organizations_deal_lead_or_project_is_not_found_and_never_linked(org, owner, ada, theirs,
                                                                                   listening):
    before = world()
    client = api(owner)
    for body, place in (
            ({**PAID, "deal": str(theirs["deal"].pk)}, "deal"),
            ({**PAID, "lead": str(theirs["lead"].pk)}, "lead"),
            ({**PAID, "project": str(theirs["project"].pk)}, "project"),
            ({"type": "contract.signed", "deal": str(theirs["deal"].pk), "data": {"contract": {"number": "C-1"}}},
             "deal"),
            ({"type": "change_order.signed", "project": str(theirs["project"].pk),
              "data": {"change_order": {"number": "CO-1"}}}, "project"),
            ({**PAID, "contact": theirs["contact"].pk}, "contact"),
            ({**PAID, "contact": {"email": "eve@rival.example"}}, "contact"),
            ({**PAID, "contact": {"phone": "+1 555 020 0200"}}, "contact")):
        answer = client.post("/api/v1/events/", body, format="json")
        assert answer.status_code == 400, (place, answer.status_code, said(answer)[:300])
        words = "in this organization" if place == "contact" else "not found in this organization"
        assert words in " ".join(answer.json()[place]), said(answer)
    assert world() == before
    assert not BusinessEvent.objects.filter(organization=org).exists()


def test_a_viewer_an_outsider_and_a_stranger_cannot_send_or_read_our_events(org, other_org, owner, viewer, outsider,
                                                                          ada, theirs, listening):
    ours = api(owner).post("/api/v1/events/", {**PAID, "idempotency_key": "inv-1-paid"}, format="json")
    assert ours.status_code == 201, ours.content
    before = world()
    assert api(viewer).post("/api/v1/events/", {**PAID, "idempotency_key": "v-1"}, format="json").status_code == 403
    assert api().post("/api/v1/events/", {**PAID, "idempotency_key": "s-1"}, format="json").status_code in (401, 403)
    for contact in (ada.pk, str(ada.pk), {"id": ada.pk}, {"email": "ada@example.com"}, {"phone": "555 010 0100"}):
        answer = api(outsider).post("/api/v1/events/", {**PAID, "contact": contact}, format="json")
        assert answer.status_code == 400 and "in this organization" in " ".join(answer.json()["contact"]), said(answer)
    assert world() == before
    # Our event is not theirs to read, and our idempotency key is not theirs to replay.
    assert api(outsider).get(f"/api/v1/events/{ours.json()['id']}/").status_code == 404
    assert api(outsider).get("/api/v1/events/").json()["results"] == []
    again = api(outsider).post("/api/v1/events/", {**PAID, "contact": theirs["contact"].pk,
                                                   "idempotency_key": "inv-1-paid"}, format="json")
    assert again.status_code == 201 and again.json()["id"] != ours.json()["id"], said(again)
    assert again.json()["contact"] == theirs["contact"].pk
    mine = BusinessEvent.objects.get(pk=ours.json()["id"])
    assert mine.organization_id == org.pk and mine.contact_id == ada.pk
    assert BusinessEvent.objects.get(pk=again.json()["id"]).organization_id == other_org.pk


# --- /api/v1/event-types/ ----------------------------------------------------------------------
PERMIT = {"name": "permit.approved", "about": "project", "fields": [
    {"key": "permit.number", "kind": "text", "required": True, "label": "Number"}]}


def test_only_admins_declare_or_delete_events(org, owner, teammate, viewer):
    made = EventType.objects.create(organization=org, **PERMIT)
    before = world()
    for who in (teammate, viewer):
        assert api(who).post("/api/v1/event-types/", {**PERMIT, "name": "permit.denied"},
                             format="json").status_code == 403
        assert api(who).patch(f"/api/v1/event-types/{made.pk}/", {"description": "x"},
                              format="json").status_code == 403
        assert api(who).delete(f"/api/v1/event-types/{made.pk}/").status_code == 403
    assert world() == before
    made.refresh_from_db()
    assert made.description == ""


@pytest.mark.parametrize(("body", "place", "words"), [
    ({**PERMIT, "fields": "permit.number"}, "fields", "must be a list"),
    ({**PERMIT, "fields": {"key": "permit.number", "kind": "text"}}, "fields", "must be a list"),
    ({**PERMIT, "fields": [{"key": f"permit.f{i}", "kind": "text"} for i in range(51)]}, "fields", "at most 50"),
    ({**PERMIT, "fields": [{"key": "permit.num\x00ber", "kind": "text"}]}, None, "NUL"),
    ({**PERMIT, "fields": [{"key": "permit." + "n" * 1000, "kind": "text"}]}, "fields", "fields[0].key"),
    ({**PERMIT, "fields": [{"key": "permit.number", "kind": "sql"}]}, "fields", "fields[0].kind"),
    ({**PERMIT, "fields": [{"key": "permit.number", "kind": "text", "label": DEEP}]}, None, "nests more than"),
    ({**PERMIT, "fields": [{"key": "permit.number", "kind": "text", "label": NESTED_30}]}, "fields",
     "fields[0].label"),
    ({**PERMIT, "fields": [{"key": "permit.number", "kind": "text", "required": "yes"}]}, "fields",
     "fields[0].required"),
    ({**PERMIT, "fields": [{"key": "permit.number", "kind": "choice", "choices": ["x"] * 500}]}, "fields",
     "fields[0].choices"),
    ({**PERMIT, "fields": [{"key": "permit.number", "kind": "text", "code": "import os"}]}, "fields",
     "unknown setting"),
    ({**PERMIT, "fields": ["permit.number"]}, "fields", "must be an object"),
    ({**PERMIT, "name": "../../etc"}, "name", "lower-case words"),
    ({**PERMIT, "name": "a" * 1000}, "name", ""),
    ({**PERMIT, "name": {"$ne": ""}}, "name", ""),
    ({**PERMIT, "name": "invoice.paid"}, "name", "already in the catalog"),
    ({**PERMIT, "name": "project.completed"}, "name", "already in the catalog"),
    ({**PERMIT, "name": "deal.deleted"}, "name", "already in the catalog"),
    ({**PERMIT, "about": "invoice"}, "about", ""),
    ({**PERMIT, "organization": 2}, "organization", "Unknown field"),
])
def test_a_hostile_declaration_is_a_400_and_declares_nothing(org, owner, body, place, words):
    before = world()
    answer = api(owner).post("/api/v1/event-types/", body, format="json")
    assert answer.status_code == 400, (answer.status_code, said(answer)[:300])
    shown = said(answer) if place is None else json.dumps(answer.json()[place], ensure_ascii=False)
    assert words in shown, said(answer)[:500]
    assert world() == before
    assert not EventType.objects.exists()


def test_an_outsider_cannot_read_change_or_delete_our_declaration_and_names_never_change(org, owner, outsider):
    made = EventType.objects.create(organization=org, **PERMIT)
    before = world()
    url = f"/api/v1/event-types/{made.pk}/"
    assert api(outsider).get(url).status_code == 404
    assert api(outsider).patch(url, {"description": "mine"}, format="json").status_code == 404
    assert api(outsider).delete(url).status_code == 404
    catalog = api(outsider).get("/api/v1/event-types/catalog/").json()["results"]
    assert "permit.approved" not in [entry["name"] for entry in catalog]
    renamed = api(owner).patch(url, {"name": "permit.granted"}, format="json")
    assert renamed.status_code == 400 and "never changes" in " ".join(renamed.json()["name"]), said(renamed)
    replaced = api(owner).put(url, {**PERMIT, "name": "permit.granted"}, format="json")
    assert replaced.status_code == 400 and "never changes" in " ".join(replaced.json()["name"]), said(replaced)
    spoiled = api(owner).patch(url, {"fields": [{"key": "permit.number", "kind": "sql"}]}, format="json")
    assert spoiled.status_code == 400 and "fields" in spoiled.json()
    assert world() == before
    made.refresh_from_db()
    assert (made.name, made.description, made.fields) == ("permit.approved", "", PERMIT["fields"])


# --- /api/v1/projects/ -------------------------------------------------------------------------
def test_a_project_linking_another_organizations_records_or_with_bad_values_is_refused(org, owner, viewer, outsider,
                                                                                        ada, theirs):
    before = world()
    client = api(owner)
    for body, place, words in (
            ({"name": "X", "contact": theirs["contact"].pk}, "contact", "not found in this organization"),
            ({"name": "X", "deal": str(theirs["deal"].pk)}, "deal", "not found in this organization"),
            ({"name": "X", "owner": outsider.username}, "owner", "not found in this organization"),
            ({"name": "X", "contact": {"id": ada.pk}}, "contact", "Expected an id"),
            ({"name": "X", "contact": "²"}, "contact", "not found in this organization"),
            ({"name": "X", "deal": "1; DROP TABLE crm_deal"}, "deal", "not found in this organization"),
            ({"name": "X", "custom": {"nope": "x"}}, None, "nope"),
            ({"name": "X", "custom": DEEP}, None, "nests more than"),
            ({"name": "X", "status": "done"}, "status", ""),
            ({"name": "X", "status": ["completed"]}, "status", ""),
            ({"name": "X\x00"}, "name", "NUL"),
            ({"name": "X" * 10_000}, "name", ""),
            ({"name": "X", "organization": 2}, "organization", "Unknown field"),
            ({"name": "X", "automation_key": "run:1:node:x", "id": "not-a-uuid", "zzz": 1}, "zzz", "Unknown field")):
        answer = client.post("/api/v1/projects/", body, format="json")
        assert answer.status_code == 400, (body if len(str(body)) < 200 else place, answer.status_code,
                                           said(answer)[:300])
        shown = said(answer) if place is None else json.dumps(answer.json()[place], ensure_ascii=False)
        assert words in shown, said(answer)[:500]
    assert api(viewer).post("/api/v1/projects/", {"name": "X"}, format="json").status_code == 403
    assert world() == before
    assert not Project.objects.filter(organization=org).exists()


def test_an_outsider_cannot_read_change_or_delete_our_project_and_we_cannot_link_theirs(org, owner, outsider, ada,
                                                                                       theirs):
    project = Project.objects.create(organization=org, name="Roof", contact=ada, owner=owner)
    drain()
    before = world()
    url = f"/api/v1/projects/{project.pk}/"
    assert api(outsider).get(url).status_code == 404
    assert api(outsider).get(f"{url}automation/").status_code == 404
    assert api(outsider).patch(url, {"name": "Mine"}, format="json").status_code == 404
    assert api(outsider).delete(url).status_code == 404
    assert api(outsider).get("/api/v1/projects/", {"search": "Roof"}).json()["results"] == []
    for change, place in (({"contact": theirs["contact"].pk}, "contact"), ({"deal": str(theirs["deal"].pk)}, "deal"),
                          ({"owner": outsider.username}, "owner"), ({"status": "done"}, "status")):
        answer = api(owner).patch(url, change, format="json")
        assert answer.status_code == 400 and place in answer.json(), said(answer)
    assert world() == before
    project.refresh_from_db()
    assert (project.name, project.contact_id, project.deal_id, project.owner_id, project.status) == (
        "Roof", ada.pk, None, owner.pk, "planned")


# --- /api/v1/hooks/<id>/events/ ----------------------------------------------------------------
def signed(secret: str, text: str, message_id: str) -> dict:
    headers = signing.headers([secret], message_id=message_id, timestamp=int(time.time()), body=text)
    return {"data": text, "content_type": "application/json",
            **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}}


@pytest.fixture
def endpoints(org, other_org, owner, outsider):
    ours, our_secret = webhook_endpoint_create(organization=org, by=owner, name="Billing")
    them, their_secret = webhook_endpoint_create(organization=other_org, by=outsider, name="Their billing")
    return {"ours": (f"/api/v1/hooks/{ours.public_id}/events/", our_secret),
            "theirs": (f"/api/v1/hooks/{them.public_id}/events/", their_secret)}


def test_unsigned_or_wrongly_signed_events_are_refused_and_leave_no_receipt(org, ada, endpoints, listening):
    url, secret = endpoints["ours"]
    _, their_secret = endpoints["theirs"]
    text = json.dumps(PAID)
    before = world()
    unsigned = Client().post(url, text, content_type="application/json")
    assert unsigned.status_code == 400 and unsigned.json()["code"] == "missing_headers"
    forged = Client().post(url, **signed("whsec_" + "A" * 32, text, "msg-1"))
    assert forged.status_code == 401 and forged.json()["code"] == "bad_signature"
    crossed = Client().post(url, **signed(their_secret, text, "msg-2"))  # the other endpoint's secret
    assert crossed.status_code == 401 and crossed.json()["code"] == "bad_signature"
    swapped = signed(secret, text, "msg-3")
    swapped["data"] = json.dumps({**PAID, "data": {"invoice": {"number": "INV-1", "amount_paid": 5000}}})
    tampered = Client().post(url, **swapped)  # signed, then changed on the way
    assert tampered.status_code == 401 and tampered.json()["code"] == "bad_signature"
    stale = signed(secret, text, "msg-4")
    stale.update(signing_headers(secret, text, "msg-4", int(time.time()) - 3600))
    assert Client().post(url, **stale).status_code == 401
    assert world() == before


def signing_headers(secret: str, text: str, message_id: str, timestamp: int) -> dict:
    headers = signing.headers([secret], message_id=message_id, timestamp=timestamp, body=text)
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


@pytest.mark.parametrize(("text", "code", "place"), [
    ("[" * 200 + "]" * 200, "not_json", None),
    (json.dumps({**PAID, "data": {"invoice": DEEP}}), "not_json", None),
    ("{not json", "not_json", None),
    ('{"type": "invoice.paid\\u0000"}', "not_json", None),
    ('{"type": "invoice.paid", "data": {"invoice": {"amount_paid": NaN}}}', "not_json", None),
    (json.dumps({**PAID, "type": "invoice.unknown"}), "invalid_event", "type"),
    (json.dumps({**PAID, "type": {"$where": "1"}}), "invalid_event", "type"),
    (json.dumps([PAID]), "invalid_event", "detail"),
    (json.dumps("invoice.paid"), "invalid_event", "detail"),
    (json.dumps({**PAID, "contact": {"id": "²"}}), "invalid_event", "contact"),
    (json.dumps({**PAID, "data": {"invoice": {"number": NESTED_30, "amount_paid": 5}}}), "invalid_event",
     "data.invoice.number"),
    (json.dumps({**PAID, "idempotency_key": "k" * 10_000}), "invalid_event", "idempotency_key"),
])
def test_a_signed_hostile_body_is_a_4xx_with_its_code_and_leaves_no_receipt(org, ada, endpoints, listening, text,
                                                                          code, place):
    url, secret = endpoints["ours"]
    before = world()
    answer = Client().post(url, **signed(secret, text, "msg-hostile"))
    assert answer.status_code == 400, (answer.status_code, said(answer)[:300])
    assert answer.json()["code"] == code, said(answer)[:300]
    if place is not None:
        assert place in answer.json()["errors"], said(answer)[:300]
    assert world() == before


def test_another_organizations_endpoint_cannot_send_events_into_ours(org, other_org, ada, theirs, endpoints,
                                                                   listening):
    url, secret = endpoints["theirs"]
    our_deal = Deal.objects.create(organization=org, title="Ours", amount=1, stage=stage(org, "new"))
    before = world()
    for n, (body, place) in enumerate((
            ({**PAID, "contact": ada.pk}, "contact"),
            ({**PAID, "contact": {"email": "ada@example.com"}}, "contact"),
            ({**PAID, "contact": {"phone": "+1 555 010 0100"}}, "contact"),
            ({**PAID, "contact": theirs["contact"].pk, "deal": str(our_deal.pk)}, "deal"))):
        answer = Client().post(url, **signed(secret, json.dumps(body), f"msg-{n}"))
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_event", said(answer)
        assert "in this organization" in " ".join(answer.json()["errors"][place]), said(answer)
        assert world() == before
    # The endpoint decides the organization: a valid event through theirs is theirs, about their contact.
    accepted = Client().post(url, **signed(secret, json.dumps({**PAID, "contact": {"email": "eve@rival.example"}}),
                                           "msg-ok"))
    assert accepted.status_code == 202, said(accepted)
    event = BusinessEvent.objects.get()
    assert (event.organization_id, event.contact_id) == (other_org.pk, theirs["contact"].pk)
    drain()
    assert not WorkflowRun.objects.filter(organization=org).exists()


# --- /api/v1/workflows/<id>/trigger/ and allow-deletion ------------------------------------------
@pytest.mark.parametrize(("body", "place", "words"), [
    ({"input": {"reason": DEEP}}, "detail", "nests more than"),
    ({"input": {"reason": NESTED_30}}, "input", "nested too deeply"),
    ({"input": {"reason": "x" * 500_000}}, "input", "longer than"),
    ({"input": {"reason": "x" * 5_000}}, "input.reason", "at most"),
    ({"input": {"reason": "Audit", "colour": "red"}}, "input.colour", "is not an input of this workflow"),
    ({"input": {"reason": "Audit", "__class__": "x"}}, "input.__class__", "is not an input of this workflow"),
    ({"input": {"reason": {"a": 1}}}, "input.reason", "must be text"),
    ({"input": {"reason": ["a"]}}, "input.reason", "must be text"),
    ({"input": {"reason": True}}, "input.reason", "must be text"),
    ({"input": {"reason": "Audit", "days": "many"}}, "input.days", "is not a number"),
    ({"input": {"reason": "Audit", "days": {"n": 1}}}, "input.days", "is not a number"),
    ({"input": {"reason": "Audit", "days": "1e999"}}, "input.days", "below"),
    ({"input": {"reason": "Audit", "days": "NaN"}}, "input.days", "number"),
    ({"input": {"reason": "Audit", "urgency": 5}}, "input.urgency", "is not one of its choices"),
    ({"input": {"reason": "Audit\x00"}}, "input.reason", "NUL"),
    ({"input": "reason=Audit"}, "input", ""),
    ({"input": ["Audit"]}, "input", ""),
    ({}, "input.reason", "is required"),
    ({"input": {"reason": "Audit"}, "entity_type": "deal"}, "entity_id", ""),
    ({"input": {"reason": "Audit"}, "entity_id": "1"}, "entity_type", ""),
])
def test_a_manual_start_with_hostile_input_is_a_400_and_starts_nothing(org, owner, body, place, words):
    workflow = make_workflow(org, name="Anywhere", trigger_type="manual", trigger_config={"inputs": INPUTS},
                             actions=TASK)
    before = world()
    answer = api(owner).post(f"/api/v1/workflows/{workflow.pk}/trigger/", body, format="json")
    assert 400 <= answer.status_code < 500, (answer.status_code, said(answer)[:300])
    assert answer.status_code in (400, 409), said(answer)[:300]
    assert place in answer.json() and words in json.dumps(answer.json()[place], ensure_ascii=False), said(answer)[:500]
    assert world() == before


def test_a_manual_start_on_another_organizations_record_or_by_a_viewer_starts_nothing(org, owner, viewer, outsider,
                                                                                     ada, theirs):
    on_contact = make_workflow(org, name="On contact", trigger_type="manual_contact", trigger_config={},
                               actions=TASK)
    on_deal = make_workflow(org, name="On deal", trigger_type="manual_deal", trigger_config={}, actions=TASK)
    before = world()
    url = f"/api/v1/workflows/{on_contact.pk}/trigger/"
    for entity_id in (theirs["contact"].pk, str(theirs["contact"].pk), "²", "9" * 64, "1; DROP TABLE crm_contact",
                      "-1", str(theirs["deal"].pk)):
        answer = api(owner).post(url, {"entity_type": "contact", "entity_id": entity_id}, format="json")
        assert answer.status_code == 400 and "entity_id" in answer.json(), (entity_id, said(answer)[:300])
    answer = api(owner).post(url, {"entity_type": "contact", "entity_id": {"id": ada.pk}}, format="json")
    assert answer.status_code == 400, said(answer)
    for kind, record in (("deal", theirs["deal"]), ("project", theirs["project"]), ("lead", theirs["lead"])):
        answer = api(owner).post(f"/api/v1/workflows/{on_deal.pk}/trigger/",
                                 {"entity_type": kind, "entity_id": str(record.pk)}, format="json")
        assert answer.status_code == 400 and "entity_id" in answer.json(), (kind, said(answer))
    wrong_kind = api(owner).post(url, {"entity_type": "invoice", "entity_id": "1"}, format="json")
    assert wrong_kind.status_code == 400 and "entity_type" in wrong_kind.json()
    assert api(viewer).post(url, {"entity_type": "contact", "entity_id": ada.pk}, format="json").status_code == 403
    assert api(outsider).post(url, {"entity_type": "contact", "entity_id": ada.pk}, format="json").status_code == 404
    assert api().post(url, {"entity_type": "contact", "entity_id": ada.pk}, format="json").status_code in (401, 403)
    assert world() == before


def test_allow_deletion_is_for_admins_and_takes_true_or_false_only(org, owner, teammate, viewer, outsider):
    workflow = make_workflow(org, activate=False, actions=TASK)
    url = f"/api/v1/workflows/{workflow.pk}/allow-deletion/"
    ops = api(teammate).post(url, {"allowed": True}, format="json")
    assert ops.status_code == 403, said(ops)
    assert api(viewer).post(url, {"allowed": True}, format="json").status_code == 403
    assert api(outsider).post(url, {"allowed": True}, format="json").status_code == 404
    for body in ({"allowed": "yes"}, {"allowed": "true"}, {"allowed": 1}, {"allowed": None}, {}, [True], "true",
                 {"allowed": [True]}):
        answer = api(owner).post(url, body, format="json")
        assert answer.status_code == 400 and "allowed" in answer.json(), (body, said(answer))
    deep = api(owner).post(url, {"allowed": DEEP}, format="json")
    assert deep.status_code == 400, said(deep)
    assert not Workflow.objects.get(pk=workflow.pk).allows_deletion


# --- The web pages: starting a workflow and a record's own fields ----------------------------------
@pytest.fixture
def tier(org):
    return CustomField.objects.create(organization=org, entity="contact", key="tier", label="Tier", kind="text")


def test_a_viewer_cannot_start_or_change_fields_and_other_organizations_records_are_404(org, owner, viewer, ada,
                                                                                       theirs, tier):
    workflow = make_workflow(org, name="On contact", trigger_type="manual_contact", trigger_config={},
                             actions=TASK)
    anywhere = make_workflow(org, name="Anywhere", trigger_type="manual", trigger_config={}, actions=TASK)
    before = world()
    start = f"/crm/automation/records/contact/{ada.pk}/start/"
    fields = f"/crm/automation/records/contact/{ada.pk}/fields/"
    assert browser(viewer).post(start, {"workflow": workflow.pk, "confirm": "1",
                                        "input.reason": "x"}).status_code == 403
    assert browser(viewer).post(fields, {"custom.tier": "gold"}).status_code == 403
    assert browser(viewer).post("/crm/automation/start/", {"workflow": anywhere.pk}).status_code == 403
    for kind, pk in (("contact", theirs["contact"].pk), ("deal", theirs["deal"].pk), ("lead", theirs["lead"].pk),
                     ("project", theirs["project"].pk), ("contact", "²"), ("contact", "9" * 30),
                     ("contact", "-1"), ("deal", "not-a-uuid"), ("invoice", "1"), ("contact", "1%00")):
        for page in ("start", "fields"):
            answer = browser(owner).post(f"/crm/automation/records/{kind}/{pk}/{page}/",
                                         {"workflow": workflow.pk, "confirm": "1", "custom.tier": "gold"})
            assert answer.status_code in (400, 404), (kind, pk, page, answer.status_code)
    # Our workflow on their contact (the workflow id is ours, the record theirs): still a 404.
    answer = browser(owner).post(f"/crm/automation/records/contact/{theirs['contact'].pk}/start/",
                                 {"workflow": workflow.pk, "confirm": "1"})
    assert answer.status_code == 404
    assert world() == before
    ada.refresh_from_db()
    assert ada.custom == {}


def test_hostile_values_on_the_start_and_fields_pages_are_a_400_and_change_nothing(org, owner, ada, tier):
    declared = make_workflow(org, name="Declared", trigger_type="manual_contact", trigger_config={"inputs": [
        {"key": "x", "label": "X", "kind": "text"}]}, actions=TASK)
    anywhere = make_workflow(org, name="Anywhere", trigger_type="manual", trigger_config={}, actions=TASK)
    client = browser(owner)
    before = world()
    huge = "y" * 100_000
    page = client.post(f"/crm/automation/records/contact/{ada.pk}/start/",
                       {"workflow": declared.pk, "confirm": "1", "input.x": huge})
    assert page.status_code == 400 and "Nothing was started" in page.content.decode()
    page = client.post("/crm/automation/start/", {"workflow": anywhere.pk, "input.x": huge})
    assert page.status_code == 400 and "Nothing was started" in page.content.decode()
    page = client.post("/crm/automation/start/", {"workflow": anywhere.pk, "input.x": "a\x00b"})
    assert page.status_code == 400 and "NUL character" in page.content.decode()  # refused before the view
    page = client.post(f"/crm/automation/records/contact/{ada.pk}/start/",
                       {"workflow": "9" * 40, "confirm": "1"})
    assert page.status_code == 404
    page = client.post(f"/crm/automation/records/contact/{ada.pk}/fields/", {"custom.tier": huge})
    assert page.status_code == 400
    page = client.post(f"/crm/automation/records/contact/{ada.pk}/fields/", {"custom.tier": "a\x00b"})
    assert page.status_code == 400 and "NUL character" in page.content.decode()
    assert world() == before
    ada.refresh_from_db()
    assert ada.custom == {}


@pytest.mark.parametrize("value", ["{{ settings.SECRET_KEY }}", "{% debug %}", "{{contact.first_name}}",
                                   "{{trigger.input.x}}", "{% load static %}{{ request.user.password }}"])
def test_a_template_in_an_input_is_stored_and_rendered_as_text(org, owner, ada, value):
    workflow = make_workflow(org, name="Note", trigger_type="manual_contact", trigger_config={"inputs": [
        {"key": "x", "label": "X", "kind": "text", "required": True}]}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "Note: {{trigger.input.x}}"}}])
    page = browser(owner).post(f"/crm/automation/records/contact/{ada.pk}/start/",
                               {"workflow": workflow.pk, "confirm": "1", "input.x": value})
    assert page.status_code == 302, page.content.decode()[:500]
    run = WorkflowRun.objects.get()
    assert run.event.payload["input"] == {"x": value}
    continue_runs([run.pk])
    run.refresh_from_db()
    assert run.status == "completed", run.error
    title = Task.objects.get().title
    assert title == f"Note: {value}"  # rendered once: the value is text, never a template
    assert settings.SECRET_KEY not in title and "Ada" not in title
