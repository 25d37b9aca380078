"""One write path: every surface changes workflows and records through the services, which
check the person's role, validate everything and write only what was asked."""

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.workflows import workflow_create, workflow_update
from crm_automation.refusals import StaleEdit
from tests.admin_helpers import page_form
from tests.conftest import KICKOFF_ACTIONS, make_workflow


def create(org, by, **extra):
    return workflow_create(organization=org, by=by, name="Kickoff", trigger_type="deal_stage_change",
                           trigger_config={"to_stage": "won"}, actions=KICKOFF_ACTIONS, **extra)


def test_ops_create_and_edit_drafts_viewers_and_outsiders_cannot(org, owner, teammate, viewer, outsider):
    wf = create(org, teammate)
    assert wf.created_by == teammate and wf.status == "draft"
    workflow_update(workflow_id=wf.pk, by=teammate, changes={"description": "ops may edit drafts"})
    for person in (viewer, outsider):
        with pytest.raises(PermissionDenied):
            create(org, person)
        with pytest.raises(PermissionDenied):
            workflow_update(workflow_id=wf.pk, by=person, changes={"name": "x"})


def test_only_admins_edit_an_activated_workflow(org, owner, teammate):
    wf = make_workflow(org)
    with pytest.raises(PermissionDenied, match="Only admins of this organization can change a workflow that is"):
        workflow_update(workflow_id=wf.pk, by=teammate, changes={"name": "x"})
    workflow_update(workflow_id=wf.pk, by=owner, changes={"name": "Renamed"})
    assert Workflow.objects.get(pk=wf.pk).name == "Renamed"


def test_an_update_writes_only_the_changed_columns(org, owner):
    wf = make_workflow(org)
    with CaptureQueriesContext(connection) as captured:
        workflow_update(workflow_id=wf.pk, by=owner, changes={"description": "new"})
    updates = [q["sql"] for q in captured.captured_queries
               if q["sql"].startswith("UPDATE") and "automation_workflow" in q["sql"]]
    assert updates and all("run_count" not in sql and '"status"' not in sql for sql in updates)


def test_an_update_refuses_to_overwrite_a_value_changed_since_it_was_read(org, owner):
    wf = make_workflow(org, activate=False)
    workflow_update(workflow_id=wf.pk, by=owner, changes={"name": "Theirs"})
    with pytest.raises(StaleEdit) as caught:
        workflow_update(workflow_id=wf.pk, by=owner, changes={"name": "Mine"}, expected={"name": "Kickoff"})
    assert "Someone else changed this to “Theirs”" in caught.value.fields["name"]
    assert Workflow.objects.get(pk=wf.pk).name == "Theirs"


def spy(monkeypatch, module, name: str) -> list[dict]:
    """Record the keyword arguments of every call to module.name, and still make the call."""
    calls: list[dict] = []
    real = getattr(module, name)

    def recorded(**kw):
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(module, name, recorded)
    return calls


def test_the_admin_saves_workflows_through_the_service(client, org, owner, monkeypatch):
    import crm_automation.automation.admin.workflows as admin_workflows

    wf = make_workflow(org, activate=False)
    calls = spy(monkeypatch, admin_workflows, "workflow_update")
    client.force_login(owner)
    url = reverse("admin:automation_workflow_change", args=[wf.pk])
    assert client.post(url, page_form(client, url, description="via the admin")).status_code == 302
    (call,) = calls
    assert call["by"] == owner and call["changes"] == {"description": "via the admin"} and call["actions"] is None


def test_the_admin_saves_records_through_the_service(client, org, owner, deal, monkeypatch):
    import crm_automation.crm.admin_scoping as scoping

    calls = spy(monkeypatch, scoping, "record_update")
    client.force_login(owner)
    url = reverse("admin:crm_deal_change", args=[deal.pk])
    assert client.post(url, page_form(client, url, title="Renamed")).status_code == 302
    (call,) = calls
    assert call["by"] == owner and call["changes"] == {"title": "Renamed"}
    assert call["expected"] == {"title": "Website"}


def test_the_deal_add_form_preselects_the_only_organization(client, org, teammate):
    client.force_login(teammate)
    data = page_form(client, reverse("admin:crm_deal_add"))
    assert data["organization"] == str(org.pk)
