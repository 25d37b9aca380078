"""Tenants never mix: links stay inside the organization, whatever the path (model, service,
admin), and other tenants' names never show, not even in list filters."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from crm_automation.automation.services.workflows import workflow_update
from crm_automation.crm.models import Deal, Membership, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.admin_helpers import page_form
from tests.conftest import make_user, make_workflow, stage


@pytest.fixture
def their_deal(other_org):
    return Deal.objects.create(organization=other_org, title="Rival secret", stage=stage(other_org, "new"))


@pytest.fixture
def two_org_user(org, other_org):
    user = make_user("consultant", org, Membership.Role.ADMIN)
    Membership.objects.create(user=user, organization=other_org, role=Membership.Role.ADMIN)
    return user


def test_a_task_cannot_point_at_another_organizations_deal(org, their_deal):
    with pytest.raises(ValidationError, match="belongs to another organization"):
        Task.objects.create(organization=org, title="Spy", deal=their_deal)
    assert not Task.objects.exists()


def test_a_deal_cannot_move_into_another_organizations_stage(org, other_org, deal):
    deal.stage = stage(other_org, "won")
    with pytest.raises(ValidationError, match="belongs to another organization"):
        deal.save()
    with pytest.raises(ValidationError, match="another organization"):
        deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(other_org, "won"))
    assert Deal.objects.get(pk=deal.pk).stage.organization == org


def test_a_checked_link_by_id_alone_is_checked_too(org, deal, their_deal):
    task = Task(organization=org, title="Spy", deal_id=their_deal.pk)  # no object in memory
    with pytest.raises(ValidationError, match="belongs to another organization"):
        task.save()


def test_an_owner_must_be_a_member(org, deal, outsider):
    deal.owner = outsider
    with pytest.raises(ValidationError, match="not a member of this organization"):
        deal.save()


def test_a_record_never_moves_to_another_organization(other_org, deal):
    deal.organization = other_org
    with pytest.raises(ValidationError, match="stays in the organization it was created in"):
        deal.save()


def test_a_two_org_user_cannot_link_across_organizations_in_the_admin(client, org, two_org_user, their_deal):
    client.force_login(two_org_user)
    add = reverse("admin:crm_task_add")
    page = client.post(add, page_form(client, add, organization=org.pk, title="Spy", deal=their_deal.pk))
    assert page.status_code == 200 and "belongs to another organization" in page.content.decode()
    assert not Task.objects.exists()


def test_a_two_org_user_cannot_move_a_deal_to_the_other_organization(client, org, other_org, two_org_user, deal):
    client.force_login(two_org_user)
    url = reverse("admin:crm_deal_change", args=[deal.pk])
    data = page_form(client, url, stage=stage(other_org, "won").pk, organization=other_org.pk)
    page = client.post(url, data).content.decode()
    assert "belongs to another organization" in page or "Select a valid choice" in page
    deal.refresh_from_db()
    assert deal.organization == org and deal.stage.organization == org


def test_a_workflow_stays_in_its_organization(org, other_org, owner):
    wf = make_workflow(org, activate=False)
    with pytest.raises(ValidationError, match="stays in the organization it was created in"):
        workflow_update(workflow_id=wf.pk, by=owner, changes={"organization": other_org})


def test_the_organization_is_read_only_on_the_change_form(client, org, owner):
    wf = make_workflow(org, activate=False)
    client.force_login(owner)
    page = client.get(reverse("admin:automation_workflow_change", args=[wf.pk])).content.decode()
    assert 'name="organization"' not in page


@pytest.mark.parametrize("changelist", ["crm_deal", "crm_lead", "crm_task", "crm_emailmessage", "crm_stage",
                                        "crm_contact", "automation_workflow"])
def test_list_filters_never_name_another_tenant(client, org, other_org, owner, their_deal, changelist):
    other_org.name = "Rival Secret Agency"
    other_org.save()
    stage(other_org, "won").__class__.objects.filter(organization=other_org, slug="won").update(name="Hidden Won")
    client.force_login(owner)
    page = client.get(reverse(f"admin:{changelist}_changelist")).content.decode()
    assert "Rival Secret Agency" not in page and "Hidden Won" not in page


def test_the_stage_filter_lists_the_persons_own_stages(client, org, owner, deal):
    client.force_login(owner)
    page = client.get(reverse("admin:crm_deal_changelist")).content.decode()
    assert f"?stage={stage(org, 'won').pk}" in page and "Negotiation" in page
