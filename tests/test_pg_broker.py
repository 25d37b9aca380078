"""The ORM broker on PostgreSQL is woken by LISTEN/NOTIFY (crm_automation/workers/pg_broker.py):
an idle pusher waiting for work is handed a task as soon as it is enqueued, and a task that came
without a notification is still found by the next look."""

import threading

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from crm_automation.workers import pg_broker

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif(connection.vendor != "postgresql", reason="LISTEN/NOTIFY is PostgreSQL's")]


def test_a_waiting_pusher_takes_a_task_enqueued_while_it_waits(monkeypatch):
    monkeypatch.setattr(pg_broker, "WAIT_SECONDS", 30)  # it returns when notified, not when this is up
    broker = pg_broker.ListeningORM(list_key="listen-test")
    assert broker._take() == []
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
        (task,) = broker.dequeue()
    finally:
        broker._close_listener()
    assert SignedPackage.loads(task[1]) == {"id": "quiet"}


def test_the_cluster_on_postgresql_uses_it(settings):
    if "redis" in settings.Q_CLUSTER:
        pytest.skip("the Redis broker is configured")
    assert settings.Q_CLUSTER["broker_class"] == "crm_automation.workers.pg_broker.ListeningORM"


def test_a_pusher_that_cannot_listen_polls_instead_of_dying(monkeypatch):
    def refused(**params):
        raise OSError("connection refused")

    monkeypatch.setattr(pg_broker.psycopg, "connect", refused)
    broker = pg_broker.ListeningORM(list_key="listen-test")
    OrmQ.objects.create(key="listen-test", payload=SignedPackage.dumps({"id": "polled"}), lock=timezone.now())
    (task,) = broker.dequeue()
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
