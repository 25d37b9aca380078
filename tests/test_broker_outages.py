"""A broker that is down or hangs never blocks a request or a process exit for long; the
events are found anyway (the nudge is an optimisation, not a requirement)."""

import socket
import subprocess
import sys
import threading
import time

import pytest

from crm_automation.automation.models import AutomationEvent
from crm_automation.automation.runtime.nudger import Nudger
from tests.conftest import make_workflow
from tests.test_e2e_qcluster import MOVE, ROOT, database_url


def test_redis_urls_get_socket_timeouts():
    from config.settings import _with_socket_timeouts

    url = _with_socket_timeouts("redis://127.0.0.1:6379/0")
    assert "socket_connect_timeout=2" in url and "socket_timeout=5" in url
    assert "socket_timeout=9" in _with_socket_timeouts("redis://h:1/0?socket_timeout=9")


def test_a_hanging_nudge_does_not_hold_the_exit(monkeypatch):
    nudger, stuck = Nudger(), threading.Event()
    monkeypatch.setattr("crm_automation.automation.runtime.queue.enqueue_drain", lambda: stuck.wait(30))
    nudger._pid = __import__("os").getpid()
    nudger._pending.set()
    assert nudger.flush(wait=0.2) is False  # gave up waiting; the process may exit
    stuck.set()


@pytest.fixture
def silent_broker():
    """A TCP server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    accepted = []

    def accept():
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()
    for conn in accepted:
        conn.close()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broker", ["hanging", "unreachable"])
def test_a_short_lived_process_exits_promptly_when_the_broker_is_down(org, deal, silent_broker, broker):
    make_workflow(org)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = silent_broker if broker == "hanging" else f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
    closed.close()
    env = {**__import__("os").environ, "DATABASE_URL": database_url(), "REDIS_URL": url, "AUTOMATION_NUDGE": "1"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", MOVE.format(pk=deal.pk)], cwd=ROOT,
                          env=env, capture_output=True, timeout=60, text=True)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert AutomationEvent.objects.filter(kind="deal_stage_change").count() == 1  # committed regardless
    print(f"exit with a {broker} broker took {took:.1f} s")  # reported, not asserted
