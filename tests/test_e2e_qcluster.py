"""End to end: a change made in one process, a real `qcluster` process completes the run —
on the ORM broker and on Redis."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from crm_automation.automation.models import WorkflowRun
from crm_automation.crm.models import Deal, Task
from tests.conftest import make_workflow

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MOVE = ("from crm_automation.crm.models import Deal, Stage; from crm_automation.crm.services import "
        "deal_move_to_stage as move; d = Deal.objects.get(pk='{pk}'); "
        "move(deal=d, stage=Stage.objects.get(organization=d.organization, slug='won'))")


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    host = s["HOST"] or "127.0.0.1"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{host}:{s['PORT'] or 5432}/{s['NAME']}"


def environment(broker: str) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url(), "Q_WORKERS": "1", "AUTOMATION_NUDGE": "1"}
    env.pop("REDIS_URL", None)
    if broker == "redis":
        import redis

        redis.Redis.from_url(REDIS_URL).flushdb()  # this database number belongs to the tests
        env["REDIS_URL"] = REDIS_URL
    return env


def start_cluster(env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_cluster(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9, the whole cluster: nothing shuts down cleanly
    proc.wait()


@pytest.fixture(params=["orm", "redis"])
def qcluster(request, transactional_db):
    env = environment(request.param)
    proc = start_cluster(env)
    env["_cluster"] = proc
    yield env
    proc = env["_cluster"]
    proc.send_signal(signal.SIGTERM)  # the cluster's own shutdown stops its workers
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        kill_cluster(proc)


def child_env(env: dict) -> dict:
    return {k: v for k, v in env.items() if not k.startswith("_")}


@pytest.mark.e2e
def test_a_real_worker_cluster_completes_the_run(qcluster, org, deal):
    make_workflow(org)
    # A separate, short-lived process makes the change: its nudge is sent when it exits.
    subprocess.run([sys.executable, "manage.py", "shell", "-c", MOVE.format(pk=deal.pk)], cwd=ROOT,
                   env=child_env(qcluster), check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30  # well under the one-minute sweep: the nudge did it
    while time.monotonic() < deadline:
        run = WorkflowRun.objects.exclude(status="started").first()
        if run is not None:
            break
        time.sleep(0.1)
    else:
        pytest.fail("no run completed within 30 s")
    assert run.status == "completed"
    assert Task.objects.get().title == "Kick off Website"
    assert Deal.objects.get(pk=deal.pk).probability == 100


@pytest.mark.e2e
def test_a_wait_is_woken_by_the_running_cluster(qcluster, org, deal):
    """Nothing pokes the cluster after the wait: its watchdog notices the wake-up time."""
    make_workflow(org, actions=[{"type": "wait", "config": {"delayAmount": 2, "delayUnit": "seconds"}},
                                {"type": "create_task", "config": {"title": "After the wait"}}])
    subprocess.run([sys.executable, "manage.py", "shell", "-c", MOVE.format(pk=deal.pk)], cwd=ROOT,
                   env=child_env(qcluster), check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and not Task.objects.exists():
        time.sleep(0.2)
    run = WorkflowRun.objects.get()
    assert Task.objects.get().title == "After the wait", run.status
    assert run.actions.get(node_id="wait").status == "completed"


@pytest.mark.e2e
def test_a_wait_survives_the_cluster_being_killed_and_started_again(qcluster, org, deal):
    """The run parks in the database: a cluster killed with -9 while it waits, and a new one
    started after its time, still finish it, once."""
    make_workflow(org, actions=[{"type": "wait", "config": {"delayAmount": 3, "delayUnit": "seconds"}},
                                {"type": "create_task", "config": {"title": "After the restart"}}])
    subprocess.run([sys.executable, "manage.py", "shell", "-c", MOVE.format(pk=deal.pk)], cwd=ROOT,
                   env=child_env(qcluster), check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not WorkflowRun.objects.filter(status="waiting").exists():
        time.sleep(0.1)
    waiting = WorkflowRun.objects.get()
    assert waiting.status == "waiting"
    kill_cluster(qcluster["_cluster"])
    # Its time passes while no worker runs: until half a second after it.
    time.sleep(max(0.0, (waiting.wake_at - timezone.now()).total_seconds()) + 0.5)
    assert not Task.objects.exists()
    qcluster["_cluster"] = start_cluster(child_env(qcluster))
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline and not Task.objects.exists():
        time.sleep(0.2)
    assert Task.objects.get().title == "After the restart" and WorkflowRun.objects.get().status == "completed"


@pytest.mark.e2e
def test_a_worker_killed_while_the_model_thinks_asks_again_under_the_same_key_once(qcluster, org, deal, settings):
    """kill -9 of the cluster while an agent's question is with the model: a new cluster finds the
    question left `sending` once the dead worker's lease runs out, asks it again under the same
    key, and settles the step once: one AiCall (2 attempts), one step, one task after it."""
    from crm_automation.automation.models import AiCall
    from tests.http_receiver import Receiver
    from tests.test_ai_nodes import agent
    from tests.test_graph_engine import edge, task

    model = Receiver()
    try:
        model.reply(200, {}, delay=60)  # the first question: the model "thinks" until the kill
        model.reply(200, {"choices": [{"message": {"content": "Thanks Ada!"}}],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 3}})
        ai = {"AI_PROVIDER": "openai", "AI_MODEL": "gpt-test", "AI_BASE_URL": f"http://127.0.0.1:{model.port}/v1",
              "AI_TIMEOUT_SECONDS": "90", "Q_TIMEOUT": "200", "AUTOMATION_LEASE_SECONDS": "6"}
        settings.AI = {**settings.AI, "PROVIDER": "openai", "MODEL": "gpt-test", "BASE_URL": ai["AI_BASE_URL"]}
        kill_cluster(qcluster["_cluster"])  # started without a provider: start one with these settings
        env = {**child_env(qcluster), **ai}
        qcluster["_cluster"] = start_cluster(env)
        make_workflow(org, actions=[agent(), task("after", "Send: {{Draft SMS}}")],
                      graph={"edges": [edge("trigger", "draft"), edge("draft", "after")]})
        subprocess.run([sys.executable, "manage.py", "shell", "-c", MOVE.format(pk=deal.pk)], cwd=ROOT,
                       env=env, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not model.requests:
            time.sleep(0.05)
        assert len(model.requests) == 1, "the worker never asked the model"
        assert AiCall.objects.get().status == "sending"
        kill_cluster(qcluster["_cluster"])  # mid-question
        qcluster["_cluster"] = start_cluster(env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not WorkflowRun.objects.filter(status="completed").exists():
            time.sleep(0.2)
        run = WorkflowRun.objects.get()
        assert run.status == "completed", (run.status, run.error)
        assert len(model.requests) == 2  # asked again, not marked done without an answer
        assert model.requests[0]["body"] == model.requests[1]["body"]  # the same question
        call = AiCall.objects.get()
        assert (call.status, call.attempts, call.run_id) == ("succeeded", 2, run.pk)
        assert run.actions.filter(node_id="draft").count() == 1
        assert list(Task.objects.values_list("title", flat=True)) == ["Send: Thanks Ada!"]
    finally:
        model.close()
