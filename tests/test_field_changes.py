"""Record-updated triggers: a save that changes a deal's or a lead's fields is one event with
the old and new values; workflows watch some fields or all, and with `crossing` fire only when
the record starts to meet their conditions — once on the crossing, not on every later save."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm_automation.automation.models import AutomationEvent, WorkflowDecision, WorkflowRun
from crm_automation.automation.triggers import record_changes as field_changes
from crm_automation.crm.models import Deal, Lead, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage

TASK = [{"type": "create_task", "config": {
    "title": "{{deal.title}}: {{trigger.changed.amount.old}} → {{trigger.changed.amount.new}}"}}]
BIG = {"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt", "value": 10000}]}


def watching(org, config, conditions=None, actions=None, trigger_type="deal_updated", name="Watch"):
    return make_workflow(org, name=name, trigger_type=trigger_type, trigger_config=config,
                         conditions=conditions or {}, actions=actions or TASK)


def save(deal, **fields) -> None:
    deal = Deal.objects.get(pk=deal.pk)
    for name, value in fields.items():
        setattr(deal, name, value)
    deal.save()
    drain()


def test_one_save_is_one_event_with_old_and_new_values_in_one_insert(org, deal):
    deal = Deal.objects.get(pk=deal.pk)
    deal.amount, deal.stage = 15000, stage(org, "negotiation")
    with CaptureQueriesContext(connection) as queries:
        deal.save()
    inserts = [q for q in queries if q["sql"].startswith("INSERT") and "automation_automationevent" in q["sql"]]
    assert len(inserts) == 1
    event = AutomationEvent.objects.filter(kind="deal_stage_change").get()
    assert event.payload["changed"] == {"amount": ["12000.00", "15000.00"], "stage": [stage(org, "proposal").pk,
                                                                                   stage(org, "negotiation").pk]}


@pytest.mark.parametrize("config, place", [
    ({"fields": ["colour"]}, "config.fields"), ({"fields": "amount"}, "config.fields"),
    ({"crossing": "yes"}, "config.crossing"), ({"when": 1}, "config.when")])
def test_bad_settings_are_refused_at_their_place(org, config, place):
    assert field_changes.validate("deal_updated", config)[0][0] == place
    with pytest.raises(Exception, match=place.split(".")[-1]):
        watching(org, config)


def test_a_workflow_watching_the_amount_fires_on_its_change_only(org, deal):
    workflow = watching(org, {"fields": ["amount"]})
    save(deal, title="Renamed")
    assert not WorkflowRun.objects.exists()
    decision = WorkflowDecision.objects.get(workflow=workflow)
    # Not "Stage filter did not match": what was watched and what changed, by their names.
    assert decision.outcome == "field_filter"
    assert decision.get_outcome_display() == "Watched field did not change"
    assert decision.reason == "the workflow watches Amount; this change was to Title"
    save(deal, amount=14000)
    assert Task.objects.get().title == "Renamed: 12000.00 → 14000.00"


def test_a_stage_change_is_an_update_too(org, deal):
    watching(org, {"fields": ["stage"]})
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    drain()
    assert WorkflowRun.objects.get().status == "completed"


def test_crossing_fires_once_when_the_deal_starts_to_meet_the_conditions(org, deal):
    watching(org, {"fields": ["amount"], "crossing": True}, conditions=BIG)
    Deal.objects.filter(pk=deal.pk).update(amount=5000)
    save(deal, amount=12000)  # 5,000 → 12,000: crosses
    save(deal, amount=13000)  # already over: no
    save(deal, amount=8000)   # falls below: no
    save(deal, amount=20000)  # crosses again
    assert list(Task.objects.order_by("pk").values_list("title", flat=True)) == [
        "Website: 5000.00 → 12000.00", "Website: 8000.00 → 20000.00"]
    refused = WorkflowDecision.objects.filter(outcome="condition_false").values_list("reason", flat=True)
    assert any("met the conditions before this change already" in r for r in refused)


def test_without_crossing_every_matching_save_fires(org, deal):
    watching(org, {"fields": ["amount"]}, conditions=BIG)
    save(deal, amount=12001)
    save(deal, amount=13000)
    assert Task.objects.count() == 2


def test_a_lead_update_fires_lead_workflows(org, lead):
    watching(org, {"fields": ["status"], "crossing": True}, trigger_type="lead_updated",
             conditions={"combinator": "and", "rules": [{"field": "lead.status", "operator": "eq",
                                                          "value": "qualified"}]},
             actions=[{"type": "create_task", "config": {
                 "title": "Call {{lead.name}} ({{trigger.changed.status.old}})"}}])
    lead = Lead.objects.get(pk=lead.pk)
    lead.status = "qualified"
    lead.save()
    lead.company = "Compiler Co, Inc."
    lead.save()
    drain()
    assert list(Task.objects.values_list("title", flat=True)) == ["Call Grace Hopper (new)"]


def test_the_triggers_in_words():
    assert field_changes.describe("deal_updated", {"fields": ["amount", "stage"], "crossing": True}) == \
        "A deal's amount or stage changes, when it starts to meet the conditions"
    assert field_changes.describe("lead_updated", {}) == "A lead is updated"
