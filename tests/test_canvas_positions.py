"""Where the canvas places each node is part of the document: it round-trips through the YAML,
the API and the builder's save, is checked like any other setting, and moving a node changes
nothing a run does (versions compare it as a move, not a change)."""

import pytest
import yaml
from rest_framework.test import APIClient

from crm_automation.automation.definition import documents
from crm_automation.automation.services.versions import (
    parse_yaml,
    versions_compare,
    workflow_document,
    workflow_export_yaml,
    workflow_import_yaml,
    workflow_update_from_document,
)
from tests.test_documents import GOOD

PLACED = (GOOD.replace("    config:\n      event: deal_stage_change\n      to_stage: won\n",
                       "    config:\n      event: deal_stage_change\n      to_stage: won\n  position:\n    x: 40\n"
                       "    y: -12.6\n")
          .replace("  data:\n    subtype: tool-call\n    label: Kickoff task",
                   "  position: {x: 300, y: 160}\n  data:\n    subtype: tool-call\n    label: Kickoff task"))


def test_positions_round_trip_through_yaml_in_whole_pixels(org, owner):
    workflow, notes = workflow_import_yaml(organization=org, by=owner, text=PLACED)
    assert notes == []
    exported = yaml.safe_load(workflow_export_yaml(workflow))
    places = {node["id"]: node.get("position") for node in exported["nodes"]}
    # -12.6 is kept as -13: whole pixels; a node never placed has none (the canvas lays it out).
    assert places == {"trigger": {"x": 40, "y": -13}, "kickoff-task": {"x": 300, "y": 160}, "welcome-email": None}
    again, _ = workflow_import_yaml(organization=org, by=owner, text=workflow_export_yaml(workflow))
    assert again.current_version.definition == workflow.current_version.definition


@pytest.mark.parametrize(("position", "message"), [
    ("[1, 2]", "must be a mapping of x and y"),
    ("{x: 1}", "must be a mapping of x and y"),
    ("{x: 1, y: 2, z: 3}", "must be a mapping of x and y"),
    ("{x: one, y: 2}", "must be numbers"),
    ("{x: true, y: 2}", "must be numbers"),
    ("{x: 1e12, y: 2}", "must be numbers between -1,000,000 and 1,000,000"),
])
def test_a_bad_position_is_refused_at_its_place_and_line(org, position, message):
    text = PLACED.replace("position: {x: 300, y: 160}", f"position: {position}")
    with pytest.raises(documents.DocumentError) as caught:
        parse_yaml(text, org.pk)
    ((place, said, line),) = caught.value.errors
    assert place == "nodes[kickoff-task].position" and message in said and line == text.splitlines().index(
        f"  position: {position}") + 1


def test_moving_a_node_is_a_move_not_a_change(org, owner):
    workflow, _ = workflow_import_yaml(organization=org, by=owner, text=PLACED)
    document = workflow_document(workflow)
    document["nodes"][1]["position"] = {"x": 500, "y": 160}
    workflow = workflow_update_from_document(workflow_id=workflow.pk, by=owner, document=document,
                                             expected_revision=workflow.draft_revision)
    diff = versions_compare(workflow, 1, 2)
    assert (diff["nodes_changed"], diff["nodes_moved"], diff["edges_added"]) == ([], ["kickoff-task"], [])
    assert "x: 500" in diff["text"]


def test_the_api_keeps_positions_and_names_a_bad_one(org, owner):
    client = APIClient()
    client.force_authenticate(owner)
    created = client.post("/api/v1/workflows/", PLACED, content_type="application/yaml")
    assert created.status_code == 201, created.content
    body = created.json()
    assert [node.get("position") for node in body["nodes"]] == [{"x": 40, "y": -13}, {"x": 300, "y": 160}, None]
    body["nodes"][2]["position"] = {"x": "far", "y": 0}
    refused = client.patch(f"/api/v1/workflows/{body['id']}/", body, format="json")
    assert refused.status_code == 400
    assert [e["place"] for e in refused.json()["errors"]] == ["nodes[welcome-email].position"]
    body["nodes"][2]["position"] = {"x": 10, "y": 400}
    saved = client.patch(f"/api/v1/workflows/{body['id']}/", body, format="json")
    assert saved.status_code == 200, saved.content
    assert saved.json()["nodes"][2]["position"] == {"x": 10, "y": 400}
