"""Workflows as YAML documents (docs/product.md#documents): export, import, errors with their place and line,
version comparison, rollback and clone."""

import pytest
import yaml
from django.core.exceptions import PermissionDenied

from crm_automation.automation.definition import documents
from crm_automation.automation.models import Workflow
from crm_automation.automation.services.versions import (
    parse_yaml,
    versions_compare,
    workflow_clone,
    workflow_document,
    workflow_export_yaml,
    workflow_import_yaml,
    workflow_rollback,
)
from crm_automation.automation.services.workflows import workflow_update
from tests.conftest import make_workflow

GOOD = """\
id: won-deal-kickoff
name: Won deal kickoff
_status: draft
settings:
  errorPolicy: abort
  reenrollment: once
  timeoutSeconds: 60
nodes:
- id: trigger
  type: workflow
  data:
    subtype: chat-app
    label: Deal won
    config:
      event: deal_stage_change
      to_stage: won
- id: kickoff-task
  type: workflow
  data:
    subtype: tool-call
    label: Kickoff task
    config:
      toolName: crm/create_task
      defaults:
        title: Kick off {{deal.title}}
        due_in_days: 2
- id: welcome-email
  type: workflow
  data:
    subtype: tool-call
    label: Welcome email
    config:
      toolName: crm/send_email
      defaults:
        to: '{{deal.contact.email}}'
        subject: Welcome aboard
edges:
- source: trigger
  target: kickoff-task
- source: kickoff-task
  target: welcome-email
"""


def test_a_workflow_exports_as_a_chain_of_nodes(org):
    wf = make_workflow(org, conditions={"rules": [{"field": "deal.amount", "operator": "gt", "value": 100}]})
    document = yaml.safe_load(workflow_export_yaml(wf))
    assert (document["id"], document["name"], document["_status"]) == ("kickoff", "Kickoff", "production")
    assert [n["data"]["subtype"] for n in document["nodes"]] == ["chat-app", "tool-call", "tool-call", "tool-call"]
    assert all(n["type"] == "workflow" for n in document["nodes"])
    trigger = document["nodes"][0]["data"]["config"]
    assert trigger == {"event": "deal_stage_change", "to_stage": "won",
                       "conditions": {"rules": [{"field": "deal.amount", "operator": "gt", "value": 100}]}}
    assert document["nodes"][1]["data"]["config"]["toolName"] == "crm/create_task"
    assert [(e["source"], e["target"]) for e in document["edges"]] == [
        ("trigger", "create-task"), ("create-task", "update-field"), ("update-field", "send-email")]


def test_export_then_import_gives_the_same_definition_and_text(org, owner):
    wf = make_workflow(org, activate=False)
    text = workflow_export_yaml(wf)
    copy, notes = workflow_import_yaml(organization=org, by=owner, text=text)
    assert copy.key == "kickoff-2" and any("is taken" in note for note in notes)
    assert copy.name == "Kickoff (2)" and any("already called “Kickoff”" in note for note in notes)
    assert copy.current_version.definition == {**wf.current_version.definition}
    assert workflow_export_yaml(copy).replace("kickoff-2", "kickoff").replace("Kickoff (2)", "Kickoff") == text


def test_importing_makes_a_draft_and_production_goes_through_the_activation_checks(org, owner, teammate):
    wf, notes = workflow_import_yaml(organization=org, by=owner, text=GOOD.replace("_status: draft",
                                                                                  "_status: production"))
    assert (wf.status, wf.key, notes) == ("activated", "won-deal-kickoff", [])
    assert [a["id"] for a in wf.current_version.definition["actions"]] == ["kickoff-task", "welcome-email"]
    other, notes = workflow_import_yaml(organization=org, by=teammate, text=GOOD.replace(
        "_status: draft", "_status: production"))
    assert other.status == "draft" and "Only admins of Acme can activate" in notes[-1]


@pytest.mark.parametrize(("change", "place", "line", "message"), [
    (("toolName: crm/send_email", "toolName: crm/send_fax"), "nodes[welcome-email].data.config.toolName", 33,
     "“crm/send_fax” is not a tool"),
    (("title: Kick off {{deal.title}}", "title: Kick off {{deal.titel}}"),
     "nodes[kickoff-task].data.config.defaults.title", 25, "did you mean deal.title?"),
    (("to_stage: won", "to_stage: closed"), "nodes[trigger].data.config.to_stage", 16,
     "“closed” is not a stage of this organization"),
    (("  target: welcome-email", "  target: nowhere"), "edges[1].target", 41, "“nowhere” is not a node"),
    (("subtype: tool-call\n    label: Welcome email", "subtype: teleport\n    label: Welcome email"),
     "nodes[welcome-email].data.subtype", 30, "unknown subtype"),
    (("label: Welcome email", "label: Kickoff task"), "nodes[welcome-email].data.label", 31, "labels must be unique"),
])
def test_errors_name_the_place_and_the_line(org, change, place, line, message):
    with pytest.raises(documents.DocumentError) as caught:
        parse_yaml(GOOD.replace(*change), org.pk)
    ((where, text, at),) = caught.value.errors
    assert (where, at) == (place, line) and message in text


def test_unreadable_yaml_says_where(org):
    with pytest.raises(documents.DocumentError, match=r"line 4: this is not valid YAML"):
        parse_yaml("id: x\nname: y\nnodes: [\n", org.pk)


def test_an_unreachable_node_and_a_second_trigger_are_refused(org):
    extra = GOOD + "- source: welcome-email\n  target: trigger\n"
    with pytest.raises(documents.DocumentError, match="the trigger cannot be the target of an edge"):
        parse_yaml(extra, org.pk)
    orphan = GOOD.replace("- source: kickoff-task\n  target: welcome-email\n", "")
    with pytest.raises(documents.DocumentError, match=r"nodes\[welcome-email\]: cannot be reached from the trigger"):
        parse_yaml(orphan, org.pk)


def test_node_ids_stay_the_same_across_edits_so_versions_compare_node_by_node(org, owner):
    wf = make_workflow(org, activate=False)
    first = [n["id"] for n in workflow_document(wf)["nodes"]]
    actions = wf.current_version.definition["actions"]
    workflow_update(workflow_id=wf.pk, by=owner, actions=[
        actions[2], {**actions[0], "config": {"title": "Kick off now"}},
        {"type": "create_task", "config": {"title": "x"}}])
    wf.refresh_from_db()
    diff = versions_compare(wf, 1, 2)
    assert [n["id"] for n in diff["nodes_removed"]] == ["update-field"]
    assert [n["id"] for n in diff["nodes_added"]] == ["create-task-2"]
    assert [old["id"] for old, _ in diff["nodes_changed"]] == ["create-task"]
    assert ("trigger", "send-email", None) in diff["edges_added"]
    assert "-        title: Kick off {{deal.title}}" in diff["text"] and "+        title: Kick off now" in diff["text"]
    assert first == ["trigger", "create-task", "update-field", "send-email"]


def test_rollback_makes_a_new_version_and_keeps_history(org, owner):
    wf = make_workflow(org, activate=False)
    workflow_update(workflow_id=wf.pk, by=owner, changes={"trigger_config": {"to_stage": "lost"}},
                    actions=[{"type": "create_task", "config": {"title": "Ask why"}}])
    rolled = workflow_rollback(workflow_id=wf.pk, by=owner, number=1)
    assert rolled.version == 3 and list(rolled.versions.values_list("number", flat=True)) == [3, 2, 1]
    assert rolled.current_version.definition == Workflow.objects.get(pk=wf.pk).versions.get(number=1).definition
    assert rolled.definition["trigger_config"] == {"to_stage": "won"} and len(rolled.definition["actions"]) == 3


def test_clone_is_a_new_draft_with_a_new_id(org, owner, viewer):
    wf = make_workflow(org)
    copy = workflow_clone(workflow_id=wf.pk, by=owner)
    assert (copy.status, copy.name, copy.key) == ("draft", "Copy of Kickoff", "copy-of-kickoff")
    assert copy.current_version.definition == wf.current_version.definition
    with pytest.raises(PermissionDenied):
        workflow_clone(workflow_id=wf.pk, by=viewer)


FOLLOW_UP_YAML = """\
id: proposal-follow-up
name: Proposal follow-up
nodes:
- id: trigger
  type: workflow
  data:
    subtype: chat-app
    label: Proposal sent
    config:
      event: deal_stage_change
      to_stage: proposal
- id: wait-1d
  type: workflow
  data:
    subtype: wait
    label: Wait 1 day
    config:
      delayAmount: 1
      delayUnit: days
- id: still-open
  type: workflow
  data:
    subtype: condition
    label: Still in proposal
    config:
      combinator: and
      rules:
      - field: deal.stage
        operator: eq
        value: proposal
- id: reminder
  type: workflow
  data:
    subtype: tool-call
    label: Reminder
    config:
      toolName: crm/send_email
      defaults:
        to: '{{deal.contact.email}}'
        subject: Any questions about {{deal.title}}?
edges:
- source: trigger
  target: wait-1d
- source: wait-1d
  target: still-open
- source: still-open
  target: reminder
  sourceHandle: condition-true
"""


def test_waits_and_conditions_round_trip_as_seed_nodes(org, owner):
    wf, _ = workflow_import_yaml(organization=org, by=owner, text=FOLLOW_UP_YAML)
    steps = wf.current_version.definition["actions"]
    assert [(s["id"], s["type"]) for s in steps] == [("wait-1d", "wait"), ("still-open", "condition"),
                                                    ("reminder", "send_email")]
    exported = yaml.safe_load(workflow_export_yaml(wf))
    assert exported["edges"][2] == {"source": "still-open", "target": "reminder", "sourceHandle": "condition-true"}
    assert [n["data"]["subtype"] for n in exported["nodes"]] == ["chat-app", "wait", "condition", "tool-call"]


def test_the_false_side_of_a_condition_is_a_way_out_and_a_bad_handle_is_named(org):
    text = FOLLOW_UP_YAML.replace("sourceHandle: condition-true", "sourceHandle: condition-false")
    edges = parse_yaml(text, org.pk)["definition"]["graph"]["edges"]
    assert {"source": "still-open", "target": "reminder", "sourceHandle": "condition-false"} in edges
    wrong = FOLLOW_UP_YAML.replace("sourceHandle: condition-true", "sourceHandle: maybe")
    with pytest.raises(documents.DocumentError, match=r"sourceHandle: this condition node's ways out are "
                                                      "condition-false, condition-true"):
        parse_yaml(wrong, org.pk)
    bad_wait = FOLLOW_UP_YAML.replace("delayUnit: days", "delayUnit: fortnights")
    with pytest.raises(documents.DocumentError, match=r"line \d+: nodes\[wait-1d\]\.data\.config\.delayUnit"):
        parse_yaml(bad_wait, org.pk)


GRAPH_YAML = """\
id: lost-deal-feedback
name: Lost-deal feedback
_status: draft
settings:
  errorPolicy: skip
  reenrollment: not_while_running
  timeoutSeconds: 60
nodes:
- id: deal-lost
  type: workflow
  data:
    subtype: chat-app
    label: Deal Lost
    config:
      event: deal_stage_change
      to_stage: lost
- id: fan-out
  type: workflow
  data:
    subtype: parallel
    label: Both Channels
    config: {}
- id: ask-why
  type: workflow
  data:
    subtype: tool-call
    label: Ask Why
    config:
      toolName: crm/send_email
      defaults:
        to: '{{deal.contact.email}}'
        subject: What could we have done better, {{deal.contact.first_name}}?
- id: open-deals
  type: workflow
  data:
    subtype: function
    label: Open Deals
    config:
      args:
        limit: 5
        filters:
        - field: stage
          value: proposal
          operator: eq
      functionRef: crm/query_deals
- id: each-deal
  type: workflow
  data:
    subtype: loop
    label: Each Open Deal
    config:
      items: '{{Open Deals.rows}}'
      loopMode: for-each
      maxIterations: 5
- id: check-deal
  type: workflow
  data:
    subtype: tool-call
    label: Check Deal
    config:
      toolName: crm/create_task
      defaults:
        title: Check {{loop.current.title}} after losing {{deal.title}}
- id: rejoin
  type: workflow
  data:
    subtype: merge
    label: Re-join
    config:
      strategy: wait-all
- id: tell-team
  type: workflow
  data:
    subtype: desktop-notification
    label: Tell The Team
    config:
      title: '{{deal.title}} was lost'
      recipients: admins
edges:
- source: deal-lost
  target: fan-out
- source: fan-out
  target: ask-why
  sourceHandle: branch-0
- source: fan-out
  target: open-deals
  sourceHandle: branch-1
- source: open-deals
  target: each-deal
- source: each-deal
  target: check-deal
  sourceHandle: loop-body
- source: check-deal
  target: each-deal
- source: each-deal
  target: rejoin
  sourceHandle: loop-done
- source: ask-why
  target: rejoin
- source: rejoin
  target: tell-team
"""


def test_a_graph_with_every_running_node_type_round_trips_exactly(org, owner):
    wf, notes = workflow_import_yaml(organization=org, by=owner, text=GRAPH_YAML)
    assert notes == [] and wf.definition["graph"]["trigger"] == {"id": "deal-lost", "label": "Deal Lost"}
    assert workflow_export_yaml(wf) == GRAPH_YAML
    assert wf.current_version.document["nodes"][0]["id"] == "deal-lost"
