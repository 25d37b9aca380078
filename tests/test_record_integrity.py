"""Workflows never blank a record by accident, a lead's status never lies, and deleting a record
while a workflow runs on it fails only that run."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse

from crm_automation.automation.definition.validation import validate_action
from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.automation.nodes import REGISTRY
from crm_automation.automation.runtime import engine
from crm_automation.automation.runtime.engine import runs
from crm_automation.crm.models import Deal, Lead, Task
from crm_automation.crm.services import deal_move_to_stage, record_delete
from tests.admin_helpers import page_form
from tests.conftest import drain, make_workflow, stage
from tests.drafts import store_around_validation
from tests.test_isolation import dispatched, won_deals


def test_an_unknown_path_in_an_update_field_template_is_refused_on_save(org):
    ((where, message),) = validate_action("update_field", {"field": "title", "value": "{{deal.titel}}"},
                                          trigger_type="deal_stage_change", organization_id=org.pk)
    assert where == "config.value"
    assert message == "{{deal.titel}} is not a field this trigger provides; did you mean deal.title?"


def test_a_stored_unknown_path_fails_the_step_and_leaves_the_title(org, deal):
    wf = make_workflow(org, actions=[{"type": "update_field", "config": {"field": "title", "value": "ok"}}])
    bad = {**wf.current_version.definition,
           "actions": [{"type": "update_field", "config": {"field": "title", "value": "{{deal.titel}}"}}]}
    store_around_validation(wf.current_version, bad)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    step = WorkflowRunAction.objects.get()
    assert step.status == "failed" and "{{deal.titel}} is not a value this workflow knows" in step.error
    assert Deal.objects.get(pk=deal.pk).title == "Website" and WorkflowRun.objects.get().status == "failed"


def test_a_required_field_is_never_set_to_an_empty_rendering(org, deal):
    deal.contact = None
    deal.save()
    make_workflow(org, actions=[{"type": "update_field", "config": {"field": "title",
                                                                   "value": "{{deal.contact.company}}"}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    step = WorkflowRunAction.objects.get()
    assert step.status == "failed" and "rendered empty (the deal has no contact)" in step.error
    assert Deal.objects.get(pk=deal.pk).title == "Website"


def test_a_missing_recipient_is_explained_in_words(org, deal):
    deal.contact = None
    deal.save()
    make_workflow(org)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get()
    assert "Step 3 (Send email) failed: the deal has no contact, so there is no recipient" in run.error


def test_converted_is_not_a_status_a_person_can_set(org, lead):
    lead.status = Lead.Status.CONVERTED
    with pytest.raises(ValidationError, match="only by converting it"):
        lead.save()
    errors = validate_action("update_field", {"field": "status", "value": "converted"},
                             trigger_type="lead_created", organization_id=org.pk)
    assert "only by converting it" in errors[0][1]


def test_the_lead_form_offers_no_converted_status_and_freezes_it_once_converted(client, org, owner, lead):
    from crm_automation.crm.services import lead_convert

    client.force_login(owner)
    url = reverse("admin:crm_lead_change", args=[lead.pk])
    page = client.get(url).content.decode()
    assert 'value="converted"' not in page and "Convert selected leads" in page
    response = client.post(url, page_form(client, url, status="converted"))
    assert "Select a valid choice" in response.content.decode()
    assert Lead.objects.get(pk=lead.pk).status == "new"
    lead_convert(lead=lead)
    assert 'name="status"' not in client.get(url).content.decode()


def test_a_record_deleted_mid_run_fails_that_run_only(org, monkeypatch):
    make_workflow(org)
    doomed, kept = won_deals(org, 2)
    run_ids = dispatched()
    load = runs.load_states

    def deleted_right_after_loading(runs):  # the user deletes the deal while the worker starts
        states = load(runs)
        record_delete(record=Deal.objects.get(pk=doomed.pk), by=None)
        return states

    monkeypatch.setattr(runs, "load_states", deleted_right_after_loading)
    report = engine.execute_runs(run_ids)
    statuses = {WorkflowRun.objects.get(pk=r).trigger_entity_id: s for r, s in report.finished.items()}
    assert statuses == {doomed.pk: "failed", kept.pk: "completed"}
    assert "the deal was deleted while the workflow was running" in \
        WorkflowRun.objects.get(trigger_entity_id=doomed.pk).error
    assert list(Task.objects.values_list("deal_id", flat=True)) == [kept.pk]


@pytest.mark.django_db(transaction=True)
def test_a_delete_waits_for_the_runs_segment_and_takes_its_rows_along(org, monkeypatch):
    """PostgreSQL: the run locks the deal for its segment; the delete (which locks first) waits,
    then deletes the task the run just made instead of failing at commit."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: the two cannot overlap there")
    make_workflow(org, actions=[{"type": "create_task", "config": {"title": "Kick off"}}])
    (deal,) = won_deals(org, 1)
    run_ids = dispatched()
    inside, release, errors = threading.Event(), threading.Event(), []
    apply = REGISTRY["create_task"].apply

    def slow_apply(items):
        result = apply(items)
        inside.set()
        release.wait(10)
        return result

    monkeypatch.setattr(REGISTRY["create_task"], "apply", slow_apply)

    def delete():
        inside.wait(10)
        try:
            record_delete(record=Deal.objects.get(pk=deal.pk), by=None)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    deleter = threading.Thread(target=delete)
    deleter.start()
    worker = threading.Thread(target=lambda: (engine.execute_runs(run_ids), connection.close()))
    worker.start()
    inside.wait(10)
    release.set()
    worker.join(20)
    deleter.join(20)
    assert errors == []
    assert not Deal.objects.filter(pk=deal.pk).exists() and not Task.objects.exists()


def test_a_workflow_cannot_take_a_converted_lead_out_of_converted(client, org, owner, lead):
    from crm_automation.crm.services import lead_convert

    make_workflow(org, trigger_type="lead_converted", trigger_config={},
                  actions=[{"type": "update_field", "config": {"field": "status", "value": "qualified"}}])
    lead_convert(lead=lead)
    drain()
    step = WorkflowRunAction.objects.get()
    assert step.status == "failed" and "its status stays Converted" in step.error
    assert Lead.objects.get(pk=lead.pk).status == "converted"
    client.force_login(owner)
    url = reverse("admin:crm_lead_change", args=[lead.pk])
    assert client.post(url, page_form(client, url, name="Grace B. Hopper")).status_code == 302


def test_a_model_error_about_a_read_only_field_is_shown_not_a_crash(client, org, owner, lead):
    from django.utils import timezone

    # The half state older code let a workflow write: converted, with another status.
    Lead.objects.filter(pk=lead.pk).update(converted_at=timezone.now(), status="qualified")
    client.force_login(owner)
    url = reverse("admin:crm_lead_change", args=[lead.pk])
    response = client.post(url, page_form(client, url, name="Renamed"))
    assert response.status_code == 200 and "its status stays Converted" in response.content.decode()
