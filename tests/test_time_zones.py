"""A person reads every time in one zone, labelled: the organization's. The admin's run page and
the web run page show the same run's start identically; the API stays UTC."""

from datetime import UTC, datetime

import pytest
from django.test import Client

from crm_automation.automation.models import WorkflowRun
from crm_automation.crm.models import Membership, Organization
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_org, make_user, make_workflow, stage

pytestmark = pytest.mark.django_db
STARTED = datetime(2026, 12, 5, 13, 3, 7, tzinfo=UTC)
IN_BERLIN = "5 Dec 2026, 14:03:07 CET"  # 13:03 UTC in winter


@pytest.fixture
def run(org, deal) -> WorkflowRun:
    Organization.objects.filter(pk=org.pk).update(time_zone="Europe/Berlin")
    make_workflow(org, name="Kickoff")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get(organization=org)
    WorkflowRun.objects.filter(pk=run.pk).update(started_at=STARTED)
    return run


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_run_page_and_the_web_run_page_show_the_same_time_in_the_organizations_zone(run, owner):
    client = as_user(owner)
    admin_page = client.get(f"/admin/automation/workflowrun/{run.pk}/change/").content.decode()
    web_page = client.get(f"/crm/automation/runs/{run.pk}/").content.decode()
    assert IN_BERLIN in web_page
    assert IN_BERLIN in admin_page
    assert "13:03" not in admin_page  # not UTC, unlabelled or otherwise


def test_the_admin_lists_and_the_deal_page_use_the_zone_too(run, owner, deal):
    client = as_user(owner)
    assert IN_BERLIN in client.get("/admin/automation/workflowrun/").content.decode()
    assert IN_BERLIN in client.get(f"/admin/crm/deal/{deal.pk}/change/").content.decode()  # its runs panel


def test_someone_in_two_organizations_reads_times_in_the_one_chosen_on_the_pages(run, owner):
    tokyo = make_org("tokyo")
    Organization.objects.filter(pk=tokyo.pk).update(name="AAA Tokyo", time_zone="Asia/Tokyo")  # first by name
    Membership.objects.create(user=owner, organization=tokyo, role=Membership.Role.VIEWER)
    client = as_user(owner)
    run_page = f"/admin/automation/workflowrun/{run.pk}/change/"
    assert "5 Dec 2026, 22:03:07 JST" in client.get(run_page).content.decode()
    client.get("/crm/automation/?org=acme")  # chosen on the pages: remembered in the session
    assert IN_BERLIN in client.get(run_page).content.decode()


def test_a_superuser_without_an_organization_reads_utc_labelled(run):
    root = make_user("root", None, None, is_superuser=True)
    page = as_user(root).get(f"/admin/automation/workflowrun/{run.pk}/change/").content.decode()
    assert "5 Dec 2026, 13:03:07 UTC" in page


def test_the_api_answers_in_utc_whoever_asks(run, owner):
    body = as_user(owner).get(f"/api/v1/runs/{run.pk}/").json()
    assert body["started_at"] == "2026-12-05T13:03:07Z"
