"""One log line per finished run and per step failure, with ids, status and duration; as JSON
with LOG_FORMAT=json; never an email body, a rendered template or the error's full text."""

import copy
import json
import logging
import logging.config
import os
import signal
import smtplib
import subprocess
import sys
import time

import pytest
from django.conf import settings

from crm_automation.automation.models import WorkflowRun
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, sqlite_pass_only, stage
from tests.test_e2e_qcluster import ROOT
from tests.test_error_policies import provider
from tests.test_health import free_port, get

SECRET_BODY = "Your door code is 4711-SECRET"


def json_formatter() -> logging.Formatter:
    """The formatter LOG_FORMAT=json configures, built from the settings' own LOGGING."""
    config = copy.deepcopy(settings.LOGGING)  # (configuring pops keys from the dict it is given)
    return logging.config.DictConfigurator(config).configure_formatter(config["formatters"]["json"])


def run_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "crm_automation.runs"]


def test_a_completed_run_is_one_info_line_with_its_ids_and_duration(org, deal, caplog,
                                                                    django_capture_on_commit_callbacks):
    workflow = make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    caplog.set_level(logging.INFO, logger="crm_automation.runs")
    with django_capture_on_commit_callbacks(execute=True):
        drain()
    run = WorkflowRun.objects.get()
    (line,) = run_lines(caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage() == (f"Run {run.pk} completed in {line.duration_ms} ms: workflow {workflow.pk} “Kickoff” "
                                 f"v1, organization {org.pk} (deal_stage_change)")
    data = json.loads(json_formatter().format(line))
    assert {k: data[k] for k in ("level", "logger", "run_id", "workflow_id", "workflow", "version", "organization_id",
                                 "status", "trigger_type")} == {
        "level": "INFO", "logger": "crm_automation.runs", "run_id": run.pk, "workflow_id": workflow.pk,
        "workflow": "Kickoff", "version": 1, "organization_id": org.pk, "status": "completed",
        "trigger_type": "deal_stage_change"}
    assert isinstance(data["duration_ms"], int) and data["duration_ms"] >= 0 and "time" in data


def test_a_failure_logs_the_step_and_the_run_without_its_body_or_full_error(org, deal, caplog, monkeypatch,
                                                                           django_capture_on_commit_callbacks):
    # The provider refuses the message and quotes it back: the step's error has it, the log must not.
    provider(monkeypatch, smtplib.SMTPDataError(554, f"refused for ada@example.com: {SECRET_BODY}".encode()))
    make_workflow(org, actions=[
        {"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Code", "body": SECRET_BODY}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    caplog.set_level(logging.INFO, logger="crm_automation.runs")
    with django_capture_on_commit_callbacks(execute=True):
        drain()
    run = WorkflowRun.objects.get()
    assert run.status in ("failed", "partial"), run.status
    step, finished = run_lines(caplog)
    for record in caplog.records:  # nothing logged by this run quotes the provider's answer
        assert "SECRET" not in record.getMessage() and "ada@example.com" not in record.getMessage()
    assert step.levelno == finished.levelno == logging.WARNING
    failed = run.actions.get(action_type="send_email")
    assert SECRET_BODY in failed.error  # what the log leaves out is on the step, for the run page
    assert (step.run_id, step.node_id, step.action_type, step.attempt) == (run.pk, failed.node_id, "send_email", 1)
    assert finished.run_id == run.pk and finished.status == run.status
    assert finished.error_kind.startswith("Send email") and finished.getMessage().endswith(finished.error_kind)
    formatter = json_formatter()
    for record in (step, finished):
        text = formatter.format(record)
        json.loads(text)
        assert "SECRET" not in text and "no_such_field" not in text and "ada@example.com" not in text


def test_a_rolled_back_segment_logs_nothing(org, deal, caplog):
    """Without a commit (the test's transaction never commits) there is no line: a run is logged
    once, by the transaction that finished it."""
    make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    caplog.set_level(logging.INFO, logger="crm_automation.runs")
    drain()
    assert WorkflowRun.objects.get().status == "completed"
    assert run_lines(caplog) == []


@pytest.mark.slow
@sqlite_pass_only("it makes its own SQLite database")
def test_log_format_json_makes_every_line_a_json_object(tmp_path):
    """A real process with LOG_FORMAT=json: what it writes to stderr parses line by line."""
    env = {**os.environ, "LOG_FORMAT": "json", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "LOG_LEVEL": "INFO"}
    code = ("import logging; logging.getLogger('crm_automation.runs').warning('Run %s failed', 7, "
            "extra={'run_id': 7, 'status': 'failed'}); logging.getLogger('django').info('ünïcode')")
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert [(d["logger"], d["message"]) for d in lines] == [("crm_automation.runs", "Run 7 failed"),
                                                             ("django", "ünïcode")]
    assert lines[0]["run_id"] == 7 and lines[0]["level"] == "WARNING"
    env["LOG_FORMAT"] = "xml"
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0 and "LOG_FORMAT must be text or json" in done.stderr


@pytest.mark.slow
@sqlite_pass_only("it makes its own SQLite database")
def test_gunicorn_logs_in_the_same_json_as_django(tmp_path):
    """`make prod`'s web server with LOG_FORMAT=json: its start-up and access lines parse too."""
    port = free_port()
    env = {**os.environ, "LOG_FORMAT": "json", "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi:application", "--config",
                             "python:config.gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
                             "--access-logfile", "-", "--error-logfile", "-"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert get(port, "/healthz")[0] == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers, output
    (access,) = [line for line in lines if line["logger"] == "gunicorn.access"]
    assert '"GET /healthz HTTP/1.1" 200' in access["message"]
