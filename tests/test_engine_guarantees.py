"""What the engine promises about leases, claims and fan-out, tested directly."""

import contextlib
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, Workflow, WorkflowRun, WorkflowRunAction
from crm_automation.automation.nodes import REGISTRY, ActionFailed
from crm_automation.automation.runtime import dispatch, engine, leases, tasks, watchdog
from crm_automation.automation.runtime.dispatch import claim_events
from crm_automation.automation.runtime.engine import runs
from crm_automation.crm.models import Deal, Task
from tests.conftest import make_workflow
from tests.test_concurrent_moves import race
from tests.test_isolation import dispatched, won_deals


def execute_run(run_id: int) -> str | None:
    """Execute (or resume) one run: its final status, or None if it was not there to run."""
    return engine.execute_runs([run_id]).finished.get(run_id)


TASK_ONLY = [{"type": "create_task", "config": {"title": "Kick off {{deal.title}}"}}]


def test_a_bulk_write_that_fails_falls_back_to_one_by_one_and_fails_only_the_bad_item(org, monkeypatch):
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 3)
    apply = REGISTRY["create_task"].apply

    def picky(items):
        if len(items) > 1:
            raise RuntimeError("bulk insert refused")
        if items[0][1].title.endswith("1"):
            raise ActionFailed("this one is bad")
        return apply(items)

    monkeypatch.setattr(REGISTRY["create_task"], "apply", picky)
    report = engine.execute_runs(dispatched())
    assert sorted(report.finished.values()) == ["completed", "completed", "failed"]
    assert sorted(Task.objects.values_list("title", flat=True)) == ["Kick off Deal 0", "Kick off Deal 2"]


def test_a_write_the_database_refuses_undoes_the_segment_and_it_is_done_again_write_by_write(org, monkeypatch):
    """Without a savepoint per write (walk.without_savepoints), a refused statement aborts the
    whole transaction on PostgreSQL: the segment is undone and done again with savepoints, so the
    bad item fails alone and the others' effects and step rows are written once."""
    make_workflow(org, actions=[*TASK_ONLY, {"type": "update_field", "config": {"field": "probability",
                                                                                 "value": 90}}])
    deals = won_deals(org, 3)
    apply = REGISTRY["create_task"].apply
    calls = []

    def refused_when_bad(items):
        calls.append(len(items))
        if any(prepared.title.endswith("1") for _, prepared in items):
            with connection.cursor() as cursor:  # a statement the database itself refuses
                cursor.execute("SELECT * FROM no_such_table")
        return apply(items)

    monkeypatch.setattr(REGISTRY["create_task"], "apply", refused_when_bad)
    report = engine.execute_runs(dispatched())
    assert calls == [3, 3, 1, 1, 1]  # without savepoints, again with them, then one by one
    assert sorted(report.finished.values()) == ["completed", "completed", "failed"]
    assert sorted(Task.objects.values_list("title", flat=True)) == ["Kick off Deal 0", "Kick off Deal 2"]
    probability = dict(Deal.objects.filter(pk__in=[d.pk for d in deals]).values_list("title", "probability"))
    assert (probability["Deal 0"], probability["Deal 2"]) == (90, 90) and probability["Deal 1"] != 90
    steps = WorkflowRunAction.objects.filter(run__workflow__organization=org)
    assert steps.filter(action_type="update_field", status="completed").count() == 2  # written once each
    assert steps.filter(action_type="create_task", status="failed").count() == 1


def test_a_segment_sends_no_savepoint_per_write_unless_a_write_fails(org, monkeypatch):
    make_workflow(org)  # three actions: a task, a field, an email
    won_deals(org, 2)
    first, second = dispatched()

    def savepoints_sent(run_id) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert engine.execute_runs([run_id]).finished == {run_id: "completed"}
        return sum(q["sql"].startswith("SAVEPOINT") for q in queries.captured_queries)

    fewer = savepoints_sent(first)
    monkeypatch.setattr(runs, "without_savepoints", contextlib.nullcontext)  # (the old way)
    assert savepoints_sent(second) - fewer == 5  # one per kind of action, one per write of step rows


def test_a_worker_that_lost_its_lease_does_not_finish_the_run(org, monkeypatch):
    wf = make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 1)
    (run_id,) = dispatched()
    finish = runs.finish

    def stolen_meanwhile(states, token):  # another worker took the run over while we worked
        WorkflowRun.objects.filter(pk=run_id).update(lease_owner="someone-else")
        return finish(states, token)

    monkeypatch.setattr(runs, "finish", stolen_meanwhile)
    assert engine.execute_runs([run_id]).finished == {}
    monkeypatch.undo()
    WorkflowRun.objects.filter(pk=run_id).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert execute_run(run_id) == "completed"  # the other worker finishes it, once
    wf.refresh_from_db()
    assert (wf.run_count, Task.objects.count()) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_once_never_share_an_event_or_a_run(org):
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 20)
    events: list[set] = []
    assert race(2, lambda i: events.append({e.pk for e in claim_events(25)})) == []
    assert not events[0] & events[1] and len(events[0] | events[1]) == AutomationEvent.objects.count()

    AutomationEvent.objects.update(claimed_until=None)
    run_ids = dispatch.dispatch_events(list(AutomationEvent.objects.order_by("pk")))
    runs: list[set] = []
    assert race(2, lambda i: runs.append({r.pk for r in leases.claim_runs(run_ids)[1]})) == []
    assert not runs[0] & runs[1] and len(runs[0] | runs[1]) == 20


def test_a_full_batch_fans_out_and_handed_back_runs_are_continued(org, settings, monkeypatch):
    settings.AUTOMATION = {**settings.AUTOMATION, "EVENT_BATCH_SIZE": 5}
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 4)  # 8 events: a full batch of 5, then 3
    queued = []
    monkeypatch.setattr(tasks, "enqueue_drain", lambda: queued.append("drain"))
    monkeypatch.setattr(tasks, "enqueue_continue", lambda ids: queued.append(("continue", tuple(ids))))
    handed = []
    execute = tasks.execute_leased

    def hand_back_the_first_time(dispatched, budget):
        run_ids = [run.pk for run in dispatched.runs]
        if not handed:
            handed.extend(run_ids)
            leases.hand_back(dispatched.token, run_ids)
            return engine.Report(handed_back=run_ids)
        return execute(dispatched, budget=budget)

    monkeypatch.setattr(tasks, "execute_leased", hand_back_the_first_time)
    tasks.drain_events(fan_out=True)
    assert queued.count("drain") == 1  # one helper for the burst, not one per batch
    assert ("continue", tuple(handed)) in queued


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_keeps_a_long_runs_lease(org, settings):
    settings.AUTOMATION = {**settings.AUTOMATION, "LEASE_SECONDS": 0.6}  # a beat every 0.2 s
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 1)
    token, (run,) = leases.claim_runs(dispatched())
    first = WorkflowRun.objects.get(pk=run.pk).lease_until
    with leases.heartbeat(token):
        time.sleep(1.0)  # longer than the lease: without a beat it would have expired
        renewed = WorkflowRun.objects.get(pk=run.pk).lease_until
    assert renewed > first + timedelta(seconds=0.3)
    last = WorkflowRun.objects.get(pk=run.pk).lease_until
    time.sleep(0.5)  # the block is over: no beat renews the lease any more
    assert WorkflowRun.objects.get(pk=run.pk).lease_until == last


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_one_keeper_thread_renews_every_lease_held_in_the_process(org, settings):
    settings.AUTOMATION = {**settings.AUTOMATION, "LEASE_SECONDS": 0.6}
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 2)
    run_ids = dispatched()
    first_token, (first,) = leases.claim_runs(run_ids[:1])
    second_token, (second,) = leases.claim_runs(run_ids[1:])
    before = {run.pk: WorkflowRun.objects.get(pk=run.pk).lease_until for run in (first, second)}
    threads = threading.active_count()
    with leases.heartbeat(first_token), leases.heartbeat(second_token):
        time.sleep(1.0)
        after = {run.pk: WorkflowRun.objects.get(pk=run.pk).lease_until for run in (first, second)}
        assert threading.active_count() <= threads + 1  # (+1: the keeper, the first time in this process)
    with leases.heartbeat(first_token):  # a later execution: no new thread
        assert threading.active_count() <= threads + 1
    assert all(after[pk] > before[pk] + timedelta(seconds=0.3) for pk in before)


def test_the_sweep_finds_abandoned_runs_and_forgotten_events(org):
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 1)
    assert not tasks.forgotten_events().exists()  # fresh events: their nudge may still be on its way
    AutomationEvent.objects.update(created_at=timezone.now() - timedelta(seconds=3))
    assert tasks.forgotten_events().exists()  # nobody was told about them
    run_ids = dispatched()
    assert not tasks.forgotten_events().exists()  # dispatched: the drain executes them now
    assert not tasks.abandoned_runs().exists()
    leases.claim_runs(run_ids)
    WorkflowRun.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # its worker died
    assert tasks.abandoned_runs().exists()
    assert tasks.sweep(fan_out=False)["resumed"] == 1
    assert not tasks.abandoned_runs().exists()
    assert Workflow.objects.get().run_count == 1


@pytest.mark.django_db(transaction=True)
def test_two_dispatches_naming_organizations_in_opposite_order_do_not_deadlock(org, other_org, monkeypatch):
    """PostgreSQL: each dispatch locks its organizations' usage rows; in one order for all."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: two dispatches cannot interleave there")
    from crm_automation.automation import plans
    from crm_automation.crm.models import Deal
    from crm_automation.crm.services import deal_move_to_stage
    from tests.conftest import stage

    for o in (org, other_org):
        make_workflow(o, actions=TASK_ONLY, reenrollment="every_time", trigger_config={})  # any stage
    a = Deal.objects.create(organization=org, title="a", stage=stage(org, "proposal"))
    b = Deal.objects.create(organization=other_org, title="b", stage=stage(other_org, "proposal"))
    AutomationEvent.objects.update(processed_at=timezone.now())
    for deal, o in ((a, org), (b, other_org), (b, other_org), (a, org)):  # batches: [A, B] and [B, A]
        deal_move_to_stage(deal=deal, stage=stage(o, "negotiation" if deal.stage.slug == "won" else "won"))
    first, second = claim_events(2), claim_events(2)
    assert [e.organization_id for e in first] == [org.pk, other_org.pk]
    assert [e.organization_id for e in second] == [other_org.pk, org.pk]
    both_hold_one, reserve = threading.Barrier(2, timeout=2), plans.reserve_history

    def reserve_then_wait(*, organization, runs):  # each holds its first usage row before the second
        kept = reserve(organization=organization, runs=runs)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_hold_one.wait()
        return kept

    monkeypatch.setattr(dispatch.plans, "reserve_history", reserve_then_wait)
    assert race(2, lambda i: dispatch.dispatch_events([first, second][i])) == []
    assert WorkflowRun.objects.count() == 4


def test_the_watchdog_sweeps_at_once_for_a_dead_worker_and_after_two_looks_for_a_stuck_event(org):
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 1)
    watch = watchdog.Watch()
    AutomationEvent.objects.update(created_at=timezone.now() - timedelta(seconds=3))  # its nudge was lost
    assert not watch.work_is_stuck()  # first look: maybe a drain is about to take it
    assert watch.work_is_stuck()  # still the same oldest event: nobody is moving it
    run_ids = dispatched()
    leases.claim_runs(run_ids)
    WorkflowRun.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # its worker died
    assert watchdog.Watch().work_is_stuck()  # at the first look


def test_a_workers_drain_that_took_all_that_waited_ends_without_looking_again(org, other_org, monkeypatch):
    """One event: the pick of the organization says no other waits, so the drain ends after its
    batch (2 statements to claim, none to look again). Another organization's change waiting:
    a helper is queued and the drain goes on until nothing is left, as before."""
    make_workflow(org, actions=TASK_ONLY)
    make_workflow(other_org, actions=TASK_ONLY)
    queued = []
    monkeypatch.setattr(tasks, "enqueue_drain", lambda: queued.append("drain"))
    won_deals(org, 1)
    with CaptureQueriesContext(connection) as seen:
        assert tasks.drain_events(fan_out=True) == 1
    looks = [q["sql"] for q in seen.captured_queries if "COALESCE" in q["sql"]]
    assert len(looks) == 1 and "EXISTS" in looks[0]  # the pick, which also asked about the others
    assert queued == []

    won_deals(org, 1, prefix="Next")
    won_deals(other_org, 1)
    assert tasks.drain_events(fan_out=True) == 2  # both organizations' runs, in this one drain
    assert queued == ["drain"]  # and a helper for the other organization
    assert not AutomationEvent.objects.filter(processed_at__isnull=True).exists()
