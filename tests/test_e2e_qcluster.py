"""End to end: a real `qcluster` process picks the change up and completes the run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from crm_automation.automation.models import WorkflowRun
from crm_automation.crm.models import Deal, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import make_workflow, stage

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    host = s["HOST"] or "127.0.0.1"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def qcluster(transactional_db):
    env = {**os.environ, "DATABASE_URL": database_url(), "Q_WORKERS": "1", "AUTOMATION_NUDGE": "1"}
    env.pop("REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    yield proc
    proc.send_signal(signal.SIGTERM)  # the cluster's own shutdown stops its workers
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.e2e
def test_a_real_worker_cluster_completes_the_run(qcluster, org, deal, settings):
    settings.AUTOMATION = {**settings.AUTOMATION, "NUDGE": True}
    make_workflow(org)
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = WorkflowRun.objects.filter(status__in=["completed", "partial", "failed"]).first()
        if run is not None:
            break
        time.sleep(0.1)
    else:
        qcluster.terminate()
        pytest.fail("no run completed within 60 s:\n" + qcluster.stdout.read().decode()[-3000:])
    assert run.status == "completed"
    assert Task.objects.get().title == "Kick off Website"
    assert Deal.objects.get(pk=deal.pk).probability == 100
