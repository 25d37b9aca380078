"""Stale admin forms: only what the person changed is written, and a field someone else changed
since the page was opened is never overwritten silently."""

import json

from django.contrib.admin.models import LogEntry
from django.urls import reverse

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.workflows import workflow_transition, workflow_update
from crm_automation.crm.models import Deal
from crm_automation.crm.services import deal_move_to_stage
from tests.admin_helpers import page_form
from tests.conftest import drain, make_user, make_workflow, stage


def workflow_url(wf) -> str:
    return reverse("admin:automation_workflow_change", args=[wf.pk])


def deal_url(deal) -> str:
    return reverse("admin:crm_deal_change", args=[deal.pk])


def test_saving_a_stale_workflow_page_keeps_the_run_counters_and_the_status(client, org, owner, deal):
    wf = make_workflow(org, reenrollment="every_time")
    client.force_login(owner)
    opened = page_form(client, workflow_url(wf), description="Kick off won deals")  # page open ...
    for slug in ("won", "negotiation", "won"):  # ... while runs finish ...
        deal_move_to_stage(deal=deal, stage=stage(org, slug))
    drain()
    workflow_transition(workflow_id=wf.pk, name="pause", by=owner)  # ... and a colleague pauses it
    assert client.post(workflow_url(wf), opened).status_code == 302
    wf.refresh_from_db()
    assert wf.description == "Kick off won deals"
    assert (wf.run_count, wf.success_count, wf.status) == (2, 2, "paused")


def test_a_field_changed_by_someone_else_is_not_overwritten(client, org, owner):
    wf = make_workflow(org, activate=False)
    colleague = make_user("colleague", org, "admin")
    client.force_login(owner)
    opened = page_form(client, workflow_url(wf), name="Owner's name")
    workflow_update(workflow_id=wf.pk, by=colleague, changes={"name": "Colleague's name"})
    page = client.post(workflow_url(wf), opened).content.decode()
    assert "Someone else changed this to “Colleague&#x27;s name”" in page
    assert Workflow.objects.get(pk=wf.pk).name == "Colleague's name"
    resubmitted = page_form(client, workflow_url(wf), name="Owner's name")  # seen theirs: now overwrite
    assert client.post(workflow_url(wf), resubmitted).status_code == 302
    assert Workflow.objects.get(pk=wf.pk).name == "Owner's name"


def test_actions_saved_by_someone_else_are_not_overwritten(client, org, owner):
    wf = make_workflow(org, activate=False)
    client.force_login(owner)
    mine = [{"type": "create_task", "config": {"title": "Mine"}}]
    opened = page_form(client, workflow_url(wf), steps=json.dumps(mine))
    workflow_update(workflow_id=wf.pk, by=owner, actions=[{"type": "create_task", "config": {"title": "Theirs"}}])
    page = client.post(workflow_url(wf), opened).content.decode()
    assert "Someone else saved changes to this workflow since you opened it" in page
    assert Workflow.objects.get(pk=wf.pk).current_version.definition["actions"][0]["config"]["title"] == "Theirs"


def test_a_deal_form_does_not_undo_what_a_workflow_did(client, org, owner, deal):
    make_workflow(org)  # sets the probability to 100 when the deal is won
    client.force_login(owner)
    opened = page_form(client, deal_url(deal), title="Website v2")
    assert opened["probability"] == "10"
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert client.post(deal_url(deal), opened).status_code == 302
    deal.refresh_from_db()
    assert (deal.title, deal.probability, deal.stage.slug) == ("Website v2", 100, "won")
    entry = LogEntry.objects.get(object_id=str(deal.pk))
    assert entry.get_change_message() == "Changed Title."  # the history blames the person for the title only


def test_a_deal_field_the_workflow_changed_meanwhile_is_a_conflict(client, org, owner, deal):
    make_workflow(org)
    client.force_login(owner)
    opened = page_form(client, deal_url(deal), probability="20")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    page = client.post(deal_url(deal), opened).content.decode()
    assert "Someone else changed this to 100" in page
    assert Deal.objects.get(pk=deal.pk).probability == 100


def test_moving_a_deal_in_the_admin_fires_the_trigger_once(client, org, owner, deal):
    make_workflow(org)
    client.force_login(owner)
    data = page_form(client, deal_url(deal), stage=stage(org, "won").pk)
    assert client.post(deal_url(deal), data).status_code == 302
    assert drain() == 1


def test_saving_again_after_a_conflict_replaces_the_value_deliberately(client, org, owner, deal):
    make_workflow(org)
    client.force_login(owner)
    opened = page_form(client, deal_url(deal), probability="20")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    conflict = client.post(deal_url(deal), opened)
    assert "Someone else changed this to 100" in conflict.content.decode()
    again = page_form_from(conflict)  # what the error page now holds, as the browser posts it
    assert client.post(deal_url(deal), again).status_code == 302
    assert Deal.objects.get(pk=deal.pk).probability == 20


def test_line_breaks_as_browsers_send_them_are_not_a_change_or_a_conflict(client, org, owner, deal):
    from crm_automation.crm.models import Task

    task = Task.objects.create(organization=org, title="Call", description="line one\nline two", deal=deal)
    client.force_login(owner)
    url = reverse("admin:crm_task_change", args=[task.pk])
    data = page_form(client, url)
    crlf = {k: v.replace("\n", "\r\n") if isinstance(v, str) else v for k, v in data.items()}  # as browsers do
    crlf["description"] = "line one\r\nline two\r\nline three"
    assert client.post(url, crlf).status_code == 302
    assert Task.objects.get(pk=task.pk).description.replace("\r\n", "\n") == "line one\nline two\nline three"


def page_form_from(response) -> dict:
    from tests.admin_helpers import _FormFields

    parser = _FormFields()
    parser.feed(response.content.decode())
    data = {name: values if len(values) > 1 else values[0] for name, values in parser.values.items()}
    data.pop("csrfmiddlewaretoken", None)
    return data


def test_adding_a_deal_and_a_lead_in_the_admin_works(client, org, owner):
    """A new deal or lead has its UUID before it is saved: the conflict check is for edits only."""
    from crm_automation.crm.models import Deal, Lead, Stage

    client.force_login(owner)
    won = Stage.objects.get(organization=org, slug="won")
    data = page_form(client, reverse("admin:crm_deal_add"), organization=str(org.pk), title="Fresh deal",
                     amount="100", stage=str(won.pk), probability="10")
    response = client.post(reverse("admin:crm_deal_add"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Deal.objects.filter(title="Fresh deal").exists()
    data = page_form(client, reverse("admin:crm_lead_add"), organization=str(org.pk), name="Fresh lead",
                     status="new")
    assert client.post(reverse("admin:crm_lead_add"), data).status_code == 302
    assert Lead.objects.filter(name="Fresh lead").exists()
