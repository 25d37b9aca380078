"""Live Debug, on the server's side: the workflow's latest version walks a chosen record in the
simulation's sandbox, stopping at each wait and question until the person fast-forwards or
answers it; every effect is intercepted (shown, never made), nothing about the record or the
organization changes, the debug run is kept to read and counted nowhere; the record picker
searches, within the organization only."""

import json

import pytest
from django.test import Client

from crm_automation.automation.models import AutomationEvent, Workflow, WorkflowRun
from crm_automation.crm.models import Deal, EmailMessage, Task
from tests.conftest import make_workflow
from tests.fake_ai import chat, model_server, openai  # noqa: F401 (fixtures)

FLOW = [
    {"id": "first-task", "type": "create_task", "label": "Call back", "config": {"title": "Call {{deal.title}}"}},
    {"id": "pause", "type": "wait", "label": "Four hours", "config": {"delayAmount": 4, "delayUnit": "hours"}},
    {"id": "ask", "type": "user_input", "label": "Go ahead", "config": {"promptText": "Email {{deal.title}}?"}},
    {"id": "mail", "type": "send_email", "label": "Second email",
     "config": {"to": "{{deal.contact.email}}", "subject": "About {{deal.title}}", "body": "Hello"}},
    {"id": "raise", "type": "update_field", "label": "Raise", "config": {"field": "probability", "value": 80}},
]
EDGES = [{"source": "trigger", "target": "first-task"}, {"source": "first-task", "target": "pause"},
         {"source": "pause", "target": "ask"}, {"source": "ask", "target": "mail", "sourceHandle": "approved"},
         {"source": "mail", "target": "raise"}]


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def world() -> tuple:
    return (Task.objects.count(), EmailMessage.objects.count(), AutomationEvent.objects.filter(
        processed_at__isnull=True).count(), list(Deal.objects.values_list("pk", "probability", "stage_id")))


def post(client, workflow, body):
    return client.post(f"/crm/automation/workflows/{workflow.pk}/debug/", json.dumps(body),
                       content_type="application/json")


def test_debug_stops_at_each_wait_and_question_and_changes_nothing(org, owner, deal):
    workflow = make_workflow(org, actions=FLOW, graph={"edges": EDGES})
    Workflow.objects.filter(pk=workflow.pk).update(run_count=0)
    before = world()
    client = as_user(owner)
    record = {"type": "deal", "id": str(deal.pk)}

    first = post(client, workflow, {"record": record}).json()
    assert first["status"] == "waiting"
    assert [(s["node"], s["status"]) for s in first["steps"]] == [("first-task", "completed"), ("pause", "waiting")]
    assert first["stopped"][0]["kind"] == "wait" and first["stopped"][0]["node"] == "pause"
    assert "would_create_task" in first["steps"][0]["output"]  # intercepted: what it would make

    second = post(client, workflow, {"record": record, "fast_forward": ["pause"], "continuing": first["run"]}).json()
    assert second["run"] == first["run"]  # one debug run, gone further
    assert [s["status"] for s in second["steps"]] == ["completed", "completed", "waiting"]
    assert second["stopped"] == [{"node": "ask", "label": "Go ahead", "kind": "question",
                                  "prompt": f"Email {deal.title}?"}]

    third = post(client, workflow, {"record": record, "fast_forward": ["pause"], "answers": {"ask": "approved"},
                                    "continuing": first["run"]}).json()
    assert third["status"] == "completed" and third["stopped"] == []
    mail = next(s for s in third["steps"] if s["node"] == "mail")
    assert mail["output"]["would_send"]["subject"] == f"About {deal.title}"
    assert mail["output"]["delivery"] == "not sent: simulation"
    raised = next(s for s in third["steps"] if s["node"] == "raise")
    assert raised["output"]["new"] == 80
    statuses = {n["id"]: n["status"] for n in third["nodes"]}
    assert set(statuses.values()) == {"completed"}

    assert world() == before  # no task, no email, no event, the deal as it was
    run = WorkflowRun.objects.get(pk=first["run"])
    assert run.simulated and run.metadata["debug"] and run.metadata["answers"] == {"ask": "approved"}
    workflow.refresh_from_db()
    assert workflow.run_count == 0  # counted nowhere


def test_rejecting_in_debug_goes_the_rejected_way(org, owner, deal):
    workflow = make_workflow(org, actions=FLOW, graph={"edges": EDGES})
    answer = post(as_user(owner), workflow, {"record": {"type": "deal", "id": str(deal.pk)},
                                             "fast_forward": ["pause"], "answers": {"ask": "rejected"}}).json()
    assert answer["status"] == "completed"
    assert [s["node"] for s in answer["steps"]] == ["first-task", "pause", "ask"]  # no email after a "no"


@pytest.mark.parametrize(("body", "status", "says"), [
    ({}, 400, "Choose a deal"),
    ({"record": {"type": "deal", "id": "not-an-id"}}, 400, "Choose a deal"),
    ({"record": "x", "fast_forward": "pause"}, 400, "Choose a deal"),
    ({"fast_forward": "pause"}, 400, "Choose a deal"),
    ({"answers": {"ask": "maybe"}}, 400, "Choose a deal"),
])
def test_bad_debug_requests_say_what_is_wrong(org, owner, deal, body, status, says):
    workflow = make_workflow(org, actions=FLOW, graph={"edges": EDGES})
    answer = post(as_user(owner), workflow, body)
    assert answer.status_code == status and says in answer.json()["error"]


def test_choices_are_checked_and_other_tenants_and_viewers_are_refused(org, owner, viewer, deal, other_org,
                                                                        outsider):
    workflow = make_workflow(org, actions=FLOW, graph={"edges": EDGES})
    record = {"type": "deal", "id": str(deal.pk)}
    bad = post(as_user(owner), workflow, {"record": record, "answers": {"ask": "maybe"}})
    assert bad.status_code == 400 and "approved or rejected" in bad.json()["error"]
    bad = post(as_user(owner), workflow, {"record": record, "fast_forward": "pause"})
    assert bad.status_code == 400 and "list of node ids" in bad.json()["error"]
    bad = post(as_user(owner), workflow, {"record": record, "continuing": 10**9})
    assert bad.status_code == 400 and "start again" in bad.json()["error"]
    assert post(as_user(viewer), workflow, {"record": record}).status_code == 403
    assert post(as_user(outsider), workflow, {"record": record}).status_code == 404  # not their workflow
    foreign = make_workflow(other_org, actions=FLOW, graph={"edges": EDGES})
    # Their workflow on our deal: our deal is no record of theirs.
    answer = as_user(outsider).post(f"/crm/automation/workflows/{foreign.pk}/debug/?org={other_org.slug}",
                                    json.dumps({"record": record}), content_type="application/json")
    assert answer.status_code == 400 and "Choose a deal" in answer.json()["error"]
    assert not WorkflowRun.objects.exists()


def test_the_record_picker_searches_this_organizations_records(org, owner, outsider, deal, other_org):
    client = as_user(owner)
    found = client.get("/crm/automation/records/search/", {"type": "deal", "q": deal.title[:4]}).json()["results"]
    assert [r["id"] for r in found] == [str(deal.pk)]
    assert client.get("/crm/automation/records/search/", {"type": "deal", "q": "no such thing"}).json() == {
        "results": []}
    assert client.get("/crm/automation/records/search/", {"type": "spaceship"}).status_code == 400
    theirs = as_user(outsider).get("/crm/automation/records/search/", {"type": "deal", "q": deal.title}).json()
    assert theirs == {"results": []}


def test_ai_nodes_take_the_answer_typed_in_debug_and_the_model_is_not_asked(org, owner, deal, openai,  # noqa: F811
                                                                              model_server):  # noqa: F811
    flow = [
        {"id": "draft", "type": "agent", "label": "Draft", "config": {"additionalPrompt": "Thank {{deal.title}}"}},
        {"id": "mood", "type": "router", "label": "Mood", "config": {
            "classificationPrompt": "How is {{Draft}}?",
            "routes": [{"id": "route-0", "label": "warm"}, {"id": "route-1", "label": "cold"}]}},
        {"id": "hug", "type": "create_task", "label": "Hug", "config": {"title": "Send {{Draft}}"}},
        {"id": "chill", "type": "create_task", "label": "Chill", "config": {"title": "Wait"}},
    ]
    edges = [{"source": "trigger", "target": "draft"}, {"source": "draft", "target": "mood"},
             {"source": "mood", "target": "hug", "sourceHandle": "route-0"},
             {"source": "mood", "target": "chill", "sourceHandle": "route-1"}]
    workflow = make_workflow(org, activate=False, actions=flow, graph={"edges": edges})
    client, record = as_user(owner), {"type": "deal", "id": str(deal.pk)}
    first = post(client, workflow, {"record": record}).json()
    # The model is not asked in debug: each AI node is a place to type the answer it would give
    # (the agent's stand-in text lets the run reach the router, which needs a route to go on).
    assert [(s["kind"], s["node"], s.get("routes")) for s in first["stopped"]] == [
        ("agent", "draft", []), ("router", "mood", ["warm", "cold"])]
    third = post(client, workflow, {"record": record, "samples": {"draft": "Thanks a lot!", "mood": "Cold"},
                                    "continuing": first["run"]}).json()
    assert third["status"] == "completed" and third["stopped"] == []
    assert [s["node"] for s in third["steps"]] == ["draft", "mood", "chill"]  # the route typed: cold
    assert third["steps"][0]["output"]["output"] == "Thanks a lot!"
    assert model_server.requests == []  # a provider is set up, and it was never asked


def test_debug_may_ask_the_model_and_shows_tokens_and_cost(org, owner, deal, openai):  # noqa: F811
    flow = [{"id": "draft", "type": "agent", "label": "Draft", "config": {"additionalPrompt": "Thank {{deal.title}}"}},
            {"id": "send", "type": "create_task", "label": "Send", "config": {"title": "{{Draft}}"}}]
    workflow = make_workflow(org, activate=False, actions=flow)
    openai.reply(200, chat("Thanks for choosing us!", prompt_tokens=1000, completion_tokens=100))
    answer = post(as_user(owner), workflow, {"record": {"type": "deal", "id": str(deal.pk)},
                                             "ask_model": True}).json()
    assert answer["status"] == "completed" and answer["stopped"] == []
    draft, send = answer["steps"]
    assert draft["output"]["output"] == "Thanks for choosing us!"
    assert draft["output"]["tokens"] == {"input": 1000, "output": 100}
    assert draft["output"]["cost_usd"] == "0.00021"  # 1000 × 0.15 + 100 × 0.6 per million
    assert send["output"]["would_create_task"]["title"] == "Thanks for choosing us!"
    (asked,) = openai.requests
    assert f"Thank {deal.title}" in str(asked["body"])
    assert not Task.objects.exists()
    assert "wrote “Thanks for choosing us!” · 1000 + 100 tokens, $0.00021" in draft["words"]


def test_a_contacts_workflow_debugs_on_a_contact(org, owner, contact):
    flow = [{"id": "hello", "type": "send_email", "label": "Hello",
             "config": {"to": "{{contact.email}}", "subject": "Hi {{contact.first_name}}", "body": "Welcome"}}]
    workflow = make_workflow(org, trigger_type="contact_created", trigger_config={}, actions=flow)
    client = as_user(owner)
    found = client.get("/crm/automation/records/search/", {"type": "contact", "q": contact.email[:3]}).json()
    assert [r["id"] for r in found["results"]] == [str(contact.pk)]
    answer = post(client, workflow, {"record": {"type": "contact", "id": str(contact.pk)}}).json()
    assert answer["status"] == "completed"
    (hello,) = answer["steps"]
    assert hello["output"]["would_send"] == {"to": contact.email, "subject": f"Hi {contact.first_name}",
                                             "body": "Welcome"}
    assert not EmailMessage.objects.exists()
    assert post(client, workflow, {"record": {"type": "contact", "id": "x"}}).json()["error"].startswith(
        "Choose a contact")
