"""Time saved (completed runs this month × the minutes one replaces) and costs per workflow this
month (emails, SMS segments, AI tokens, webhook calls at the organization's unit prices), from
real rows, on the Health tab, the health API, the Costs page; who may set what."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from crm_automation.automation.models import AiCall, UnitPrices, Workflow, WorkflowRun
from crm_automation.automation.ops import costs
from crm_automation.crm.models import EmailMessage, SmsMessage
from crm_automation.webhooks.models import WebhookDelivery
from tests.conftest import make_workflow
from tests.test_monitoring_alerts import make_runs

PRICES = {"email": "0.01", "sms_segment": "0.05", "ai_1k_tokens": "2", "webhook_call": "0.25"}


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def page(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def workflow(org, owner):
    return make_workflow(org, name="Kickoff")


@pytest.fixture
def month(org, workflow):
    """This month: 3 completed runs and 1 failed; one completed last month. Their steps' rows:
    2 emails sent (1 failed, 1 sent last month), 5 SMS segments sent, 1,500 AI tokens, 4
    webhook tries; another workflow's email counts for it, not for this one."""
    since = costs.month_start(org)
    completed = make_runs(workflow, 3, started=timezone.now())
    failed = make_runs(workflow, 1, started=timezone.now(), status="failed")
    last_month = make_runs(workflow, 1, started=since - timedelta(days=2))
    other = make_workflow(org, name="Other")
    [other_run] = make_runs(other, 1, started=timezone.now())
    run = completed[0]

    def email(run_id, key, status="sent"):
        return EmailMessage.objects.create(organization=org, to="a@example.com", subject="Hi", status=status,
                                           run_id=run_id, automation_key=key)

    email(run, "run:1:a")
    email(failed[0], "run:1:b")
    email(run, "run:1:c", status="failed")
    old = email(last_month[0], "run:1:d")
    EmailMessage.objects.filter(pk=old.pk).update(created_at=since - timedelta(days=1))
    email(other_run, "run:1:e")
    for segments, status in ((3, "sent"), (2, "sent"), (4, "failed")):
        SmsMessage.objects.create(organization=org, to="+15550100", from_number="+15550199", body="x",
                                  segments=segments, status=status, run_id=run)
    AiCall.objects.create(organization=org, automation_key="run:1:ai", run_id=run, node_type="agent", request={},
                          input_tokens=1000, output_tokens=500)
    for key, attempts in (("run:1:h1", 3), ("run:1:h2", 1)):
        WebhookDelivery.objects.create(organization=org, automation_key=key, run_id=run, method="POST",
                                       url="https://example.com/hook", attempts=attempts)
    return since


def test_the_month_from_real_rows(org, owner, workflow, month):
    Workflow.objects.filter(pk=workflow.pk).update(minutes_saved=30)
    api(owner).put("/api/v1/prices/", PRICES, format="json")
    workflow.refresh_from_db()
    figures = costs.workflow_month(workflow)
    assert (figures.completed_runs, figures.hours_saved) == (3, Decimal("1.5"))
    assert (figures.usage.emails, figures.usage.sms_segments, figures.usage.ai_tokens,
            figures.usage.webhook_calls) == (2, 5, 1500, 4)
    assert figures.costs == {"emails": Decimal("0.02"), "sms_segments": Decimal("0.25"),
                             "ai_tokens": Decimal("3.00"), "webhook_calls": Decimal("1.00")}
    assert figures.total_cost == Decimal("4.27")
    whole = costs.organization_month(org)
    assert whole.usage.emails == 3 and whole.hours_saved == Decimal("1.5")  # "Other" saves nothing: 0 minutes


def test_the_health_api_and_tab_show_them_to_a_viewer(owner, viewer, workflow, month):
    api(owner).post(f"/api/v1/workflows/{workflow.pk}/time-saved/", {"minutes_saved": 20}, format="json")
    api(owner).put("/api/v1/prices/", PRICES, format="json")
    body = api(viewer).get(f"/api/v1/workflows/{workflow.pk}/health/").json()["month"]
    assert body["hours_saved"] == "1.0" and body["completed_runs"] == 3 and body["minutes_saved_per_run"] == 20
    assert body["usage"] == {"emails": 2, "sms_segments": 5, "ai_tokens": 1500, "webhook_calls": 4}
    assert body["costs"]["total"] == "4.27" and body["costs"]["ai_tokens"] == "3.00"
    html = page(viewer).get(f"/crm/automation/workflows/{workflow.pk}/health/").content.decode()
    assert "1.0 hours saved" in html and "<strong>4.27</strong>" in html
    assert 'name="minutes_saved"' not in html  # a viewer reads; ops and admins set it
    health = f"/crm/automation/workflows/{workflow.pk}/health/"
    assert 'name="minutes_saved"' in page(owner).get(health).content.decode()


def test_ops_set_the_minutes_a_viewer_cannot_and_an_outsider_finds_nothing(teammate, viewer, outsider, workflow):
    answer = api(teammate).post(f"/api/v1/workflows/{workflow.pk}/time-saved/", {"minutes_saved": 12}, format="json")
    assert answer.status_code == 200 and answer.json()["minutes_saved"] == 12
    assert api(viewer).post(f"/api/v1/workflows/{workflow.pk}/time-saved/", {"minutes_saved": 5},
                            format="json").status_code == 403
    assert api(outsider).post(f"/api/v1/workflows/{workflow.pk}/time-saved/", {"minutes_saved": 5},
                              format="json").status_code == 404
    assert api(outsider).get(f"/api/v1/workflows/{workflow.pk}/health/").status_code == 404
    assert page(outsider).get(f"/crm/automation/workflows/{workflow.pk}/health/").status_code == 404
    assert page(viewer).post(f"/crm/automation/workflows/{workflow.pk}/time-saved/",
                             {"minutes_saved": "5"}).status_code == 403
    page(teammate).post(f"/crm/automation/workflows/{workflow.pk}/time-saved/", {"minutes_saved": "7"})
    workflow.refresh_from_db()
    assert workflow.minutes_saved == 7


@pytest.mark.parametrize("bad", [-1, "abc", True, 10_001, 2.5, None])
def test_bad_minutes_are_refused_by_name_and_change_nothing(owner, workflow, bad):
    answer = api(owner).post(f"/api/v1/workflows/{workflow.pk}/time-saved/", {"minutes_saved": bad}, format="json")
    assert answer.status_code == 400
    assert "a whole number of minutes" in answer.json()["minutes_saved"][0]
    workflow.refresh_from_db()
    assert workflow.minutes_saved == 0


def test_only_admins_set_prices_everyone_reads_them(owner, teammate, viewer, org):
    assert api(viewer).get("/api/v1/prices/").json()["email"] == "0"
    assert api(viewer).put("/api/v1/prices/", PRICES, format="json").status_code == 403
    assert api(teammate).put("/api/v1/prices/", PRICES, format="json").status_code == 403
    assert not UnitPrices.objects.exists()
    answer = api(owner).patch("/api/v1/prices/", {"sms_segment": "0.0075"}, format="json")
    assert answer.status_code == 200 and answer.json()["sms_segment"] == "0.0075"
    assert api(viewer).get("/api/v1/prices/").json()["sms_segment"] == "0.0075"


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"email": "-0.01", "webhook_call": "1"}, "email", "must not be negative"),
    ({"email": "abc"}, "email", "a number such as 0.01"),
    ({"ai_1k_tokens": "NaN"}, "ai_1k_tokens", "a number such as 0.01"),
    ({"sms_segment": "0.0000001"}, "sms_segment", "at most 6 digits after the decimal point"),
    ({"webhook_call": "10000000"}, "webhook_call", "at most 999999.999999"),
    ({"email": True}, "email", "a number such as 0.01"),
    ({"tax": "1"}, "tax", "not a price"),
])
def test_bad_prices_are_refused_by_name_and_nothing_is_saved(owner, body, field, message):
    api(owner).put("/api/v1/prices/", {"webhook_call": "0.5"}, format="json")
    answer = api(owner).put("/api/v1/prices/", body, format="json")
    assert answer.status_code == 400 and message in answer.json()[field][0]
    assert UnitPrices.objects.get().webhook_call == Decimal("0.5")  # the good price beside the bad one neither


def test_the_costs_page(owner, viewer, outsider, org, workflow, month):
    Workflow.objects.filter(pk=workflow.pk).update(minutes_saved=60)
    assert page(viewer).post("/crm/automation/costs/", {"email": "1"}).status_code == 403
    answer = page(owner).post("/crm/automation/costs/", {"email": "-1"}, follow=True).content.decode()
    assert "must not be negative" in answer and not UnitPrices.objects.exists()
    page(owner).post("/crm/automation/costs/", PRICES)
    html = page(viewer).get("/crm/automation/costs/").content.decode()
    assert "3.0 hours saved" in html and "<strong>4.28</strong>" in html  # with Other's email: 0.01 more
    assert 'name="email"' not in html
    kickoff = html.index(f'/crm/automation/workflows/{workflow.pk}/health/">Kickoff</a></td><td>3.0</td><td>4.27<')
    assert kickoff < html.index(">Other</a></td><td>0.0</td><td>0.01<")  # most saved first
    assert "3.0 hours saved" in page(viewer).get("/crm/automation/").content.decode()
    assert "0.0 hours saved" in page(outsider).get("/crm/automation/costs/").content.decode()  # their own: nothing


def test_an_email_step_records_its_run(org, owner, deal):
    from tests.conftest import drain

    workflow = make_workflow(org, name="Mail", actions=[
        {"type": "send_email", "config": {"to": "x@example.com", "subject": "Won", "body": "b"}}])
    from crm_automation.crm.services import deal_move_to_stage
    from tests.conftest import stage

    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get(workflow=workflow)
    assert EmailMessage.objects.get(automation_key__startswith=f"run:{run.pk}:").run_id == run.pk


def test_admins_set_prices_in_the_admin_ops_read_them(org, owner, teammate):
    url = "/admin/automation/unitprices/add/"
    assert page(teammate).get(url).status_code == 403
    form = {"organization": org.pk, "email": "-1", "sms_segment": "0", "ai_1k_tokens": "0", "webhook_call": "0"}
    answer = page(owner).post(url, form)
    assert answer.status_code == 200 and "must not be negative" in answer.content.decode()
    assert not UnitPrices.objects.exists()
    page(owner).post(url, {**form, "email": "0.02"})
    prices = UnitPrices.objects.get()
    assert (prices.email, prices.updated_by) == (Decimal("0.02"), owner)
    assert page(teammate).get(f"/admin/automation/unitprices/{prices.pk}/change/").status_code == 200
    page(teammate).post(f"/admin/automation/unitprices/{prices.pk}/change/", {**form, "email": "5"})
    prices.refresh_from_db()
    assert prices.email == Decimal("0.02")


def test_the_minutes_are_set_in_the_workflow_admin_too(org, owner):
    from tests.admin_helpers import workflow_form_data

    workflow = make_workflow(org, name="Kickoff")  # live: its document is not touched by this
    client = page(owner)
    url = f"/admin/automation/workflow/{workflow.pk}/change/"
    assert client.post(url, workflow_form_data(client, workflow, minutes_saved="-3")).status_code == 200  # refused
    assert Workflow.objects.get(pk=workflow.pk).minutes_saved == 0
    assert client.post(url, workflow_form_data(client, workflow, minutes_saved="25")).status_code == 302
    saved = Workflow.objects.get(pk=workflow.pk)
    assert (saved.minutes_saved, saved.draft_revision, saved.version) == (25, workflow.draft_revision, 1)


def test_emails_written_before_the_column_get_their_run_from_their_key(org):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("crm_automation.crm.migrations.0012_monitor_email_run_id")
    made = [EmailMessage.objects.create(organization=org, to="a@example.com", subject="s", automation_key=key)
            for key in ("run:42:node:send", "run:x:node:send", None)]
    migration.backfill(apps, None)
    assert [EmailMessage.objects.get(pk=e.pk).run_id for e in made] == [42, None, None]
