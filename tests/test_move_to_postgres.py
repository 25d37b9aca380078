"""The move from the embedded SQLite database to PostgreSQL, exactly as docs/operations.md says:
dumpdata from SQLite, migrate an empty PostgreSQL database, loaddata. Every row of every table
arrives (the demo organization has every kind: workflows and versions, runs and steps, events,
webhooks with encrypted secrets, schedules), logins still work, and new work continues after
the old ids (the sequences were moved past them)."""

import json
import os
import subprocess
import sys

import psycopg
import pytest
from django.db import connection

from tests.test_e2e_qcluster import ROOT

ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# The documented command (docs/operations.md, "From SQLite to PostgreSQL").
DUMP = ["dumpdata", "--natural-foreign", "--natural-primary", "-e", "contenttypes", "-e", "auth.permission",
        "-e", "sessions", "-e", "django_q.ormq", "-e", "django_q.task"]
PREPARE = (  # the demo organization, its events run, an inbound webhook endpoint with its encrypted secret
    "from django.core.management import call_command; call_command('migrate', verbosity=0); "
    "call_command('seed_demo', stdout=open('/dev/null', 'w')); "
    "from django.contrib.auth import get_user_model; from crm_automation.crm.models import Organization; "
    "from crm_automation.webhooks.services import webhook_endpoint_create; "
    "from crm_automation.automation.runtime.tasks import drain_events; drain_events(fan_out=False); "
    "webhook_endpoint_create(organization=Organization.objects.get(slug='demo'), name='Forms', "
    "by=get_user_model().objects.get(username='demo'))")
COUNT_EVERY_TABLE = (
    "import json; from django.apps import apps; "
    "print(json.dumps({m._meta.label: m._default_manager.count() for m in apps.get_models()}))")
WORK_AND_LOGIN = (
    "import json; from django.contrib.auth import authenticate; "
    "from crm_automation.crm.models import Deal, Stage; "
    "from crm_automation.crm.services import deal_move_to_stage; "
    "from crm_automation.automation.models import WorkflowRun; "
    "from crm_automation.automation.runtime.tasks import drain_events; "
    "from crm_automation.webhooks.models import WebhookEndpoint, WebhookTarget; "
    "before = WorkflowRun.objects.order_by('-pk').values_list('pk', flat=True).first() or 0; "
    "d = Deal.objects.exclude(stage__slug='won').filter(organization__slug='demo').first(); "
    "deal_move_to_stage(deal=d, stage=Stage.objects.get(organization=d.organization, slug='won')); "
    "drain_events(fan_out=False); "
    "new = list(WorkflowRun.objects.filter(pk__gt=before).values_list('status', flat=True)); "
    "hooks = [*WebhookEndpoint.objects.all(), *WebhookTarget.objects.all()]; "
    "password = open('{password_file}').read().strip(); "
    "print(json.dumps({'new_runs': new, 'secrets': [w.secret.startswith('whsec_') for w in hooks], "
    "'login': authenticate(username='demo', password=password) is not None}))")


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.e2e
def test_sqlite_to_postgresql_keeps_every_row_and_work_goes_on(tmp_path, db):
    if connection.vendor == "postgresql":
        pytest.skip("it makes its own databases: the SQLite pass of the suite runs it")
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL at 127.0.0.1")
    name = f"crm_move_{os.getpid()}"
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{name}"')
    base = {**os.environ, "LOG_LEVEL": "WARNING", "AUTOMATION_NUDGE": "0", "VAR_DIR": str(tmp_path)}
    sqlite = {**base, "DATABASE_URL": f"sqlite:///{tmp_path / 'crm.sqlite3'}"}
    postgres = {**base, "DATABASE_URL": f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"}
    try:
        # (the preparation and the counts in one process each: every process start costs a second)
        before = json.loads(manage(sqlite, "shell", "-v0", "-c", f"{PREPARE}; {COUNT_EVERY_TABLE}"))
        assert before["automation.WorkflowRun"] > 0 and before["automation.WorkflowRunAction"] > 0
        assert before["webhooks.WebhookEndpoint"] + before["webhooks.WebhookTarget"] > 0

        dump = tmp_path / "crm.json.gz"
        manage(sqlite, *DUMP, "-o", str(dump))
        manage(postgres, "migrate", "-v0")
        manage(postgres, "loaddata", str(dump))

        check = WORK_AND_LOGIN.replace("{password_file}", str(tmp_path / "demo-password.txt"))
        counted_and_checked = manage(postgres, "shell", "-v0", "-c", f"{COUNT_EVERY_TABLE}; {check}")
        after, moved = map(json.loads, counted_and_checked.splitlines())
        left_out = {"contenttypes.ContentType", "auth.Permission", "sessions.Session", "django_q.OrmQ",
                    "django_q.Task", "django_q.Success", "django_q.Failure"}
        assert {k: v for k, v in after.items() if k not in left_out} == {
            k: v for k, v in before.items() if k not in left_out}
        assert moved["new_runs"] and set(moved["new_runs"]) == {"completed"}  # new ids after the old ones
        assert moved["secrets"] and all(moved["secrets"])  # encrypted webhook secrets still read (same key)
        assert moved["login"]  # the demo user's password moved with it
        assert "READY" in manage(postgres, "automation_status")
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
