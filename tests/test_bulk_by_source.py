"""Bulk changes by source: every change says where it came from; an import or bulk action is one
operation, and a workflow runs for each record, once as a digest, or holds the runs for review
(one review item, not 5,000 runs) until an admin releases or discards them."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from crm_automation.automation.models import AutomationEvent, BulkHold, WorkflowDecision, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.automation.services.versions import workflow_export_yaml, workflow_import_yaml
from crm_automation.automation.services.workflows import workflow_create
from crm_automation.automation.triggers.bulk import bulk_hold_discard, bulk_hold_release
from crm_automation.crm.models import Lead, Notification, Task
from crm_automation.crm.services import leads_convert_bulk, leads_import
from crm_automation.refusals import Refused
from tests.conftest import drain, make_workflow
from tests.test_graph_engine import task


def rows(n: int) -> list[dict]:
    return [{"name": f"Lead {i}", "email": f"lead{i}@example.com", "company": "Acme"} for i in range(n)]


def welcome(org, mode=None, over=100, name="Welcome"):
    config = {"bulk": {"mode": mode, "over": over}} if mode else None
    return make_workflow(org, name=name, trigger_type="lead_created", trigger_config=config,
                         actions=[task("hello", "Welcome {{lead.name}} ({{trigger.source}}, {{trigger.bulk.size}})")])


def test_an_import_held_for_review_is_one_item_not_a_run_per_lead(org, owner, django_capture_on_commit_callbacks):
    workflow = welcome(org, "hold")
    leads_import(organization_id=org.pk, rows=rows(150), by=owner)
    drain()
    assert not WorkflowRun.objects.exists() and not Task.objects.exists()
    hold = BulkHold.objects.get()
    assert (hold.workflow, hold.mode, hold.status, hold.count, hold.size, hold.source) == (
        workflow, "hold", "pending", 150, 150, "import")
    decisions = WorkflowDecision.objects.filter(workflow=workflow)
    assert decisions.count() == 150 and set(decisions.values_list("outcome", flat=True)) == {"held"}
    assert "held for review: part of an import of 150 records" in decisions.first().reason
    (note,) = Notification.objects.filter(user=owner)
    assert note.title == "“Welcome” held an import of 150 records for review"
    assert note.link == f"/crm/automation/bulk-holds/{hold.pk}/"

    with django_capture_on_commit_callbacks(execute=False):
        started = bulk_hold_release(hold_id=hold.pk, by=owner)
    assert started == 150
    continue_runs(list(WorkflowRun.objects.values_list("pk", flat=True)))
    assert Task.objects.count() == 150
    assert Task.objects.filter(title="Welcome Lead 7 (import, 150)").exists()
    hold.refresh_from_db()
    assert hold.status == "released" and hold.decided_by == owner
    assert set(decisions.values_list("outcome", flat=True)) == {"matched"}
    with pytest.raises(Refused, match="already released"):
        bulk_hold_release(hold_id=hold.pk, by=owner)


def test_a_digest_runs_once_for_the_whole_operation(org, owner):
    workflow = welcome(org, "digest")
    leads_import(organization_id=org.pk, rows=rows(120), by=owner)
    drain()
    (run,) = WorkflowRun.objects.all()
    assert run.status == "completed" and run.metadata["digest"]["size"] == 120
    assert Task.objects.get().title.endswith("(import, 120)")
    outcomes = list(WorkflowDecision.objects.filter(workflow=workflow).values_list("outcome", flat=True))
    assert outcomes.count("matched") == 1 and outcomes.count("digested") == 119
    assert BulkHold.objects.get().status == "digested"


def test_run_all_and_small_operations_run_for_each_record(org, owner):
    welcome(org)  # no bulk setting: a run per record
    welcome(org, "hold", over=200, name="Welcome (hold over 200)")  # names are unique in an organization
    leads_import(organization_id=org.pk, rows=rows(150), by=owner)
    drain()
    assert WorkflowRun.objects.count() == 300 and not BulkHold.objects.exists()


def test_a_discarded_hold_starts_nothing_and_says_so(org, owner, viewer):
    welcome(org, "hold", over=10)
    leads_import(organization_id=org.pk, rows=rows(20), by=owner)
    drain()
    hold = BulkHold.objects.get()
    with pytest.raises(Exception, match="Only admins"):
        bulk_hold_discard(hold_id=hold.pk, by=viewer)
    bulk_hold_discard(hold_id=hold.pk, by=owner)
    assert not WorkflowRun.objects.exists()
    assert "then discarded by owner" in WorkflowDecision.objects.first().reason
    assert BulkHold.objects.get().status == "discarded"


def test_every_change_says_where_it_came_from(org, owner, client, deal):
    from crm_automation.crm.models import Deal
    api = APIClient()
    api.force_authenticate(owner)
    assert api.patch(f"/api/v1/deals/{deal.pk}/", {"title": "By API"}, format="json").status_code == 200
    client.force_login(owner)
    Deal.objects.filter(pk=deal.pk).update(title="x")
    lead = Lead.objects.create(organization=org, name="Shell lead")
    leads_convert_bulk(organization_id=org.pk, lead_ids=[lead.pk, Lead.objects.create(organization=org, name="B").pk])
    sources = [(e.kind, e.payload.get("source"), bool(e.payload.get("bulk")))
               for e in AutomationEvent.objects.order_by("pk")]
    assert ("deal_updated", "api", False) in sources
    assert ("lead_created", "system", False) in sources  # the shell
    assert ("lead_converted", "bulk", True) in sources and ("deal_created", "bulk", True) in sources


def test_a_change_by_a_workflow_says_workflow(org, owner, deal):
    from crm_automation.crm.models import Deal
    from crm_automation.crm.services import deal_move_to_stage
    from tests.conftest import stage

    make_workflow(org, name="Move on", actions=[
        {"id": "move", "type": "update_field", "config": {"field": "deal.stage", "value": "negotiation"}}])
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()
    first, second = AutomationEvent.objects.filter(kind="deal_stage_change").order_by("pk")
    assert first.payload["source"] == "system" and second.payload["source"] == "workflow"


def test_the_import_command_reads_a_csv_and_refuses_a_bad_file_whole(org, owner, tmp_path):
    good = tmp_path / "leads.csv"
    good.write_text("name,email,company\nAda,ada@example.com,Acme\nBob,bob@example.com,\n", encoding="utf-8")
    call_command("import_leads", str(good), organization=org.slug, owner="owner")
    assert set(Lead.objects.values_list("name", "owner__username")) == {("Ada", "owner"), ("Bob", "owner")}
    event = AutomationEvent.objects.filter(kind="lead_created").first()
    assert event.payload["source"] == "import" and event.payload["bulk"]["size"] == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email,phone\nCy,not-an-email,1\n,,\n", encoding="utf-8")
    with pytest.raises(CommandError) as refused:
        call_command("import_leads", str(bad), organization=org.slug)
    text = str(refused.value)
    assert "Nothing was imported." in text and "row 1: unknown column(s) phone" in text and "row 2:" in text
    assert Lead.objects.count() == 2
    with pytest.raises(CommandError, match="no organization “nope”"):
        call_command("import_leads", str(good), organization="nope")


def test_the_bulk_setting_is_checked_and_kept_in_yaml(org):
    with pytest.raises(ValidationError) as refused:
        workflow_create(organization=org, name="W", trigger_type="lead_created",
                        trigger_config={"bulk": {"mode": "ignore", "over": 0, "x": 1}}, actions=[task("t", "T")])
    messages = " | ".join(refused.value.messages)
    assert "trigger_config.bulk.mode: must be run_all" in messages and "trigger_config.bulk.over: must be a whole" \
        in messages and "trigger_config.bulk.x: unknown setting" in messages
    with pytest.raises(ValidationError, match="trigger_config"):
        workflow_create(organization=org, name="S", trigger_type="schedule",
                        trigger_config={"frequency": "daily", "time": "09:00", "bulk": {"mode": "hold"}},
                        actions=[task("t", "T")])
    workflow = welcome(org, "hold", over=50)
    text = workflow_export_yaml(workflow)
    assert "bulk:" in text and "mode: hold" in text and "over: 50" in text
    copy, _ = workflow_import_yaml(organization=org, by=None, text=text)
    assert copy.definition["trigger_config"]["bulk"] == {"mode": "hold", "over": 50}


def test_the_admin_lists_holds_and_releases_them(client, org, owner):
    welcome(org, "hold", over=5)
    leads_import(organization_id=org.pk, rows=rows(8), by=owner)
    drain()
    hold = BulkHold.objects.get()
    client.force_login(owner)
    assert "Welcome" in client.get("/admin/automation/bulkhold/").content.decode()
    page = client.post("/admin/automation/bulkhold/", {"action": "release", "_selected_action": [hold.pk]},
                       follow=True)
    assert "“Welcome”: 8 runs started." in page.content.decode()
    assert WorkflowRun.objects.count() == 8
