"""Relative-time triggers: "3 days before a deal's close date", "2 days after it was created",
"in Proposal for 14 days" — found by range queries, each occasion fired exactly once, nothing
for occasions before the workflow went live, nothing while it is paused."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, RelativeTrigger, WorkflowDecision, WorkflowRun
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.automation.triggers import relative_time
from crm_automation.crm.models import Deal, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage
from tests.racing import race

TASK = [{"type": "create_task", "config": {"title": "Follow up {{deal.title}} ({{trigger.occasion}})"}}]


def relative(org, trigger_type, config, name="Nudge"):
    return make_workflow(org, name=name, trigger_type=trigger_type, trigger_config=config, actions=TASK)


def started(now) -> None:
    """The workflow goes live at `now`: its first pass sets the watermark."""
    relative_time.fire_due(now=now)


@pytest.mark.parametrize("trigger_type, config, place", [
    ("deal_date_reached", {"field": "amount", "offsetDays": 1}, "config.field"),
    ("deal_date_reached", {"field": "close_date", "offsetDays": 400}, "config.offsetDays"),
    ("deal_date_reached", {"field": "close_date", "time": "9am"}, "config.time"),
    ("deal_in_stage", {"stage": "nowhere", "days": 3}, "config.stage"),
    ("deal_in_stage", {"stage": "proposal", "days": 0}, "config.days"),
    ("deal_in_stage", {"stage": "proposal", "days": 3, "hours": 2}, "config.hours"),
])
def test_bad_settings_are_refused_at_their_place(org, trigger_type, config, place):
    assert relative_time.validate(trigger_type, config, org.pk)[0][0] == place
    with pytest.raises(Exception, match=place.split(".")[-1]):
        relative(org, trigger_type, config)


def test_the_triggers_in_words():
    assert relative_time.describe("deal_date_reached", {"field": "close_date", "offsetDays": -3, "time": "09:00"}) \
        == "3 days before a deal's close date, at 09:00"
    assert relative_time.describe("deal_in_stage", {"stage": "proposal", "days": 14}, {"proposal": "Proposal"}) \
        == "A deal in Proposal for 14 days"


def test_moving_a_deal_records_when_it_entered_its_stage(org, deal):
    before = deal.stage_entered_at
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    assert Deal.objects.get(pk=deal.pk).stage_entered_at > before
    moved = Deal.objects.get(pk=deal.pk)
    moved.stage = stage(org, "won")
    moved.save(update_fields=["stage"])
    assert Deal.objects.get(pk=deal.pk).stage_entered_at > moved.updated_at - timedelta(seconds=5)
    same = Deal.objects.get(pk=deal.pk)
    entered = same.stage_entered_at
    same.title = "Renamed"
    same.save()
    assert Deal.objects.get(pk=deal.pk).stage_entered_at == entered  # not a stage change


def test_a_deal_in_a_stage_for_n_days_starts_the_workflow_once(org, deal):
    workflow = relative(org, "deal_in_stage", {"stage": "proposal", "days": 14})
    entered = Deal.objects.get(pk=deal.pk).stage_entered_at
    started(entered + timedelta(days=1))
    assert relative_time.fire_due(now=entered + timedelta(days=13, hours=23)) == 0
    assert relative_time.fire_due(now=entered + timedelta(days=14, minutes=1)) == 1
    assert relative_time.fire_due(now=entered + timedelta(days=14, minutes=2)) == 0
    drain()
    run = WorkflowRun.objects.get()
    assert (run.workflow_id, run.trigger_entity_id, run.status) == (workflow.pk, deal.pk, "completed")
    assert Task.objects.get().title.startswith("Follow up Website (")


def test_a_deal_that_left_the_stage_does_not_count(org, deal):
    relative(org, "deal_in_stage", {"stage": "proposal", "days": 14})
    entered = Deal.objects.get(pk=deal.pk).stage_entered_at
    started(entered)
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    assert relative_time.fire_due(now=timezone.now() + timedelta(days=15)) == 0


def test_days_before_the_close_date_at_the_set_time(org, deal):
    Deal.objects.filter(pk=deal.pk).update(close_date=date(2031, 5, 10))
    relative(org, "deal_date_reached", {"field": "close_date", "offsetDays": -3, "time": "09:00"})
    started(datetime(2031, 5, 1, tzinfo=UTC))
    assert relative_time.fire_due(now=datetime(2031, 5, 7, 8, 59, tzinfo=UTC)) == 0
    assert relative_time.fire_due(now=datetime(2031, 5, 7, 9, 0, 30, tzinfo=UTC)) == 1
    assert relative_time.fire_due(now=datetime(2031, 5, 8, 9, 0, 30, tzinfo=UTC)) == 0
    event = AutomationEvent.objects.get(kind="deal_date_reached")
    assert event.entity_id == deal.pk and event.payload["occasion"] == "2031-05-07T09:00:00+00:00"


def test_days_after_creation_after_downtime_still_fire(org, deal):
    created = Deal.objects.get(pk=deal.pk).created_at
    relative(org, "deal_date_reached", {"field": "created_at", "offsetDays": 2, "time": "10:00"})
    started(created)
    # Nothing ran for a week: the occasion in between fires at the next pass (a deal's own day).
    assert relative_time.fire_due(now=created + timedelta(days=7)) == 1
    drain()
    assert WorkflowRun.objects.get().status == "completed"


def test_occasions_before_the_workflow_went_live_and_while_paused_do_not_fire(org, deal):
    workflow = relative(org, "deal_in_stage", {"stage": "proposal", "days": 1})
    entered = Deal.objects.get(pk=deal.pk).stage_entered_at
    started(entered + timedelta(days=3))  # live after the deal's day came
    assert relative_time.fire_due(now=entered + timedelta(days=4)) == 0
    workflow_transition(workflow_id=workflow.pk, name="pause", by=None)
    assert relative_time.fire_due(now=entered + timedelta(days=5)) == 0
    assert not RelativeTrigger.objects.exists()


def test_an_occasion_belongs_to_its_own_workflow(org, deal):
    mine = relative(org, "deal_in_stage", {"stage": "proposal", "days": 2}, name="Two days")
    other = relative(org, "deal_in_stage", {"stage": "proposal", "days": 9}, name="Nine days")
    entered = Deal.objects.get(pk=deal.pk).stage_entered_at
    started(entered)
    relative_time.fire_due(now=entered + timedelta(days=2, minutes=1))
    drain()
    assert list(WorkflowRun.objects.values_list("workflow_id", flat=True)) == [mine.pk]
    assert not WorkflowDecision.objects.filter(workflow=other).exists()


@pytest.mark.django_db(transaction=True)
def test_racing_sweeps_fire_an_occasion_exactly_once(org, deal):
    relative(org, "deal_in_stage", {"stage": "proposal", "days": 3})
    entered = Deal.objects.get(pk=deal.pk).stage_entered_at
    started(entered)
    fired = race(lambda: relative_time.fire_due(now=entered + timedelta(days=3, minutes=1)))
    assert sum(fired) == 1, fired
    assert AutomationEvent.objects.filter(kind="deal_in_stage").count() == 1
