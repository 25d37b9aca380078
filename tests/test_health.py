"""/healthz, /readyz and `manage.py automation_status`: what a load balancer and an operator see,
including a database and a broker that go away and come back (a real server process reaching
them through a TCP proxy the test cuts)."""

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta
from io import StringIO
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, WorkerHeartbeat
from crm_automation.automation.ops import health
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, sqlite_pass_only, stage
from tests.tcp_proxy import TcpProxy
from tests.template_db import copy_database
from tests.test_e2e_qcluster import ROOT, database_url

REDIS = ("127.0.0.1", 6379)


def test_healthz_says_the_process_is_alive_without_touching_the_database(client):
    response = client.get("/healthz")  # no db fixture: a query would raise
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert "no-cache" in response["Cache-Control"]


def test_readyz_is_ready_with_every_check_named(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"database", "broker", "migrations", "backlog"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["backlog"]["events"] == 0


def test_readyz_goes_unready_when_the_outbox_backs_up_and_ready_again_once_drained(client, org, deal, settings):
    settings.HEALTH = {**settings.HEALTH, "MAX_BACKLOG": 0, "MAX_EVENT_AGE_SECONDS": 60}
    make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    AutomationEvent.objects.update(created_at=timezone.now() - timedelta(minutes=5))  # nobody drained it
    response = client.get("/readyz")
    assert response.status_code == 503
    backlog = response.json()["checks"]["backlog"]
    assert not backlog["ok"] and backlog["events"] >= 1 and backlog["oldest_event_age_seconds"] >= 300
    assert "the oldest change has waited" in backlog["detail"] and "workers running" in backlog["detail"]
    settings.HEALTH = {**settings.HEALTH, "MAX_BACKLOG": 0, "MAX_EVENT_AGE_SECONDS": 0}  # 0: the check is off
    assert client.get("/readyz").status_code == 200
    settings.HEALTH = {**settings.HEALTH, "MAX_BACKLOG": 1, "MAX_EVENT_AGE_SECONDS": 60}
    assert client.get("/readyz").status_code == 503
    drain()
    assert client.get("/readyz").status_code == 200


def test_readyz_counts_a_backlog_only_up_to_its_limit(client, org, deal, settings):
    settings.HEALTH = {**settings.HEALTH, "MAX_BACKLOG": 1, "MAX_EVENT_AGE_SECONDS": 0}
    for slug in ("negotiation", "won", "lost"):
        deal_move_to_stage(deal=deal, stage=stage(org, slug))
    backlog = client.get("/readyz").json()["checks"]["backlog"]
    assert backlog["events"] == 2 and "more than 1 changes wait" in backlog["detail"]  # 3 wait; counted to 2


def test_automation_status_reports_backlog_runs_and_live_workers(org, deal, settings):
    settings.HEALTH = {**settings.HEALTH, "MAX_BACKLOG": 0, "MAX_EVENT_AGE_SECONDS": 0}
    make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    health.heartbeat(timezone.now() - timedelta(hours=1))
    WorkerHeartbeat.objects.create(host="gone-host", pid=7, cluster="crm-automation", started_at=timezone.now(),
                                   seen_at=timezone.now() - timedelta(minutes=10))  # a worker that died
    out = StringIO()
    call_command("automation_status", stdout=out)
    text = out.getvalue()
    assert text.startswith("READY")
    events = AutomationEvent.objects.count()  # the stage change and the deal's update
    assert re.search(rf"acme +{events} events, oldest \d+ s", text), text
    assert f"{socket.gethostname()} pid {os.getpid()}" in text and "gone-host" not in text
    out = StringIO()
    call_command("automation_status", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["status"] == "ready"
    assert data["backlog_by_organization"] == [
        {"organization": "acme", "events": events, "oldest_event_age_seconds": data["backlog_by_organization"][0][
            "oldest_event_age_seconds"]}]
    assert data["runs"]["under_way"] == 0 and data["runs"]["failed_last_hour"] == 0
    assert [w["pid"] for w in data["workers"]] == [os.getpid()]


@pytest.mark.slow
@sqlite_pass_only("it makes its own SQLite database")
def test_automation_status_on_code_newer_than_the_schema_says_which_migration_and_exits_1(
        tmp_path, db):
    """A rolling upgrade's first step: the new code runs before `migrate` has applied its last
    migration. A copy of the suite's migrated test database (instead of a `migrate` from nothing
    in another process: a fifth of the time), taken back one migration."""
    copy = tmp_path / "db.sqlite3"
    copy_database(connection.settings_dict["NAME"], copy)
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{copy}"}
    migrations = sorted(p.stem for p in (ROOT / "crm_automation/automation/migrations").glob("0*.py"))
    before_last = migrations[-2] if len(migrations) > 1 else "zero"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0", "automation", before_last], cwd=ROOT, env=env,
                   check=True, timeout=120)
    done = subprocess.run([sys.executable, "manage.py", "automation_status", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    checks = json.loads(done.stdout)["checks"]
    assert checks["database"]["ok"] and checks["broker"]["ok"] and not checks["migrations"]["ok"]
    assert checks["migrations"]["detail"] == "1 not applied: run `manage.py migrate`"
    assert checks["migrations"]["unapplied"] == [f"automation.{migrations[-1]}"]


# --- A real server whose database or broker goes away -------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.fixture
def server(transactional_db):
    """Starts `manage.py runserver` with the given environment; stops it at the end."""
    started = []

    def start(**env) -> int:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                                cwd=ROOT, env={**os.environ, "DATABASE_URL": database_url(), **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if get(port, "/healthz")[0] == 200:
                    return port
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.e2e
def test_readyz_goes_unready_when_the_broker_is_down_and_ready_again_after(server):
    redis = TcpProxy(*REDIS)
    try:
        port = server(REDIS_URL=f"redis://127.0.0.1:{redis.port}/12", REDIS_CONNECT_TIMEOUT="1", REDIS_TIMEOUT="2")
        status, body = get(port, "/readyz")
        assert (status, body["checks"]["broker"]["ok"]) == (200, True), body
        redis.cut()
        status, body = get(port, "/readyz")
        assert status == 503 and body["status"] == "unready"
        assert not body["checks"]["broker"]["ok"] and body["checks"]["database"]["ok"]
        assert "Error" in body["checks"]["broker"]["detail"]
        redis.restore()
        status, body = get(port, "/readyz")
        assert status == 200, body
    finally:
        redis.close()


@pytest.mark.e2e
def test_readyz_goes_unready_when_the_database_is_down_and_ready_again_after(server):
    if connection.vendor != "postgresql":
        pytest.skip("the embedded SQLite database cannot be down; CI runs this on PostgreSQL")
    url = urlsplit(database_url())
    database = TcpProxy(url.hostname, url.port or 5432)
    try:
        through_proxy = urlunsplit(url._replace(netloc=f"{url.username}@127.0.0.1:{database.port}",
                                                query="connect_timeout=2"))
        port = server(DATABASE_URL=through_proxy)
        assert get(port, "/readyz")[0] == 200
        database.cut()
        status, body = get(port, "/readyz")
        assert status == 503
        checks = body["checks"]
        assert not checks["database"]["ok"] and "OperationalError" in checks["database"]["detail"]
        assert checks["migrations"]["detail"] == "not checked: the database does not answer"
        assert get(port, "/healthz")[0] == 200  # alive all the same: a restart would not help
        database.restore()
        status, body = get(port, "/readyz")
        assert status == 200, body
    finally:
        database.close()


def test_a_probe_by_ip_address_over_plain_http_is_answered_in_production(client, db, settings):
    """A load balancer sends the host's address as Host, over HTTP: no 400, no redirect."""
    settings.ALLOWED_HOSTS = ["crm.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz", HTTP_HOST="10.0.3.7").status_code == 200
    assert client.get("/readyz/", HTTP_HOST="10.0.3.7:8000").status_code == 200
    assert client.get("/admin/login/", HTTP_HOST="10.0.3.7").status_code == 400  # everything else: checked
    assert client.get("/admin/login/", HTTP_HOST="crm.example.com").status_code == 301  # → https
    assert client.post("/healthz").status_code == 405
