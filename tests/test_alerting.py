"""Alerts: a workflow succeeding in under 95 % (warning) or 80 % (critical) of its last hour's
runs, runs twice as slow as usual, or more than 1,000 changes waiting: the admins are told in
the app and by email once per incident; the incident closes when the condition ends."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from crm_automation.automation.models import AlertIncident, AutomationEvent, WorkflowRun
from crm_automation.automation.ops import alerts as alerting
from crm_automation.crm.models import Notification
from tests.conftest import make_workflow
from tests.test_breaker import runs


@pytest.fixture
def workflow(org, owner):
    return make_workflow(org, name="Kickoff")


def test_a_low_success_rate_warns_then_turns_critical_and_is_told_once_each(workflow, owner):
    runs(workflow, failed=2, completed=18)  # 90 %
    alerting.check()
    alerting.check()
    incident = AlertIncident.objects.get()
    assert (incident.kind, incident.level) == ("success_rate", "warning")
    assert "18 of the 20 runs" in incident.detail
    assert Notification.objects.filter(user=owner).count() == 1 and len(mail.outbox) == 1
    assert mail.outbox[0].subject == "Warning: “Kickoff” succeeds in 90 % of its runs"
    assert "/crm/automation/runs/?workflow=" in mail.outbox[0].body
    runs(workflow, failed=10, completed=0)  # 18 of 30: 60 %
    alerting.check()
    assert AlertIncident.objects.get().level == "critical"
    assert len(mail.outbox) == 2


def test_the_incident_closes_when_the_rate_recovers_and_the_list_shows_open_ones(workflow, owner):
    runs(workflow, failed=5, completed=15)
    alerting.check()
    client = Client()
    client.force_login(owner)
    assert "succeeded (75 %" in client.get("/crm/automation/").content.decode()
    WorkflowRun.objects.filter(status="failed").update(status="completed")
    alerting.check()
    assert AlertIncident.objects.get().closed_at is not None
    assert "succeeded (" not in client.get("/crm/automation/").content.decode()


def test_runs_twice_as_slow_as_usual_warn(workflow):
    runs(workflow, failed=0, completed=30, ago=timedelta(days=2))  # baseline: 1 s each
    runs(workflow, failed=0, completed=25)
    WorkflowRun.objects.filter(started_at__gte=timezone.now() - timedelta(hours=1)).update(
        finished_at=timezone.now())  # about 60 s each now
    alerting.check()
    incident = AlertIncident.objects.get(kind="slow")
    assert incident.detail.endswith("their usual 1.0 s.") and incident.level == "warning"


def test_a_backlog_over_the_threshold_warns_the_organization(org, owner, settings):
    settings.AUTOMATION = {**settings.AUTOMATION, "ALERTS": {**settings.AUTOMATION["ALERTS"], "BACKLOG": 5}}
    AutomationEvent.objects.bulk_create([
        AutomationEvent(organization=org, kind="deal_stage_change", entity_type="deal", payload={},
                        entity_id=f"00000000-0000-0000-0000-{i:012d}") for i in range(6)])
    alerting.check()
    assert AlertIncident.objects.get(kind="backlog").detail.startswith("6 changes wait")
    AutomationEvent.objects.update(processed_at=timezone.now())
    alerting.check()
    assert AlertIncident.objects.get(kind="backlog").closed_at is not None


def test_few_runs_say_nothing(workflow):
    runs(workflow, failed=5, completed=5)
    alerting.check()
    assert not AlertIncident.objects.exists()
