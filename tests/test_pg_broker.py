"""The ORM broker on PostgreSQL is woken by LISTEN/NOTIFY (crm_automation/workers/pg_broker.py):
an idle pusher waiting for work is handed a task as soon as it is enqueued, and a task that came
without a notification is still found by the next look. Events written to the outbox wake it
too: it hands its workers a drain itself, with no task on the queue."""

import threading
import time
import uuid

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from crm_automation.automation.models import AutomationEvent
from crm_automation.automation.runtime.queue import DRAIN_TASK
from crm_automation.workers import pg_broker

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's")]


def test_a_waiting_pusher_takes_a_task_enqueued_while_it_waits(monkeypatch):
    monkeypatch.setattr(pg_broker, "WAIT_SECONDS", 30)  # it returns when notified, not when this is up
    broker = pg_broker.ListeningORM(list_key="listen-test")
    assert broker._take() == []
    broker._listening()
    assert len(drains(broker.dequeue())) == 1  # (a new listener's first drain: below)
    enqueued = threading.Timer(0.3, lambda: broker.enqueue(SignedPackage.dumps({"id": "t1"})))
    enqueued.start()
    try:
        (task,) = broker.dequeue()  # one call: empty when it looked, then woken by the enqueue
    finally:
        enqueued.join()
        broker._close_listener()
    assert SignedPackage.loads(task[1]) == {"id": "t1"}


def test_a_task_without_a_notification_is_found_by_the_next_look():
    broker = pg_broker.ListeningORM(list_key="listen-test")
    OrmQ.objects.create(key="listen-test", payload=SignedPackage.dumps({"id": "quiet"}), lock=timezone.now())
    try:
        (task,) = [t for t in broker.dequeue() if t[0] is not None]  # (and a new listener's drain)
    finally:
        broker._close_listener()
    assert SignedPackage.loads(task[1]) == {"id": "quiet"}


def test_the_cluster_on_postgresql_uses_it(settings):
    if "redis" in settings.Q_CLUSTER:
        pytest.skip("the Redis broker is configured")
    assert settings.Q_CLUSTER["broker_class"] == "crm_automation.workers.pg_broker.ListeningORM"
    assert settings.AUTOMATION["EVENTS_NOTIFY"]  # so the save path sends no nudge of its own


def write_event(org_id: int, n: int = 1) -> None:
    """Events as any save writes them (committed: these tests run outside a transaction)."""
    AutomationEvent.objects.bulk_create([AutomationEvent(organization_id=org_id, kind="deal_updated",
                                                         entity_type="deal", entity_id=uuid.uuid4(), payload={})
                                         for _ in range(n)])


def drains(tasks) -> list[dict]:
    """The drains among a look's tasks: handed out with no queue row (ack id None)."""
    loaded = [(ack, SignedPackage.loads(payload)) for ack, payload in tasks or []]
    assert all(task["func"] == DRAIN_TASK for ack, task in loaded if ack is None), loaded
    return [task for ack, task in loaded if ack is None]


def test_events_written_while_a_pusher_waits_hand_it_a_drain_at_once_with_no_task_on_the_queue(org, monkeypatch):
    monkeypatch.setattr(pg_broker, "WAIT_SECONDS", 30)  # it returns when notified, not when this is up
    broker = pg_broker.ListeningORM(list_key="listen-test")
    broker._listening()  # (from here on)
    assert len(drains(broker.dequeue())) == 1  # the one a new listener hands out at once (below)
    written = threading.Timer(0.3, write_event, args=(org.pk,))
    written.start()
    try:
        (drain,) = drains(broker.dequeue())  # one call: nothing when it looked, then woken by the commit
    finally:
        written.join()
        broker._close_listener()
    assert drain["save"] is False and drain["group"] == "automation-drain" and drain["args"] == ()
    assert OrmQ.objects.count() == 0


def test_a_burst_of_events_is_one_drain_now_and_one_when_the_interval_ends(org, monkeypatch):
    """As the save path's nudger did: a drain ends when it finds nothing more, so events written
    after one started are owed another, however many they are: exactly one, after the interval."""
    monkeypatch.setattr(pg_broker, "WAIT_SECONDS", 0.3)
    monkeypatch.setattr(pg_broker, "DRAIN_INTERVAL", 0.2)
    broker = pg_broker.ListeningORM(list_key="listen-test")
    try:
        broker._listening()
        write_event(org.pk)
        time.sleep(0.1)  # (its notification has come: PostgreSQL sends it at commit, this is for a loaded machine)
        assert len(drains(broker.dequeue())) == 1
        for _ in range(5):  # five saves, five commits
            write_event(org.pk)
        time.sleep(0.1)
        handed = [drains(broker.dequeue()) for _ in range(4)]  # each look waits out the interval at most
    finally:
        broker._close_listener()
    assert sum(len(d) for d in handed) == 1, handed


def test_events_written_while_nobody_listened_are_drained_as_soon_as_a_pusher_listens(org, monkeypatch):
    """The cluster was down (or its listening connection had failed) while changes were saved:
    their notifications reached no one. A pusher that starts listening hands out a drain at once
    instead of leaving them to the watchdog."""
    monkeypatch.setattr(pg_broker, "WAIT_SECONDS", 30)  # (a drain that came only after a wait fails the test)
    write_event(org.pk)
    broker = pg_broker.ListeningORM(list_key="listen-test")
    try:
        (drain,) = drains(broker.dequeue())
    finally:
        broker._close_listener()
    assert drain["func"] == DRAIN_TASK


def test_a_bulk_write_of_events_is_one_notification(org):
    from psycopg import connect

    params = {k: v for k, v in connection.get_connection_params().items()
              if k not in ("cursor_factory", "context", "prepare_threshold")}
    with connect(**params, autocommit=True) as listener:
        listener.execute("LISTEN crm_automation_events")
        write_event(org.pk, 500)
        heard = list(listener.notifies(timeout=0.5))
    assert [n.channel for n in heard] == ["crm_automation_events"]


def test_a_pusher_that_cannot_listen_hands_out_a_drain_every_second(org, monkeypatch):
    def refused(**params):
        raise OSError("connection refused")

    monkeypatch.setattr(pg_broker.psycopg, "connect", refused)
    broker = pg_broker.ListeningORM(list_key="listen-test")
    assert len(drains(broker.dequeue())) == 1  # nobody tells it about events: it looks for them
    assert drains(broker.dequeue()) == []  # (a look takes `poll`, 0.05 s: well under the second)
    time.sleep(pg_broker.POLLED_DRAIN_SECONDS)
    assert len(drains(broker.dequeue())) == 1


def test_the_pusher_puts_the_drain_on_the_workers_queue_and_it_runs_the_change(org, deal, monkeypatch):
    """django-q2's own pusher loop with this broker: the drain it hands over is a task like any
    other (signed, with the cluster's name) whose ack id is None (nothing on the queue to remove);
    run as a worker runs it, it runs the workflow of the change."""
    import queue as queues
    from multiprocessing import Event
    from pydoc import locate  # (how a django-q2 worker finds a task's function)

    from django_q.pusher import pusher

    from crm_automation.automation.models import WorkflowRun
    from crm_automation.crm.services import deal_move_to_stage
    from tests.conftest import make_workflow, stage

    monkeypatch.setattr(pg_broker, "WAIT_SECONDS", 0.2)
    workflow = make_workflow(org)
    broker = pg_broker.ListeningORM(list_key="listen-test")
    broker._listening()
    AutomationEvent.objects.update(processed_at=timezone.now())  # (the set-up's own events: not this test's)
    assert len(drains(broker.dequeue())) == 1  # (a new listener's: taken here, not by the pusher below)
    handed: queues.Queue = queues.Queue()
    stop = Event()
    pushing = threading.Thread(target=pusher, args=(handed, stop, broker))
    pushing.start()
    try:
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
        task = handed.get(timeout=5)
    finally:
        stop.set()
        pushing.join()
        broker._close_listener()
    assert task["func"] == DRAIN_TASK and task["ack_id"] is None and task["cluster"]
    locate(task["func"])(*task["args"], **task["kwargs"])
    assert WorkflowRun.objects.get(workflow=workflow).status == "completed"


def test_a_pusher_that_cannot_listen_polls_instead_of_dying(monkeypatch):
    def refused(**params):
        raise OSError("connection refused")

    monkeypatch.setattr(pg_broker.psycopg, "connect", refused)
    broker = pg_broker.ListeningORM(list_key="listen-test")
    OrmQ.objects.create(key="listen-test", payload=SignedPackage.dumps({"id": "polled"}), lock=timezone.now())
    task, _drain = broker.dequeue()  # (and a drain: below)
    assert SignedPackage.loads(task[1]) == {"id": "polled"}
    assert broker._listening() is None  # and it does not try again on every look


def test_a_database_url_with_its_own_connect_timeout_still_listens(monkeypatch):
    from django.db import connections

    default = connections["default"]
    params = default.get_connection_params()
    monkeypatch.setattr(default, "get_connection_params", lambda: {**params, "connect_timeout": 7})
    broker = pg_broker.ListeningORM(list_key="listen-test")
    try:
        assert broker._listening() is not None
    finally:
        broker._close_listener()


def test_a_look_takes_the_waiting_tasks_in_one_statement_and_never_a_locked_one():
    from django.test.utils import CaptureQueriesContext

    later = timezone.now() + timezone.timedelta(seconds=60)
    OrmQ.objects.create(key="take-test", payload="held", lock=later)  # another pusher holds it
    ids = [OrmQ.objects.create(key="take-test", payload=f"p{i}", lock=timezone.now()).pk for i in range(3)]
    OrmQ.objects.create(key="another-cluster", payload="theirs", lock=timezone.now())
    broker = pg_broker.ListeningORM(list_key="take-test")
    with CaptureQueriesContext(connection) as seen:
        taken = broker._take()
    assert taken == [(pk, f"p{i}") for i, pk in enumerate(ids)]  # oldest first
    assert len(seen.captured_queries) == 1
    assert broker._take() == []  # now locked (for the retry time)
    assert all(lock > timezone.now() for lock in OrmQ.objects.filter(pk__in=ids).values_list("lock", flat=True))


def test_two_pushers_looking_at_once_never_share_a_task():
    for i in range(40):
        OrmQ.objects.create(key="race-test", payload=f"p{i}", lock=timezone.now())
    taken: list[list] = [[], []]
    start = threading.Barrier(2)

    def look(n: int) -> None:
        from django.db import connections

        broker = pg_broker.ListeningORM(list_key="race-test")
        start.wait()
        try:
            while got := broker._take():
                taken[n] += [pk for pk, _ in got]
        finally:
            connections.close_all()

    threads = [threading.Thread(target=look, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(taken[0]) & set(taken[1])
    assert len(taken[0]) + len(taken[1]) == 40


def test_putting_tasks_on_the_queue_keeps_the_callers_connection():
    """django-q2 makes a broker per task and closes the caller's connection first: with the pool
    that was a connection handed back and borrowed again (a health check, Django's set-up) for
    every nudge. The process's broker (runtime/queue.py) and ListeningORM.enqueue keep it."""
    from django.db.backends.signals import connection_created

    from crm_automation.automation.runtime import queue

    queue.enqueue_drain()  # (the broker is made, the connection opened)
    opened: list[object] = []

    def count(sender, connection, **kwargs):
        opened.append(connection)

    connection_created.connect(count)
    try:
        for _ in range(3):
            queue.enqueue_drain()
    finally:
        connection_created.disconnect(count)
    assert opened == []
    assert OrmQ.objects.count() == 4
    assert queue.broker() is queue.broker()


def test_events_alone_never_make_the_pusher_look_at_its_queue(org, monkeypatch):
    """Under load every run's commit writes events (its own changes) and notifies: a look of the
    queue for each was a query a run. The pusher looks when its queue's channel speaks, after a
    full batch, or once a WAIT_SECONDS; events only make a drain owed."""
    monkeypatch.setattr(pg_broker, "WAIT_SECONDS", 5.0)  # (longer than the loop below, however loaded the machine)
    monkeypatch.setattr(pg_broker, "DRAIN_INTERVAL", 0.05)
    broker = pg_broker.ListeningORM(list_key="listen-test")
    looks: list[int] = []
    take = broker._take

    def counted():
        looks.append(1)
        return take()

    monkeypatch.setattr(broker, "_take", counted)
    try:
        broker._listening()
        assert len(drains(broker.dequeue())) == 1  # (a new listener's) and the queue's first look
        assert len(looks) == 1
        looks.clear()
        handed = 0
        for _ in range(8):
            write_event(org.pk)
            handed += len(drains(broker.dequeue()))
    finally:
        broker._close_listener()
    assert handed >= 1
    assert looks == []


def test_a_look_that_filled_a_batch_looks_again_without_a_notification(monkeypatch):
    monkeypatch.setattr(pg_broker.Conf, "BULK", 2)
    broker = pg_broker.ListeningORM(list_key="listen-test")
    try:
        broker._listening()
        for i in range(3):
            OrmQ.objects.create(key="listen-test", payload=SignedPackage.dumps({"id": f"t{i}"}), lock=timezone.now())
        first, second = broker.dequeue(), broker.dequeue()  # the three notifications are all heard by the first
    finally:
        broker._close_listener()
    queued = [[SignedPackage.loads(p)["id"] for ack, p in look if ack is not None] for look in (first, second)]
    assert queued == [["t0", "t1"], ["t2"]]  # (the first look also has a new listener's drain)
