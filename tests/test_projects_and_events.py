"""Projects, other systems' business events and deletions start workflows end to end: a project
completed, an invoice overdue sent through the API or a signed webhook (its contact found by
phone), a deal deleted (read as it was); each refused input names its place and stores nothing."""

import json
import time

import pytest
from rest_framework.test import APIClient

from crm_automation.automation.definition.documents import DocumentError
from crm_automation.automation.models import AutomationEvent, WorkflowDecision, WorkflowRun
from crm_automation.automation.services.versions import parse_yaml
from crm_automation.crm.models import (
    BusinessEvent,
    Contact,
    Deal,
    EmailMessage,
    EventType,
    Project,
    Stage,
    Task,
)
from crm_automation.webhooks import signing
from crm_automation.webhooks.services import webhook_endpoint_create
from tests.conftest import drain, make_workflow

OVERDUE_EMAIL = [{"id": "remind", "type": "send_email", "label": "Remind", "config": {
    "to": "{{trigger.contact.email}}", "subject": "Invoice {{trigger.invoice.number}} is overdue",
    "body": "Hello {{trigger.contact.first_name}}, {{trigger.invoice.amount_due}} is due since "
            "{{trigger.invoice.due_date}}."}}]


@pytest.fixture
def api(owner):
    client = APIClient()
    client.force_authenticate(owner)
    return client


@pytest.fixture
def ada(org):
    return Contact.objects.create(organization=org, first_name="Ada", last_name="Lovelace", email="ada@example.com",
                                  phone="(555) 010-0100")


def test_a_project_completed_starts_its_workflow_with_the_project_and_its_contact(org, owner, ada):
    make_workflow(org, trigger_type="project_completed", trigger_config={}, actions=[
        {"type": "create_task", "label": "Review", "config": {
            "title": "Ask {{trigger.contact.first_name}} for a review of the {{trigger.project.service_type}}"}}])
    project = Project.objects.create(organization=org, name="Roof", service_type="roof repair", contact=ada,
                                     owner=owner, status="active")
    drain()
    assert not Task.objects.exists()  # created, not completed
    project.status = "completed"
    project.save()
    drain()
    task = Task.objects.get()
    assert task.title == "Ask Ada for a review of the roof repair"
    assert task.project_id == project.pk  # linked to the project the run is about
    assert WorkflowRun.objects.get().status == "completed"


def test_project_triggers_created_and_updated_read_the_project_and_a_completion_is_an_update_too(org, owner):
    created = make_workflow(org, name="On create", trigger_type="project_created", trigger_config={}, actions=[
        {"type": "update_field", "label": "Start", "config": {"field": "status", "value": "active"}}])
    updated = make_workflow(org, name="On status", trigger_type="project_updated",
                            trigger_config={"fields": ["status"]}, actions=[
        {"type": "create_task", "label": "Note", "config": {"title": "{{project.name}} is {{project.status}}"}}])
    project = Project.objects.create(organization=org, name="Deck", owner=owner)
    drain()
    drain()
    project.refresh_from_db()
    assert project.status == "active"
    assert WorkflowRun.objects.filter(workflow=created).count() == 1
    project.status = "completed"
    project.save()
    drain()
    assert WorkflowRun.objects.filter(workflow=updated, status="completed").exists()
    assert "Deck is completed" in Task.objects.values_list("title", flat=True)


def test_the_api_creates_projects_and_tasks_that_link_to_them_and_refuses_another_orgs_contact(
        org, other_org, api, ada):
    stranger = Contact.objects.create(organization=other_org, first_name="Eve")
    bad = api.post("/api/v1/projects/", {"name": "X", "contact": stranger.pk}, format="json")
    assert bad.status_code == 400 and "not found in this organization" in str(bad.json()["contact"])
    made = api.post("/api/v1/projects/", {"name": "Kitchen", "contact": ada.pk, "status": "planned",
                                          "service_type": "remodel"}, format="json")
    assert made.status_code == 201, made.content
    task = api.post("/api/v1/tasks/", {"title": "Order tiles", "project": made.json()["id"]}, format="json")
    assert task.status_code == 201, task.content
    assert Task.objects.get().project.name == "Kitchen"
    assert AutomationEvent.objects.filter(kind="project_created").count() == 1
    wrong = api.patch(f"/api/v1/projects/{made.json()['id']}/", {"status": "finished"}, format="json")
    assert wrong.status_code == 400 and "status" in wrong.json()


def test_an_invoice_overdue_sent_by_api_emails_the_contact_found_by_phone_and_a_resend_runs_nothing(
        org, api, ada):
    make_workflow(org, trigger_type="event:invoice.overdue", trigger_config={}, actions=OVERDUE_EMAIL)
    body = {"type": "invoice.overdue", "idempotency_key": "inv-7-overdue", "contact": {"phone": "+1 555-010-0100"},
            "data": {"invoice": {"number": "INV-7", "amount_due": 120.5, "due_date": "2026-11-30"}}}
    sent = api.post("/api/v1/events/", body, format="json")
    assert sent.status_code == 201, sent.content
    assert sent.json()["contact"] == ada.pk
    assert sent.json()["data"]["invoice"]["amount_due"] == "120.50"  # money, as amounts read
    again = api.post("/api/v1/events/", body, format="json")
    assert again.status_code == 200 and again.json()["id"] == sent.json()["id"]
    drain()
    email = EmailMessage.objects.get()
    assert email.to == "ada@example.com"
    assert email.subject == "Invoice INV-7 is overdue"
    assert "Hello Ada, 120.50 is due since 2026-11-30." in email.body
    assert BusinessEvent.objects.count() == 1 and WorkflowRun.objects.count() == 1


@pytest.mark.parametrize(("body", "place", "words"), [
    ({"type": "invoice.ovrdue", "contact": {"email": "ada@example.com"}}, "type", "is not an event of this"),
    ({"type": "invoice.overdue", "contact": {"email": "ada@example.com"},
      "data": {"invoice": {"number": "1", "due_date": "2026-11-30"}}}, "data.invoice.amount_due", "is required"),
    ({"type": "invoice.overdue", "contact": {"email": "ada@example.com"},
      "data": {"invoice": {"number": "1", "amount_due": "lots", "due_date": "2026-11-30"}}},
     "data.invoice.amount_due", "is not a number"),
    ({"type": "invoice.overdue", "contact": {"email": "ada@example.com"},
      "data": {"invoice": {"number": "1", "amount_due": 3, "due_date": "2026-11-30", "colour": "red"}}},
     "data.invoice.colour", "is not a field of invoice.overdue"),
    ({"type": "invoice.overdue", "data": {"invoice": {"number": "1", "amount_due": 3, "due_date": "2026-11-30"}}},
     "contact", "is required: this event is about a contact"),
    ({"type": "invoice.overdue", "contact": {"phone": "+1 555 999 9999"},
      "data": {"invoice": {"number": "1", "amount_due": 3, "due_date": "2026-11-30"}}}, "contact", "no contact"),
    ({"type": "invoice.overdue", "contact": {"email": "ada@example.com"}, "colour": "red"}, "colour", "unknown key"),
    ({"type": "invoice.overdue", "contact": {"email": "ada@example.com"}, "data": {"invoice": {
        "number": "x" * 40000}}}, "data", "bytes as JSON"),
])
def test_a_bad_event_is_a_400_naming_the_field_and_stores_nothing(org, api, ada, body, place, words):
    make_workflow(org, trigger_type="event:invoice.overdue", trigger_config={}, actions=OVERDUE_EMAIL)
    answer = api.post("/api/v1/events/", body, format="json")
    assert answer.status_code == 400, answer.content
    assert words in " ".join(answer.json()[place])
    assert not BusinessEvent.objects.exists() and not AutomationEvent.objects.filter(entity_type="event").exists()


def test_another_organizations_contact_is_never_linkable_and_a_viewer_cannot_send(org, other_org, outsider, viewer,
                                                                                    ada):
    client = APIClient()
    client.force_authenticate(outsider)
    body = {"type": "invoice.paid", "contact": ada.pk, "data": {"invoice": {"number": "1", "amount_paid": 5}}}
    answer = client.post("/api/v1/events/", body, format="json")
    assert answer.status_code == 400 and "no contact with id" in str(answer.json()["contact"])
    client.force_authenticate(viewer)
    assert client.post("/api/v1/events/", {**body, "contact": ada.pk}, format="json").status_code == 403
    assert not BusinessEvent.objects.exists()


def _signed(endpoint, secret, body: dict, message_id: str) -> dict:
    text = json.dumps(body)
    headers = signing.headers([secret], message_id=message_id, timestamp=int(time.time()), body=text)
    return {"data": text, "content_type": "application/json",
            **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}}


def test_a_signed_webhook_event_starts_the_workflow_and_a_bad_one_says_where(org, owner, ada, client):
    make_workflow(org, trigger_type="event:invoice.overdue", trigger_config={}, actions=OVERDUE_EMAIL)
    endpoint, secret = webhook_endpoint_create(organization=org, by=owner, name="Billing")
    url = f"/api/v1/hooks/{endpoint.public_id}/events/"
    bad = {"type": "invoice.overdue", "contact": {"phone": "555 010 0100"}, "data": {"invoice": {"number": "9"}}}
    refused = client.post(url, **_signed(endpoint, secret, bad, "msg-1"))
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_event"
    assert "is required" in " ".join(refused.json()["errors"]["data.invoice.amount_due"])
    good = {**bad, "data": {"invoice": {"number": "9", "amount_due": "80", "due_date": "2026-12-01"}}}
    accepted = client.post(url, **_signed(endpoint, secret, good, "msg-1"))  # fixed, sent again: not a replay
    assert accepted.status_code == 202, accepted.content
    replay = client.post(url, **_signed(endpoint, secret, good, "msg-1"))
    assert replay.status_code == 409
    forged = _signed(endpoint, "whsec_" + "A" * 32, good, "msg-2")
    assert client.post(url, **forged).status_code == 401
    drain()
    assert EmailMessage.objects.get().subject == "Invoice 9 is overdue"


def test_a_workflow_on_an_undeclared_event_is_refused_and_a_declared_one_knows_its_fields(org, owner):
    text = """\
id: permits
name: Permits
nodes:
- id: trigger
  type: workflow
  data: {subtype: chat-app, label: Permit, config: {event: permit.approved, conditions: {combinator: and,
    rules: [{field: trigger.permit.fee, operator: gt, value: 10}]}}}
edges: []
"""
    with pytest.raises(DocumentError) as caught:
        parse_yaml(text, org.pk)
    assert "“permit.approved” is neither a CRM trigger nor an event of this organization's catalog" in str(caught.value)
    EventType.objects.create(organization=org, name="permit.approved", about="project", fields=[
        {"key": "permit.fee", "kind": "money", "required": True, "label": "Fee"}])
    assert parse_yaml(text, org.pk)["definition"]["trigger_type"] == "event:permit.approved"
    workflow = make_workflow(org, name="Permits", trigger_type="event:permit.approved", trigger_config={},
                             actions=[{"type": "create_task", "label": "T", "config": {"title": "x"}}])
    assert workflow.trigger_type == "event:permit.approved"
    wrong = text.replace("trigger.permit.fee", "trigger.permit.cost")
    with pytest.raises(DocumentError) as caught:
        parse_yaml(wrong, org.pk)
    assert "unknown field “trigger.permit.cost”" in str(caught.value)


def test_declaring_an_event_checks_it_and_a_live_workflow_keeps_it(org, owner, api):
    clash = api.post("/api/v1/event-types/", {"name": "invoice.paid"}, format="json")
    assert clash.status_code == 400 and "already in the catalog" in str(clash.json()["name"])
    reserved = api.post("/api/v1/event-types/", {"name": "permit.approved", "fields": [
        {"key": "contact.name", "kind": "text"}]}, format="json")
    assert reserved.status_code == 400 and "a name the trigger already uses" in str(reserved.json()["fields"])
    made = api.post("/api/v1/event-types/", {"name": "permit.approved", "about": "project", "fields": [
        {"key": "permit.number", "kind": "text", "required": True, "label": "Number"}]}, format="json")
    assert made.status_code == 201, made.content
    catalog = api.get("/api/v1/event-types/catalog/").json()["results"]
    names = [entry["name"] for entry in catalog]
    assert {"invoice.overdue", "call.missed", "permit.approved"} <= set(names)
    make_workflow(org, name="Permit", trigger_type="event:permit.approved", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "Permit {{trigger.permit.number}}"}}])
    gone = api.delete(f"/api/v1/event-types/{made.json()['id']}/")
    assert gone.status_code == 409 and "Permit" in gone.json()["detail"]


def test_a_deleted_deal_starts_its_workflow_with_the_deal_as_it_was(org, owner):
    make_workflow(org, trigger_type="deal_deleted", trigger_config={}, actions=[
        {"type": "notify", "label": "Tell", "config": {"title": "{{deal.title}} ({{deal.amount}}) was deleted",
                                                       "recipients": "admins"}}])
    deal = Deal.objects.create(organization=org, title="Big one", amount=5000,
                               stage=Stage.objects.get(organization=org, slug="new"), owner=owner)
    drain()
    api = APIClient()
    api.force_authenticate(owner)
    assert api.delete(f"/api/v1/deals/{deal.pk}/").status_code == 204
    drain()
    run = WorkflowRun.objects.get(trigger_type="deal_deleted")
    assert run.status == "completed", run.error
    from crm_automation.crm.models import Notification
    assert Notification.objects.get().title == "Big one (5000.00) was deleted"
    decision = WorkflowDecision.objects.get(event__kind="deal_deleted")
    assert decision.outcome == "matched"


def test_simulate_runs_an_event_workflow_on_a_contact_with_sample_or_given_data(org, owner, ada, api):
    from crm_automation.automation.services.simulation import simulate
    workflow = make_workflow(org, trigger_type="event:invoice.overdue", trigger_config={}, actions=OVERDUE_EMAIL)
    run = simulate(workflow_id=workflow.pk, by=owner, record=ada)
    step = run.actions.get(node_id="remind")
    assert step.result["would_send"]["subject"] == "Invoice Sample is overdue"  # the declaration's sample
    answer = api.post(f"/api/v1/workflows/{workflow.pk}/run-test/", {
        "entity_type": "contact", "entity_id": str(ada.pk),
        "data": {"invoice": {"number": "INV-9", "amount_due": "10", "due_date": "2026-01-01"}}}, format="json")
    assert answer.status_code == 200, answer.content
    assert not EmailMessage.objects.exists()  # a simulation sends nothing
    bad = api.post(f"/api/v1/workflows/{workflow.pk}/run-test/", {
        "entity_type": "contact", "entity_id": str(ada.pk), "data": {"invoice": {"number": "INV-9"}}}, format="json")
    assert bad.status_code == 400 and "is required" in str(bad.json())


def test_simulate_a_deletion_workflow_and_a_project_workflow_on_records_as_they_are(org, owner, ada):
    from crm_automation.automation.services.simulation import simulate
    gone = make_workflow(org, name="Gone", trigger_type="contact_deleted", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "{{contact.first_name}} was deleted"}}])
    run = simulate(workflow_id=gone.pk, by=owner, record=ada)
    assert run.actions.get(node_id__startswith="create").result["would_create_task"]["title"] == "Ada was deleted"
    assert Contact.objects.filter(pk=ada.pk).exists()
    done = make_workflow(org, name="Done", trigger_type="project_completed", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "Review {{project.name}}"}}])
    project = Project.objects.create(organization=org, name="Roof", contact=ada)
    run = simulate(workflow_id=done.pk, by=owner, record=project)
    assert run.actions.get(node_id__startswith="create").result["would_create_task"]["title"] == "Review Roof"


def test_the_impact_preview_replays_past_events_of_the_workflows_event(org, owner, ada, api):
    from crm_automation.automation.services import impact
    body = {"type": "invoice.overdue", "contact": {"email": "ada@example.com"},
            "data": {"invoice": {"number": "1", "amount_due": "50", "due_date": "2026-11-01", "days_overdue": 30}}}
    assert api.post("/api/v1/events/", body, format="json").status_code == 201
    assert api.post("/api/v1/events/", {**body, "data": {"invoice": {**body["data"]["invoice"], "days_overdue": 2}}},
                    format="json").status_code == 201
    workflow = make_workflow(org, trigger_type="event:invoice.overdue", trigger_config={}, conditions={
        "combinator": "and", "rules": [{"field": "trigger.invoice.days_overdue", "operator": "gt", "value": 14}]},
        actions=OVERDUE_EMAIL, activate=False)
    found = impact.preview(workflow)
    assert (found.events, found.entered) == (2, 1)


def test_the_service_itself_refuses_a_viewer_and_an_outsider(org, viewer, outsider, ada):
    from django.core.exceptions import PermissionDenied

    from crm_automation.crm.business_events import event_send
    for who in (viewer, outsider):
        with pytest.raises(PermissionDenied):
            event_send(organization_id=org.pk, name="invoice.paid", by=who, links={"contact": ada.pk},
                       data={"invoice": {"number": "1", "amount_paid": 5}})
    assert not BusinessEvent.objects.exists()
