"""Runs, events and record pages in the admin: what ran, what it did, why something did not."""

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage

RUNS = reverse("admin:automation_workflowrun_changelist")


def won(org, deal):
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()


def test_runs_are_listed_newest_first_with_links(client, org, deal, owner):
    make_workflow(org)
    won(org, deal)
    client.force_login(owner)
    page = client.get(RUNS).content.decode()
    assert "Completed" in page and "Kickoff" in page
    assert reverse("admin:crm_deal_change", args=[deal.pk]) in page


def test_a_run_shows_each_actions_result(client, org, deal, viewer):
    make_workflow(org)
    won(org, deal)
    client.force_login(viewer)
    run = WorkflowRun.objects.get()
    page = client.get(reverse("admin:automation_workflowrun_change", args=[run.pk])).content.decode()
    assert "Kick off Website" in page and "deal.probability" in page and "ada@example.com" in page


def test_runs_are_read_only(client, org, deal, owner):
    make_workflow(org)
    won(org, deal)
    client.force_login(owner)
    run = WorkflowRun.objects.get()
    assert client.get(reverse("admin:automation_workflowrun_add")).status_code == 403
    delete = reverse("admin:automation_workflowrun_delete", args=[run.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert WorkflowRun.objects.exists()


def test_outsiders_do_not_see_other_runs(client, org, deal, outsider):
    make_workflow(org)
    won(org, deal)
    client.force_login(outsider)
    assert "Kickoff" not in client.get(RUNS).content.decode()


def test_the_run_list_query_count_does_not_grow_with_rows(client, org, deal, owner):
    make_workflow(org, reenrollment="every_time")
    won(org, deal)
    client.force_login(owner)
    client.get(RUNS)
    with CaptureQueriesContext(connection) as few:
        client.get(RUNS)
    for slug in ("negotiation", "won", "proposal", "won"):
        deal_move_to_stage(deal=deal, stage=stage(org, slug))
    drain()
    with CaptureQueriesContext(connection) as more:
        client.get(RUNS)
    assert WorkflowRun.objects.count() == 3
    assert len(more) == len(few)
    assert not any("COUNT(*)" in q["sql"] and "LIMIT" not in q["sql"] for q in more.captured_queries
                   if "workflow_runs" in q["sql"])


def test_the_event_page_explains_each_decision(client, org, deal, owner):
    make_workflow(org, conditions={"rules": [{"field": "deal.amount", "operator": "gt", "value": 99999}]})
    won(org, deal)
    client.force_login(owner)
    event = AutomationEvent.objects.get(kind="deal_stage_change")
    page = client.get(reverse("admin:automation_automationevent_change", args=[event.pk])).content.decode()
    assert "Condition was false" in page and "Deal › Amount is greater than 99999” was false" in page


def test_the_deal_page_shows_runs_and_decisions(client, org, deal, owner):
    make_workflow(org)
    make_workflow(org, name="Big deals only",
                  conditions={"rules": [{"field": "deal.amount", "operator": "gt", "value": 99999}]})
    won(org, deal)
    client.force_login(owner)
    page = client.get(reverse("admin:crm_deal_change", args=[deal.pk])).content.decode()
    assert "Workflow runs" in page and "Completed" in page
    assert "Big deals only" in page and "Condition was false" in page


def test_email_outbox_and_tasks_are_listed(client, org, deal, owner):
    make_workflow(org)
    won(org, deal)
    client.force_login(owner)
    assert "ada@example.com" in client.get(reverse("admin:crm_emailmessage_changelist")).content.decode()
    assert "Kick off Website" in client.get(reverse("admin:crm_task_changelist")).content.decode()


def test_a_failed_email_can_be_sent_again_from_the_outbox(client, org, deal, owner, monkeypatch):
    from django.core import mail

    from crm_automation.crm.models import EmailMessage

    make_workflow(org)
    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("django.core.mail.EmailMessage.send", refuse)
    won(org, deal)
    monkeypatch.undo()
    email = EmailMessage.objects.get()
    assert email.status == "failed"
    client.force_login(owner)
    response = client.post(reverse("admin:crm_emailmessage_changelist"),
                           {"action": "resend", "_selected_action": [email.pk]}, follow=True)
    assert "Sent 1 email(s) again" in response.content.decode()
    assert EmailMessage.objects.get().status == "sent" and len(mail.outbox) == 1


def test_leads_are_converted_from_the_list_and_their_page_shows_the_runs(client, org, lead, owner):
    make_workflow(org, trigger_type="lead_converted", trigger_config={},
                  actions=[{"type": "create_task", "config": {"title": "Onboard {{lead.company}}"}}])
    client.force_login(owner)
    response = client.post(reverse("admin:crm_lead_changelist"),
                           {"action": "convert_leads", "_selected_action": [lead.pk]}, follow=True)
    assert "Converted 1 lead(s)" in response.content.decode()
    drain()
    page = client.get(reverse("admin:crm_lead_change", args=[lead.pk])).content.decode()
    assert "Completed" in page and "Kickoff" in page


def test_outsiders_see_no_events_of_another_organization(client, org, deal, outsider):
    make_workflow(org)
    won(org, deal)
    client.force_login(outsider)
    events = client.get(reverse("admin:automation_automationevent_changelist")).content.decode()
    assert reverse("admin:crm_deal_change", args=[deal.pk]) not in events
    event = AutomationEvent.objects.first()
    response = client.get(reverse("admin:automation_automationevent_change", args=[event.pk]))
    assert response.status_code == 302
