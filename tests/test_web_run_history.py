"""The run history below the workflow list: rows with the record's title as a link, steps in
words loaded on demand, filters, "load more" by cursor, retry / resume / cancel and bulk retry;
the approvals inbox and the record pages — for every role, 404 for other organizations."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.crm.models import Deal, Organization, Task
from tests.conftest import make_workflow
from tests.test_approvals import SIDES
from tests.test_graph_engine import win
from tests.test_run_controls import failed_email_run

LIST = "/crm/automation/"


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def kickoff_run(org, deal, owner):
    return win(org, deal, [{"id": "kick", "type": "create_task", "label": "Kickoff task",
                            "config": {"title": "Kick off {{deal.title}}"}}], [
        {"source": "trigger", "target": "kick"}], name="Won deal kickoff")


def test_a_run_is_listed_with_its_record_and_its_steps_read_as_sentences(org, owner, deal, kickoff_run):
    client = as_user(owner)
    text = client.get(LIST).content.decode()
    assert f'id="run-{kickoff_run.pk}"' in text and "Won deal kickoff" in text
    assert f'href="/crm/automation/records/deal/{deal.pk}/">Website</a>' in text
    assert "Completed" in text
    steps = client.get(f"/crm/automation/runs/{kickoff_run.pk}/", {"fragment": "1"})
    assert steps.status_code == 200 and "<html" not in steps.content.decode()
    task = Task.objects.get()
    assert f'created task <a href="/admin/crm/task/{task.pk}/change/">“Kick off Website”</a>' in steps.content.decode()
    page = client.get(f"/crm/automation/runs/{kickoff_run.pk}/").content.decode()  # without JavaScript
    assert "Kickoff task" in page and "<html" in page


def test_times_are_shown_with_seconds_in_the_organizations_time_zone(org, owner, kickoff_run):
    Organization.objects.filter(pk=org.pk).update(time_zone="Asia/Tokyo")
    text = as_user(owner).get(LIST).content.decode()
    shown = timezone.localtime(kickoff_run.started_at, timezone=ZoneInfo("Asia/Tokyo"))
    assert shown.strftime("%H:%M:%S JST") in text


def test_load_more_continues_after_the_last_run_shown(org, owner, kickoff_run):
    started = kickoff_run.started_at
    for i in range(30):  # 31 runs in all, one second apart, the kickoff run newest
        copy = WorkflowRun.objects.get(pk=kickoff_run.pk)
        copy.pk, copy.event_id = None, None
        copy.event = kickoff_run.event.__class__.objects.create(
            organization=org, kind="deal_stage_change", entity_type="deal", entity_id=kickoff_run.trigger_entity_id,
            payload={})
        copy.save()
        WorkflowRun.objects.filter(pk=copy.pk).update(started_at=started - timedelta(seconds=i + 1))
    client = as_user(owner)
    first = client.get(LIST).content.decode()
    assert first.count('<details class="run"') == 25 and "Load more" in first
    after = first.split("?after=")[1].split('"')[0]
    more = client.get("/crm/automation/runs/", {"after": after, "fragment": "1"}).content.decode()
    assert more.count('<details class="run"') == 6 and "Load more" not in more
    ids = {line.split('id="run-')[1].split('"')[0] for line in (first + more).splitlines() if 'id="run-' in line}
    assert len(ids - {"rows"}) == 31  # no run twice, none left out
    # Without JavaScript the link is a page of its own.
    assert "<html" in client.get("/crm/automation/runs/", {"after": after}).content.decode()


def test_filters_by_workflow_status_dates_and_record(org, owner, deal, kickoff_run):
    client = as_user(owner)
    today = timezone.localdate().isoformat()
    assert f"run-{kickoff_run.pk}" in client.get("/crm/automation/runs/", {
        "workflow": kickoff_run.workflow_id, "status": "completed", "since": today, "until": today,
        "record": str(deal.pk)}).content.decode()
    for miss in ({"status": "failed"}, {"since": "2099-01-01"}, {"until": "2000-01-01"},
                 {"record": "00000000-0000-0000-0000-000000000000"}, {"workflow": kickoff_run.workflow_id + 1}):
        assert f"run-{kickoff_run.pk}" not in client.get("/crm/automation/runs/", miss).content.decode(), miss
    bad = client.get("/crm/automation/runs/", {"since": "yesterday", "record": "x", "workflow": "9" * 40})
    assert bad.status_code == 200 and f"run-{kickoff_run.pk}" in bad.content.decode()


def test_retry_a_failed_run_from_its_page(org, deal, owner, viewer, monkeypatch):
    _, run = failed_email_run(org, deal, monkeypatch)
    page = as_user(owner).get(f"/crm/automation/runs/{run.pk}/").content.decode()
    assert "Retry</button>" in page and "Step 3 (Send email) failed" in page
    assert as_user(viewer).post(f"/crm/automation/runs/{run.pk}/retry/").status_code == 403
    response = as_user(owner).post(f"/crm/automation/runs/{run.pk}/retry/", follow=True)
    assert "will be retried" in response.content.decode()
    continue_runs([run.pk])
    assert WorkflowRun.objects.get(pk=run.pk).status == "completed"
    again = as_user(owner).post(f"/crm/automation/runs/{run.pk}/retry/", follow=True)
    assert again.status_code == 200 and "will be retried" not in again.content.decode()  # the service's reason


def test_bulk_retry_of_failures_since_a_date(org, deal, teammate, monkeypatch):
    wf, run = failed_email_run(org, deal, monkeypatch)
    client = as_user(teammate)
    today = timezone.localdate().isoformat()
    response = client.post("/crm/automation/runs/retry/", {"workflow": wf.pk, "since": today}, follow=True)
    assert "1 failed runs of “Kickoff”" in response.content.decode()
    assert "Give the date" in client.post("/crm/automation/runs/retry/", {"workflow": wf.pk}, follow=True
                                          ).content.decode()


def test_cancel_a_waiting_run(org, deal, teammate):
    run = win(org, deal, *SIDES)
    as_user(teammate).post(f"/crm/automation/runs/{run.pk}/cancel/")
    assert WorkflowRun.objects.get(pk=run.pk).status == "cancelled"


def test_the_approvals_inbox_answers_a_question_and_the_run_goes_on(org, deal, owner, teammate, outsider):
    run = win(org, deal, *SIDES)
    step = run.actions.get(node_id="ask")
    assert "Nothing waits for your answer" in as_user(teammate).get("/crm/automation/approvals/").content.decode()
    inbox = as_user(owner).get("/crm/automation/approvals/").content.decode()
    assert "Approve the terms of Website?" in inbox and "Website</a>" in inbox
    assert as_user(teammate).post(f"/crm/automation/approvals/{step.pk}/answer/",
                                  {"decision": "approved"}).status_code == 404
    assert as_user(outsider).post(f"/crm/automation/approvals/{step.pk}/answer/",
                                  {"decision": "approved"}).status_code == 404
    response = as_user(owner).post(f"/crm/automation/approvals/{step.pk}/answer/",
                                   {"decision": "approved", "comment": "fine"}, follow=True)
    assert "You approved" in response.content.decode()
    continue_runs([run.pk])
    assert WorkflowRun.objects.get(pk=run.pk).status == "completed"
    assert Task.objects.filter(title="Send Website terms (fine)").exists()


def test_a_bad_answer_changes_nothing(org, deal, owner):
    run = win(org, deal, *SIDES)
    step = run.actions.get(node_id="ask")
    response = as_user(owner).post(f"/crm/automation/approvals/{step.pk}/answer/", {"decision": "maybe"}, follow=True)
    assert "Answer approved or rejected" in response.content.decode()
    step.refresh_from_db()
    assert "decision" not in step.result


def test_the_record_page_shows_runs_and_why_and_starts_a_manual_workflow(org, deal, owner, viewer, kickoff_run):
    manual = make_workflow(org, name="Send the brochure", trigger_type="manual_deal", trigger_config={},
                           actions=[{"type": "create_task", "config": {"title": "Brochure for {{deal.title}}"}}])
    page = as_user(owner).get(f"/crm/automation/records/deal/{deal.pk}/").content.decode()
    assert "Won deal kickoff" in page and "Run workflow…" in page and "Send the brochure" in page
    assert "Matched" in page or "matched" in page
    assert "Run workflow…" not in as_user(viewer).get(f"/crm/automation/records/deal/{deal.pk}/").content.decode()
    response = as_user(owner).post(f"/crm/automation/records/deal/{deal.pk}/start/", {"workflow": manual.pk},
                                   follow=True)
    assert "Started “Send the brochure”" in response.content.decode()


def test_other_organizations_runs_records_and_questions_are_404(org, deal, outsider, kickoff_run):
    client = as_user(outsider)
    assert f"run-{kickoff_run.pk}" not in client.get(LIST).content.decode()
    for url in (f"/crm/automation/runs/{kickoff_run.pk}/", f"/crm/automation/records/deal/{deal.pk}/",
                "/crm/automation/records/task/00000000-0000-0000-0000-000000000000/"):
        assert client.get(url).status_code == 404, url
    for url in (f"/crm/automation/runs/{kickoff_run.pk}/cancel/", f"/crm/automation/records/deal/{deal.pk}/start/"):
        assert client.post(url).status_code == 404, url
    # Another organization's run id as the cursor just starts from the top.
    assert client.get("/crm/automation/runs/", {"after": kickoff_run.pk}).status_code == 200
    assert Deal.objects.filter(pk=deal.pk).exists()


def test_the_admins_deal_page_links_to_the_record_page(org, deal, owner, client):
    client.force_login(owner)
    page = client.get(f"/admin/crm/deal/{deal.pk}/change/").content.decode()
    assert f"/crm/automation/records/deal/{deal.pk}/" in page
