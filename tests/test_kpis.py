"""A workflow's health: success rates, durations, runs per day, failures by kind, retries and
the organization's backlog — on its Health tab and in the API, 404 for other organizations."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.automation.ops import kpis
from tests.conftest import make_workflow
from tests.test_breaker import runs


@pytest.fixture
def workflow(org, owner):
    workflow = make_workflow(org, name="Kickoff")
    runs(workflow, failed=2, completed=8, ago=timedelta(hours=2))
    WorkflowRun.objects.filter(status="failed").update(
        error="Step 3 (Send email) failed: email not sent: the email provider did not take it: timeout")
    return workflow


def test_the_figures(workflow):
    run = WorkflowRun.objects.filter(status="completed").first()
    WorkflowRunAction.objects.create(run=run, node_id="a", position=1, action_type="send_email", status="completed",
                                     attempts=3)
    health = kpis.workflow_health(workflow)
    assert (health.success_rate_recent, health.recent_runs) == (0.8, 10)
    assert health.median_seconds == pytest.approx(1.0)
    assert health.runs_per_day == pytest.approx(10 / 7, abs=0.1)
    assert health.failures == [("Send email: email not sent", 2)]
    assert (health.retried_steps, health.retries_succeeded, health.retry_success_rate) == (1, 1, 1.0)


def test_the_failure_kinds_in_words():
    assert kpis.failure_kind("Step 2 (Create task) failed: title is longer than 5000 characters; nothing") == \
        "Create task: title is longer than 5000 characters"
    assert kpis.failure_kind("gave up after 5 attempts: the worker stopped") == "gave up after 5 attempts"


def test_the_health_tab_and_the_api(workflow, owner, viewer, outsider):
    for user in (owner, viewer):
        client = Client()
        client.force_login(user)
        page = client.get(f"/crm/automation/workflows/{workflow.pk}/health/").content.decode()
        assert "80 % succeeded" in page and "Send email: email not sent" in page
    api = APIClient()
    api.force_authenticate(owner)
    body = api.get(f"/api/v1/workflows/{workflow.pk}/health/").json()
    assert body["success_rate_recent"] == 0.8 and body["failures"] == [{"kind": "Send email: email not sent",
                                                                         "runs": 2}]
    api.force_authenticate(outsider)
    assert api.get(f"/api/v1/workflows/{workflow.pk}/health/").status_code == 404
    outsider_page = Client()
    outsider_page.force_login(outsider)
    assert outsider_page.get(f"/crm/automation/workflows/{workflow.pk}/health/").status_code == 404


def test_a_busy_workflow_is_measured_from_its_last_thousand_runs(org, owner):
    busy = make_workflow(org, name="Busy")
    runs(busy, failed=0, completed=1000, ago=timedelta(hours=1))
    WorkflowRun.objects.filter(workflow=busy).update(started_at=timezone.now() - timedelta(hours=12))
    assert kpis.workflow_health(busy).runs_per_day == pytest.approx(2000, rel=0.05)
