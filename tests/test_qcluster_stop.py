"""SIGTERM stops a real `qcluster` even when its database went away: a
database behind a dropped network answers no query and refuses nothing, so every process of the
cluster waited for ever and the cluster ignored SIGTERM until it was killed. The stop guard
(workers/stop_guard.py) kills the cluster's processes once the database has not answered twice,
and qcluster exits with status 1; with a database that answers the stop stays graceful (0)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from crm_automation.automation.models import WorkerHeartbeat
from crm_automation.workers import stop_guard
from tests.tcp_proxy import TcpProxy
from tests.test_e2e_qcluster import database_url

ROOT = Path(__file__).resolve().parent.parent
# Far above the guard's few seconds (two unanswered asks of 2 s); without the guard the cluster
# never stopped at all.
STOP_WAIT = 30

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason=(
    "the embedded SQLite database cannot go away over a network; CI runs this on PostgreSQL"))


@pytest.fixture
def database(transactional_db):
    url = urlsplit(database_url())
    proxy = TcpProxy(url.hostname, url.port or 5432)
    yield proxy, urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{proxy.port}"))
    proxy.close()


def start_cluster(database_url: str, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "Q_WORKERS": "2", "AUTOMATION_WATCHDOG_SECONDS": "1"}
    env.pop("REDIS_URL", None)  # the ORM broker: the pusher too waits on the database
    log = (tmp_path / "qcluster.log").open("wb")
    proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # up: every worker's watchdog has written its heartbeat
        if WorkerHeartbeat.objects.count() >= 2:
            return proc
        assert proc.poll() is None, (tmp_path / "qcluster.log").read_text()[-3000:]
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("the cluster did not start within 60 s")


def stop(proc: subprocess.Popen) -> int | None:
    """SIGTERM; the exit status, or None (and the whole group killed) if it did not stop."""
    tree = [proc.pid, *stop_guard.descendants(proc.pid)]
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=STOP_WAIT)
    except subprocess.TimeoutExpired:
        code = None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left (nothing, when it stopped)
    proc.wait()
    left = [pid for pid in tree if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)]
    assert code is None or not left, f"processes of the cluster outlived it: {left}"
    return code


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "gone"
    return stat[stat.rindex(")") + 2:].split()[0]


@pytest.mark.e2e
def test_sigterm_stops_a_cluster_whose_database_went_silent(database, tmp_path):
    proxy, url = database
    proc = start_cluster(url, tmp_path)
    time.sleep(1.5)  # a watchdog look or two, the pusher's polls: the processes are in database calls
    proxy.drop()
    time.sleep(1)
    code = stop(proc)
    log = (tmp_path / "qcluster.log").read_text(errors="replace")
    assert code == stop_guard.FORCED_EXIT, f"the cluster did not stop within {STOP_WAIT} s of SIGTERM"
    assert "its database did not answer" in log


@pytest.mark.e2e
def test_sigterm_stops_a_cluster_with_a_working_database_gracefully(database, tmp_path):
    _, url = database
    proc = start_cluster(url, tmp_path)
    assert stop(proc) == 0
    assert "stop_guard" not in (tmp_path / "qcluster.log").read_text(errors="replace")
