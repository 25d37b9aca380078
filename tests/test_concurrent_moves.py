"""One real change gives exactly one event with the true from-stage, however many processes
move the same deal at once (decided under the row lock, not from a stale copy)."""

import threading

import pytest
from django.db import connection

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.crm.models import Deal, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage


def race(n: int, work) -> list:
    start, errors = threading.Barrier(n), []

    def run(i):
        start.wait()
        try:
            work(i)
        except Exception as exc:  # collected, asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def stage_changes() -> list[dict]:
    return [{key: value for key, value in payload.items() if key != "source"}  # (where it came from: not the point)
            for payload in AutomationEvent.objects.filter(kind="deal_stage_change").values_list("payload", flat=True)]


@pytest.mark.django_db(transaction=True)
def test_four_movers_of_the_same_deals_fire_the_workflow_once_per_deal(org, contact, owner):
    make_workflow(org)
    deals = [Deal.objects.create(organization=org, title=f"Deal {i}", stage=stage(org, "proposal"),
                                 contact=contact, owner=owner) for i in range(5)]
    won = stage(org, "won")
    stale = [[Deal.objects.get(pk=d.pk) for d in deals] for _ in range(4)]  # each process loaded them

    errors = race(4, lambda i: [deal_move_to_stage(deal=d, stage=won) for d in stale[i]])
    assert errors == []
    assert len(stage_changes()) == 5
    drain()
    assert WorkflowRun.objects.count() == 5 and Task.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_plain_saves_of_stale_copies_record_the_true_from_stage(org, contact):
    deal = Deal.objects.create(organization=org, title="Deal", stage=stage(org, "proposal"), contact=contact)
    first, second = Deal.objects.get(pk=deal.pk), Deal.objects.get(pk=deal.pk)
    first.stage = stage(org, "negotiation")
    first.save()
    second.stage = stage(org, "won")  # still believes the deal is in proposal
    second.save()
    negotiation, won = stage(org, "negotiation").pk, stage(org, "won").pk
    proposal = stage(org, "proposal").pk
    assert stage_changes() == [
        {"from_stage_id": proposal, "to_stage_id": negotiation, "changed": {"stage": [proposal, negotiation]}},
        {"from_stage_id": negotiation, "to_stage_id": won, "changed": {"stage": [negotiation, won]}},
    ]


@pytest.mark.django_db(transaction=True)
def test_racing_plain_saves_give_one_event(org, contact):
    deal = Deal.objects.create(organization=org, title="Deal", stage=stage(org, "proposal"), contact=contact)
    won = stage(org, "won")
    copies = [Deal.objects.get(pk=deal.pk) for _ in range(4)]

    def save(i):
        copies[i].stage = won
        copies[i].save()

    assert race(4, save) == []
    assert len(stage_changes()) == 1


def test_a_move_from_a_stale_copy_that_already_arrived_records_nothing(org, deal):
    stale = Deal.objects.get(pk=deal.pk)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    deal_move_to_stage(deal=stale, stage=stage(org, "won"))
    assert len(stage_changes()) == 1
    assert stale.stage.slug == "won"  # the caller's copy caught up
