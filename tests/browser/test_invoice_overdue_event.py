"""The owner builds "Overdue invoice reminder" on the canvas, by mouse: it starts when the billing
system sends `invoice.overdue` (the event catalog's, crm/business_events.py) and emails the
contact with the invoice's data. Saved and activated through the page; then the billing system
posts the event to a signed inbound webhook, naming the contact only by a phone written another
way than the CRM's: one email, with the invoice's number and amount. The same event again (a new
message, the same idempotency key) is a duplicate and sends nothing; one missing a required field
is refused with where. The run's page shows the run completed."""

import json
import re
import time
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.crm.models import Contact, EmailMessage
from crm_automation.webhooks import signing
from crm_automation.webhooks.services import webhook_endpoint_create
from tests.browser.conftest import PASSWORD, logged_in
from tests.browser.test_automation_pages import say, watch  # noqa: F401 (the fixture)
from tests.browser.test_canvas_builder import Canvas, wide_page  # noqa: F401 (the fixture)
from tests.conftest import drain

pytestmark = pytest.mark.django_db(transaction=True)  # live_server sees only committed rows

OVERDUE = {"type": "invoice.overdue", "idempotency_key": "billing-inv-7-overdue",
           "contact": {"phone": "+1 555-010-0100"},  # the CRM has "(555) 010-0100"
           "data": {"invoice": {"number": "INV-7", "amount_due": "120.00", "due_date": "2026-12-01"}}}


def post_signed(url: str, secret: str, body: dict) -> httpx.Response:
    """POST `body` as the billing system does: signed (Standard Webhooks), a new message each time."""
    text = json.dumps(body)
    headers = signing.headers([secret], message_id=f"msg_{uuid.uuid4().hex}", timestamp=int(time.time()), body=text)
    return httpx.post(url, content=text, headers={**headers, "Content-Type": "application/json"}, timeout=10)


def test_an_overdue_invoice_from_a_signed_webhook_emails_the_contact(wide_page, watch, live_server, org,  # noqa: F811
                                                                    owner, shot):
    page = wide_page
    watch.on(page)
    logged_in(page, live_server, "owner", PASSWORD, next_url="/crm/automation/workflows/new/")
    canvas = Canvas(page)
    page.locator("#wf-name").fill("Overdue invoice reminder")
    canvas.open("trigger")
    starts = canvas.field("Starts when")
    expect(starts.locator('option[value="invoice.overdue"]')).to_have_text("Event: invoice.overdue")
    starts.select_option("invoice.overdue")
    top = canvas.box(canvas.node("trigger"))
    mail = canvas.drop("send_email", top["x"] + top["width"] / 2, top["y"] + top["height"] + 160)
    canvas.connect("trigger", None, mail)
    canvas.open(mail)
    canvas.field("To").fill("{{trigger.contact.email}}")
    canvas.field("Subject").fill("Invoice {{trigger.invoice.number}} is overdue")
    canvas.field("Message").fill("Hello {{trigger.contact.first_name}}, {{trigger.invoice.amount_due}} is still "
                                 "due on invoice {{trigger.invoice.number}}.")
    shot(page, "built", always=True)
    page.get_by_role("button", name="Save draft").click()
    page.wait_for_url("**/edit/?saved=1")
    workflow = Workflow.objects.get(organization=org, name="Overdue invoice reminder")
    assert workflow.trigger_type == "event:invoice.overdue", say(watch, workflow.trigger_type)
    page.get_by_role("button", name="Activate").click()
    expect(page.locator(".badge, .status").first).to_contain_text("Activ")
    shot(page, "active", always=True)

    Contact.objects.create(organization=org, first_name="Ada", last_name="Lovelace", email="ada@example.com",
                           phone="(555) 010-0100")
    endpoint, secret = webhook_endpoint_create(organization=org, by=owner, name="Billing")
    url = f"{live_server.url}/api/v1/hooks/{endpoint.public_id}/events/"
    accepted = post_signed(url, secret, OVERDUE)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["duplicate"] is False, accepted.text
    drain()
    sent = list(EmailMessage.objects.filter(to="ada@example.com"))
    assert [m.subject for m in sent] == ["Invoice INV-7 is overdue"], [(m.to, m.subject) for m in sent]
    assert "Ada" in sent[0].body and "120.00" in sent[0].body, sent[0].body

    again = post_signed(url, secret, OVERDUE)  # a new message id, the same idempotency key
    assert again.status_code == 202, again.text
    assert again.json()["duplicate"] is True and again.json()["event"] == accepted.json()["event"], again.text
    unpaid = {**OVERDUE, "idempotency_key": "billing-inv-8-overdue",
              "data": {"invoice": {"number": "INV-8", "due_date": "2026-12-01"}}}
    refused = post_signed(url, secret, unpaid)
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "invalid_event", refused.text
    assert "data.invoice.amount_due" in refused.json()["errors"], refused.text
    drain()
    assert EmailMessage.objects.count() == 1, list(EmailMessage.objects.values_list("to", "subject"))

    run = WorkflowRun.objects.get(workflow=workflow)
    assert run.status == "completed", run.status
    page.goto(f"{live_server.url}/crm/automation/runs/{run.pk}/")
    expect(page.locator(".run-summary")).to_contain_text("Completed")
    for step in ("trigger", mail):
        expect(page.locator(f'#run-graph .react-flow__node[data-id="{step}"] .canvas-node')).to_have_class(
            re.compile(r"\brun-completed\b"))
    shot(page, "run", always=True)
    assert not watch.page_errors and not watch.console, say(watch, "script errors while building or on the run")
