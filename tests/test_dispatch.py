"""Matching: one decision per candidate workflow, explaining why it ran or did not."""

import pytest

from crm_automation.automation.models import AutomationEvent, MonthlyUsage, Workflow, WorkflowDecision, WorkflowRun
from crm_automation.automation.plans import month_start
from crm_automation.automation.runtime.cause import caused_by
from crm_automation.automation.runtime.dispatch import claim_events, dispatch_events
from crm_automation.automation.services.workflows import workflow_snapshot, workflow_transition
from crm_automation.crm.models import Organization
from crm_automation.crm.services import deal_move_to_stage, lead_convert
from crm_automation.refusals import Refused
from tests.conftest import drain, make_workflow, stage


def decision_for(workflow):
    return WorkflowDecision.objects.get(workflow=workflow, event__kind=workflow.trigger_type)


def test_a_matching_workflow_runs_and_says_why(org, deal):
    wf = make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    assert drain() == 1
    assert decision_for(wf).outcome == "matched"
    run = WorkflowRun.objects.get()
    assert run.status == "completed" and run.trigger_entity_id == deal.pk
    assert run.metadata == {"from_stage": "proposal", "to_stage": "won", "deal_title": "Website"}
    assert run.version == wf.current_version


def test_a_stage_filter_mismatch_is_explained(org, deal):
    wf = make_workflow(org, trigger_config={"from_stage": "negotiation", "to_stage": "won"})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    decision = decision_for(wf)
    assert decision.outcome == "stage_filter"
    assert "the deal moved from “Proposal”; the workflow listens for “Negotiation”" in decision.reason
    assert not WorkflowRun.objects.exists()


def test_a_false_condition_is_explained(org, deal):
    wf = make_workflow(org, conditions={"rules": [{"field": "deal.amount", "operator": "gt", "value": 50000}]})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert decision_for(wf).outcome == "condition_false"
    # The field by its human name, as the builder and Simulate name it (catalog.variable_name).
    assert decision_for(wf).reason == ("condition “Deal › Amount is greater than 50000” was false: "
                                       "Deal › Amount is 12000.00")


def test_a_paused_workflow_does_not_run(org, deal):
    wf = make_workflow(org)
    workflow_transition(workflow_id=wf.pk, name="pause", by=None)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert decision_for(wf).outcome == "paused" and not WorkflowRun.objects.exists()


def test_a_draft_that_would_have_run_says_so_and_archived_ones_are_silent(org, deal):
    draft = make_workflow(org, activate=False)
    make_workflow(org, name="Draft for lost deals", activate=False, trigger_config={"to_stage": "lost"})
    archived = make_workflow(org, name="Old")
    workflow_transition(workflow_id=archived.pk, name="archive", by=None)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    (decision,) = WorkflowDecision.objects.all()  # the draft for lost deals would not have run: no row
    assert decision.workflow == draft and decision.outcome == "draft"
    # The outcome reads "Draft: not activated"; the reason does not say it again.
    assert decision.get_outcome_display() == "Draft: not activated"
    assert decision.reason == "it would have run if it were activated"
    assert str(decision) == "Draft: not activated: it would have run if it were activated"
    assert not WorkflowRun.objects.exists()


def test_free_plan_fires_nothing(org, deal):
    wf = make_workflow(org)
    Organization.objects.filter(pk=org.pk).update(plan="free")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert decision_for(wf).outcome == "plan" and not WorkflowRun.objects.exists()


def test_workflows_of_another_organization_never_match(org, other_org, deal):
    theirs = make_workflow(other_org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert not WorkflowDecision.objects.filter(workflow=theirs).exists()


def test_the_loop_guard_stops_deep_chains(org, deal, settings):
    wf = make_workflow(org)
    with caused_by(run_id=99, depth=settings.AUTOMATION["MAX_CHAIN_DEPTH"]):
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    decision = decision_for(wf)
    assert decision.outcome == "loop_guard" and "run 99" in decision.reason
    assert not WorkflowRun.objects.exists()


def test_a_workflow_that_moves_deals_in_a_circle_stops(org, deal):
    """The runtime loop guard, for circles the activation check did not see (workflows live
    before it existed): both are activated with the check's refusal set aside."""
    to_won = make_workflow(org, name="to won", trigger_config={"to_stage": "negotiation"},
                           actions=[{"type": "update_field", "config": {"field": "stage", "value": "won"}}])
    back = make_workflow(org, name="back", trigger_config={"to_stage": "won"}, activate=False,
                         actions=[{"type": "update_field", "config": {"field": "stage", "value": "negotiation"}}])
    with pytest.raises(Refused, match="circle"):
        workflow_transition(workflow_id=back.pk, name="activate", by=None)
    workflow_snapshot(workflow=back)
    Workflow.objects.filter(pk=back.pk).update(status="activated")
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    for _ in range(10):
        drain()
    guarded = WorkflowDecision.objects.filter(outcome="loop_guard")
    assert guarded.exists()
    assert WorkflowRun.objects.filter(workflow__in=[to_won, back]).count() <= 4


def test_one_run_per_event_and_workflow_even_if_dispatched_twice(org, deal):
    make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    events = claim_events(10)
    dispatch_events(events)
    AutomationEvent.objects.update(processed_at=None, claimed_until=None)  # a redelivered batch
    dispatch_events(claim_events(10))
    assert WorkflowRun.objects.count() == 1


def test_lead_converted_runs_with_lead_and_deal_values(org, lead):
    make_workflow(org, trigger_type="lead_converted", trigger_config={}, actions=[
        {"type": "send_email", "config": {"to": "{{lead.email}}", "subject": "Welcome {{lead.name}}",
                                          "body": "Deal {{deal.title}}"}}])
    lead_convert(lead=lead)
    assert drain() == 1
    run = WorkflowRun.objects.get()
    assert run.trigger_entity_id == lead.pk and run.status == "completed"
    assert run.actions.get().result["to"] == "grace@example.com"


def test_pro_quota_suppresses_history_but_still_fires(org, deal, contact):
    wf = make_workflow(org)
    MonthlyUsage.objects.create(organization=org, month=month_start(), logged_runs=500)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    assert drain() == 1
    deal.refresh_from_db()
    assert deal.probability == 100 and deal.tasks.count() == 1  # the actions happened
    assert not WorkflowRun.objects.exists()  # ... without history
    assert decision_for(wf).outcome == "matched_unlogged"
    usage = MonthlyUsage.objects.get(organization=org)
    assert (usage.logged_runs, usage.suppressed_runs) == (500, 1)
    wf.refresh_from_db()
    assert (wf.run_count, wf.success_count) == (1, 1)


def test_enterprise_has_no_quota(org, deal):
    Organization.objects.filter(pk=org.pk).update(plan="enterprise")
    make_workflow(org)
    MonthlyUsage.objects.create(organization=org, month=month_start(), logged_runs=5000)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert WorkflowRun.objects.count() == 1


def test_deal_created_and_lead_created_triggers_run(org, owner):
    from crm_automation.crm.models import Deal, Lead, Task

    make_workflow(org, name="new deal", trigger_type="deal_created", trigger_config={"to_stage": "new"},
                  actions=[{"type": "create_task", "config": {"title": "Qualify {{deal.title}}"}}])
    make_workflow(org, name="new lead", trigger_type="lead_created", trigger_config={},
                  actions=[{"type": "create_task", "config": {"title": "Call {{lead.name}}"}}])
    Deal.objects.create(organization=org, title="Fresh", stage=stage(org, "new"))
    Deal.objects.create(organization=org, title="Late", stage=stage(org, "proposal"))
    Lead.objects.create(organization=org, name="Linus")
    assert drain() == 2
    assert sorted(Task.objects.values_list("title", flat=True)) == ["Call Linus", "Qualify Fresh"]
    assert WorkflowDecision.objects.filter(outcome="stage_filter").count() == 1


def test_an_event_that_cannot_be_dispatched_is_set_aside_with_its_error(org, deal, monkeypatch):
    from crm_automation.automation.runtime import dispatch

    make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    broken = AutomationEvent.objects.get(kind="deal_stage_change")
    original = dispatch._decide

    def decide(event, *args):
        if event.pk == broken.pk:
            raise ValueError("corrupt payload")
        return original(event, *args)

    monkeypatch.setattr(dispatch, "_decide", decide)
    drain()
    broken.refresh_from_db()
    assert broken.processed_at is not None and "corrupt payload" in broken.error
    assert AutomationEvent.objects.filter(processed_at__isnull=True).count() == 0


def test_an_event_no_workflow_listens_to_is_settled_by_its_claim_alone(org, other_org, deal, contact):
    """The claim marks processed, in the same UPDATE, every event no draft, paused or activated
    workflow of its organization listens to (one row write, no dispatch, no decision); the
    others wait for their dispatch."""
    make_workflow(other_org, trigger_type="contact_created", trigger_config={},  # another organization's
                  actions=[{"type": "create_task", "config": {"title": "Call"}}])
    archived = make_workflow(org, name="Old", trigger_type="deal_created", trigger_config={})
    workflow_transition(workflow_id=archived.pk, name="archive", by=None)
    updates = make_workflow(org, name="On any deal change", activate=False, trigger_type="deal_updated",
                            trigger_config={})  # a draft listening to stage moves too (catalog.LISTENERS)
    AutomationEvent.objects.all().delete()
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    for kind, entity_type in (("contact_created", "contact"), ("deal_created", "deal")):
        AutomationEvent.objects.create(organization=org, kind=kind, entity_type=entity_type, entity_id=deal.pk)
    claimed = claim_events(10)
    assert [(e.kind, e.processed_at is None) for e in claimed] == [
        ("deal_stage_change", True), ("contact_created", False), ("deal_created", False)]
    assert not AutomationEvent.objects.filter(processed_at__isnull=True, kind__in=["contact_created",
                                                                                  "deal_created"]).exists()
    dispatch_events(claimed)
    assert list(WorkflowDecision.objects.values_list("workflow", "event__kind", "outcome")) == [
        (updates.pk, "deal_stage_change", "draft")]
    assert not AutomationEvent.objects.filter(processed_at__isnull=True).exists()


def test_a_drain_goes_on_past_full_batches_of_events_nobody_listens_to(org, deal, settings):
    settings.AUTOMATION = {**settings.AUTOMATION, "EVENT_BATCH_SIZE": 2}
    wf = make_workflow(org)
    AutomationEvent.objects.all().delete()
    for _ in range(5):
        AutomationEvent.objects.create(organization=org, kind="deal_created", entity_type="deal", entity_id=deal.pk)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))  # behind them
    assert drain() == 1
    assert WorkflowRun.objects.get().workflow == wf
    assert not AutomationEvent.objects.filter(processed_at__isnull=True).exists()
