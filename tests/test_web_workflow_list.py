"""/crm/automation: the workflow list with its figures and the plan's usage, the status toggle
(a POST form that works without JavaScript), clone, archive with a confirmation, delete a
draft, the template gallery, the Free plan's page — for every role, and 404 for outsiders."""

import pytest
from django.test import Client

from crm_automation.automation.models import MonthlyUsage, Workflow
from crm_automation.automation.plans import month_start
from crm_automation.crm.models import Organization
from tests.conftest import make_workflow

LIST = "/crm/automation/"


def rows(page) -> str:
    """The workflow table of a list page (the run filters below also name workflows)."""
    text = page.content.decode()
    start = '<table class="workflows">'
    return text.split(start, 1)[1].split("</table>", 1)[0] if start in text else ""


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def lead_welcome(org):
    return make_workflow(org, name="Lead welcome", trigger_type="lead_converted", trigger_config={}, activate=False,
                         actions=[{"type": "create_task", "config": {"title": "Welcome {{lead.name}}"}}])


@pytest.fixture
def won(org):
    return make_workflow(org, name="Won deal kickoff", trigger_config={"from_stage": "proposal", "to_stage": "won"})


def test_the_list_shows_each_workflow_in_words_with_its_figures(org, owner, won):
    lead_welcome(org)
    Workflow.objects.filter(pk=won.pk).update(run_count=4, success_count=3, failure_count=1)
    MonthlyUsage.objects.create(organization=org, month=month_start(), logged_runs=312)
    page = as_user(owner).get(LIST)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Deal moves from Proposal to Won" in text and "Lead is converted" in text
    assert "75%" in text  # 3 of 4 runs succeeded
    assert "1 of 10</strong> active" in text and "312 of 500</strong> logged runs this month" in text
    assert "deal_stage_change" not in rows(page)  # no slugs in the rows


def test_the_list_bare_path_redirects_and_anonymous_users_are_sent_to_log_in(org):
    assert Client().get("/crm/automation").status_code in (301, 302)
    response = Client().get(LIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_search_and_filters(org, owner, won):
    lead_welcome(org)
    client = as_user(owner)
    assert "Lead welcome" not in rows(client.get(LIST, {"q": "kickoff"}))
    drafts = rows(client.get(LIST, {"status": "draft"}))
    assert "Lead welcome" in drafts and "Won deal kickoff" not in drafts
    by_trigger = rows(client.get(LIST, {"trigger": "lead_converted"}))
    assert "Lead welcome" in by_trigger and "Won deal kickoff" not in by_trigger
    assert client.get(LIST, {"status": "<script>", "trigger": "nope"}).status_code == 200


def test_an_admin_pauses_and_activates_without_deleting(org, owner, won):
    client = as_user(owner)
    response = client.post(f"/crm/automation/workflows/{won.pk}/toggle/", {"next": LIST + "?q=Won"}, follow=True)
    assert response.redirect_chain[-1][0] == LIST + "?q=Won"
    assert "is paused" in response.content.decode()
    assert Workflow.objects.get(pk=won.pk).status == "paused"
    client.post(f"/crm/automation/workflows/{won.pk}/toggle/")
    assert Workflow.objects.get(pk=won.pk).status == "activated"


def test_the_toggle_says_why_it_refuses(org, owner):
    draft = make_workflow(org, name="Empty", activate=False, actions=[])
    response = as_user(owner).post(f"/crm/automation/workflows/{draft.pk}/toggle/", follow=True)
    assert "Cannot activate" in response.content.decode()
    assert Workflow.objects.get(pk=draft.pk).status == "draft"


def test_the_toggle_is_for_admins_and_other_organizations_ids_are_404(org, won, teammate, viewer, outsider):
    for user in (teammate, viewer):
        assert as_user(user).post(f"/crm/automation/workflows/{won.pk}/toggle/").status_code == 403
    assert as_user(outsider).post(f"/crm/automation/workflows/{won.pk}/toggle/").status_code == 404
    assert Workflow.objects.get(pk=won.pk).status == "activated"
    assert as_user(teammate).get(f"/crm/automation/workflows/{won.pk}/toggle/").status_code == 405


def test_the_toggle_needs_the_csrf_token(org, owner, won):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(f"/crm/automation/workflows/{won.pk}/toggle/").status_code == 403
    assert Workflow.objects.get(pk=won.pk).status == "activated"


def test_clone_archive_and_delete(org, owner, teammate, won):
    client = as_user(teammate)
    client.post(f"/crm/automation/workflows/{won.pk}/clone/")
    copy = Workflow.objects.get(name="Copy of Won deal kickoff")
    assert copy.status == "draft"
    confirm = client.get(f"/crm/automation/workflows/{copy.pk}/delete/")
    assert confirm.status_code == 200 and "cannot be undone" in confirm.content.decode()
    client.post(f"/crm/automation/workflows/{copy.pk}/delete/")
    assert not Workflow.objects.filter(pk=copy.pk).exists()
    # ops members do not archive; admins do, after a confirmation page
    assert client.post(f"/crm/automation/workflows/{won.pk}/archive/").status_code == 403
    admin = as_user(owner)
    assert "Archiving cannot be undone" in admin.get(f"/crm/automation/workflows/{won.pk}/archive/").content.decode()
    admin.post(f"/crm/automation/workflows/{won.pk}/archive/")
    assert Workflow.objects.get(pk=won.pk).status == "archived"
    assert "Won deal kickoff" not in rows(admin.get(LIST))
    assert "Won deal kickoff" in rows(admin.get(LIST, {"status": "archived"}))


def test_a_live_workflow_is_not_deleted(org, owner, won):
    response = as_user(owner).post(f"/crm/automation/workflows/{won.pk}/delete/", follow=True)
    assert "only drafts are deleted" in response.content.decode()
    assert Workflow.objects.filter(pk=won.pk).exists()


def test_viewers_read_but_do_not_write(org, viewer, won):
    client = as_user(viewer)
    page = client.get(LIST).content.decode()
    assert "Won deal kickoff" in rows(client.get(LIST)) and "toggle/" not in page and "clone/" not in page
    assert client.post(f"/crm/automation/workflows/{won.pk}/clone/").status_code == 403
    assert client.post(f"/crm/automation/workflows/{won.pk}/delete/").status_code == 403
    assert client.post("/crm/automation/templates/", {"template": "won-deal-kickoff"}).status_code == 403
    assert Workflow.objects.count() == 1


def test_outsiders_see_their_own_organization_only(org, won, outsider):
    client = as_user(outsider)
    assert "Won deal kickoff" not in client.get(LIST).content.decode()
    for url in (f"/crm/automation/workflows/{won.pk}/clone/", f"/crm/automation/workflows/{won.pk}/archive/",
                f"/crm/automation/workflows/{won.pk}/delete/"):
        assert client.post(url).status_code == 404
    assert client.get(LIST, {"org": "acme"}).status_code == 404


def test_the_template_gallery_makes_a_draft(org, teammate):
    client = as_user(teammate)
    gallery = client.get("/crm/automation/templates/").content.decode()
    assert "Won deal kickoff" in gallery and "Use this template" in gallery
    response = client.post("/crm/automation/templates/", {"template": "won-deal-kickoff"}, follow=True)
    assert "from the template" in response.content.decode()
    assert Workflow.objects.get(organization=org).status == "draft"
    response = client.post("/crm/automation/templates/", {"template": "../../etc/passwd"}, follow=True)
    assert "There is no workflow template" in response.content.decode()


def test_the_free_plan_explains_instead_of_refusing(org, owner):
    Organization.objects.filter(pk=org.pk).update(plan="free")
    page = as_user(owner).get(LIST)
    assert page.status_code == 200
    assert "Automation is a Pro feature" in page.content.decode()


def test_enterprise_shows_no_limits(org, owner, won):
    Organization.objects.filter(pk=org.pk).update(plan="enterprise")
    text = as_user(owner).get(LIST).content.decode()
    assert "<strong>1</strong> active" in text and " of 10" not in text


def test_a_member_of_two_organizations_switches(org, other_org, owner, won):
    from crm_automation.crm.models import Membership

    Membership.objects.create(user=owner, organization=other_org, role="viewer")
    client = as_user(owner)
    assert "Won deal kickoff" in client.get(LIST).content.decode()
    rival = client.get(LIST, {"org": "rival"})
    assert "Won deal kickoff" not in rival.content.decode() and "Rival" in rival.content.decode()
    assert "Won deal kickoff" not in client.get(LIST).content.decode()  # remembered in the session
