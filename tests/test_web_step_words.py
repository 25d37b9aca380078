"""What a step is set up to do, in words: the builder's cards say it as one
edits (static/web/builder.js `summary`, checked in tests/browser/test_builder_roles.py), the
graph's boxes and the flow in words under it say it from the server (web/words.py
`step_settings_in_words`, web/graph_picture.py). Long texts are cut at a word, with an
ellipsis, and the whole sentence is in the box's tooltip."""

import re
from html import unescape

import pytest
from django.test import Client

from crm_automation.web import graph_picture
from crm_automation.web.words import step_settings_in_words, trigger_settings_in_words
from crm_automation.webhooks.services import webhook_target_create
from tests.conftest import make_workflow

STAGES = {"proposal": "Proposal", "won": "Won"}


@pytest.mark.parametrize(("step_type", "config", "words"), [
    ("create_task", {"title": "Call {{deal.title}}", "assignee": "owner", "due_in_days": 2},
     "Create task “Call {{deal.title}}” for the record's owner, due in 2 days"),
    ("create_task", {"title": "Call", "assignee": "ana", "due_in_days": 1, "priority": "high"},
     "Create task “Call” for ana, due in 1 day, high priority"),
    ("create_task", {"title": "Call", "due_in_days": 0}, "Create task “Call”, due the same day"),
    ("send_email", {"to": "{{deal.contact.email}}", "subject": "Welcome", "body": "Hi"},
     "Email {{deal.contact.email}}: “Welcome”"),
    ("update_field", {"field": "stage", "value": "won"}, "Set stage → Won"),
    ("update_field", {"field": "deal.probability", "value": 100}, "Set probability → 100"),
    ("wait", {"delayAmount": 2, "delayUnit": "days"}, "Wait 2 days"),
    ("wait", {"delayAmount": 1, "delayUnit": "hours"}, "Wait 1 hour"),
    ("wait", {"until": "{{deal.close_date}}", "offsetAmount": -3, "offsetUnit": "days"},
     "Wait until 3 days before Deal › Close date"),
    ("wait", {"until": "{{deal.close_date}}"}, "Wait until Deal › Close date"),
    ("condition", {"combinator": "or", "rules": [{"field": "deal.amount", "operator": "gt", "value": 5000},
                                                 {"field": "deal.stage", "operator": "eq", "value": "won"}]},
     "Continue if Deal › Amount is greater than 5000 or Deal › Stage equals Won"),
    ("notify", {"title": "Big win", "recipients": "members"}, "Notify everyone in the organization: “Big win”"),
    ("notify", {"title": "Big win"}, "Notify the admins: “Big win”"),
    ("http_request", {"target": "billing"}, "POST to billing.example.com"),
    ("http_request", {"target": "billing", "method": "PUT", "url": "https://api.example.org/x/{{deal.id}}"},
     "PUT to billing.example.com"),
    ("http_request", {"target": "gone"}, "POST to the webhook target “gone”"),
    ("loop", {"loopMode": "count", "count": 3}, "Repeat 3 times"),
    ("loop", {"items": "{{Find deals.rows}}"}, "For each of Find deals › Rows"),
    ("parallel", {}, "Runs its branches side by side"),
    ("merge", {"strategy": "first"}, "Goes on with the first branch to arrive"),
    ("user_input", {"promptText": "Approve the discount?", "role": "ops", "timeoutAmount": 2, "timeoutUnit": "days"},
     "Ask ops members: “Approve the discount?”, answer within 2 days"),
    ("sub_workflow", {"workflowId": "welcome"}, "Run the workflow “Welcome series”"),
    ("function", {"functionRef": "crm/query_deals", "args": {}}, "Find deals"),
    ("router", {"classificationPrompt": "?", "routes": [{"id": "route-0", "label": "yes"},
                                                        {"id": "route-1", "label": "no"}]},
     "Let the model choose: yes / no"),
])
def test_each_step_says_what_it_is_set_up_to_do(step_type, config, words):
    assert step_settings_in_words(step_type, config, STAGES, workflows={"welcome": "Welcome series"},
                                  targets={"billing": "https://billing.example.com/hooks"}) == words


def test_what_people_typed_is_shortened_at_a_word_when_asked_so_the_rest_fits():
    config = {"title": "Kick off the big deal with everyone on the account team", "assignee": "owner",
              "due_in_days": 2}
    assert step_settings_in_words("create_task", config, {}, quote=24) == \
        "Create task “Kick off the big deal…” for the record's owner, due in 2 days"


def test_the_trigger_says_what_starts_it_and_its_conditions():
    conditions = {"rules": [{"field": "deal.amount", "operator": "gt", "value": 5000}]}
    said = trigger_settings_in_words("deal_stage_change", {"from_stage": "proposal", "to_stage": "won"}, conditions,
                                     STAGES)
    assert said == "Deal moves from Proposal to Won, only if Deal › Amount is greater than 5000"
    assert trigger_settings_in_words("deal_stage_change", {"to_stage": "won"}, {}, STAGES) == "Deal moves to Won"


def test_a_box_breaks_its_words_between_words_on_two_lines_at_most():
    assert graph_picture.wrapped("Create task “Kick off” for the record's owner, due in 2 days", 38) == [
        "Create task “Kick off” for the", "record's owner, due in 2 days"]
    three = graph_picture.wrapped("one two three four five six seven eight nine ten eleven twelve", 20)
    assert three == ["one two three four", "five six seven…"] and all(len(line) <= 20 for line in three)
    assert graph_picture.wrapped("x" * 50, 20) == ["x" * 20, "x" * 19 + "…"]  # a word longer than a line


# --- The graph ----------------------------------------------------------------------------------
FLOW = [
    {"id": "big", "type": "condition",
     "config": {"rules": [{"field": "deal.amount", "operator": "gt", "value": 5000}]}},
    {"id": "kickoff", "type": "create_task", "label": "Kickoff",
     "config": {"title": "Kick off the big deal with everyone on the account team", "assignee": "owner",
                "due_in_days": 2}},
    {"id": "pause", "type": "wait", "config": {"delayAmount": 2, "delayUnit": "days"}},
    {"id": "tell", "type": "http_request", "label": "Tell billing", "config": {"target": "billing"}},
]
EDGES = [{"source": "trigger", "target": "big"},
         {"source": "big", "target": "kickoff", "sourceHandle": "condition-true"},
         {"source": "kickoff", "target": "pause"}, {"source": "pause", "target": "tell"}]


@pytest.fixture
def flow(org, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["billing.example.com"]
    webhook_target_create(organization=org, name="billing", url="https://billing.example.com/hooks", by=None)
    return make_workflow(org, name="Big wins", activate=False, actions=FLOW, graph={"edges": EDGES},
                         trigger_config={"from_stage": "proposal", "to_stage": "won"})


def boxes_of(picture: str) -> dict[str, tuple[str, list[str]]]:
    """{label: (tooltip, the lines of words under it)} of each box of the picture."""
    found = {}
    for box in re.findall(r'<g class="node [a-z]+">(.*?)</g>', picture):
        title = re.search(r"<title>(.*?)</title>", box)
        name = re.search(r'font-weight="600"[^>]*>(.*?)</text>', box)
        assert title is not None and name is not None, box
        tooltip, label = unescape(title.group(1)), unescape(name.group(1))
        found[label] = (tooltip, [unescape(line) for line in re.findall(r'class="does">(.*?)</text>', box)])
    return found


def test_the_graph_page_shows_on_each_box_what_the_step_does(flow, owner):
    client = Client()
    client.force_login(owner)
    text = client.get(f"/crm/automation/workflows/{flow.pk}/graph/").content.decode()
    boxes = boxes_of(text.split("<svg", 1)[1].split("</svg>", 1)[0])
    # The trigger: what starts it, and its words (the label is cut: the whole sentence is below it).
    tooltip, lines = boxes["Deal moves from Proposal to…"]
    assert " ".join(lines) == "Deal moves from Proposal to Won"
    assert tooltip == "Deal moves from Proposal to Won (Trigger): Deal moves from Proposal to Won"
    assert " ".join(boxes["Continue only if"][1]) == "Continue if Deal › Amount is greater than 5000"
    # The task: the title shortened at a word so that the assignee and the due date still show;
    # the whole of it in the tooltip.
    tooltip, lines = boxes["Kickoff"]
    assert " ".join(lines) == "Create task “Kick off the big deal…” for the record's owner, due in 2 days"
    assert tooltip == ("Kickoff (Create task): Create task “Kick off the big deal with everyone on the account "
                       "team” for the record's owner, due in 2 days")
    assert boxes["Wait 2 days"][1] == []  # its label already says it
    assert boxes["Tell billing"][1] == ["POST to billing.example.com"]  # the target's host
    # The flow in words under the picture says the same, whole.
    assert "<strong>Kickoff</strong> <span class=\"muted\">(Create task)</span>: Create task “Kick off the big deal " \
           "with everyone on the account team” for the record&#x27;s owner, due in 2 days" in text


def test_a_box_without_names_still_says_what_it_does():
    definition = {"trigger_type": "deal_created", "trigger_config": {}, "actions": [
        {"id": "a", "type": "send_email", "label": "Welcome", "config": {"to": "{{deal.contact.email}}",
                                                                         "subject": "Hello", "body": "x"}}]}
    boxes = boxes_of(graph_picture.svg(definition, {}))
    assert boxes["Welcome"][1] == ["Email {{deal.contact.email}}: “Hello”"]
    assert boxes["Deal is created"] == ("Deal is created (Trigger)", [])
