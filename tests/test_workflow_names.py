"""Workflow names are unique per organization, whatever their case: two
workflows of one name could not be told apart in the list, the run filter, messages or a
record's "why not" table. Archived workflows keep their names (their runs still show them).
A name a person types is refused at its field on every write path; a name made for them (a
clone, a template, an import, the AI's draft) is made free: “Copy of X (2)”, “X (2)”."""

import json

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.test import Client
from django.urls import reverse

from crm_automation.automation import workflow_templates
from crm_automation.automation.models import Workflow
from crm_automation.automation.services import workflows as services
from crm_automation.automation.services.versions import workflow_clone, workflow_document, workflow_export_yaml
from crm_automation.automation.services.workflows import workflow_delete, workflow_transition, workflow_update
from tests.admin_helpers import page_form
from tests.conftest import make_workflow

TAKEN = "another workflow of this organization is already called that"


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_name_is_unique_in_the_organization_whatever_its_case(org, other_org):
    make_workflow(org, name="Won deal kickoff")
    with pytest.raises(ValidationError, match=rf"name: {TAKEN} \(as “Won deal kickoff”: names are unique whatever "
                                              r"their case\); choose another name, e.g. “WON DEAL KICKOFF \(2\)”"):
        make_workflow(org, name="WON DEAL KICKOFF")
    with pytest.raises(ValidationError, match=TAKEN):
        make_workflow(org, name="  Won deal kickoff  ")  # the same once trimmed
    make_workflow(other_org, name="Won deal kickoff")  # another organization: its own names
    assert Workflow.objects.filter(organization=org).count() == 1


def test_an_archived_workflow_keeps_its_name_and_a_deleted_draft_frees_it(org):
    old = make_workflow(org, name="Welcome")
    workflow_transition(workflow_id=old.pk, name="archive", by=None)
    with pytest.raises(ValidationError, match="an archived workflow of this organization is already called that"):
        make_workflow(org, name="welcome")
    draft = make_workflow(org, name="Draft idea", activate=False)
    workflow_delete(workflow_id=draft.pk, by=None)
    make_workflow(org, name="Draft idea")


def test_a_rename_to_a_taken_name_is_refused_and_a_case_change_is_not(org):
    make_workflow(org, name="Alpha")
    beta = make_workflow(org, name="Beta", activate=False)
    with pytest.raises(ValidationError, match=TAKEN):
        workflow_update(workflow_id=beta.pk, changes={"name": "ALPHA"})
    workflow_update(workflow_id=beta.pk, changes={"name": "BETA"})  # its own name in another case
    assert Workflow.objects.get(pk=beta.pk).name == "BETA"


def test_the_database_refuses_a_second_name_whatever_the_checks_say(org):
    first = make_workflow(org, name="Kickoff")
    with pytest.raises(IntegrityError), transaction.atomic():
        Workflow.objects.create(organization=org, name="kickoff", key="other", trigger_type="deal_created",
                                document={**first.document, "id": "other", "name": "kickoff"})


def test_a_name_taken_between_the_check_and_the_save_is_a_refusal_at_the_name(org):
    # Two saves at once both pass the check; the database constraint decides, and the loser
    # is told at the name field (services._save_named), its transaction still usable.
    first = make_workflow(org, name="Kickoff")
    late = Workflow(organization=org, name="KICKOFF", key="late", trigger_type="deal_created",
                    document={**first.document, "id": "late", "name": "KICKOFF"})
    with transaction.atomic():
        with pytest.raises(ValidationError) as refused:
            services._save_named(late)
        assert list(refused.value.message_dict) == ["name"] and TAKEN in refused.value.message_dict["name"][0]
        assert Workflow.objects.count() == 1


# --- Every write path --------------------------------------------------------------------------
def test_the_api_refuses_a_taken_name_at_the_field(org, owner):
    existing = make_workflow(org, name="Welcome won deals", activate=False)
    client = as_user(owner)
    document = workflow_document(existing)
    document.pop("_status")
    document.update(id="another", name="welcome WON deals")
    created = client.post("/api/v1/workflows/", data=json.dumps(document), content_type="application/json")
    assert created.status_code == 400
    assert [(e["place"], TAKEN in e["message"]) for e in created.json()["errors"]] == [("name", True)]
    other = make_workflow(org, name="Other", activate=False)
    renamed = client.patch(f"/api/v1/workflows/{other.pk}/", data=json.dumps({"name": "Welcome won deals"}),
                           content_type="application/json")
    assert renamed.status_code == 400 and renamed.json()["errors"][0]["place"] == "name"
    assert Workflow.objects.get(pk=other.pk).name == "Other"


def test_the_builder_shows_a_taken_name_under_the_name_field(org, teammate):
    make_workflow(org, name="Kickoff", activate=False)
    client = as_user(teammate)
    page = client.get("/crm/automation/workflows/new/").content.decode()
    assert 'value="New workflow"' in page
    document = {"id": "", "name": "kickoff", "nodes": [{"id": "trigger", "type": "workflow", "data": {
        "subtype": "chat-app", "label": "Trigger", "config": {"event": "deal_created"}}}], "edges": []}
    saved = client.post("/crm/automation/workflows/new/", content_type="application/json",
                        data=json.dumps({"document": document}))
    assert saved.status_code == 400
    assert [(e["place"], e["node"]) for e in saved.json()["errors"]] == [("name", "")]
    make_workflow(org, name="New workflow", activate=False)  # the starter's name is taken: it offers a free one
    assert 'value="New workflow (2)"' in client.get("/crm/automation/workflows/new/").content.decode()


def test_the_yaml_tab_refuses_a_taken_name_at_its_line(org, owner):
    make_workflow(org, name="Kickoff", activate=False)
    mine = make_workflow(org, name="Mine", activate=False)
    text = workflow_export_yaml(mine).replace("name: Mine", "name: KICKOFF")
    page = as_user(owner).post(reverse("web:yaml", args=[mine.pk]), {"yaml": text, "revision": mine.draft_revision})
    body = page.content.decode()
    line = text.splitlines().index("name: KICKOFF") + 1
    assert f"Line {line}: name: {TAKEN}" in body
    assert Workflow.objects.get(pk=mine.pk).name == "Mine"


def test_the_admin_form_refuses_a_taken_name_at_the_field(client, org, owner):
    make_workflow(org, name="Kickoff")
    client.force_login(owner)
    add = reverse("admin:automation_workflow_add")
    data = page_form(client, add, name="KICKOFF", trigger_type="deal_created", trigger_config="{}")
    page = client.post(add, data).content.decode()
    assert "Another workflow of this organization is already called that" in page
    assert Workflow.objects.count() == 1


def test_a_clone_gets_a_free_name_and_a_chosen_one_must_be_free(org, owner):
    source = make_workflow(org, name="Kickoff")
    first = workflow_clone(workflow_id=source.pk, by=owner)
    second = workflow_clone(workflow_id=source.pk, by=owner)
    assert (first.name, second.name) == ("Copy of Kickoff", "Copy of Kickoff (2)")
    response = as_user(owner).post(f"/api/v1/workflows/{source.pk}/clone/", data={"name": "copy of kickoff"},
                                   content_type="application/json")
    assert response.status_code == 400 and TAKEN in response.json()["name"][0].lower()
    web = as_user(owner).post(reverse("web:clone", args=[source.pk]), follow=True)
    assert web.status_code == 200 and Workflow.objects.filter(name="Copy of Kickoff (3)").exists()


def test_a_template_installed_twice_gets_a_free_name(org, owner):
    first = workflow_templates.load(organization=org, by=owner, key="won-deal-kickoff")
    second = workflow_templates.load(organization=org, by=owner, key="won-deal-kickoff")
    assert (first.name, second.name) == ("Won deal kickoff", "Won deal kickoff (2)")
    assert (first.key, second.key) == ("won-deal-kickoff", "won-deal-kickoff-2")


def test_import_workflows_names_a_second_import_and_says_so(org, tmp_path, capsys):
    make_workflow(org, name="Kickoff")
    (tmp_path / "kickoff.yaml").write_text(workflow_export_yaml(Workflow.objects.get()).replace(
        "name: Kickoff", "name: KICKOFF"))
    call_command("import_workflows", str(tmp_path), "--org", org.slug)
    out = capsys.readouterr().out
    assert "“KICKOFF (2)”" in out and "a workflow is already called “KICKOFF”, so this one is “KICKOFF (2)”" in out


def test_the_ai_draft_gets_a_free_name(org, owner, openai):
    from tests.test_ai_authoring import GOOD, answer

    make_workflow(org, name="Won kickoff", activate=False)
    openai.reply(200, answer(GOOD))
    response = as_user(owner).post("/api/v1/workflows/draft-from-description/", content_type="application/json",
                                   data=json.dumps({"description": "When a deal is won, make a kickoff task."}))
    assert response.status_code == 201 and response.json()["name"] == "Won kickoff (2)"


def test_free_names_stay_within_200_characters(org):
    long = "Word " * 40  # 200 characters once trimmed… and taken
    make_workflow(org, name=long.strip()[:200])
    name = services.free_name(org.pk, long)
    assert len(name) <= 200 and name.endswith("… (2)")
