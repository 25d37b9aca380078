"""A long run takes turns like a slow provider does: its steps are committed in
segments of at most engine.SEGMENT_ROWS rows, and between segments, once its slice is over, it
hands the rest back when another organization's change waits. The step rows are its cursor: it
resumes where it stopped, finishes once, and makes each effect once. A fake clock makes every
segment take one second (slices are 3 s), so nothing depends on timing."""

import time
from types import SimpleNamespace

import pytest
from django.conf import settings
from django_q.models import OrmQ

from crm_automation.automation.models import AutomationEvent, RunStatus, WorkflowRun
from crm_automation.automation.runtime import engine
from crm_automation.automation.runtime.engine import runs, walk
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.crm.models import Task
from crm_automation.workers import shutdown
from tests.conftest import make_workflow
from tests.test_fairness import waiting_change
from tests.test_isolation import dispatched, won_deals

ITEMS = 40
ROWS = 1 + 2 * ITEMS  # the loop, then a condition and a task per item
LOOP = [{"id": "each", "type": "loop", "config": {"loopMode": "count", "count": ITEMS, "maxIterations": ITEMS}},
        {"id": "check", "type": "condition", "config": {"rules": [
            {"field": "deal.amount", "operator": "gte", "value": 0}]}},
        {"id": "task", "type": "create_task", "config": {"title": "Item {{loop.index}} of {{deal.title}}"}}]
EDGES = [{"source": "trigger", "target": "each"}, {"source": "each", "target": "check", "sourceHandle": "loop-body"},
         {"source": "check", "target": "task", "sourceHandle": "condition-true"}]


class Clock:
    """engine's and the stop flag's time.monotonic: it stands still while a segment works and
    moves one second when the segment commits, so every segment takes one second."""

    def __init__(self) -> None:
        self.now = time.monotonic()
        self.segments: list[int] = []  # step rows each committed segment wrote

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """Segments of at most 10 rows (one second each on this clock) and 3 s slices."""
    fake = Clock()
    fake_time = SimpleNamespace(monotonic=fake.monotonic)
    for module in (runs, walk):
        monkeypatch.setattr(module, "time", fake_time)
    monkeypatch.setattr(shutdown, "time", fake_time)
    monkeypatch.setattr(walk, "SEGMENT_ROWS", 10)
    monkeypatch.setitem(settings.AUTOMATION, "GROUP_SLICE_SECONDS", 3)
    write_rows = runs.write_rows

    def ticking(rows):
        if rows:
            fake.segments.append(len(rows))
            fake.now += 1
        return write_rows(rows)

    monkeypatch.setattr(runs, "write_rows", ticking)
    return fake


def long_run(org) -> int:
    make_workflow(org, actions=LOOP, graph={"edges": EDGES})
    won_deals(org, 1, "Long")
    (run_id,) = dispatched()
    return run_id


def assert_done_once(run_id: int) -> None:
    run = WorkflowRun.objects.get(pk=run_id)
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.actions.count() == ROWS
    titles = sorted(Task.objects.filter(automation_key__startswith=f"run:{run_id}:").values_list("title", flat=True))
    assert titles == sorted(f"Item {i} of Long 0" for i in range(ITEMS))  # each effect once


def test_a_long_run_commits_in_segments_and_keeps_its_worker_while_nobody_else_waits(org, clock):
    run_id = long_run(org)
    report = engine.execute_runs([run_id], budget=30)
    assert report.finished == {run_id: RunStatus.COMPLETED} and not report.handed_back
    assert len(clock.segments) >= ROWS // 12 > 3  # slice after slice: nobody else waits
    # A segment ends at the first pass over its limit: one pass of one run adds at most a condition and a task.
    assert max(clock.segments) <= 10 + 2
    assert_done_once(run_id)


def test_a_long_run_hands_back_when_another_organization_s_change_waits_and_resumes_from_its_rows(
        org, other_org, clock):
    run_id = long_run(org)
    waiting_change(other_org)
    deliveries = 0
    while True:
        committed = len(clock.segments)
        report = engine.execute_runs([run_id], budget=30)
        deliveries += 1
        if report.finished:
            break
        assert report.handed_back == [run_id] and deliveries < ROWS
        assert len(clock.segments) - committed == 3  # its 3 s slice, then the other organization's turn
        run = WorkflowRun.objects.get(pk=run_id)
        # Handed back: free at once for a continuation, and not counted as a failed attempt.
        assert (run.status, run.lease_owner, run.lease_until, run.attempts) == (RunStatus.STARTED, "", None, 0)
        assert 0 < run.actions.count() < ROWS  # each delivery commits at least one segment
    assert deliveries >= ROWS // (3 * 12)
    assert_done_once(run_id)
    assert AutomationEvent.objects.filter(organization=other_org, processed_at__isnull=True).exists()


def test_a_long_run_does_not_hand_back_for_its_own_organization_s_changes(org, clock):
    run_id = long_run(org)
    won_deals(org, 1, "Another")  # this organization's own change waits: nobody else does
    report = engine.execute_runs([run_id], budget=30)
    assert report.finished == {run_id: RunStatus.COMPLETED} and not report.handed_back
    assert len(clock.segments) > 3


def test_a_continuation_that_gave_way_takes_the_waiting_changes_itself(org, other_org, clock):
    """Not from the end of the queue, behind the continuations of the runs that gave way."""
    run_id = long_run(org)
    waiting_change(other_org)
    continue_runs([run_id])
    assert AutomationEvent.objects.filter(processed_at__isnull=True).count() == 0
    assert WorkflowRun.objects.get(organization=other_org).status == RunStatus.COMPLETED
    assert OrmQ.objects.filter(payload__isnull=False).exists()  # the long run's own continuation is queued
    while WorkflowRun.objects.filter(pk=run_id, status=RunStatus.STARTED).exists():
        engine.execute_runs([run_id], budget=30)  # nobody else waits now: it goes on to the end
    assert_done_once(run_id)


def test_a_run_cut_between_segments_is_not_parked_while_its_loop_goes_on(org, clock):
    """One branch waits an hour while the other loops: a segment that ends between two iterations
    leaves only the wait in progress, but the run is not parked until its loop is done."""
    nodes = [{"id": "fan-out", "type": "parallel", "config": {}},
             {"id": "later", "type": "wait", "config": {"delayAmount": 1, "delayUnit": "hours"}}, *LOOP]
    edges = [{"source": "trigger", "target": "fan-out"},
             {"source": "fan-out", "target": "later", "sourceHandle": "branch-0"},
             {"source": "fan-out", "target": "each", "sourceHandle": "branch-1"}, *EDGES[1:]]
    make_workflow(org, actions=nodes, graph={"edges": edges})
    won_deals(org, 1, "Long")
    (run_id,) = dispatched()
    engine.execute_runs([run_id], budget=30)
    run = WorkflowRun.objects.get(pk=run_id)
    assert run.status == RunStatus.WAITING and len(clock.segments) > 3
    assert Task.objects.filter(automation_key__startswith=f"run:{run_id}:").count() == ITEMS
    assert run.actions.get(node_id="each").status == "completed"
