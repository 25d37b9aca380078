"""PostgreSQL connections are bounded: each process borrows from a psycopg pool of
DB_POOL_MAX_SIZE connections (config/settings.py), so a burst against the dev server waits for a
connection instead of opening one per request thread until PostgreSQL has none left; a forked
process (django-q2's workers) never borrows from its parent's pool (config/db_pool.py)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.conftest import sqlite_pass_only
from tests.test_deploy import free_port
from tests.test_e2e_qcluster import database_url

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("import json; from django.conf import settings; d = settings.DATABASES['default']; "
            "print(json.dumps({'age': d['CONN_MAX_AGE'], 'pool': d['OPTIONS'].get('pool')}))")
postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="pools are PostgreSQL's")


def settings_with(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DB_")}
    environ.update(DATABASE_URL="postgres://crm:pw@db.invalid:5432/crm", **env)
    return subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", SETTINGS], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
@sqlite_pass_only("reads settings in subprocesses; no database is touched")
def test_postgresql_gets_a_bounded_pool_from_the_environment():
    default = json.loads(settings_with().stdout)
    assert default == {"age": 0, "pool": {"min_size": 1, "max_size": 10, "timeout": 5, "reconnect_timeout": 2}}
    sized = json.loads(settings_with(DB_POOL_MIN_SIZE="0", DB_POOL_MAX_SIZE="4", DB_POOL_TIMEOUT="3").stdout)
    assert sized == {"age": 0, "pool": {"min_size": 0, "max_size": 4, "timeout": 3, "reconnect_timeout": 2}}
    assert json.loads(settings_with(DB_POOL="0").stdout) == {"age": 60, "pool": None}  # bounded reuse instead
    assert json.loads(settings_with(DB_POOL="0", DB_CONN_MAX_AGE="30").stdout)["age"] == 30
    wrong = settings_with(DB_POOL_MIN_SIZE="5", DB_POOL_MAX_SIZE="2")
    assert wrong.returncode != 0 and "DB_POOL_MAX_SIZE (2) must be at least DB_POOL_MIN_SIZE (5)" in wrong.stderr


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_forked_child_borrows_from_a_pool_of_its_own():
    assert connection.pool is not None
    backend_pid()
    with connection.cursor() as cursor:  # every session open now, the parent's pooled ones among them
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        before = {pid for (pid,) in cursor.fetchall()}
    connection.close()  # back to the pool, as django-q2 does before it forks
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report the session it gets, then leave without cleaning up
        try:
            os.write(write, str(backend_pid()).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        seen = int(pipe.read() or 0)
    assert seen and seen not in before  # a session of its own, not one of the parent's pooled sockets
    assert backend_pid() in before  # and the parent's pool still works, unharmed by the child


def connections_to(name: str) -> int:
    with psycopg.connect(database_url().replace(f"/{name}", "/postgres"), autocommit=True) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()
    assert row is not None
    return row[0]


def readyz(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as refused:  # 503: unready (e.g. a backlog), but it answered
        return json.loads(refused.read())


@postgresql_only
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_burst_against_the_dev_server_stays_within_the_pools(tmp_path):
    name, port, max_size = connection.settings_dict["NAME"], free_port(), 2
    env = {**os.environ, "DATABASE_URL": database_url(), "DB_POOL_MAX_SIZE": str(max_size), "Q_WORKERS": "1",
           "DB_POOL_MIN_SIZE": "0", "DB_POOL_TIMEOUT": "30", "VAR_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    # What `make run` starts: runserver (a thread per request) and a qcluster (main, sentinel,
    # monitor, pusher, one worker), besides serve itself: seven processes, each with its own pool.
    processes = 7
    serve = subprocess.Popen([sys.executable, "manage.py", "serve", "--addr", f"127.0.0.1:{port}"], cwd=ROOT,
                             env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert serve.poll() is None, "serve stopped"
            try:
                readyz(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "the dev server did not answer within 60 s"
                time.sleep(0.3)
        peak, done = [0], threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], connections_to(name))
                time.sleep(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with ThreadPoolExecutor(60) as burst:
            answers = list(burst.map(lambda _: readyz(port), range(120)))
        done.set()
        watcher.join()
        peak[0] = max(peak[0], connections_to(name))  # what the burst left open
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    failed = [a for a in answers if not a["checks"]["database"]["ok"]]
    assert not failed, failed[:1]
    # The test's own connection (this process's pool) counts too.
    assert peak[0] <= processes * max_size + 1, peak[0]
