"""The workflow page's YAML export and import, version comparison, rollback and clone, as an
owner, a viewer and an outsider; and the import/export commands."""

import pytest
import yaml
from django.core.management import CommandError, call_command
from django.urls import reverse

from crm_automation.automation.models import Workflow
from crm_automation.automation.services.versions import workflow_export_yaml
from crm_automation.automation.services.workflows import workflow_update
from tests.conftest import make_workflow
from tests.test_documents import GOOD

IMPORT = reverse("admin:automation_workflow_import")


def url(name, wf, *args):
    return reverse(f"admin:automation_workflow_{name}", args=[wf.pk, *args])


def test_export_downloads_the_yaml(client, org, viewer):
    wf = make_workflow(org)
    client.force_login(viewer)
    response = client.get(url("export", wf))
    assert response["Content-Disposition"] == 'attachment; filename="kickoff.yaml"'
    assert yaml.safe_load(response.content)["id"] == "kickoff"


def test_outsiders_get_404_for_every_document_page(client, org, outsider):
    wf = make_workflow(org)
    client.force_login(outsider)
    assert client.get(url("export", wf)).status_code == 404
    assert client.get(url("version", wf, 1)).status_code == 404
    assert client.post(url("rollback", wf, 1)).status_code == 404
    assert client.post(url("clone", wf)).status_code == 404
    assert Workflow.objects.count() == 1


def test_import_shows_errors_with_lines_and_saves_nothing(client, org, owner):
    client.force_login(owner)
    page = client.post(IMPORT, {"text": GOOD.replace("to_stage: won", "to_stage: closed")}).content.decode()
    assert "line 16: nodes[trigger].data.config.to_stage: “closed” is not a stage" in page
    assert not Workflow.objects.exists()


def test_import_from_a_file_creates_a_draft(client, org, owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(owner)
    response = client.post(IMPORT, {"file": SimpleUploadedFile("w.yaml", GOOD.encode())}, follow=True)
    wf = Workflow.objects.get()
    assert (wf.status, wf.key) == ("draft", "won-deal-kickoff")
    assert "Imported “Won deal kickoff” (draft)" in response.content.decode()


def test_viewers_cannot_import(client, org, viewer):
    client.force_login(viewer)
    assert client.post(IMPORT, {"text": GOOD}).status_code == 403
    assert not Workflow.objects.exists()


def test_the_version_page_compares_and_rolls_back(client, org, owner):
    wf = make_workflow(org, activate=False)
    workflow_update(workflow_id=wf.pk, by=owner, actions=[{"type": "create_task", "config": {"title": "Only"}}])
    client.force_login(owner)
    page = client.get(url("version", wf, 2)).content.decode()
    assert "Removed: <strong>Send email</strong>" in page and "+        title: Only" in page
    assert "Roll back to version 2" not in page  # it is the current one
    old = client.get(url("version", wf, 1) + "?against=2").content.decode()
    assert "Roll back to version 1" in old
    response = client.post(url("rollback", wf, 1), follow=True)
    assert "Rolled back: version 3 has the definition of version 1" in response.content.decode()
    assert len(Workflow.objects.get(pk=wf.pk).definition["actions"]) == 3


def test_viewers_compare_but_cannot_roll_back(client, org, viewer):
    wf = make_workflow(org, activate=False)
    client.force_login(viewer)
    assert client.get(url("version", wf, 1)).status_code == 200
    response = client.post(url("rollback", wf, 1), follow=True)
    assert "can read this workflow but not change it" in response.content.decode()
    assert Workflow.objects.get(pk=wf.pk).version == 1


def test_clone_from_the_change_page(client, org, owner):
    wf = make_workflow(org)
    client.force_login(owner)
    page = client.get(reverse("admin:automation_workflow_change", args=[wf.pk])).content.decode()
    assert 'form="clone-form"' in page and "Export YAML" in page
    response = client.post(url("clone", wf), follow=True)
    copy = Workflow.objects.exclude(pk=wf.pk).get()
    assert (copy.name, copy.status) == ("Copy of Kickoff", "draft")
    assert "is a new draft copied from" in response.content.decode()


def test_the_commands_export_and_import_a_directory(org, other_org, tmp_path, capsys):
    make_workflow(org)
    call_command("export_workflows", str(tmp_path))
    exported = tmp_path / "acme" / "kickoff.yaml"
    assert exported.read_text() == workflow_export_yaml(Workflow.objects.get())
    (tmp_path / "acme" / "broken.yaml").write_text(GOOD.replace("crm/send_email", "crm/fax"))
    with pytest.raises(CommandError, match="1 of 2 file"):
        call_command("import_workflows", str(tmp_path / "acme"), "--org", "rival")
    out, err = capsys.readouterr()
    assert "broken.yaml: not imported" in err and "“crm/fax” is not a tool" in err
    assert "kickoff.yaml: “Kickoff” (activated)" in out
    assert Workflow.objects.filter(organization=other_org).count() == 1
