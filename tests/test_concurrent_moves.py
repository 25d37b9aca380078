"""One real change gives exactly one event with the true from-stage, however many processes
move the same deal at once (decided under the row lock, not from a stale copy)."""

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.automation.runtime.outbox import record_changes
from crm_automation.crm.changes import joined_inserts, records_changed
from crm_automation.crm.models import Deal, Task, deal_stage_change
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


def test_a_move_and_its_event_are_one_statement_on_postgresql(org, deal, django_capture_on_commit_callbacks,
                                                                 settings):
    """The stage move and the event it announces are written together (PostgreSQL: one
    statement; SQLite: two), the event as a plain save's, and the workers are nudged after commit
    (unless the commit itself wakes them: the listening broker, tests/test_pg_broker.py)."""
    settings.AUTOMATION = {**settings.AUTOMATION, "NUDGE": True}  # (the callbacks are only collected)
    proposal, won = stage(org, "proposal"), stage(org, "won")
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as nudges:
        deal_move_to_stage(deal=deal, stage=won)
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(("UPDATE", "WITH",
                                                                                                  "INSERT"))]
    assert len(writes) == (1 if connection.vendor == "postgresql" else 2), writes
    assert stage_changes() == [{"from_stage_id": proposal.pk, "to_stage_id": won.pk,
                                "changed": {"stage": [proposal.pk, won.pk]}}]
    event = AutomationEvent.objects.get(kind="deal_stage_change")
    assert (event.organization_id, event.entity_type, event.entity_id, event.depth) == (org.pk, "deal", deal.pk, 0)
    assert event.payload["source"] == "system"  # (no person, no import: a service called directly)
    assert len(nudges) == (0 if settings.AUTOMATION["EVENTS_NOTIFY"] else 1)
    deal.refresh_from_db()
    assert deal.stage_id == won.pk and deal.stage_entered_at is not None


def test_a_move_with_automation_off_writes_no_event(org, deal):
    records_changed.disconnect(record_changes, dispatch_uid="automation-record-changes")
    try:
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    finally:
        records_changed.connect(record_changes, weak=False, dispatch_uid="automation-record-changes")
    assert Deal.objects.get(pk=deal.pk).stage.slug == "won"
    assert stage_changes() == []


def test_a_move_that_finds_the_deal_moved_meanwhile_writes_no_event_of_its_own(org, deal):
    """The joined INSERT reads the UPDATE's rows: when the conditional UPDATE matches nothing
    (someone moved the deal), nothing is inserted and the locked path records the true move."""
    stale = Deal.objects.get(pk=deal.pk)
    deal_move_to_stage(deal=deal, stage=stage(org, "negotiation"))
    deal_move_to_stage(deal=stale, stage=stage(org, "won"))
    negotiation, won, proposal = (stage(org, s).pk for s in ("negotiation", "won", "proposal"))
    assert stage_changes() == [
        {"from_stage_id": proposal, "to_stage_id": negotiation, "changed": {"stage": [proposal, negotiation]}},
        {"from_stage_id": negotiation, "to_stage_id": won, "changed": {"stage": [negotiation, won]}},
    ]


def test_a_joined_ask_takes_one_change_and_writes_nothing(org, deal):
    """`joined=True` returns the event's row instead of writing it; with more than one change
    it refuses rather than write them before the sender's own statement."""
    change = deal_stage_change(deal, stage(org, "proposal").pk, to_stage_id=stage(org, "won").pk)
    before = AutomationEvent.objects.count()
    (joined,) = joined_inserts(Deal, change)
    assert joined.table == AutomationEvent._meta.db_table and AutomationEvent.objects.count() == before
    with pytest.raises(ValueError, match="one change"):
        record_changes(Deal, [change, change], joined=True)
    assert AutomationEvent.objects.count() == before
