"""Leads have a source (where they came from, one of the usual choices): "when a converted lead's
source is Referral, send the referral email" is built with a condition whose value is one of the
choices; the source is a field like the others on every path (admin, API, update_field,
record-updated triggers, templates), and a value that is not a source is refused where it is
written."""

import pytest
from rest_framework.test import APIClient

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.services.versions import parse_yaml
from crm_automation.crm.models import EmailMessage, Lead
from crm_automation.crm.services import lead_convert
from tests.conftest import drain, make_workflow

REFERRAL_EMAIL = [
    {"id": "referred", "type": "condition", "label": "Came by referral",
     "config": {"combinator": "and", "rules": [{"field": "lead.source", "operator": "eq", "value": "Referral"}]}},
    {"id": "thanks", "type": "send_email", "label": "Referral email",
     "config": {"to": "{{lead.email}}", "subject": "Thanks, {{lead.name}} ({{lead.source}})", "body": "Hello"}},
]


@pytest.mark.parametrize(("source", "emailed"), [("referral", True), ("website", False), ("", False)])
def test_a_converted_leads_source_decides_the_referral_email(org, owner, source, emailed):
    make_workflow(org, trigger_type="lead_converted", trigger_config={}, actions=REFERRAL_EMAIL)
    lead = Lead.objects.create(organization=org, name="Ada", email="ada@example.com", source=source, owner=owner)
    lead_convert(lead=lead)
    drain()
    run = WorkflowRun.objects.get(trigger_type="lead_converted")
    assert run.status == "completed"
    sent = list(EmailMessage.objects.values_list("subject", flat=True))
    assert sent == (["Thanks, Ada (referral)"] if emailed else [])


def test_a_source_that_is_no_source_is_refused_in_a_condition_with_the_choices(org):
    text = """\
id: referral
name: Referral
nodes:
- id: trigger
  type: workflow
  data: {subtype: chat-app, label: Converted, config: {event: lead_converted}}
- id: check
  type: workflow
  data:
    subtype: condition
    label: Check
    config: {combinator: and, rules: [{field: lead.source, operator: eq, value: friends}]}
edges:
- {source: trigger, target: check}
"""
    from crm_automation.automation.definition.documents import DocumentError
    with pytest.raises(DocumentError) as caught:
        parse_yaml(text, org.pk)
    ((place, message, _line),) = caught.value.errors
    assert place == "nodes[check].data.config.rules[0].value"
    assert "“friends” is not a lead source; use one of website, referral" in message


def test_the_api_reads_and_writes_the_source_and_refuses_an_unknown_one(org, owner):
    client = APIClient()
    client.force_authenticate(owner)
    made = client.post("/api/v1/leads/", {"name": "Bo", "source": "event"}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["source"] == "event"
    bad = client.patch(f"/api/v1/leads/{made.json()['id']}/", {"source": "telepathy"}, format="json")
    assert bad.status_code == 400 and "not a valid choice" in str(bad.json()["source"])
    assert Lead.objects.get().source == "event"


def test_update_field_sets_the_source_and_a_source_change_is_a_watched_lead_update(org, owner):
    make_workflow(org, trigger_type="lead_created", trigger_config={}, actions=[
        {"type": "update_field", "label": "Mark", "config": {"field": "source", "value": "partner"}}])
    watcher = make_workflow(org, trigger_type="lead_updated", trigger_config={"fields": ["source"]}, actions=[
        {"type": "create_task", "label": "Follow", "config": {"title": "{{lead.name}} came from {{lead.source}}"}}])
    lead = Lead.objects.create(organization=org, name="Cy", owner=owner)
    drain()
    lead.refresh_from_db()
    assert lead.source == "partner"
    lead.source = "referral"  # a person changes it: the lead-updated workflow watching it runs
    lead.save()
    drain()
    assert WorkflowRun.objects.filter(workflow=watcher, status="completed").count() == 1
    from crm_automation.crm.models import Task
    assert list(Task.objects.values_list("title", flat=True)) == ["Cy came from referral"]
    with pytest.raises(Exception, match="is not a lead source"):
        make_workflow(org, trigger_type="lead_created", trigger_config={}, actions=[
            {"type": "update_field", "config": {"field": "source", "value": "telepathy"}}])
