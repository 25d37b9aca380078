"""/api/v1/workflows/: documents in (JSON and YAML) and out, the transitions, run-test, manual
starts, versions, rollback and clone; an owner / teammate / viewer / outsider on each."""

import random
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from crm_automation.automation.models import AutomationEvent, FieldChange, Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs
from crm_automation.automation.services.versions import workflow_export_yaml
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.crm.models import Deal, EmailMessage, Notification, Organization, Task
from tests.conftest import make_org, make_user, make_workflow
from tests.test_graph_engine import edge, task

URL = "/api/v1/workflows/"
DOC = {
    "id": "welcome-won", "name": "Welcome won deals", "description": "Kick off every won deal",
    "nodes": [
        {"id": "trigger", "type": "workflow", "data": {"subtype": "chat-app", "label": "Deal won", "config": {
            "event": "deal_stage_change", "to_stage": "won"}}},
        {"id": "kickoff", "type": "workflow", "data": {"subtype": "tool-call", "label": "Kickoff task", "config": {
            "toolName": "crm/create_task", "defaults": {"title": "Kick off {{deal.title}}"}}}},
    ],
    "edges": [{"source": "trigger", "target": "kickoff"}],
}
YAML = """id: big-deals
name: Big deals
nodes:
- id: trigger
  type: workflow
  data:
    subtype: chat-app
    label: Deal won
    config:
      event: deal_stage_change
      to_stage: {stage}
- id: ping
  type: workflow
  data:
    subtype: tool-call
    label: Ping
    config:
      toolName: crm/create_task
      defaults:
        title: Call {{{{deal.title}}}}
edges:
- source: trigger
  target: ping
"""


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def people(owner, teammate, viewer, outsider):
    return {"owner": owner, "teammate": teammate, "viewer": viewer, "outsider": outsider}


@pytest.fixture
def draft(org):
    return make_workflow(org, activate=False, actions=[task("kickoff", "Kick off {{deal.title}}")])


# --- Create and read ----------------------------------------------------------------------------
def test_it_creates_a_draft_from_json_and_reads_it_back(org, owner):
    created = api(owner).post(URL, DOC, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["key"], body["name"], body["status"], body["version"]) == ("welcome-won", "Welcome won deals",
                                                                            "draft", 1)
    assert [n["data"]["label"] for n in body["nodes"]] == ["Deal won", "Kickoff task"]
    assert body["edges"] == DOC["edges"] and body["description"] == "Kick off every won deal"
    assert (body["run_count"], body["success_rate"], body["median_duration_ms"]) == (0, None, None)
    again = api(owner).get(f"{URL}{body['id']}/").json()
    assert again == body
    # A GET's body is a valid document; the name is the one thing two workflows cannot share.
    same_name = api(owner).post(URL, again, format="json")
    assert same_name.status_code == 400 and [e["place"] for e in same_name.json()["errors"]] == ["name"]
    posted_back = api(owner).post(URL, {**again, "name": "Welcome won deals, again"}, format="json")
    assert posted_back.status_code == 201 and posted_back.json()["key"] == "welcome-won-2"


def test_it_creates_from_yaml_and_exports_yaml(org, teammate):
    created = api(teammate).post(URL, YAML.format(stage="won"), content_type="application/yaml")
    assert created.status_code == 201, created.content
    workflow = Workflow.objects.get(pk=created.json()["id"])
    assert workflow.status == "draft" and workflow.definition["trigger_config"] == {"to_stage": "won"}
    exported = api(teammate).get(f"{URL}{workflow.pk}/export/")
    assert exported.status_code == 200 and exported["Content-Type"].startswith("application/yaml")
    assert exported.content.decode() == workflow_export_yaml(workflow)
    assert 'filename="big-deals.yaml"' in exported["Content-Disposition"]


def test_an_invalid_document_is_a_400_with_places_and_lines_and_nothing_is_saved(org, owner):
    client = api(owner)
    bad_yaml = client.post(URL, YAML.format(stage="heaven"), content_type="application/yaml")
    assert bad_yaml.status_code == 400
    (error,) = bad_yaml.json()["errors"]
    assert error["place"] == "nodes[trigger].data.config.to_stage" and error["line"] == 11
    assert "heaven" in error["message"]
    bad_json = client.post(URL, {**DOC, "nodes": [DOC["nodes"][0], {**DOC["nodes"][1], "id": "Not Kebab"}]},
                           format="json")
    assert bad_json.status_code == 400
    (error,) = bad_json.json()["errors"]
    assert error["place"] == "nodes[Not Kebab].id" and error["line"] is None
    assert not Workflow.objects.exists()


@pytest.mark.parametrize(("body", "content_type"), [
    ("id: x\nname: [", "application/yaml"),                          # not YAML
    ("a: &x [1]\nb: *x\n", "application/yaml"),                       # anchors (alias bombs)
    ("- just\n- a list\n", "application/yaml"),                       # not a mapping
    ("{1: x, id: a, name: b, nodes: [], edges: []}", "application/yaml"),  # a key that is not text
    (b"\xff\xfe", "application/yaml"),                                # not UTF-8
    ("[" * 100_000 + "]" * 100_000, "application/json"),             # nested without end
    ('{"a": ' * 40 + "1" + "}" * 40, "application/json"),            # nested deeper than a document
    ('["a list"]', "application/json"),
    ('{"name": NaN}', "application/json"),
    ("{" + '"x": "' + "y" * 1_100_000 + '"}', "application/json"),   # too large
    ('{"name": 5, "nodes": "none", "edges": {}}', "application/json"),
    ('{"id": "a", "name": "nul\\u0000", "nodes": [], "edges": []}', "application/json"),  # PostgreSQL refuses NUL
])
def test_no_body_is_a_server_error(org, owner, body, content_type):
    response = api(owner).generic("POST", URL, body, content_type=content_type)
    assert response.status_code == 400, response.content
    assert not Workflow.objects.exists()


# --- Who may do what ----------------------------------------------------------------------------
# (method, path after /workflows/{id}/, body) → the answer for owner (admin), teammate (ops),
# viewer, outsider (an admin of another organization), on a draft of the owner's organization.
RECORD = {"entity_type": "deal", "entity_id": "{deal}"}
MATRIX = [
    ("get", "", None, (200, 200, 200, 404)),
    ("patch", "", {"name": "Renamed"}, (200, 200, 403, 404)),
    ("delete", "", None, (204, 204, 403, 404)),
    ("get", "export/", None, (200, 200, 200, 404)),
    ("post", "publish/", None, (409, 403, 403, 404)),  # a draft is activated, not published
    ("post", "activate/", None, (200, 403, 403, 404)),
    ("post", "pause/", None, (409, 403, 403, 404)),
    ("post", "archive/", None, (200, 403, 403, 404)),
    ("post", "run-test/", RECORD, (200, 200, 403, 404)),
    ("post", "trigger/", RECORD, (409, 403, 403, 404)),  # a draft; only an admin starts a non-manual workflow
    ("post", "clone/", {}, (201, 201, 403, 404)),
    ("get", "versions/", None, (200, 200, 200, 404)),
    ("get", "versions/diff/?from=1&to=1", None, (200, 200, 200, 404)),
    ("post", "rollback/", {"version": 1}, (200, 200, 403, 404)),
]
ROLES = ("owner", "teammate", "viewer", "outsider")


@pytest.mark.parametrize(("method", "tail", "body", "expected"), MATRIX, ids=[f"{m} {t}" for m, t, *_ in MATRIX])
@pytest.mark.parametrize("role", ROLES)
def test_who_may_do_what(people, draft, deal, role, method, tail, body, expected):
    if body:
        body = {k: str(deal.pk) if v == "{deal}" else v for k, v in body.items()}
    before = list(Workflow.objects.values_list("name", "status", "version"))
    response = getattr(api(people[role]), method)(f"{URL}{draft.pk}/{tail}", body, format="json")
    assert response.status_code == expected[ROLES.index(role)], response.content
    if response.status_code in (403, 404, 409):  # refused: nothing changed
        assert list(Workflow.objects.values_list("name", "status", "version")) == before


@pytest.mark.parametrize("role", ROLES)
def test_who_may_list_and_create(people, draft, role):
    listed = api(people[role]).get(URL).json()
    assert listed["count"] == (0 if role == "outsider" else 1)  # an outsider sees their own organization's
    created = api(people[role]).post(URL, DOC, format="json")
    assert created.status_code == (403 if role == "viewer" else 201)
    if role == "outsider":
        assert Workflow.objects.get(key="welcome-won").organization == people["outsider"].memberships.get().organization


def test_ids_that_are_no_ids_are_404s(owner, org):
    for path in (f"{URL}abc/", f"{URL}{'9' * 40}/", f"{URL}99999999/", f"{URL}0/publish/"):
        assert api(owner).get(path).status_code in (404, 405)


# --- Lists --------------------------------------------------------------------------------------
def test_the_list_filters_searches_orders_and_pages(org, owner, other_org):
    quiet = make_workflow(org, name="Quiet", activate=False)
    busy = make_workflow(org, name="Busy", trigger_type="manual_deal", trigger_config={})
    recent = make_workflow(org, name="Recent one")
    make_workflow(other_org, name="Theirs")
    Workflow.objects.filter(pk=busy.pk).update(last_run_at=timezone.now() - timedelta(days=1))
    Workflow.objects.filter(pk=recent.pk).update(last_run_at=timezone.now())
    client = api(owner)

    def names(query):
        return [w["name"] for w in client.get(f"{URL}?{query}").json()["results"]]

    assert names("") == ["Busy", "Quiet", "Recent one"]
    assert names("status=activated") == ["Busy", "Recent one"] and names("status=draft") == ["Quiet"]
    assert names("trigger_type=manual_deal") == ["Busy"]
    assert names("search=rec") == ["Recent one"]
    assert names("ordering=-last_run_at") == ["Recent one", "Busy", "Quiet"]  # never run: last
    assert names("ordering=last_run_at") == ["Busy", "Recent one", "Quiet"]
    page = client.get(f"{URL}?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert client.get(f"{URL}?status=running").status_code == 400
    assert client.get(f"{URL}?search=rec%00").status_code == 400  # (DRF refuses NUL; PostgreSQL would)
    assert client.get(f"{URL}?page=99").status_code == 404
    assert quiet.pk in {w["id"] for w in client.get(URL).json()["results"]}


def test_a_page_of_workflows_costs_the_same_queries_for_2_or_20(org, owner, django_assert_max_num_queries):
    for i in range(2):
        make_workflow(org, name=f"W{i}", activate=False)
    with CaptureQueriesContext(connection) as few:
        api(owner).get(URL)
    for i in range(2, 20):
        make_workflow(org, name=f"W{i}", activate=False)
    with django_assert_max_num_queries(len(few)):
        assert len(api(owner).get(URL).json()["results"]) == 20


def test_counters_success_rate_and_median_duration(org, owner, deal):
    workflow = make_workflow(org)
    version = workflow.current_version
    now = timezone.now()
    seconds = [1, 2, 3, 10, 100]  # median 3 s
    for i, duration in enumerate([*seconds, None]):
        event = AutomationEvent.objects.create(organization=org, kind="deal_stage_change", entity_type="deal",
                                               entity_id=deal.pk)
        run = WorkflowRun.objects.create(organization=org, workflow=workflow, version=version, event=event,
                                         trigger_type="deal_stage_change", trigger_entity_type="deal",
                                         trigger_entity_id=deal.pk, status="completed" if duration else "started")
        if duration:
            WorkflowRun.objects.filter(pk=run.pk).update(started_at=now - timedelta(hours=i),
                                                         finished_at=now - timedelta(hours=i) + timedelta(
                                                             seconds=duration))
    simulated = WorkflowRun.objects.filter(status="completed").first()
    WorkflowRun.objects.filter(pk=simulated.pk).update(simulated=True)  # 1 s no longer counts: median 6.5 s
    Workflow.objects.filter(pk=workflow.pk).update(run_count=4, success_count=3, failure_count=1)
    body = api(owner).get(f"{URL}{workflow.pk}/").json()
    assert body["median_duration_ms"] == 6500 and body["success_rate"] == 0.75
    assert (body["run_count"], body["success_count"], body["failure_count"]) == (4, 3, 1)
    assert api(owner).get(URL).json()["results"][0]["median_duration_ms"] == 6500


# --- Changing and deleting ----------------------------------------------------------------------
def test_patch_changes_what_it_names_and_a_live_change_waits_for_publish(org, owner, teammate):
    workflow_id = api(owner).post(URL, DOC, format="json").json()["id"]
    renamed = api(teammate).patch(f"{URL}{workflow_id}/", {"name": "Renamed", "settings": {"timeoutSeconds": 30}},
                                  format="json").json()
    assert renamed["name"] == "Renamed" and renamed["settings"]["timeoutSeconds"] == 30
    assert renamed["settings"]["errorPolicy"] == "abort" and renamed["version"] == 2  # a draft: a version at once
    assert api(owner).post(f"{URL}{workflow_id}/activate/").status_code == 200
    nodes = [DOC["nodes"][0], {**DOC["nodes"][1], "data": {**DOC["nodes"][1]["data"], "label": "Kickoff"}}]
    assert api(teammate).patch(f"{URL}{workflow_id}/", {"nodes": nodes}, format="json").status_code == 403
    live = api(owner).patch(f"{URL}{workflow_id}/", {"nodes": nodes}, format="json", HTTP_IF_MATCH='"1"').json()
    assert live["has_unpublished_changes"] and live["version"] == 2 and live["draft_revision"] == 2
    stale = api(owner).patch(f"{URL}{workflow_id}/", {"nodes": DOC["nodes"]}, format="json", HTTP_IF_MATCH='"1"')
    assert stale.status_code == 409 and "Someone else saved" in str(stale.json())  # a conflict
    published = api(owner).post(f"{URL}{workflow_id}/publish/").json()
    assert published["version"] == 3 and not published["has_unpublished_changes"]
    assert api(owner).patch(f"{URL}{workflow_id}/", {"key": "other"}, format="json").status_code == 400
    assert api(owner).patch(f"{URL}{workflow_id}/", {"name": ""}, format="json").status_code == 400
    assert api(owner).patch(f"{URL}{workflow_id}/", YAML.format(stage="won").replace("big-deals", "welcome-won"),
                            content_type="application/yaml").json()["name"] == "Big deals"


def test_delete_removes_a_draft_only(org, owner, teammate, draft, deal):
    api(owner).post(f"{URL}{draft.pk}/run-test/", {"entity_type": "deal", "entity_id": str(deal.pk)}, format="json")
    live = make_workflow(org, name="Live")
    child = make_workflow(org, name="Child", activate=False)
    make_workflow(org, name="Parent", activate=False, actions=[
        {"type": "sub_workflow", "config": {"workflowId": child.key}}])
    assert api(owner).delete(f"{URL}{live.pk}/").status_code == 409
    refused = api(owner).delete(f"{URL}{child.pk}/")
    assert refused.status_code == 409 and "Parent" in refused.json()["detail"]
    assert api(teammate).delete(f"{URL}{draft.pk}/").status_code == 204
    assert not Workflow.objects.filter(pk=draft.pk).exists() and not WorkflowRun.objects.exists()


# --- Transitions --------------------------------------------------------------------------------
def test_every_transition_allowed_and_refused(draft, owner, teammate, viewer):
    client = api(owner)

    def post(verb, who=client):
        return who.post(f"{URL}{draft.pk}/{verb}/")

    assert post("pause").status_code == 409 and "activate it first" in post("pause").json()["detail"]
    assert post("publish").status_code == 409
    for person in (teammate, viewer):  # only admins
        assert post("activate", api(person)).status_code == 403
    assert post("activate").json()["status"] == "activated"
    assert post("activate").status_code == 409
    assert post("publish").json()["status"] == "activated"  # nothing new: the same version
    assert post("pause").json()["status"] == "paused"
    assert post("pause").status_code == 409
    assert post("activate").json()["status"] == "activated"
    assert post("archive").json()["status"] == "archived"
    for verb in ("activate", "pause", "archive", "publish"):
        response = post(verb)
        assert response.status_code == 409 and response.json()["detail"]
    assert client.patch(f"{URL}{draft.pk}/", {"name": "Again"}, format="json").status_code == 409


def test_the_plan_refuses_activation_with_a_409(db):
    free = make_org("free-co", plan=Organization.Plan.FREE)
    admin = make_user("boss", free, "admin")
    workflow = make_workflow(free, activate=False)
    response = api(admin).post(f"{URL}{workflow.pk}/activate/")
    assert response.status_code == 409 and "plan does not include automation" in response.json()["detail"]
    assert Workflow.objects.get().status == "draft"


# --- Testing and running ------------------------------------------------------------------------
def counts() -> tuple:
    return (Task.objects.count(), EmailMessage.objects.count(), FieldChange.objects.count(),
            Notification.objects.count(), Deal.objects.filter(probability=100).count())


def test_run_test_simulates_and_changes_nothing(org, teammate, deal, lead, other_org):
    workflow = make_workflow(org)  # task, probability 100, email
    before = counts()
    response = api(teammate).post(f"{URL}{workflow.pk}/run-test/", {"entity_type": "deal",
                                                                    "entity_id": str(deal.pk)}, format="json")
    assert response.status_code == 200, response.content
    run = response.json()
    assert counts() == before
    assert run["simulated"] and run["status"] == "completed"
    assert [s["label"] for s in run["steps"]] == ["Create task", "Update probability", "Send email"]
    assert run["steps"][2]["result"]["delivery"] == "not sent: simulation"
    assert Workflow.objects.get().run_count == 0
    wrong = api(teammate).post(f"{URL}{workflow.pk}/run-test/", {"entity_type": "lead", "entity_id": str(lead.pk)},
                               format="json")
    assert wrong.status_code == 400
    theirs = Deal.objects.create(organization=other_org, title="Theirs", stage=other_org.stages.first())
    elsewhere = api(teammate).post(f"{URL}{workflow.pk}/run-test/", {"entity_type": "deal",
                                                                     "entity_id": str(theirs.pk)}, format="json")
    assert elsewhere.status_code == 400 and "entity_id" in elsewhere.json()
    missing = api(teammate).post(f"{URL}{workflow.pk}/run-test/", {"entity_type": "deal", "entity_id": str(deal.pk),
                                                                   "version": 9}, format="json")
    assert missing.status_code == 400 and counts() == before


def test_trigger_starts_a_manual_workflow_on_a_record(org, teammate, viewer, deal):
    manual = make_workflow(org, name="By hand", trigger_type="manual_deal", trigger_config={},
                           actions=[task("t", "Call {{deal.title}}")])
    record = {"entity_type": "deal", "entity_id": str(deal.pk)}
    assert api(viewer).post(f"{URL}{manual.pk}/trigger/", record, format="json").status_code == 403
    started = api(teammate).post(f"{URL}{manual.pk}/trigger/", record, format="json")
    assert started.status_code == 202 and started.json()["status"] == "started"
    continue_runs([started.json()["id"]])
    assert Task.objects.get().title == "Call Website"
    automatic = make_workflow(org, name="Automatic")  # only admins start it by hand (test_trigger_any.py)
    assert api(teammate).post(f"{URL}{automatic.pk}/trigger/", record, format="json").status_code == 403
    workflow_transition(workflow_id=manual.pk, name="pause", by=None)  # refused, with the reason
    refused = api(teammate).post(f"{URL}{manual.pk}/trigger/", record, format="json")
    assert refused.status_code == 409 and "activate it first" in refused.json()["detail"]
    assert api(teammate).post(f"{URL}{manual.pk}/trigger/", {"entity_type": "deal"}, format="json").status_code == 400


def test_trigger_passes_optional_input_to_the_run(org, teammate, deal):
    manual = make_workflow(org, name="With input", trigger_type="manual_deal", trigger_config={},
                           actions=[task("t", "Call about {{trigger.input.topic}}")])
    record = {"entity_type": "deal", "entity_id": str(deal.pk)}
    started = api(teammate).post(f"{URL}{manual.pk}/trigger/", {**record, "input": {"topic": "renewal"}},
                                 format="json")
    continue_runs([started.json()["id"]])
    assert Task.objects.get().title == "Call about renewal"
    bad = api(teammate).post(f"{URL}{manual.pk}/trigger/", {**record, "input": "renewal"}, format="json")
    assert bad.status_code == 400 and "input" in bad.json()


# --- Versions, rollback, clone ------------------------------------------------------------------
def test_versions_compare_roll_back_and_clone(org, owner, viewer):
    workflow_id = api(owner).post(URL, DOC, format="json").json()["id"]
    nodes = [*DOC["nodes"], {"id": "second", "type": "workflow", "data": {
        "subtype": "tool-call", "label": "Second", "config": {"toolName": "crm/create_task",
                                                              "defaults": {"title": "Second"}}}}]
    edges = [*DOC["edges"], edge("kickoff", "second")]
    assert api(owner).patch(f"{URL}{workflow_id}/", {"nodes": nodes, "edges": edges},
                            format="json").json()["version"] == 2
    versions = api(viewer).get(f"{URL}{workflow_id}/versions/").json()["results"]
    assert [(v["number"], v["current"], v["created_by"]) for v in versions] == [(2, True, "owner"), (1, False, "owner")]
    diff = api(viewer).get(f"{URL}{workflow_id}/versions/diff/?from=1&to=2").json()
    assert [n["id"] for n in diff["nodes_added"]] == ["second"] and diff["edges_added"] == [
        {"source": "kickoff", "target": "second", "sourceHandle": None}]
    assert "+- id: second" in diff["text"]
    for query in ("", "?from=1", "?from=1&to=9", "?from=x&to=2", "?from=-1&to=2"):
        assert api(viewer).get(f"{URL}{workflow_id}/versions/diff/{query}").status_code == 400
    rolled = api(owner).post(f"{URL}{workflow_id}/rollback/", {"version": 1}, format="json").json()
    assert rolled["version"] == 3 and [n["id"] for n in rolled["nodes"]] == ["trigger", "kickoff"]
    assert api(owner).post(f"{URL}{workflow_id}/rollback/", {"version": 7}, format="json").status_code == 400
    assert api(owner).post(f"{URL}{workflow_id}/rollback/", {}, format="json").status_code == 400
    copy = api(owner).post(f"{URL}{workflow_id}/clone/", {}, format="json")
    assert copy.status_code == 201 and copy.json()["name"] == "Copy of Welcome won deals"
    assert copy.json()["status"] == "draft" and copy.json()["nodes"] == rolled["nodes"]
    named = api(owner).post(f"{URL}{workflow_id}/clone/", {"name": "Mine"}, format="json").json()
    assert named["name"] == "Mine" and Workflow.objects.count() == 3


# --- Any input ----------------------------------------------------------------------------------
SUBTYPES = ["tool-call", "condition", "wait", "parallel", "merge", "loop", "user-input", "function",
            "desktop-notification", "sub-workflow", "chat-app", "manual", "schedule", "agent"]
KEYS = ["toolName", "defaults", "rules", "field", "operator", "value", "delayAmount", "delayUnit", "items",
        "promptText", "role", "functionRef", "args", "workflowId", "title", "to", "event", "entity", "to_stage",
        "policy", "maxAttempts", "errorPolicy", "reenrollment", "timeoutSeconds"]
ATOMS: list[Any] = [None, True, 0, -1, 1.5, 10**20, "", "x", "won", "{{deal.title}}", "{{", "crm/create_task",
                    "deal.amount", "gt", "hours", "admin", "retry", [], {}]


@pytest.mark.fuzz
def test_random_documents_are_refused_or_saved_never_a_server_error(org, owner, draft):
    """A small seeded fuzz of node configs, settings and edges (POST and PATCH)."""
    rng = random.Random(7)

    def value(depth=0):
        roll = rng.random()
        if depth < 3 and roll < 0.2:
            return {rng.choice(KEYS): value(depth + 1) for _ in range(rng.randint(0, 4))}
        if depth < 3 and roll < 0.3:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return rng.choice(ATOMS)

    client = api(owner)
    client.raise_request_exception = False
    for i in range(300):
        trigger = {"subtype": rng.choice(["chat-app", "manual"]), "label": "T", "config": value()}
        if rng.random() < 0.7:
            trigger = DOC["nodes"][0]["data"]
        nodes = [{"id": "trigger", "type": "workflow", "data": trigger}]
        nodes += [{"id": f"n{n}", "type": "workflow", "data": {
            "subtype": rng.choice(SUBTYPES), "label": f"L{n}", "config": value(),
            **({"onError": value()} if rng.random() < 0.2 else {})}} for n in range(rng.randint(1, 4))]
        ids = [n["id"] for n in nodes]
        edges = [{"source": rng.choice(ids), "target": rng.choice(ids),
                  **({"sourceHandle": rng.choice(ATOMS)} if rng.random() < 0.3 else {})}
                 for _ in range(rng.randint(0, 5))]
        body = {"name": f"W{i}", "nodes": nodes, "edges": edges}
        if rng.random() < 0.3:
            body["settings"] = value()
        assert client.post(URL, body, format="json").status_code in (201, 400), body
        assert client.patch(f"{URL}{draft.pk}/", {k: v for k, v in body.items() if k != "name"},
                            format="json").status_code in (200, 400), body
