"""A variable has one human name everywhere: an audit once found three (the
picker's `{{deal.contact.first_name}}`, the condition builder's "Deal's contact's first name",
Simulate's "lead.company"). catalog.variable_name names it; the builder (its picker and
condition rows, tests/browser/test_automation_pages.py), Simulate, a record's "why not" table
and the admin's field list all use it, with the path beside it where a person types one."""

import json
from pathlib import Path

from django.conf import settings
from django.test import Client
from django.urls import reverse

from crm_automation.automation.definition import catalog
from crm_automation.automation.models import WorkflowDecision
from crm_automation.crm.models import Deal
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_path_has_one_human_name():
    assert catalog.variable_name("deal.contact.first_name") == "Deal › Contact › First name"
    assert catalog.variable_name("lead.company") == "Lead › Company"
    assert catalog.variable_name("trigger.from_stage") == "Trigger › From stage"
    assert catalog.variable_name("trigger.deal.title") == "Deal › Title"  # the same field as deal.title
    assert catalog.variable_name("deal.id") == "Deal › ID"
    assert catalog.variable_name("Find Deals.rows") == "Find Deals › Rows"  # a node's label as it was typed
    assert catalog.variable_name("loop.current.first_name") == "Loop › Current › First name"


def test_the_builder_gets_every_name_from_the_catalog(org, teammate):
    page = as_user(teammate).get("/crm/automation/workflows/new/").content.decode()
    data = json.loads(page.split('<script id="builder-data" type="application/json">', 1)[1].split("</script>")[0])
    names = data["catalog"]["names"]
    for fields in data["catalog"]["fields"].values():
        assert all(path in names for path in fields)
    assert names["deal.contact.first_name"] == "Deal › Contact › First name"
    script = (Path(settings.BASE_DIR) / "static" / "web" / "builder.js").read_text()
    assert "cat.names" in script and """.join("'s ")""" not in script  # (the old rule: "Deal's contact's …")


def test_simulate_names_a_condition_by_the_human_name(org, owner, lead):
    workflow = make_workflow(org, activate=False, trigger_type="lead_created", trigger_config={}, actions=[
        {"id": "has-company", "type": "condition", "config": {"rules": [
            {"field": "lead.company", "operator": "is_empty"}]}},
        {"id": "t", "type": "create_task", "config": {"title": "Find the company of {{lead.name}}"}}])
    page = as_user(owner).post(reverse("web:simulate", args=[workflow.pk]), {"record": lead.pk, "version": 1})
    text = page.content.decode()
    assert "Lead › Company is empty" in text
    assert "lead.company" not in text


def test_the_why_not_table_names_the_field_by_its_human_name(org, owner, deal):
    make_workflow(org, name="Big deals", conditions={"rules": [{"field": "deal.amount", "operator": "gt",
                                                                 "value": 99999}]})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    reason = WorkflowDecision.objects.get().reason
    assert reason == "condition “Deal › Amount is greater than 99999” was false: Deal › Amount is 12000.00"
    page = as_user(owner).get(reverse("web:record", args=["deal", Deal.objects.get().pk])).content.decode()
    assert "Deal › Amount is greater than 99999" in page and "deal.amount" not in page


def test_the_admin_lists_each_field_by_name_with_its_path(client, org, owner):
    workflow = make_workflow(org, activate=False, trigger_type="lead_converted", trigger_config={},
                             actions=[{"type": "create_task", "config": {"title": "Hi {{lead.name}}"}}])
    client.force_login(owner)
    page = client.get(reverse("admin:automation_workflow_change", args=[workflow.pk])).content.decode()
    assert "Lead › Company <code>lead.company</code>" in page
