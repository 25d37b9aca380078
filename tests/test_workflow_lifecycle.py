"""The status machine: draft → activated ⇄ paused → archived, with reasons for refusals."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from crm_automation.automation.models import Workflow, WorkflowVersion
from crm_automation.automation.services.workflows import workflow_transition, workflow_update
from crm_automation.crm.models import Organization
from crm_automation.refusals import Refused
from tests.conftest import make_workflow
from tests.drafts import store_draft_around_validation


def go(wf, name, by=None):
    return workflow_transition(workflow_id=wf.pk, name=name, by=by)


def test_the_allowed_path(org):
    wf = make_workflow(org, activate=False)
    assert wf.status == "draft"
    assert go(wf, "activate").status == "activated"
    assert go(wf, "pause").status == "paused"
    assert go(wf, "activate").status == "activated"
    assert go(wf, "archive").status == "archived"


@pytest.mark.parametrize(("path", "refused", "message"), [
    ([], "pause", "a draft cannot be paused; activate it first"),
    (["archive"], "activate", "archived workflows cannot be activated"),
    (["archive"], "pause", "archived workflows cannot be paused"),
    (["archive"], "archive", "it is already archived"),
    (["activate"], "activate", "it is already activated"),
    (["activate", "pause"], "pause", "it is already paused"),
])
def test_refused_transitions_say_why(org, path, refused, message):
    wf = make_workflow(org, activate=False)
    for name in path:
        go(wf, name)
    with pytest.raises(Refused, match=message):
        go(wf, refused)


def test_activation_needs_an_action(org):
    wf = make_workflow(org, activate=False, actions=[])
    with pytest.raises(Refused, match="has no action"):
        go(wf, "activate")
    assert Workflow.objects.get(pk=wf.pk).status == "draft"


def test_activation_is_refused_when_a_stage_disappeared(org):
    wf = make_workflow(org, activate=False)
    store_draft_around_validation(wf, {**wf.definition, "trigger_config": {"to_stage": "gone"}})
    with pytest.raises(Refused, match="“gone” is not a stage of this organization; use one of new, "):
        go(wf, "activate")


def test_the_pro_plan_allows_ten_activated_workflows(org):
    for i in range(10):
        make_workflow(org, name=f"wf {i}")
    eleventh = make_workflow(org, name="one too many", activate=False)
    with pytest.raises(Refused, match="allows 10 activated workflows"):
        go(eleventh, "activate")
    go(Workflow.objects.get(name="wf 0"), "pause")
    assert go(eleventh, "activate").status == "activated"


def test_free_plan_cannot_activate(org):
    Organization.objects.filter(pk=org.pk).update(plan="free")
    wf = make_workflow(org, activate=False)
    with pytest.raises(Refused, match="does not include automation"):
        go(wf, "activate")


def test_only_org_admins_may_transition(org, owner, teammate, viewer, outsider):
    wf = make_workflow(org, activate=False)
    for person in (teammate, viewer, outsider):
        with pytest.raises(PermissionDenied, match="Only admins of Acme can activate workflows"):
            go(wf, "activate", by=person)
    assert go(wf, "activate", by=owner).status == "activated"


def test_every_change_creates_an_immutable_version(org):
    wf = make_workflow(org, activate=False)
    workflow_update(workflow_id=wf.pk, changes={"name": "Renamed only"})  # not part of the definition
    workflow_update(workflow_id=wf.pk, changes={
        "conditions": {"rules": [{"field": "deal.amount", "operator": "gt", "value": 1}]}})
    wf.refresh_from_db()
    assert wf.version == 2 and list(wf.versions.values_list("number", flat=True)) == [2, 1]
    first = WorkflowVersion.objects.get(workflow=wf, number=1)
    assert first.definition["conditions"] == {}
    with pytest.raises(ValueError, match="immutable"):
        first.save()


def test_an_invalid_update_changes_nothing(org):
    wf = make_workflow(org, activate=False)
    with pytest.raises(ValidationError, match="trigger_config.to_stage"):
        workflow_update(workflow_id=wf.pk, changes={"trigger_config": {"to_stage": "nowhere"}})
    wf.refresh_from_db()
    assert wf.definition["trigger_config"] == {"to_stage": "won"} and wf.version == 1


def test_an_archived_workflow_is_frozen(org):
    wf = make_workflow(org)
    go(wf, "archive")
    with pytest.raises(Refused, match="archived"):
        workflow_update(workflow_id=wf.pk, changes={"name": "x"})
