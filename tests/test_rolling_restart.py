"""A rolling restart of the workers during a drain loses and doubles nothing.

A backlog of deal stage changes waits in the outbox (made by a separate process, its nudges on
the broker). Cluster A starts; once it has finished some runs, B starts and A is stopped; once
B has finished some runs on its own, C starts and B is stopped — as an operator rolls new code
over the worker hosts one at a time. Every cluster is a separate `manage.py qcluster` process
group, as on separate hosts.

- graceful (SIGTERM): django-q2 stops its pusher and lets the workers finish what they hold;
- crash (SIGKILL of the whole group): the old cluster's runs are free again once their leases
  expire (AUTOMATION_LEASE_SECONDS=6 here) and a newer cluster's watchdog sweeps them up.

Emails go to the fake SMTP server of the fault harness, which takes a few milliseconds per
message, so the drain is still going when the clusters change. Then: every event processed,
one run per (event, workflow), every run finished, one task / field change / email per run, no
message accepted twice by the server, nothing left `sending` or `started`. A worker killed
while it hands an email over leaves that one email's outcome unknown (it is never re-sent, and
its run fails saying so): at most one per killed worker.
"""

import os
import re
import signal
import subprocess
import time
from collections import Counter

import pytest

from benchmarks.chaos.checks import KEY_RUN, Scope, wait_settled
from benchmarks.chaos.data import add_workflow, make_org
from benchmarks.chaos.harness import Harness
from benchmarks.chaos.procs import PROCESSES, Cluster, Sink
from crm_automation.automation.models import AutomationEvent, FieldChange, WorkflowRun
from crm_automation.crm.models import EmailMessage, Task
from tests.conftest import sqlite_pass_only
from tests.test_e2e_qcluster import REDIS_URL, database_url

BACKLOG = 200  # the restarts are over after 40 to 60 runs; the rest (~10 s of mail) outlasts a slow cluster start
WORKERS = 2  # per cluster
SMTP_DELAY = 0.15  # seconds the fake server takes per message: the drain outlasts the restarts
STEP = 10  # runs a cluster finishes before the next one is started (one event batch)
MESSAGE_ID = re.compile(r"^<email-(\d+)\.\d+@crm-automation>$")


@pytest.fixture
def sink(tmp_path):
    server = Sink.start(tmp_path / "smtp.jsonl", delay=SMTP_DELAY)
    yield server
    server.stop()


@pytest.fixture
def harness(transactional_db, tmp_path):
    h = Harness(database_url=database_url(), redis_url=REDIS_URL, out=tmp_path, workers=WORKERS)
    yield h
    PROCESSES.kill_all()  # whatever a failed test left running


def environment(h: Harness, broker: str, sink: Sink) -> dict:
    # A cluster name of its own: on Redis its queue is a list nobody else reads (no FLUSHDB of
    # a database other tests share); short leases, drains and watchdog looks keep a stop and a
    # recovery short (after a crash, the last cluster finds the dead ones' work at its next look).
    return h.env(broker=broker, smtp_port=sink.port, Q_CLUSTER_NAME=f"rolling-{os.getpid()}-{time.time_ns()}",
                 AUTOMATION_LEASE_SECONDS="6", AUTOMATION_DRAIN_SECONDS="1", AUTOMATION_WATCHDOG_SECONDS="1",
                 AUTOMATION_EVENT_BATCH=str(STEP))


def finished() -> int:
    return WorkflowRun.objects.exclude(status__in=["started", "waiting"]).count()


def wait_finished(target: int, timeout: float = 40) -> int:
    deadline = time.monotonic() + timeout
    while (done := finished()) < target:
        assert time.monotonic() < deadline, f"only {done} runs finished, waited for {target}"
        time.sleep(0.05)
    return done


def stop_old(cluster: Cluster, how: str) -> int:
    """Stop the old cluster; returns how many of its workers could have died mid-email."""
    assert cluster.proc is not None, "the old cluster was started"
    if how == "sigterm":
        cluster.proc.send_signal(signal.SIGTERM)
        try:  # django-q2 lets its workers finish the tasks they hold (each at most a drain budget)
            cluster.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("the old cluster did not stop within 30 s of SIGTERM")
        return 0
    cluster.kill_whole(smtp_port=None)
    return WORKERS


def roll(h: Harness, env: dict, how: str, scope: Scope, sink: Sink) -> tuple[int, list[int]]:
    """A → B → C, the old one stopped once the new one is up. Returns the workers that could
    have been killed mid-email and the runs finished at each stop. Once the last old cluster is
    stopped the slow server has done its part: C delivers the rest at full speed."""
    at_stop, doubtful = [], 0
    old = h.cluster(env, "a")
    wait_finished(STEP)
    for tag in ("b", "c"):
        new = h.cluster(env, tag)
        at_stop.append(finished())
        doubtful += stop_old(old, how)
        if tag == "b":
            wait_finished(finished() + STEP)  # B works alone for a while: it holds work when it goes
        old = new
    sink.hurry()
    assert wait_settled(scope, timeout=60), "the drain did not finish within 60 s of the last restart"
    old.stop(grace=30)
    return doubtful, at_stop


def per_run(keys) -> Counter:
    return Counter(int(m.group(1)) for k in keys if (m := KEY_RUN.match(k or "")))


def assert_nothing_lost_or_doubled(scope: Scope, sink: Sink, doubtful: int) -> None:
    events = AutomationEvent.objects.all()
    assert events.count() == BACKLOG
    assert not events.filter(processed_at__isnull=True).exists()
    assert not events.exclude(error="").exists()

    runs = WorkflowRun.objects.all()
    pairs = Counter(runs.values_list("event_id", "workflow_id"))
    assert pairs == {(event, scope.workflow_ids[0]): 1 for event in events.values_list("pk", flat=True)}
    statuses = Counter(runs.values_list("status", flat=True))
    unknown = EmailMessage.objects.filter(status="unknown")
    assert statuses["completed"] + statuses["failed"] == BACKLOG, statuses
    assert statuses["failed"] == unknown.count() <= doubtful, (statuses, unknown.count())
    for run in runs.filter(status="failed"):
        assert "outcome unknown" in run.error, run.error

    run_ids = set(runs.values_list("pk", flat=True))
    for model in (Task, FieldChange, EmailMessage):
        counts = per_run(model.objects.values_list("automation_key", flat=True))
        assert set(counts) == run_ids and set(counts.values()) == {1}, (model.__name__, Counter(counts.values()))
    emails = Counter(EmailMessage.objects.values_list("status", flat=True))
    assert emails["sent"] + emails["unknown"] == BACKLOG and not emails["sending"] and not emails["queued"], emails

    accepted = Counter(m["message_id"] for m in sink.messages())
    assert all(c == 1 for c in accepted.values()), "the SMTP server accepted a message twice"
    sent = set(EmailMessage.objects.filter(status="sent").values_list("pk", flat=True))
    assert sent <= {int(m.group(1)) for mid in accepted if (m := MESSAGE_ID.match(mid))}


def backlog(h: Harness, env: dict) -> Scope:
    """BACKLOG stage changes waiting in the outbox, made by a separate process while no
    cluster runs (its nudges wait on the broker)."""
    data = make_org("rolling", deals=BACKLOG)
    workflow = add_workflow(data)
    h.move(env, data, "mover")
    assert AutomationEvent.objects.filter(processed_at__isnull=True).count() == BACKLOG
    return Scope([data.pk], [workflow.pk], triggers=BACKLOG)


@pytest.mark.e2e
@pytest.mark.parametrize("broker", ["orm", pytest.param("redis", marks=sqlite_pass_only(
    "the Redis broker's part; the PostgreSQL pass restarts on the ORM broker"))])
def test_a_rolling_restart_with_graceful_stops_loses_and_doubles_nothing(harness, sink, broker):
    env = environment(harness, broker, sink)
    scope = backlog(harness, env)
    doubtful, at_stop = roll(harness, env, "sigterm", scope, sink)
    assert all(done < BACKLOG for done in at_stop), f"the drain was over before a stop: {at_stop}"
    assert_nothing_lost_or_doubled(scope, sink, doubtful)
    assert WorkflowRun.objects.filter(status="completed").count() == BACKLOG


@pytest.mark.e2e
def test_a_rollout_where_the_old_clusters_crash_loses_and_doubles_nothing(harness, sink):
    env = environment(harness, "orm", sink)
    scope = backlog(harness, env)
    doubtful, at_stop = roll(harness, env, "sigkill", scope, sink)
    assert all(done < BACKLOG for done in at_stop), f"the drain was over before a kill: {at_stop}"
    assert_nothing_lost_or_doubled(scope, sink, doubtful)


@pytest.mark.e2e
@sqlite_pass_only("the stop flag is the processes', not the database's")
def test_a_stopped_cluster_hands_its_backlog_back_instead_of_draining_it(harness, sink):
    """SIGTERM to `qcluster` (what Docker and Kubernetes send) with the default 30 s drain budget:
    the workers finish the step they are in and hand the rest back (workers/shutdown.py), so the
    cluster is gone long before the backlog is; the next cluster does the rest, once each. Before
    the flag, each worker drained on for its whole budget (and then the tasks it had fetched):
    this backlog was finished by the cluster that had been told to stop."""
    env = {**environment(harness, "orm", sink), "AUTOMATION_DRAIN_SECONDS": "30"}
    scope = backlog(harness, env)
    old = harness.cluster(env, "a")
    wait_finished(STEP)
    old.proc.send_signal(signal.SIGTERM)
    try:
        old.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the cluster did not stop within 60 s of SIGTERM")
    at_exit = finished()
    assert at_exit < BACKLOG // 2, f"the stopping cluster drained {at_exit} of {BACKLOG} runs"
    sink.hurry()
    new = harness.cluster(env, "b")
    assert wait_settled(scope, timeout=90), "the next cluster did not finish the backlog"
    new.stop(grace=30)
    assert_nothing_lost_or_doubled(scope, sink, doubtful=0)
    assert WorkflowRun.objects.filter(status="completed").count() == BACKLOG
