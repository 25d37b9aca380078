"""Production settings and start: `check --deploy` is clean with the documented environment, a
missing SECRET_KEY or ALLOWED_HOSTS stops start-up with a message saying what to do, and
`manage.py serve_prod` (what `make prod` runs) serves pages and static files and stops cleanly.

Every process here gets its own environment and a SQLite file under the test's tmp_path: none of
this touches the test database or var/."""

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm_automation.automation.management.commands.serve_prod import stop_seconds
from tests.conftest import sqlite_pass_only

ROOT = Path(__file__).resolve().parent.parent
# What the developer's shell may have set that would change what these tests see.
CLEARED = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "BEHIND_TLS_PROXY", "DATABASE_URL",
           "REDIS_URL", "STATIC_ROOT", "VAR_DIR", "PORT", "WEB_CONCURRENCY", "WORKER_PROCESSES", "Q_WORKERS",
           "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
           "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "GUNICORN_CMD_ARGS")


def production_env(tmp_path: Path, **overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(DEBUG="0", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="crm.example.com",
               DATABASE_URL=f"sqlite:///{tmp_path / 'crm.sqlite3'}", VAR_DIR=str(tmp_path / "var"))
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


pytestmark = [sqlite_pass_only("each test makes its own SQLite database"), pytest.mark.slow]


def test_check_deploy_is_clean_with_the_documented_settings(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stderr


@pytest.mark.parametrize(("missing", "says"), [
    ("SECRET_KEY", "secrets.token_urlsafe(50)"),
    ("ALLOWED_HOSTS", "ALLOWED_HOSTS=crm.example.com"),
])
def test_it_refuses_to_start_without_a_secret_key_or_allowed_hosts(tmp_path, missing, says):
    result = manage("check", env=production_env(tmp_path, **{missing: None}))
    assert result.returncode != 0
    assert f"ImproperlyConfigured: {missing} must be set when DEBUG is off" in result.stderr
    assert says in result.stderr


def test_serve_prod_refuses_to_start_with_debug_on(tmp_path):
    result = manage("serve_prod", env=production_env(tmp_path, DEBUG="1"))
    assert result.returncode != 0
    assert "refuses to start with DEBUG on" in result.stderr
    assert not (tmp_path / "crm.sqlite3").exists()  # nothing migrated


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Fetched:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def get(port: int, path: str, **headers: str) -> Fetched:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path, headers={"Host": "localhost", **headers})
    response = conn.getresponse()
    fetched = Fetched(response.status, response.headers, response.read())
    conn.close()
    return fetched


def descendants(pid: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        children = [p for p, parent in parents.items() if parent == current]
        found.update(children)
        todo.extend(children)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.e2e
def test_serve_prod_serves_pages_and_static_files_and_stops_cleanly(tmp_path):
    port = free_port()
    env = production_env(tmp_path, ALLOWED_HOSTS="localhost", BEHIND_TLS_PROXY="1", PORT=str(port),
                         WEB_CONCURRENCY="1", WORKER_PROCESSES="1", Q_WORKERS="1",
                         STATIC_ROOT=str(tmp_path / "static"))
    log = (tmp_path / "serve_prod.log").open("w")
    proc = subprocess.Popen([sys.executable, "manage.py", "serve_prod"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    https = {"X-Forwarded-Proto": "https"}  # what the TLS proxy in front adds
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve_prod.log").read_text()
            try:
                login = get(port, "/admin/login/", **https)
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
                time.sleep(0.2)
        assert login.status == 200
        assert "Secure" in login.headers["Set-Cookie"]
        assert login.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        manifest = json.loads((tmp_path / "static" / "staticfiles.json").read_text())["paths"]
        assert f"/static/{manifest['admin/css/base.css']}".encode() in login.body  # hashed names

        css = get(port, f"/static/{manifest['web/app.css']}", **https)
        assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
        assert css.headers["Cache-Control"] == "max-age=315360000, public, immutable"

        plain = get(port, "/admin/login/")
        assert plain.status == 301 and plain.headers["Location"] == "https://localhost/admin/login/"
        assert get(port, "/healthz").status != 301  # a load balancer probes over plain HTTP

        children = descendants(proc.pid)
        commands = {Path(f"/proc/{p}/cmdline").read_bytes() for p in children if alive(p)}
        assert any(b"gunicorn" in c for c in commands) and any(b"qcluster" in c for c in commands)
    finally:
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            # The command's own bound (serve_prod.stop_seconds: a task's budget and its last
            # email, or gunicorn's grace) before it kills what is left: idle, it takes about a
            # second; on a machine busy with the rest of the suite it has taken over 15 s.
            proc.wait(timeout=stop_seconds() + 5)
        except subprocess.TimeoutExpired:
            # Each server runs in a session of its own and a qcluster forks again: kill the
            # groups too, and whatever was started since the list was taken (a qcluster that
            # outlived this once kept respawning workers against the deleted database).
            for pid in {proc.pid, *children, *descendants(proc.pid)}:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve_prod.log").read_text()
    deadline = time.monotonic() + 5
    while any(alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in children if alive(p)]
    assert "Stopped." in (tmp_path / "serve_prod.log").read_text()
