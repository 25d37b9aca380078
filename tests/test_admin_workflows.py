"""The workflow pages of the admin, as an owner, a teammate (ops), a viewer and an outsider."""

import json

from django.urls import reverse

from crm_automation.automation.models import Workflow
from crm_automation.crm.models import Organization
from tests.admin_helpers import page_form, workflow_form_data
from tests.conftest import make_workflow

LIST = reverse("admin:automation_workflow_changelist")
ADD = reverse("admin:automation_workflow_add")


def change_url(wf):
    return reverse("admin:automation_workflow_change", args=[wf.pk])


def test_the_list_shows_the_columns_ops_need(client, org, owner):
    make_workflow(org)
    client.force_login(owner)
    page = client.get(LIST).content.decode()
    for text in ("Kickoff", "Deal stage changes", "Activated", "Success rate", "Actions"):
        assert text in page


def test_outsiders_see_none_of_it(client, org, outsider):
    wf = make_workflow(org)
    client.force_login(outsider)
    assert "Kickoff" not in client.get(LIST).content.decode()
    response = client.get(change_url(wf))
    assert response.status_code == 302  # the admin's "does not exist" redirect, not the page
    assert change_url(wf) not in client.get(LIST + "?q=Kickoff").content.decode()


def test_the_owner_sees_transition_buttons_the_teammate_does_not(client, org, owner, teammate):
    wf = make_workflow(org, activate=False)
    client.force_login(owner)
    assert 'name="_fsm_transition_to"' in client.get(change_url(wf)).content.decode()
    client.force_login(teammate)
    page = client.get(change_url(wf)).content.decode()
    assert 'name="_fsm_transition_to"' not in page and 'name="_save"' in page  # ops edit drafts


def press(client, wf, transition: str) -> str:
    """Press a transition button on the change page; the page shown afterwards."""
    data = workflow_form_data(client, wf, _fsm_transition_to=transition)
    return client.post(change_url(wf), data, follow=True).content.decode()


def test_the_owner_activates_from_the_change_page(client, org, owner):
    wf = make_workflow(org, activate=False)
    client.force_login(owner)
    assert "is now activated" in press(client, wf, "activate")
    assert Workflow.objects.get(pk=wf.pk).status == "activated"


def test_a_forged_transition_from_a_teammate_is_refused(client, org, teammate):
    wf = make_workflow(org, activate=False)
    client.force_login(teammate)
    assert "Only admins of Acme can activate workflows" in press(client, wf, "activate")
    assert Workflow.objects.get(pk=wf.pk).status == "draft"


def test_activation_refusals_show_the_reason(client, org, owner):
    wf = make_workflow(org, activate=False, actions=[])
    client.force_login(owner)
    assert "has no action" in press(client, wf, "activate")


def test_teammates_cannot_edit_an_activated_workflow(client, org, teammate):
    wf = make_workflow(org)
    client.force_login(teammate)
    assert client.post(change_url(wf), workflow_form_data(client, wf, name="Hijacked")).status_code == 403
    assert Workflow.objects.get(pk=wf.pk).name == "Kickoff"


def test_viewers_read_but_cannot_change(client, org, viewer):
    wf = make_workflow(org, activate=False)
    client.force_login(viewer)
    assert client.get(change_url(wf)).status_code == 200
    assert client.post(change_url(wf), workflow_form_data(client, wf, name="x")).status_code == 403


def test_editing_saves_a_new_version(client, org, owner):
    wf = make_workflow(org, activate=False)
    client.force_login(owner)
    data = workflow_form_data(client, wf, conditions=json.dumps(
        {"rules": [{"field": "deal.amount", "operator": "gte", "value": 1000}]}))
    assert client.post(change_url(wf), data).status_code == 302
    assert Workflow.objects.get(pk=wf.pk).version == 2


def test_bad_input_is_shown_on_the_form_and_changes_nothing(client, org, owner):
    wf = make_workflow(org, activate=False)
    client.force_login(owner)
    rules = {"rules": [{"field": "deal.x", "operator": "eq", "value": 1}]}
    data = workflow_form_data(client, wf, conditions=json.dumps(rules))
    steps = json.loads(data["steps"])
    steps[0]["config"] = {"title": ""}
    data["steps"] = json.dumps(steps)
    page = client.post(change_url(wf), data).content.decode()
    assert "conditions.rules[0].field: unknown field" in page
    assert "config.title: is required" in page
    assert Workflow.objects.get(pk=wf.pk).version == 1


def test_adding_a_workflow_in_another_org_is_refused(client, org, other_org, owner):
    client.force_login(owner)
    data = page_form(client, ADD, organization=other_org.pk, name="Sneaky", trigger_type="deal_created",
                     trigger_config="{}")
    page = client.post(ADD, data).content.decode()
    assert "Select a valid choice" in page and not Workflow.objects.exists()
    data["organization"] = org.pk
    assert client.post(ADD, data).status_code == 302
    assert Workflow.objects.get().versions.count() == 1


def test_free_plans_do_not_see_automation(client, org, owner):
    Organization.objects.filter(pk=org.pk).update(plan="free")
    client.force_login(owner)
    assert "Workflows" not in client.get(reverse("admin:index")).content.decode()


def test_the_change_page_lists_the_fields_and_operators_a_trigger_offers(client, org, owner):
    wf = make_workflow(org, activate=False, trigger_type="lead_converted", trigger_config={},
                       actions=[{"type": "create_task", "config": {"title": "Hi {{lead.name}}"}}])
    client.force_login(owner)
    page = client.get(change_url(wf)).content.decode()
    assert "<code>lead.company</code>" in page and "<code>deal.amount</code>" in page
    assert "<code>is_not_empty</code>" in page and "<code>update_field</code>" in page


def test_a_teammate_builds_a_workflow_with_actions_in_one_go(client, org, teammate):
    client.force_login(teammate)
    data = page_form(client, ADD, name="Won → kickoff", trigger_type="deal_stage_change",
                     trigger_config=json.dumps({"to_stage": "won"}), error_handling="continue",
                     timeout_seconds=30, steps=json.dumps([
                         {"type": "create_task", "config": {"title": "Kick off {{deal.title}}"}},
                         {"type": "update_field", "config": {"field": "probability", "value": 100}}]))
    assert data["organization"] == str(org.pk)  # preselected: the teammate belongs to one organization
    assert client.post(ADD, data).status_code == 302
    wf = Workflow.objects.get()
    assert (wf.status, wf.created_by, wf.version) == ("draft", teammate, 1)
    assert [a["type"] for a in wf.current_version.definition["actions"]] == ["create_task", "update_field"]
