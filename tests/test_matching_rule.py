"""One matching rule (triggers/matching.py): dispatch's decisions — the "why didn't it run?" of a
record's page — and the impact preview ask the same rule, so a preview counts exactly the past
changes dispatch started the workflow for. Before, the preview had a copy of the rule without
the `crossing` check and without the addressing of occasions, and counted changes that started
nothing."""

from datetime import timedelta

from crm_automation.automation.models import AutomationEvent, Workflow, WorkflowDecision, WorkflowRun
from crm_automation.automation.services import impact
from crm_automation.automation.triggers import matching, relative_time
from crm_automation.crm.models import Deal
from tests.conftest import drain, make_workflow

BIG = {"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt", "value": 10000}]}
TASK = [{"type": "create_task", "config": {"title": "Look at {{deal.title}}"}}]


def saved(deal, amount) -> None:
    deal = Deal.objects.get(pk=deal.pk)
    deal.amount = amount
    deal.save()
    drain()


def test_the_preview_counts_a_crossing_once_as_dispatch_does(org, deal):
    workflow = make_workflow(org, name="Crosses 10k", trigger_type="deal_updated",
                             trigger_config={"fields": ["amount"], "crossing": True}, conditions=BIG, actions=TASK)
    Deal.objects.filter(pk=deal.pk).update(amount=5000)
    saved(deal, 12000)  # 5,000 → 12,000: crosses
    saved(deal, 15000)  # over it already: no
    saved(deal, 20000)  # over it already: no
    assert WorkflowRun.objects.filter(workflow=workflow).count() == 1
    why_not = WorkflowDecision.objects.filter(workflow=workflow).exclude(outcome="matched")
    assert [d.reason for d in why_not] == ["the record met the conditions before this change already (the "
                                           "workflow fires when it starts to)"] * 2

    result = impact.preview(Workflow.objects.get(pk=workflow.pk), days=30)
    assert (result.events, result.entered) == (3, 1)  # the old copy of the rule: 3 of 3
    assert result.skipped == {"the record met the conditions before the change already": 2}
    assert list(result.reached.values()) == [1]  # its one step, once


def test_the_preview_leaves_out_the_occasions_of_other_workflows(org, deal):
    mine = make_workflow(org, name="Two days", trigger_type="deal_in_stage",
                         trigger_config={"stage": "proposal", "days": 2}, actions=TASK)
    other = make_workflow(org, name="Nine days", trigger_type="deal_in_stage",
                          trigger_config={"stage": "proposal", "days": 9}, actions=TASK)
    entered = Deal.objects.get(pk=deal.pk).stage_entered_at
    relative_time.fire_due(now=entered)
    relative_time.fire_due(now=entered + timedelta(days=2, minutes=1))  # mine's occasion, not other's
    drain()
    assert list(WorkflowRun.objects.values_list("workflow_id", flat=True)) == [mine.pk]

    assert impact.preview(Workflow.objects.get(pk=mine.pk), days=30).entered == 1
    result = impact.preview(Workflow.objects.get(pk=other.pk), days=30)
    assert (result.events, result.entered) == (0, 0)  # the old copy of the rule: 1 of 1


def test_each_check_says_why_in_words_and_in_the_previews_short_form(org, deal):
    event = AutomationEvent(organization_id=org.pk, kind="webhook", entity_type="webhook", entity_id=deal.pk,
                            payload={"endpoint": 7, "body": {}})
    trigger = {"type": "webhook", "endpoint": 7, "body": {}}
    webhook = {"trigger_type": "webhook", "trigger_config": {"endpoint": 8}}
    verdict = matching.match(event, webhook, trigger, lambda: {"trigger": trigger}, {})
    assert verdict == ("endpoint_filter", "the webhook came to endpoint 7; the workflow listens to 8", "endpoint")
    assert not verdict.matched and matching.SUMMARY[verdict.check] == "the webhook came to another endpoint"
    assert matching.match(event, {**webhook, "trigger_config": {"endpoint": 7}}, trigger,
                          lambda: {"trigger": trigger}, {}).matched

    won = {"trigger_type": "deal_stage_change", "trigger_config": {"to_stage": "won"}}
    moved = {"type": "deal_stage_change", "from_stage": "proposal", "to_stage": "lost"}
    verdict = matching.match(AutomationEvent(kind="deal_stage_change", entity_type="deal", payload={}), won, moved,
                             lambda: None, {"lost": "Lost", "won": "Won"})
    assert verdict == ("stage_filter", "the deal moved to “Lost”; the workflow listens for “Won”", "stage")
    gone = matching.match(AutomationEvent(kind="deal_stage_change", entity_type="deal", payload={}), won,
                          {**moved, "to_stage": "won"}, lambda: None, {})
    assert gone == ("record_missing", "the deal was deleted before the workflow ran", "record")
