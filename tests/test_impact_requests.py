"""Who may queue an impact preview, and how many: a replay is worker work, so ops and admins start
one and a viewer joins one under way or reads the latest; one is in flight per workflow and window
(7, 30 or 90 days), and repeated or racing asks join it (a partial unique constraint, not a
check-then-insert)."""

import threading

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from rest_framework.test import APIClient

from crm_automation.automation.models import ImpactPreview, Workflow
from crm_automation.automation.runtime.tasks import impact_preview
from crm_automation.automation.services import impact
from tests.conftest import make_workflow
from tests.racing import race
from tests.test_impact import FLOW, deals_won


@pytest.fixture
def draft(org):
    return make_workflow(org, name="Sort", activate=False, actions=FLOW[0], graph={"edges": FLOW[1]})


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def ask(client: APIClient, workflow, days):
    return client.get(f"/api/v1/workflows/{workflow.pk}/impact/", {"days": days})


def test_a_viewer_asking_every_window_queues_nothing(draft, viewer, django_capture_on_commit_callbacks):
    client = api(viewer)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        answers = [ask(client, draft, days) for days in range(1, 31)]
    assert not ImpactPreview.objects.exists() and queued == []
    assert {a.status_code for d, a in zip(range(1, 31), answers, strict=True) if d not in (7, 30)} == {400}
    assert "must be one of 7, 30, 90" in str(answers[0].json())
    refused = answers[29]  # 30 days: a window, but nothing to read and no right to start one
    assert refused.status_code == 403 and "needs the ops role" in refused.json()["detail"]
    page = Client()
    page.force_login(viewer)
    text = page.get(f"/crm/automation/workflows/{draft.pk}/impact/?days=30").content.decode()
    assert "No preview over the last 30 days has been worked out yet" in text and 'http-equiv="refresh"' not in text
    assert not ImpactPreview.objects.exists()


def test_repeated_asks_join_the_one_in_flight(draft, teammate, owner, django_capture_on_commit_callbacks):
    page = Client()
    page.force_login(teammate)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        for _ in range(3):
            assert ask(api(teammate), draft, 30).status_code == 202
            assert ask(api(owner), draft, 30).status_code == 202
            assert page.get(f"/crm/automation/workflows/{draft.pk}/impact/?days=30").status_code == 200
        assert ask(api(owner), draft, 7).status_code == 202  # another window: its own replay
    assert sorted(ImpactPreview.objects.values_list("days", "status")) == [(7, "queued"), (30, "queued")]
    assert len(queued) == 2  # one task per replay handed to the workers
    # Saved meanwhile: asks join the replay under way; the next one after it starts anew.
    Workflow.objects.filter(pk=draft.pk).update(draft_revision=draft.draft_revision + 1)
    with django_capture_on_commit_callbacks(execute=False):
        assert ask(api(owner), draft, 30).status_code == 202
    assert ImpactPreview.objects.filter(days=30).count() == 1
    impact_preview(ImpactPreview.objects.get(days=30).pk)
    with django_capture_on_commit_callbacks(execute=False):
        assert ask(api(owner), draft, 30).status_code == 202
    assert list(ImpactPreview.objects.filter(days=30).values_list("status", "revision").order_by("pk")) == [
        ("done", draft.draft_revision), ("queued", draft.draft_revision + 1)]


def test_a_viewer_joins_one_under_way_then_reads_the_latest(org, contact, draft, teammate, viewer,
                                                            django_capture_on_commit_callbacks):
    deals_won(org, contact, [20000, 5000])
    with django_capture_on_commit_callbacks(execute=False):
        started = ask(api(teammate), draft, 30)
    assert started.status_code == 202
    joined = ask(api(viewer), draft, 30)
    assert joined.status_code == 202 and ImpactPreview.objects.count() == 1
    impact_preview(ImpactPreview.objects.get().pk)
    body = ask(api(viewer), draft, 30).json()
    assert (body["entered"], body["revision"], body["current"]) == (2, draft.draft_revision, True)
    Workflow.objects.filter(pk=draft.pk).update(draft_revision=draft.draft_revision + 1)  # someone saved it
    stale = ask(api(viewer), draft, 30)
    assert stale.status_code == 200 and stale.json()["current"] is False and ImpactPreview.objects.count() == 1
    page = Client()
    page.force_login(viewer)
    text = page.get(f"/crm/automation/workflows/{draft.pk}/impact/?days=30").content.decode()
    assert "<strong>2</strong> of 3 recorded changes" in text and "before the workflow's latest changes" in text
    assert "Someone with the ops or admin role can work out a new one" in text
    assert ImpactPreview.objects.count() == 1


def test_the_database_holds_one_in_flight_per_workflow_and_window(draft):
    first = ImpactPreview.objects.create(organization=draft.organization, workflow=draft, days=30, revision=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        ImpactPreview.objects.create(organization=draft.organization, workflow=draft, days=30, revision=2,
                                     status=ImpactPreview.Status.RUNNING)
    ImpactPreview.objects.create(organization=draft.organization, workflow=draft, days=7, revision=1)
    ImpactPreview.objects.filter(pk=first.pk).update(status=ImpactPreview.Status.DONE)
    ImpactPreview.objects.create(organization=draft.organization, workflow=draft, days=30, revision=2)
    assert ImpactPreview.objects.filter(days=30).count() == 2


@pytest.mark.django_db(transaction=True)
def test_asks_racing_each_other_make_one_preview(monkeypatch):
    from tests.conftest import make_org, make_user

    org = make_org("acme")
    user = make_user("ops", org, "ops")
    workflow = make_workflow(org, name="Sort", activate=False, actions=FLOW[0], graph={"edges": FLOW[1]})
    # Every contender has looked and found nothing before any of them inserts: the worst race.
    all_looked = threading.Barrier(4)
    checked = impact.may_start
    monkeypatch.setattr(impact, "may_start", lambda by, wf: all_looked.wait() is not None and checked(by, wf))
    monkeypatch.setattr(impact, "_enqueue", lambda preview_id: None)
    made = race(lambda: impact.preview_request(Workflow.objects.get(pk=workflow.pk), days=30, by=user).pk)
    assert len(made) == 4 and len(set(made)) == 1
    assert ImpactPreview.objects.count() == 1
