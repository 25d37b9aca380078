"""Every page of /crm/automation for every person: the owner (admin), a teammate (ops), a viewer
and an outsider (admin of another organization). Pages of this organization's objects are 404
for the outsider, never 403; writes a role may not make are 403 and change nothing."""

import pytest
from django.test import Client

from crm_automation.automation.models import Workflow, WorkflowRun
from tests.test_approvals import SIDES
from tests.test_graph_engine import win

READ_ONLY = ("viewer",)


@pytest.fixture
def people(owner, teammate, viewer, outsider):
    return {"owner": owner, "teammate": teammate, "viewer": viewer, "outsider": outsider}


@pytest.fixture
def run(org, deal, owner):
    return win(org, deal, *SIDES, name="Terms approval")


def pages(run) -> list[str]:
    wf, deal_id = run.workflow_id, run.trigger_entity_id
    return [f"/crm/automation/workflows/{wf}/{tab}/" for tab in ("edit", "yaml", "graph", "versions", "simulate",
                                                                  "publish", "health")] + [
        f"/crm/automation/runs/{run.pk}/", f"/crm/automation/runs/{run.pk}/?fragment=1",
        f"/crm/automation/records/deal/{deal_id}/"]


OWN_ORGANIZATION_PAGES = ["/crm/automation/", "/crm/automation/templates/", "/crm/automation/approvals/",
                          "/crm/automation/runs/"]


@pytest.mark.parametrize("who", ["owner", "teammate", "viewer", "outsider"])
def test_every_page_answers_each_person_as_their_role_allows(people, run, who):
    client = Client()
    client.force_login(people[who])
    for url in OWN_ORGANIZATION_PAGES:
        response = client.get(url)
        assert response.status_code == 200, (who, url)
        assert "Terms approval" not in response.content.decode() or who != "outsider", (who, url)
    for url in pages(run):
        assert client.get(url).status_code == (404 if who == "outsider" else 200), (who, url)
    new = client.get("/crm/automation/workflows/new/").status_code
    assert new == (403 if who in READ_ONLY else 200), who


@pytest.mark.parametrize("who", ["teammate", "viewer", "outsider"])
def test_admin_only_writes_are_refused_and_change_nothing(people, run, who):
    client = Client()
    client.force_login(people[who])
    wf = run.workflow_id
    expected = 404 if who == "outsider" else 403
    for url in (f"/crm/automation/workflows/{wf}/toggle/", f"/crm/automation/workflows/{wf}/archive/"):
        assert client.post(url).status_code == expected, (who, url)
    assert Workflow.objects.get(pk=wf).status == "activated"
    answer = client.post(f"/crm/automation/approvals/{run.actions.get(node_id='ask').pk}/answer/",
                         {"decision": "approved"})
    assert answer.status_code == 404  # the question asks admins: to anyone else it is not there
    assert WorkflowRun.objects.get(pk=run.pk).status == "waiting"


def test_anonymous_visitors_are_sent_to_log_in(run):
    for url in [*OWN_ORGANIZATION_PAGES, *pages(run)]:
        response = Client().get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    assert Client().post(f"/crm/automation/workflows/{run.workflow_id}/toggle/").status_code == 302
