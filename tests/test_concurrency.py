"""Transitions under concurrency: two admins activating at once cannot pass the plan's limit, and
a pause pressed while a drain finishes does not deadlock with it."""

import threading
import time

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from crm_automation.automation.models import LifecycleEvent, Workflow
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.refusals import Refused
from tests.conftest import make_workflow


@pytest.mark.django_db(transaction=True)
def test_concurrent_activations_never_exceed_the_plan_limit(org):
    for i in range(9):
        make_workflow(org, name=f"wf {i}")
    contenders = [make_workflow(org, name=f"contender {i}", activate=False) for i in range(4)]
    start = threading.Barrier(len(contenders))
    outcomes = []

    def activate(workflow_id):
        start.wait()
        try:
            workflow_transition(workflow_id=workflow_id, name="activate", by=None)
            outcomes.append("activated")
        except Refused as exc:
            outcomes.append(exc.message)
        finally:
            connection.close()

    threads = [threading.Thread(target=activate, args=(wf.pk,)) for wf in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("activated") == 1, outcomes
    assert all("allows 10 activated workflows" in o for o in outcomes if o != "activated")
    assert Workflow.objects.filter(organization=org, status="activated").count() == 10


def _waiting_on_a_lock(pid_of_other: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", [pid_of_other])
        row = cursor.fetchone()
    return bool(row and row[0])


@pytest.mark.django_db(transaction=True)
def test_a_pause_waiting_on_a_drain_does_not_deadlock_its_commit(org):
    """A drain counts its runs on the workflow row, then inserts rows that reference the
    organization; PostgreSQL checks those foreign keys at commit. A pause pressed meanwhile
    locks the organization and waits for the workflow: when that lock was FOR UPDATE, the
    drain's commit waited for the pause and the pause for the drain, and one was killed."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks and deferred foreign-key checks are PostgreSQL's")
    workflow = make_workflow(org, name="busy")
    pid, outcome = [], []

    def pause():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid.append(cursor.fetchone()[0])
        try:
            workflow_transition(workflow_id=workflow.pk, name="pause", by=None)
            outcome.append("paused")
        except Exception as exc:  # noqa: BLE001 - the test reports whatever it was
            outcome.append(repr(exc))
        finally:
            connection.close()

    pauser = threading.Thread(target=pause)
    with transaction.atomic():  # the drain's finishing transaction, in its order
        Workflow.objects.filter(pk=workflow.pk).update(run_count=F("run_count") + 1)
        LifecycleEvent.objects.create(organization=org, type="run.completed", data={}, occurred_at=timezone.now())
        pauser.start()
        deadline = time.monotonic() + 10
        while not (pid and _waiting_on_a_lock(pid[0])) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pid and _waiting_on_a_lock(pid[0]), "the pause never waited for the drain's lock"
    pauser.join(10)
    assert outcome == ["paused"]
    workflow.refresh_from_db()
    assert (workflow.status, workflow.run_count) == ("paused", 1)
