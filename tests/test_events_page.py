"""The Events page (web/views/events.py): everyone sees the catalog, how to send each event and the
newest events received; admins declare and delete the organization's own events through the record
services (errors at their field, nothing stored); other roles and other organizations change nothing."""

import json
from html import unescape

import pytest
from django.test import Client

from crm_automation.crm import business_events
from crm_automation.crm.models import EventType
from tests.conftest import make_workflow

URL = "/crm/automation/events/"
PERMIT = {"name": "permit.approved", "description": "The city approved a permit.", "about": "project",
          "fields": '[{"key": "permit.number", "kind": "text", "required": true, "label": "Number"}]'}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def declare(org, name: str = "permit.approved") -> EventType:
    made = EventType(organization=org, name=name, about="project",
                     fields=[{"key": "permit.number", "kind": "text", "required": True, "label": "Number"}])
    made.full_clean()
    made.save()
    return made


def test_everyone_sees_the_catalog_how_to_send_each_event_and_what_arrived(org, other_org, viewer, contact):
    business_events.event_send(organization_id=org.pk, name="invoice.overdue", links={"contact": contact.pk},
                               idempotency_key="inv-7-overdue", data={"invoice": {
                                   "number": "INV-7", "amount_due": "120.00", "due_date": "2026-12-01"}})
    business_events.event_send(organization_id=other_org.pk, name="new_lead", idempotency_key="theirs-1",
                               data={"inquiry": {"name": "Theirs"}})
    answer = logged_in(viewer).get(URL)
    assert answer.status_code == 200
    page = unescape(answer.content.decode())
    assert 'href="/crm/automation/events/" aria-current="page">Events</a>' in page
    assert "<code>invoice.overdue</code>" in page and "<code>invoice.amount_due</code> · money · required" in page
    assert "Ships with the product (predeclared)" in page
    overdue = business_events.PREDECLARED["invoice.overdue"]
    example = {"type": "invoice.overdue", "idempotency_key": "<your unique id of this event>",
               "contact": {"phone": "+1 555 0100"}, "data": business_events.sample_data(overdue)}
    assert json.dumps(example, indent=2) in page
    assert "POST /api/v1/events/" in page and "POST /api/v1/hooks/<endpoint id>/events/" in page
    assert "webhook-signature" in page
    # What arrived: this organization's event, with its contact and data; not another organization's.
    assert "inv-7-overdue" in page and "Ada Lovelace" in page and '"amount_due": "120.00"' in page
    assert "theirs-1" not in page
    # A viewer reads: no form, no delete button.
    assert "Declare an event" not in page and "/delete/" not in page


def test_an_admin_declares_an_event_and_it_appears_with_its_fields(org, owner):
    admin = logged_in(owner)
    answer = admin.post(URL, PERMIT)
    assert answer.status_code == 302 and answer["Location"] == URL
    made = EventType.objects.get(organization=org)
    assert (made.name, made.about, made.description) == ("permit.approved", "project", "The city approved a permit.")
    assert made.fields == [{"key": "permit.number", "kind": "text", "required": True, "label": "Number"}]
    page = unescape(admin.get(URL).content.decode())
    assert "Declared “permit.approved”: workflows listen to it with the trigger event:permit.approved." in page
    assert "<code>permit.number</code> · text · required" in page and "Declared by your organization" in page
    assert '"project": "<the project\'s id>"' in page
    # Only the organization's own declaration has a delete button.
    assert page.count("/delete/") == 1 and f"/crm/automation/events/{made.pk}/delete/" in page


@pytest.mark.parametrize(("changes", "where", "says"), [
    ({"name": "invoice.paid"}, "event-name-error", "“invoice.paid” is already in the catalog"),
    ({"name": "Permit Approved"}, "event-name-error", "lower-case words joined by dots"),
    ({"fields": '[{"key": "permit.number", "kind": "text",'}, "event-fields-error", "is not JSON (line 1, column"),
    ({"fields": '[{"key": "number", "kind": "text"}]'}, "event-fields-error", "fields[0].key: an object and a field"),
    ({"fields": '{"key": "permit.number"}'}, "event-fields-error", "must be a list of fields"),
    ({"about": "invoice"}, "event-about-error", "must be one of contact, deal, lead, project"),
])
def test_a_bad_declaration_is_shown_at_its_field_and_nothing_is_stored(org, owner, changes, where, says):
    typed = {**PERMIT, **changes}
    answer = logged_in(owner).post(URL, typed)
    assert answer.status_code == 400
    page = unescape(answer.content.decode())
    error = page.split(f'id="{where}">', 1)[1].split("</", 1)[0] if where != "event-fields-error" else \
        page.split(f'id="{where}">', 1)[1].split("</ul>", 1)[0]
    assert says in error
    assert "Nothing was declared" in page
    # What the person typed is kept.
    assert f'value="{typed["name"]}"' in page and f">{typed['fields']}</textarea>" in page
    assert EventType.objects.count() == 0


def test_a_name_declared_twice_is_refused_and_stored_once(org, owner):
    declare(org)
    answer = logged_in(owner).post(URL, PERMIT)
    assert answer.status_code == 400
    error = unescape(answer.content.decode()).split('id="event-name-error">', 1)[1].split("</", 1)[0]
    assert error == "“permit.approved” is already declared in your organization"
    assert EventType.objects.count() == 1


@pytest.mark.parametrize("who", ["viewer", "teammate"])
def test_viewers_and_ops_read_the_page_but_their_posts_are_refused(org, who, request):
    user = request.getfixturevalue(who)
    theirs = declare(org)
    client = logged_in(user)
    page = client.get(URL).content.decode()
    assert "<code>permit.approved</code>" in page and "Declare an event" not in page and "/delete/" not in page
    assert client.post(URL, {**PERMIT, "name": "permit.denied"}).status_code == 403
    assert client.post(f"{URL}{theirs.pk}/delete/").status_code == 403
    assert list(EventType.objects.values_list("name", flat=True)) == ["permit.approved"]


def test_another_organizations_event_is_not_found(org, other_org, owner):
    theirs = declare(other_org)
    assert logged_in(owner).post(f"{URL}{theirs.pk}/delete/").status_code == 404
    assert "<code>permit.approved</code>" not in logged_in(owner).get(URL).content.decode()
    assert EventType.objects.filter(pk=theirs.pk).exists()


def test_an_event_a_live_workflow_listens_to_is_not_deleted_and_an_unused_one_is(org, owner):
    permit = declare(org)
    make_workflow(org, name="Permit", trigger_type="event:permit.approved", trigger_config={},
                  actions=[{"type": "create_task", "label": "T", "config": {"title": "x"}}])
    admin = logged_in(owner)
    refused = unescape(admin.post(f"{URL}{permit.pk}/delete/", follow=True).content.decode())
    assert "“permit.approved” starts the live workflow(s) Permit" in refused
    assert EventType.objects.filter(pk=permit.pk).exists()
    unused = declare(org, "permit.denied")
    deleted = unescape(admin.post(f"{URL}{unused.pk}/delete/", follow=True).content.decode())
    assert "Deleted “permit.denied”" in deleted
    assert list(EventType.objects.values_list("name", flat=True)) == ["permit.approved"]


def test_the_received_events_say_which_workflows_ran_and_why_the_others_did_not(org, owner):
    from crm_automation.automation.models import WorkflowRun
    from crm_automation.crm.business_events import event_receive
    from crm_automation.crm.models import Contact
    from tests.conftest import drain, make_workflow
    Contact.objects.create(organization=org, first_name="Ada", email="ada@example.com")
    make_workflow(org, name="Big ones", trigger_type="event:invoice.overdue", trigger_config={}, conditions={
        "combinator": "and", "rules": [{"field": "trigger.invoice.days_overdue", "operator": "gt", "value": 14}]},
        actions=[{"type": "create_task", "label": "T", "config": {"title": "Call"}}])
    event, _ = event_receive(organization_id=org.pk, source="api", body={
        "type": "invoice.overdue", "contact": {"email": "ada@example.com"},
        "data": {"invoice": {"number": "1", "amount_due": "5", "due_date": "2026-11-01", "days_overdue": 3}}})
    drain()
    assert not WorkflowRun.objects.exists()
    client = Client()
    client.force_login(owner)
    page = client.get("/crm/automation/events/").content.decode()
    assert "Big ones" in page and "was false" in page and f"?record={event.pk}" in page
