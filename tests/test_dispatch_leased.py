"""A drain's runs are inserted already leased to it and executed from memory: no claim, no
reading back. Nothing of the guarantees changes: a drainer that dies leaves them to the sweep
one lease later, and a budget spent before they start hands them back."""

from datetime import timedelta

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm_automation.automation.models import RunStatus, WorkflowRun
from crm_automation.automation.runtime import leases, tasks
from crm_automation.automation.runtime.dispatch import claim_events, dispatch
from crm_automation.automation.runtime.engine import execute_leased
from crm_automation.crm.models import Task
from tests.conftest import drain, make_workflow
from tests.test_isolation import won_deals

TASK_ONLY = [{"type": "create_task", "config": {"title": "Kick off {{deal.title}}"}}]


def test_a_drain_runs_what_it_dispatched_without_claiming_it_again(org, monkeypatch):
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 3)

    def no_claim(run_ids):
        raise AssertionError("a fresh run is leased by its INSERT, not claimed again")

    monkeypatch.setattr(leases, "claim_runs", no_claim)
    assert drain() == 3
    assert Task.objects.count() == 3
    assert set(WorkflowRun.objects.values_list("status", "attempts", "lease_until")) == {
        (RunStatus.COMPLETED, 1, None)}


def test_runs_a_dead_drainer_dispatched_are_resumed_by_the_sweep_after_their_lease(org):
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 2)
    made = dispatch(claim_events(10), token="drainer-that-dies")  # ... and never executes them
    assert {run.lease_owner for run in WorkflowRun.objects.all()} == {"drainer-that-dies"}
    assert tasks.abandoned_runs().count() == 0  # still leased: nobody else touches them
    WorkflowRun.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # the lease ran out
    assert tasks.sweep(fan_out=False)["resumed"] == len(made.runs) == 2
    assert Task.objects.count() == 2


def test_dispatched_runs_the_budget_does_not_reach_are_handed_back_free(org):
    make_workflow(org, actions=TASK_ONLY)
    won_deals(org, 2)
    made = dispatch(claim_events(10), token="t")
    report = execute_leased(made, budget=0)
    assert sorted(report.handed_back) == sorted(run.pk for run in made.runs)
    assert set(WorkflowRun.objects.values_list("status", "lease_owner", "attempts")) == {(RunStatus.STARTED, "", 0)}
    assert tasks.continue_runs(report.handed_back) == 2


def test_one_event_from_claim_to_completed_run_costs_a_bounded_number_of_statements(org):
    """A guard against statements creeping back into the hot path (the count, not a time):
    claim, dispatch, two segments around the email's delivery, the empty look at the end (31
    statements, 18 of them writes, on both databases, two of them the run's lifecycle events,
    run.started with the dispatch and run.completed with the end: one INSERT each for all the runs
    of a batch; 29 and 16 before those. On PostgreSQL the runs' INSERT returns their ids: 30
    statements; elsewhere one SELECT finds them. 32 before the dispatch marked its events
    with one UPDATE … RETURNING and read the stages once and the organizations with the
    workflows, 45 before it leased its runs)."""
    make_workflow(org)  # task, probability, email: the benchmark's three actions
    won_deals(org, 1)
    with CaptureQueriesContext(connection) as queries:
        assert drain() == 1
    statements = [q["sql"] for q in queries.captured_queries
                  if q["sql"].split()[0] not in ("SAVEPOINT", "RELEASE", "ROLLBACK")]  # (the test's own too)
    writes = [s for s in statements if s.split()[0] in ("INSERT", "UPDATE", "DELETE")]
    assert len(statements) <= (30 if connection.vendor == "postgresql" else 31), "\n".join(statements)
    assert len(writes) <= 18, "\n".join(writes)
