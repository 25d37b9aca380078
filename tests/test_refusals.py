"""Refusals by kind: a service raises ValidationError for bad input, Refused for "not now" and
StaleEdit when someone saved meanwhile; the API answers 400, 409 and 409 with what is saved
now, the pages show the words, whatever the words are."""

import pytest
from rest_framework.test import APIClient

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.runs import run_cancel
from crm_automation.automation.services.versions import workflow_update_from_document
from crm_automation.automation.services.workflows import workflow_update
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.crm.models import Deal, Stage
from crm_automation.crm.services import record_update
from crm_automation.refusals import Refused, StaleEdit
from tests.conftest import make_workflow
from tests.test_web_builder import as_user, data_of, post

URL = "/api/v1/workflows/"
RUNS = "/api/v1/runs/"


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def record(deal: Deal) -> dict:
    return {"entity_type": "deal", "entity_id": str(deal.pk)}


def test_one_endpoint_answers_400_for_bad_input_and_409_for_not_now(org, teammate, deal):
    manual = make_workflow(org, name="By hand", trigger_type="manual_deal", trigger_config={}, activate=False)
    # Well-formed, but the workflow is a draft: the service refuses it (Refused), a 409.
    refused = api(teammate).post(f"{URL}{manual.pk}/trigger/", record(deal), format="json")
    assert refused.status_code == 409 and "activate it first" in refused.json()["detail"]
    # Live now, but the input holds a NUL character no database stores: bad input, a 400 at its field.
    Workflow.objects.filter(pk=manual.pk).update(status="activated")
    bad = api(teammate).post(f"{URL}{manual.pk}/trigger/", {**record(deal), "input": {"note": "a\x00b"}},
                             format="json")
    assert bad.status_code == 400 and "NUL" in bad.json()["input.note"][0]
    started = api(teammate).post(f"{URL}{manual.pk}/trigger/", {**record(deal), "input": {"note": "ok"}},
                                 format="json")
    assert started.status_code == 202


def test_a_run_that_already_ended_is_a_409_and_a_bad_way_to_resume_a_400(org, owner, deal):
    manual = make_workflow(org, name="By hand", trigger_type="manual_deal", trigger_config={})
    run = workflow_start(workflow_id=manual.pk, by=None, record=deal)
    run_cancel(run_id=run.pk, by=owner)
    ended = api(owner).post(f"{RUNS}{run.pk}/cancel/")
    assert ended.status_code == 409 and "already ended" in ended.json()["detail"]
    assert api(owner).post(f"{RUNS}{run.pk}/resume/", {"how": "sideways"}, format="json").status_code == 400


def test_a_stale_patch_is_refused_as_a_stale_edit_that_says_what_is_saved_now(org, owner, teammate):
    draft = make_workflow(org, name="Draft", activate=False)
    opened = draft.draft_revision
    assert api(teammate).patch(f"{URL}{draft.pk}/", {"description": "theirs"}, format="json").status_code == 200
    draft.refresh_from_db()
    # The service's answer is typed: what is saved now rides on the refusal.
    with pytest.raises(StaleEdit) as refused:
        workflow_update_from_document(workflow_id=draft.pk, by=owner, document={"description": "mine"},
                                      expected_revision=opened)
    assert (refused.value.revision, refused.value.saved_by) == (draft.draft_revision, teammate)
    # The API answers it with a 409 that carries the same.
    response = api(owner).patch(f"{URL}{draft.pk}/", {"description": "mine"}, format="json",
                                HTTP_IF_MATCH=f'"{opened}"')
    assert response.status_code == 409
    body = response.json()
    assert body["detail"] and body["current"]["draft_revision"] == draft.draft_revision
    assert body["current"]["edited_by"] == "teammate" and body["current"]["edited_at"]
    assert Workflow.objects.get(pk=draft.pk).description == "theirs"
    # Made again on what is saved now, it goes through.
    again = api(owner).patch(f"{URL}{draft.pk}/", {"description": "mine"}, format="json",
                             HTTP_IF_MATCH=f'"{body["current"]["draft_revision"]}"')
    assert again.status_code == 200 and again.json()["description"] == "mine"


def test_the_builder_answers_the_same_stale_edit_with_what_is_saved_now(org, owner, teammate):
    won = make_workflow(org, name="Won deal kickoff", activate=False)
    url = f"/crm/automation/workflows/{won.pk}/edit/"
    opened = won.draft_revision
    document = data_of(as_user(owner).get(url))["document"]
    assert post(as_user(teammate), url, dict(document, description="theirs"), opened).status_code == 200
    response = post(as_user(owner), url, dict(document, description="mine"), opened)
    won.refresh_from_db()
    assert response.status_code == 409
    assert response.json()["conflict"]["revision"] == won.draft_revision and won.description == "theirs"
    assert response.json()["conflict"]["by"] == "teammate"


def test_a_field_changed_meanwhile_is_a_409_naming_the_field(org, deal, owner):
    Deal.objects.filter(pk=deal.pk).update(title="Renamed by a colleague")
    response = api(owner).patch(f"/api/v1/deals/{deal.pk}/", {"title": "Mine", "expected": {"title": "Website"}},
                                format="json")
    assert response.status_code == 409
    assert "Renamed by a colleague" in response.json()["title"][0] and response.json()["detail"]
    with pytest.raises(StaleEdit) as refused:
        record_update(record=deal, by=None, changes={"title": "Mine"}, expected={"title": "Website"})
    assert list(refused.value.fields) == ["title"]
    assert Deal.objects.get(pk=deal.pk).title == "Renamed by a colleague"


def test_an_archived_workflow_is_refused_as_not_now_by_the_api_and_the_builder(org, owner):
    archived = make_workflow(org, name="Old", activate=False)
    assert api(owner).patch(f"{URL}{archived.pk}/", {"name": ""}, format="json").status_code == 400  # bad input
    Workflow.objects.filter(pk=archived.pk).update(status="archived")
    response = api(owner).patch(f"{URL}{archived.pk}/", {"name": "New"}, format="json")
    assert response.status_code == 409 and "clone it instead" in response.json()["detail"]
    assert "current" not in response.json()  # not a stale edit: nothing newer to show
    built = post(as_user(owner), f"/crm/automation/workflows/{archived.pk}/edit/", {"name": "New"}, 1)
    assert built.status_code == 409 and "clone it instead" in built.json()["errors"][0]["message"]
    assert "conflict" not in built.json()


def test_a_version_that_no_longer_fits_the_organization_is_not_rolled_back(org, owner):
    Stage.objects.create(organization=org, slug="pilot", name="Pilot", order=99)
    workflow = make_workflow(org, name="Pilot kickoff", trigger_config={"to_stage": "pilot"}, activate=False)
    workflow_update(workflow_id=workflow.pk, by=owner, changes={"trigger_config": {"to_stage": "won"}})
    Stage.objects.filter(organization=org, slug="pilot").delete()
    # The request is well-formed (version 1 exists); the organization no longer has its stage.
    response = api(owner).post(f"{URL}{workflow.pk}/rollback/", {"version": 1}, format="json")
    assert response.status_code == 409 and "Version 1 cannot be made current again" in response.json()["detail"]
    assert "pilot" in response.json()["detail"]
    trigger = api(owner).get(f"{URL}{workflow.pk}/").json()["nodes"][0]
    assert trigger["data"]["config"]["to_stage"] == "won"  # nothing was rolled back


def test_pages_show_a_refusal_as_a_message(org, owner):
    live = make_workflow(org, name="Live")
    page = as_user(owner).post(f"/crm/automation/workflows/{live.pk}/delete/", follow=True)
    assert page.status_code == 200
    assert "“Live” is activated: only drafts are deleted; archive it instead" in page.content.decode()
    assert Workflow.objects.filter(pk=live.pk).exists()


def test_a_stale_edit_is_a_refusal_and_lists_its_reasons():
    stale = StaleEdit.of_fields({"title": "changed", "amount": "changed too"})
    assert isinstance(stale, Refused) and stale.messages == ["changed changed too"]
    assert stale.fields == {"title": "changed", "amount": "changed too"} and stale.revision is None
