"""GET /metrics: Prometheus text with the workflows' runs and durations, the backlog and the
oldest event per organization, runs under way and the wake-up lag; only with the token."""

import pytest
from django.test import Client

from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = "s3cret-scraper-token"
    return settings.METRICS_TOKEN


def scrape(token: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = Client().get("/metrics", headers=headers)
    return response.status_code, response.content.decode()


def value(text: str, line_start: str) -> float:
    line = next(x for x in text.splitlines() if x.startswith(line_start))
    return float(line.rsplit(" ", 1)[1])


def test_the_figures_come_from_counters_and_indexes(org, deal, token):
    workflow = make_workflow(org, name="Kickoff")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    status, text = scrape(token)
    assert status == 200
    assert value(text, 'crm_automation_events_backlog{organization="acme"}') >= 1
    assert value(text, 'crm_automation_oldest_event_age_seconds{organization="acme"}') >= 0
    drain()
    status, text = scrape(token)
    key = workflow.key
    assert value(text, f'crm_automation_workflow_runs_total{{organization="acme",outcome="succeeded",'
                       f'workflow="{key}"}}') == 1
    assert value(text, f'crm_automation_workflow_run_duration_median_seconds{{organization="acme",'
                       f'workflow="{key}"}}') >= 0
    assert 'crm_automation_events_backlog{organization="acme"}' not in text  # nothing pending now
    assert value(text, 'crm_automation_runs{status="waiting"}') == 0
    assert value(text, "crm_automation_wakeup_lag_seconds") == 0


def test_without_the_token_nothing_is_told(org, token):
    assert scrape(None)[0] == 401
    assert scrape("wrong")[0] == 401


def test_without_a_configured_token_there_is_no_endpoint(settings):
    settings.METRICS_TOKEN = ""
    assert scrape("anything")[0] == 404
