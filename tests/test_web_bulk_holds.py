"""The Bulk holds pages: the organization's holds (pending first), one hold with a sample of its
records, and release / discard for admins. Viewers and ops members read; another organization's
hold is a 404 to everyone, for reading and for deciding."""

import pytest
from django.test import Client

from crm_automation.automation.models import BulkHold, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.automation.triggers.bulk import bulk_hold_discard
from crm_automation.crm.models import Lead, Notification, Task
from crm_automation.crm.services import leads_import
from tests.conftest import drain
from tests.test_bulk_by_source import rows, welcome


def held(org, by, *, records=8, mode="hold") -> BulkHold:
    """An import of `records` leads held (or digested) by a new “Welcome” workflow."""
    workflow = welcome(org, mode, over=5)
    leads_import(organization_id=org.pk, rows=rows(records), by=by)
    drain()
    return BulkHold.objects.get(workflow=workflow)


def client_of(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def hold(org, owner):
    return held(org, owner)


def test_the_list_shows_pending_holds_first_then_the_newest(org, owner, hold):
    bulk_hold_discard(hold_id=hold.pk, by=owner)
    leads_import(organization_id=org.pk, rows=rows(6), by=owner)  # a second operation: a second hold
    drain()
    waiting = BulkHold.objects.get(status="pending")
    listing = client_of(owner).get("/crm/automation/bulk-holds/").content.decode()
    assert listing.index(f'id="hold-{waiting.pk}"') < listing.index(f'id="hold-{hold.pk}"')
    assert f'<a href="/crm/automation/workflows/{hold.workflow_id}/edit/">Welcome</a>' in listing
    assert "Import" in listing and "Waiting for review" in listing and "Discarded: no runs" in listing
    assert f'href="/crm/automation/bulk-holds/{waiting.pk}/"' in listing and "owner, " in listing
    assert 'href="/crm/automation/bulk-holds/" aria-current="page">Bulk holds</a>' in listing


def test_an_empty_list_says_what_holds_are_and_how_to_turn_them_on(org, owner, other_org, outsider):
    held(other_org, outsider)
    listing = client_of(owner).get("/crm/automation/bulk-holds/").content.decode()
    assert "No bulk holds." in listing and "bulk: {mode: hold, over: 100}" in listing
    assert "Welcome" not in listing


def test_one_hold_shows_its_operation_and_some_of_its_records(org, owner, hold):
    detail = client_of(owner).get(f"/crm/automation/bulk-holds/{hold.pk}/").content.decode()
    assert "Welcome: an import of 8 records" in detail
    lead = Lead.objects.get(name="Lead 3")
    assert f'<a href="/crm/automation/records/lead/{lead.pk}/">Lead 3</a>' in detail
    assert "Run the workflow for 8 records" in detail and "Discard: run nothing" in detail
    assert 'name="csrfmiddlewaretoken"' in detail


def test_releasing_queues_a_run_per_record(org, owner, hold):
    response = client_of(owner).post(f"/crm/automation/bulk-holds/{hold.pk}/release/", follow=True)
    assert response.redirect_chain == [(f"/crm/automation/bulk-holds/{hold.pk}/", 302)]
    text = response.content.decode()
    assert "Released: 8 runs queued." in text and "Run the workflow for" not in text
    assert "by owner" in text
    continue_runs(list(WorkflowRun.objects.values_list("pk", flat=True)))
    assert Task.objects.filter(title__startswith="Welcome Lead").count() == 8
    hold.refresh_from_db()
    assert (hold.status, hold.decided_by) == ("released", owner)


def test_discarding_starts_nothing(org, owner, hold):
    response = client_of(owner).post(f"/crm/automation/bulk-holds/{hold.pk}/discard/", follow=True)
    assert "Discarded: nothing will run." in response.content.decode()
    assert not WorkflowRun.objects.exists()
    assert BulkHold.objects.get(pk=hold.pk).status == "discarded"


def test_a_hold_decided_already_is_left_as_it_is(org, owner, hold):
    client = client_of(owner)
    client.post(f"/crm/automation/bulk-holds/{hold.pk}/discard/")
    again = client.post(f"/crm/automation/bulk-holds/{hold.pk}/release/", follow=True).content.decode()
    assert "Nothing changed: this hold was already discarded by owner." in again
    assert "Run the workflow for" not in again and "Discard:" not in again
    assert not WorkflowRun.objects.exists() and BulkHold.objects.get(pk=hold.pk).status == "discarded"


def test_a_digest_is_shown_but_there_is_nothing_to_decide(org, owner):
    digest = held(org, owner, mode="digest")
    client = client_of(owner)
    assert "Ran once as a digest" in client.get(f"/crm/automation/bulk-holds/{digest.pk}/").content.decode()
    refused = client.post(f"/crm/automation/bulk-holds/{digest.pk}/release/", follow=True).content.decode()
    assert "ran once as a digest; there is nothing to release" in refused
    assert WorkflowRun.objects.count() == 1


@pytest.mark.parametrize("who", ["viewer", "teammate"])
def test_viewers_and_ops_members_see_holds_but_cannot_decide(org, owner, viewer, teammate, hold, who):
    client = client_of({"viewer": viewer, "teammate": teammate}[who])
    detail = client.get(f"/crm/automation/bulk-holds/{hold.pk}/").content.decode()
    assert "Welcome: an import of 8 records" in detail and "Run the workflow for" not in detail
    assert "Waiting for an admin" in detail
    for how in ("release", "discard"):
        assert client.post(f"/crm/automation/bulk-holds/{hold.pk}/{how}/").status_code == 403
    assert BulkHold.objects.get(pk=hold.pk).status == "pending" and not WorkflowRun.objects.exists()


def test_another_organizations_hold_is_not_there(org, owner, outsider, hold):
    client = client_of(outsider)
    assert "Welcome" not in client.get("/crm/automation/bulk-holds/").content.decode()
    assert client.get(f"/crm/automation/bulk-holds/{hold.pk}/").status_code == 404
    for how in ("release", "discard"):
        assert client.post(f"/crm/automation/bulk-holds/{hold.pk}/{how}/").status_code == 404
    assert BulkHold.objects.get(pk=hold.pk).status == "pending"


def test_anonymous_visitors_are_sent_to_log_in_and_get_only_posts(hold, owner):
    for url in ("/crm/automation/bulk-holds/", f"/crm/automation/bulk-holds/{hold.pk}/"):
        assert "/admin/login/" in Client().get(url)["Location"]
    assert Client().post(f"/crm/automation/bulk-holds/{hold.pk}/release/").status_code == 302
    assert client_of(owner).get(f"/crm/automation/bulk-holds/{hold.pk}/release/").status_code == 405
    assert BulkHold.objects.get(pk=hold.pk).status == "pending"


def test_the_notification_opens_the_hold(org, owner, hold):
    (note,) = Notification.objects.filter(user=owner)
    assert note.link == f"/crm/automation/bulk-holds/{hold.pk}/"
    assert "Run the workflow for 8 records" in client_of(owner).get(note.link).content.decode()
