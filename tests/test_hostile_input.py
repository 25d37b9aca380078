"""Every surface that reads YAML or JSON from a person or a model goes through the bounded
reader, checks the role before it reads, and answers hostile input with a 400 that says what is
wrong — never a stalled worker or a 500 — and changes nothing."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from rest_framework.test import APIClient

from crm_automation.automation.models import AiCall, Workflow, WorkflowRun
from tests.conftest import make_workflow
from tests.fake_ai import chat
from tests.test_bounded_reader import ALIAS_BOMB, DEEP_FLOW

URL = "/api/v1/workflows/"
IMPORT = reverse("admin:automation_workflow_import")
# Valid JSON and valid YAML, nested far deeper than any workflow: a RecursionError (500) before.
DEEP_CONFIG = '{"a": ' * 3000 + "null" + "}" * 3000


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def counts() -> tuple[int, int]:
    return Workflow.objects.count(), WorkflowRun.objects.count()


# --- 1. A small YAML body that used to stall a web worker -----------------------------------------
def test_a_deeply_nested_yaml_body_is_a_400_that_names_the_limit(org, teammate):
    before = counts()
    answer = api(teammate).post(URL, DEEP_FLOW, content_type="application/yaml")
    assert answer.status_code == 400
    assert "nests more than 24 levels deep" in json.dumps(answer.json())
    assert counts() == before


def test_a_viewer_is_refused_before_the_body_is_read(org, viewer):
    # The same body from a viewer: the role is checked first, so it is a 403, not a parse.
    answer = api(viewer).post(URL, DEEP_FLOW, content_type="application/yaml")
    assert answer.status_code == 403 and "ops role" in answer.json()["detail"]
    broken = api(viewer).post(URL, "not: [valid", content_type="application/yaml")
    assert broken.status_code == 403  # a body that does not even parse: still the role's answer


def test_an_ops_member_changing_a_live_workflow_is_refused_before_the_body_is_read(org, teammate):
    live = make_workflow(org)
    answer = api(teammate).patch(f"{URL}{live.pk}/", DEEP_FLOW, content_type="application/yaml")
    assert answer.status_code == 403 and "ops members edit drafts" in answer.json()["detail"]


def test_a_deep_json_document_is_a_400_too(org, teammate):
    answer = api(teammate).post(URL, "[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert answer.status_code == 400 and "nests more than 24 levels deep" in answer.json()["detail"]


def test_a_yaml_document_over_the_size_limit_is_a_400(org, teammate):
    answer = api(teammate).post(URL, "name: x\ndescription: " + "y" * 250_000, content_type="application/yaml")
    assert answer.status_code == 400 and "larger than 200,000 bytes" in answer.json()["detail"]


# --- 2. Alias bombs on the YAML tab and the admin import ------------------------------------------
def test_an_alias_bomb_on_the_yaml_tab_is_refused_and_saves_nothing(client, org, owner):
    draft = make_workflow(org, activate=False)
    client.force_login(owner)
    page = client.post(reverse("web:yaml", args=[draft.pk]), {"yaml": ALIAS_BOMB, "revision": draft.draft_revision})
    assert page.status_code == 400
    assert "anchors and aliases" in page.content.decode()
    draft.refresh_from_db()
    assert draft.version == 1


@pytest.mark.parametrize("as_file", [False, True])
def test_an_alias_bomb_in_the_admin_import_is_refused(client, org, owner, as_file):
    client.force_login(owner)
    body = {"organization": org.pk}
    if as_file:
        upload = io.BytesIO(ALIAS_BOMB.encode())
        upload.name = "bomb.yaml"
        body["file"] = upload
    else:
        body["text"] = ALIAS_BOMB
    page = client.post(IMPORT, body)
    assert page.status_code == 400 and "anchors and aliases" in page.content.decode()
    assert not Workflow.objects.exists()


def test_an_upload_over_the_limit_is_refused_unread(client, org, owner):
    client.force_login(owner)
    upload = io.BytesIO(b"a: " + b"x" * 300_000)
    upload.name = "big.yaml"
    page = client.post(IMPORT, {"organization": org.pk, "file": upload})
    assert page.status_code == 400 and "larger than 200,000 bytes" in page.content.decode()


def test_import_workflows_refuses_a_bomb_and_imports_the_rest(tmp_path, org):
    (tmp_path / "bomb.yaml").write_text(ALIAS_BOMB)
    (tmp_path / "deep.yaml").write_text(DEEP_FLOW)
    err = io.StringIO()
    with pytest.raises(CommandError, match="2 of 2 file"):
        call_command("import_workflows", str(tmp_path), org=org.slug, stderr=err)
    assert "bomb.yaml: not imported" in err.getvalue() and "anchors and aliases" in err.getvalue()
    assert "deep.yaml: not imported" in err.getvalue() and "nests more than 24" in err.getvalue()
    assert not Workflow.objects.exists()


# --- 3. Deep nesting and odd values that gave 500s --------------------------------------------------
def test_deep_nesting_in_the_builder_save_is_a_400(client, org, owner):
    draft = make_workflow(org, activate=False)
    client.force_login(owner)
    body = ('{"document": {"id": "x", "name": "x", "nodes": [], "edges": [], "deep": ' + DEEP_CONFIG
            + '}, "revision": ' + str(draft.draft_revision) + "}")
    answer = client.post(reverse("web:edit", args=[draft.pk]), body, content_type="application/json")
    assert answer.status_code == 400
    assert "nests more than 24 levels deep" in answer.json()["errors"][0]["message"]
    new = client.post(reverse("web:new"), body, content_type="application/json")
    assert new.status_code == 400 and Workflow.objects.count() == 1


def test_a_viewer_saving_in_the_builder_is_refused_before_the_body_is_read(client, org, viewer):
    draft = make_workflow(org, activate=False)
    client.force_login(viewer)
    answer = client.post(reverse("web:edit", args=[draft.pk]), "[" * 50_000, content_type="application/json")
    assert answer.status_code == 403 and "can read this workflow but not change it" in answer.json()["errors"][0][
        "message"]


def test_deep_nesting_on_the_yaml_tab_and_in_the_admin_import_is_a_form_error(client, org, owner):
    deep_yaml = "id: x\nname: x\nnodes: []\nedges: []\ndeep: " + DEEP_CONFIG + "\n"
    draft = make_workflow(org, activate=False)
    client.force_login(owner)
    page = client.post(reverse("web:yaml", args=[draft.pk]), {"yaml": deep_yaml, "revision": draft.draft_revision})
    assert page.status_code == 400 and "nests more than 24 levels deep" in page.content.decode()
    imported = client.post(IMPORT, {"organization": org.pk, "text": deep_yaml})
    assert imported.status_code == 400 and "nests more than 24 levels deep" in imported.content.decode()
    assert Workflow.objects.count() == 1


def test_a_revision_of_5000_digits_on_the_yaml_tab_is_a_form_error(client, org, owner):
    draft = make_workflow(org, activate=False)
    client.force_login(owner)
    text = client.get(reverse("web:yaml", args=[draft.pk])).context["text"]
    page = client.post(reverse("web:yaml", args=[draft.pk]), {"yaml": text.replace("Kickoff", "Renamed"),
                                                             "revision": "9" * 5000})
    assert page.status_code == 400 and "revision that is not a number" in page.content.decode()
    draft.refresh_from_db()
    assert draft.name == "Kickoff"


@pytest.mark.parametrize("path", ["/crm/automation/?q=%00", "/crm/automation/runs/?q=a%00b",
                                  "/admin/automation/workflow/?q=%00", "/admin/crm/deal/?q=x%00"])
def test_a_nul_in_a_query_string_is_a_400_that_says_so(client, org, owner, path):
    client.force_login(owner)
    page = client.get(path)
    assert page.status_code == 400 and "contains a NUL character" in page.content.decode()


def test_a_nul_in_an_approval_comment_is_a_400_and_the_question_stays_open(client, org, owner, deal):
    from tests.test_approvals import SIDES
    from tests.test_graph_engine import win

    run = win(org, deal, *SIDES)
    step = run.actions.get(node_id="ask")
    client.force_login(owner)
    page = client.post(reverse("web:approval-answer", args=[step.pk]), {"decision": "approved",
                                                                        "comment": "fine\x00"})
    assert page.status_code == 400 and "“comment” contains a NUL character" in page.content.decode()
    step.refresh_from_db()
    assert step.status == "waiting"


@pytest.mark.parametrize("against", ["abc", "9" * 5000, "²"])
def test_a_version_page_with_a_bad_against_is_a_400(client, org, owner, against):
    workflow = make_workflow(org, activate=False)
    client.force_login(owner)
    url = reverse("admin:automation_workflow_version", args=[workflow.pk, 1])
    assert client.get(url).status_code == 200
    page = client.get(url, {"against": against})
    assert page.status_code == 400 and "must be a version number" in page.content.decode()


def test_a_lone_surrogate_in_a_manual_start_is_a_400_and_starts_nothing(org, teammate, deal):
    manual = make_workflow(org, name="By hand", trigger_type="manual_deal", trigger_config={})
    body = '{"entity_type": "deal", "entity_id": "' + str(deal.pk) + '", "input": {"note": "\\udc00"}}'
    answer = api(teammate).post(f"{URL}{manual.pk}/trigger/", body, content_type="application/json")
    assert answer.status_code == 400 and "contains an unpaired surrogate" in answer.json()["input.note"][0]
    assert WorkflowRun.objects.count() == 0


def test_an_ai_draft_with_an_alias_bomb_is_refused_and_saves_nothing(client, org, owner, openai):
    openai.reply(200, chat(json.dumps({"yaml": ALIAS_BOMB, "assumptions": []})))
    openai.reply(200, chat(json.dumps({"yaml": ALIAS_BOMB, "assumptions": []})))
    client.force_login(owner)
    page = client.post("/crm/automation/workflows/describe/", {"description": "Anything"}, follow=True)
    assert "anchors and aliases" in page.content.decode()
    assert not Workflow.objects.exists() and AiCall.objects.count() == 2


def test_a_model_answer_nested_too_deeply_is_not_used(client, org, owner, openai):
    openai.reply(200, chat("[" * 5000 + "]" * 5000))
    client.force_login(owner)
    page = client.post("/crm/automation/workflows/describe/", {"description": "Anything"}, follow=True)
    assert "gave no usable draft" in page.content.decode() and not Workflow.objects.exists()


def test_a_signed_in_viewer_is_refused_before_the_csrf_check_reads_the_body(org, viewer):
    # With a session, DRF's CSRF check used to parse the body (request.POST) before the view ran.
    from django.middleware.csrf import _get_new_csrf_string
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(viewer)
    token = _get_new_csrf_string()
    browser.cookies["csrftoken"] = token
    answer = browser.post(URL, "not: [valid", content_type="application/yaml", HTTP_X_CSRFTOKEN=token)
    assert answer.status_code == 403 and "ops role" in answer.json()["detail"]
    no_token = browser.post(URL, "name: x", content_type="application/yaml")
    assert no_token.status_code == 403 and "CSRF" in no_token.json()["detail"]
