"""An admin starts any activated workflow on a named record now (the seeds' `trigger` verb): the
run is made as if its trigger fired for the record, says who started it and why (API, run page,
the decision), skips the trigger's own checks but says what they say, and keeps the enrollment
rules; ops members, viewers, outsiders and paused workflows are refused and nothing is written."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from rest_framework.test import APIClient

from crm_automation.automation.models import AutomationEvent, WorkflowDecision, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.crm.models import Deal, Task
from crm_automation.refusals import Refused
from tests.conftest import make_workflow, stage
from tests.test_web_builder import as_user

TITLE = [{"type": "create_task", "label": "Follow", "config": {
    "title": "{{trigger.deal.title}} moved to {{trigger.to_stage}} ({{trigger.input.note}})"}}]


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def written() -> tuple[int, int, int]:
    """What a start writes: runs, events (saving a record writes one too) and decisions."""
    return WorkflowRun.objects.count(), AutomationEvent.objects.count(), WorkflowDecision.objects.count()


def test_an_admin_starts_a_stage_change_workflow_on_a_deal_and_the_run_says_who_and_why(org, owner, deal):
    workflow = make_workflow(org, actions=TITLE)  # listens for a move to Won; the deal is in Proposal
    answer = api(owner).post(f"/api/v1/workflows/{workflow.pk}/trigger/", {
        "entity_type": "deal", "entity_id": str(deal.pk), "reason": "Customer signed on paper",
        "input": {"note": "by hand"}}, format="json")
    assert answer.status_code == 202, answer.json()
    run = WorkflowRun.objects.get()
    continue_runs([run.pk])
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert Task.objects.get().title == "Website moved to proposal (by hand)"
    detail = api(owner).get(f"/api/v1/runs/{run.pk}/").json()
    assert detail["metadata"]["started_by"] == "owner"
    assert detail["metadata"]["reason"] == "Customer signed on paper"
    assert "the deal is in “Proposal”; the workflow listens for a move to “Won”" in detail["metadata"]["trigger_check"]
    assert run.event.decisions.get().reason == "started by owner: Customer signed on paper"
    page = as_user(owner).get(f"/crm/automation/runs/{run.pk}/").content.decode()
    assert "Started by hand by <strong>owner</strong>: “Customer signed on paper”" in page


def test_a_reason_is_required_and_the_record_must_be_of_the_triggers_kind(org, owner, deal, lead):
    workflow = make_workflow(org, actions=TITLE)
    before = written()
    client = api(owner)
    url = f"/api/v1/workflows/{workflow.pk}/trigger/"
    no_reason = client.post(url, {"entity_type": "deal", "entity_id": str(deal.pk)}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()
    a_lead = client.post(url, {"entity_type": "lead", "entity_id": str(lead.pk), "reason": "x"}, format="json")
    assert a_lead.status_code == 400 and "runs on a deal" in str(a_lead.json())
    assert written() == before


def test_an_ops_member_may_not_and_a_viewer_may_not(org, teammate, viewer, deal):
    workflow = make_workflow(org, actions=TITLE)
    before = written()
    body = {"entity_type": "deal", "entity_id": str(deal.pk), "reason": "try"}
    assert api(teammate).post(f"/api/v1/workflows/{workflow.pk}/trigger/", body, format="json").status_code == 403
    assert api(viewer).post(f"/api/v1/workflows/{workflow.pk}/trigger/", body, format="json").status_code == 403
    with pytest.raises(PermissionDenied, match="Only admins"):
        workflow_start(workflow_id=workflow.pk, by=teammate, record=deal, reason="try")
    assert written() == before


def test_another_organizations_record_or_workflow_is_unknown(org, other_org, owner, outsider, deal):
    workflow = make_workflow(org, actions=TITLE)
    theirs = Deal.objects.create(organization=other_org, title="Theirs", stage=stage(other_org, "proposal"))
    before = written()
    mine = api(owner).post(f"/api/v1/workflows/{workflow.pk}/trigger/", {
        "entity_type": "deal", "entity_id": str(theirs.pk), "reason": "x"}, format="json")
    assert mine.status_code == 400 and "No deal with this id" in str(mine.json())
    assert api(outsider).post(f"/api/v1/workflows/{workflow.pk}/trigger/", {
        "entity_type": "deal", "entity_id": str(deal.pk), "reason": "x"}, format="json").status_code == 404
    with pytest.raises(ValidationError):
        workflow_start(workflow_id=workflow.pk, by=owner, record=theirs, reason="x")
    assert written() == before


def test_a_paused_workflow_is_refused(org, owner, deal):
    workflow = make_workflow(org, actions=TITLE)
    workflow_transition(workflow_id=workflow.pk, name="pause", by=None)
    before = written()
    answer = api(owner).post(f"/api/v1/workflows/{workflow.pk}/trigger/", {
        "entity_type": "deal", "entity_id": str(deal.pk), "reason": "x"}, format="json")
    assert answer.status_code == 409 and "paused" in answer.json()["detail"]
    assert written() == before


def test_once_only_workflows_take_a_record_once_even_by_hand(org, owner, deal):
    workflow = make_workflow(org, actions=TITLE, reenrollment="once")
    workflow_start(workflow_id=workflow.pk, by=owner, record=deal, reason="first")
    with pytest.raises(Refused, match="went through the workflow before"):
        workflow_start(workflow_id=workflow.pk, by=owner, record=deal, reason="again")
    assert WorkflowRun.objects.count() == 1


def test_a_schedule_workflow_starts_on_no_record_and_a_webhook_one_is_refused(org, owner, deal):
    weekly = make_workflow(org, name="Weekly", trigger_type="schedule",
                           trigger_config={"frequency": "daily", "time": "09:00"},
                           actions=[{"type": "create_task", "label": "T", "config": {"title": "Weekly review"}}])
    run = workflow_start(workflow_id=weekly.pk, by=owner, reason="Catch up today")
    continue_runs([run.pk])
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert Task.objects.get().title == "Weekly review"
    with pytest.raises(ValidationError, match="runs on no record"):
        workflow_start(workflow_id=weekly.pk, by=owner, record=deal, reason="x")
    hook = make_workflow(org, name="Hook", trigger_type="webhook", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "Hook"}}])
    with pytest.raises(Refused, match="its webhook is called"):
        workflow_start(workflow_id=hook.pk, by=owner, reason="x")


def test_the_manual_start_keeps_its_roles_and_takes_an_optional_reason(org, teammate, deal):
    workflow = make_workflow(org, trigger_type="manual_deal", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {"title": "Call about {{deal.title}}"}}])
    run = workflow_start(workflow_id=workflow.pk, by=teammate, record=deal)
    assert run.metadata == {"started_by": "teammate"}
    second = workflow_start(workflow_id=workflow.pk, by=teammate, record=deal, reason="Asked again")
    assert second.metadata["reason"] == "Asked again"
    assert second.event.decisions.get().reason == "started by teammate: Asked again"


def test_a_business_event_workflow_starts_on_a_contact_with_the_events_data(org, owner, contact):
    workflow = make_workflow(org, trigger_type="event:invoice.overdue", trigger_config={}, actions=[
        {"type": "create_task", "label": "T", "config": {
            "title": "{{trigger.contact.first_name}}: invoice {{trigger.invoice.number}} ({{trigger.event.source}})"}}])
    url = f"/api/v1/workflows/{workflow.pk}/trigger/"
    body = {"entity_type": "contact", "entity_id": str(contact.pk), "reason": "Sent by phone"}
    missing = api(owner).post(url, {**body, "input": {"invoice": {"number": "INV-7"}}}, format="json")
    assert missing.status_code == 400 and "data.invoice.amount_due" in str(missing.json())
    started = api(owner).post(url, {**body, "input": {"invoice": {"number": "INV-7", "amount_due": 120.5,
                                                                  "due_date": "2026-11-30"}}}, format="json")
    assert started.status_code == 202, started.json()
    continue_runs([started.json()["id"]])
    assert Task.objects.get().title == "Ada: invoice INV-7 (started by owner)"


def test_the_run_on_a_record_page_is_for_admins_and_says_what_is_wrong(org, other_org, owner, teammate, outsider,
                                                                       deal):
    workflow = make_workflow(org, actions=TITLE)
    url = f"/crm/automation/workflows/{workflow.pk}/run-now/"
    admin = as_user(owner)
    assert "Run on a record…" in admin.get("/crm/automation/").content.decode()
    page = admin.get(url).content.decode()
    assert "Run it now" in page and "Website (Proposal)" in page
    record_page = admin.get(f"/crm/automation/records/deal/{deal.pk}/").content.decode()
    assert f"{url}?record={deal.pk}" in record_page  # the record's page offers it to admins …
    assert url not in as_user(teammate).get(f"/crm/automation/records/deal/{deal.pk}/").content.decode()  # … only
    before = written()
    no_reason = admin.post(url, {"record": str(deal.pk), "reason": " "})
    assert no_reason.status_code == 400 and "Say why it is started by hand now" in no_reason.content.decode()
    assert written() == before
    theirs = Deal.objects.create(organization=other_org, title="Theirs", stage=stage(other_org, "proposal"))
    before = written()
    assert admin.post(url, {"record": str(theirs.pk), "reason": "x"}).status_code == 404
    assert as_user(teammate).post(url, {"record": str(deal.pk), "reason": "x"}).status_code == 403
    assert as_user(outsider).get(url).status_code == 404
    assert written() == before
    started = admin.post(url, {"record": str(deal.pk), "reason": "Signed on paper"})
    run = WorkflowRun.objects.get()
    assert started.status_code == 302 and started["Location"] == f"/crm/automation/runs/{run.pk}/"
    assert run.metadata["reason"] == "Signed on paper" and run.metadata["started_by"] == "owner"


@pytest.mark.parametrize(("trigger_type", "config", "kind", "title"), [
    ("lead_created", {}, "lead", "{{lead.name}}"),
    ("lead_updated", {"fields": ["email"]}, "lead", "{{trigger.lead.name}}"),
    ("project_completed", {}, "project", "{{project.name}} for {{trigger.contact.first_name}}"),
    ("contact_updated", {}, "contact", "{{trigger.contact.first_name}}"),
    ("deal_in_stage", {"stage": "won", "days": 3}, "deal", "{{deal.title}}"),
    ("deal_date_reached", {"field": "close_date", "offsetDays": -3}, "deal", "{{deal.title}}"),
])
def test_every_family_starts_on_a_record_of_its_kind(org, owner, deal, lead, contact, trigger_type, config, kind,
                                                     title):
    from crm_automation.crm.models import Project

    project = Project.objects.create(organization=org, name="Roof", contact=contact, owner=owner)
    record = {"deal": deal, "lead": lead, "contact": contact, "project": project}[kind]
    workflow = make_workflow(org, trigger_type=trigger_type, trigger_config=config, actions=[
        {"type": "create_task", "label": "T", "config": {"title": title}}])
    run = workflow_start(workflow_id=workflow.pk, by=owner, record=record, reason="By hand")
    continue_runs([run.pk])
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert Task.objects.get().title == {"deal": "Website", "lead": "Grace Hopper", "contact": "Ada",
                                        "project": "Roof for Ada"}[kind]


def test_the_demo_shows_a_workflow_started_by_hand_with_a_reason(db):
    from io import StringIO

    from django.core.management import call_command

    call_command("seed_demo", stdout=StringIO())
    run = WorkflowRun.objects.get(workflow__name="Won deal kickoff", metadata__started_by="demo")
    assert run.metadata["reason"] == "Signed on paper; the stage follows once finance confirms"
    assert "the workflow listens for a move to “Won”" in run.metadata["trigger_check"]


def test_the_quota_counts_a_start_by_hand_and_the_free_plan_starts_nothing(org, owner, deal):
    from crm_automation.automation import plans
    from crm_automation.automation.models import MonthlyUsage

    workflow = make_workflow(org, actions=TITLE)
    MonthlyUsage.objects.create(organization=org, month=plans.month_start(), logged_runs=500)  # Pro's is used up
    run = workflow_start(workflow_id=workflow.pk, by=owner, record=deal, reason="Over the quota")
    assert run.history_suppressed and run.event.decisions.get().outcome == "matched_unlogged"
    assert MonthlyUsage.objects.get().suppressed_runs == 1
    org.plan = "free"
    org.save()
    before = written()
    with pytest.raises(Refused, match="plan does not include automation"):
        workflow_start(workflow_id=workflow.pk, by=owner, record=deal, reason="x")
    assert written() == before
