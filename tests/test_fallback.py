"""Fallback: a failed step's run goes on along its "error" edge instead of stopping. The product
documents' pattern: the primary provider fails → the backup → on a second failure a task for the
ops team with the error; the failure and the fallback are both on the run's record."""

import pytest
from django.core.exceptions import ValidationError

from crm_automation.automation.definition.documents import DocumentError
from crm_automation.automation.models import WorkflowRun, WorkflowRunAction
from crm_automation.automation.services.versions import parse_yaml, workflow_document
from crm_automation.crm.models import Task
from crm_automation.webhooks.services import webhook_target_create
from tests.conftest import make_workflow
from tests.http_receiver import Receiver


def win(org, owner):
    from crm_automation.crm.models import Deal, Stage
    from crm_automation.crm.services import deal_move_to_stage
    from tests.conftest import drain
    deal = Deal.objects.create(organization=org, title="Website", amount=1000, owner=owner,
                               stage=Stage.objects.get(organization=org, slug="new"))
    deal_move_to_stage(deal=deal, stage=Stage.objects.get(organization=org, slug="won"))
    drain()


@pytest.fixture
def providers(org, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    primary, backup = Receiver(), Receiver()
    webhook_target_create(organization=org, name="primary", url=f"http://127.0.0.1:{primary.port}/send", by=None)
    webhook_target_create(organization=org, name="backup", url=f"http://127.0.0.1:{backup.port}/send", by=None)
    yield primary, backup
    primary.close()
    backup.close()


STEPS = [
    {"id": "primary", "type": "http_request", "label": "Primary", "on_error": {"policy": "fallback"},
     "config": {"target": "primary", "body": {"to": "{{deal.title}}"}}},
    {"id": "backup", "type": "http_request", "label": "Backup", "on_error": {"policy": "fallback"},
     "config": {"target": "backup", "body": {"to": "{{deal.title}}"}}},
    {"id": "ops", "type": "create_task", "label": "Ops", "config": {
        "title": "Send it by hand: {{Primary.error}} / {{Backup.error}}", "priority": "urgent"}},
    {"id": "after", "type": "create_task", "label": "After", "config": {"title": "Sent: {{deal.title}}"}},
]
GRAPH = {"edges": [{"source": "trigger", "target": "primary"}, {"source": "primary", "target": "after"},
                   {"source": "primary", "target": "backup", "sourceHandle": "error"},
                   {"source": "backup", "target": "after"},
                   {"source": "backup", "target": "ops", "sourceHandle": "error"}]}


def test_primary_fails_then_the_backup_then_a_task_for_the_ops_team_with_the_error(org, owner, providers):
    primary, backup = providers
    primary.reply(500, "primary down")
    backup.reply(503, "backup down")
    make_workflow(org, actions=STEPS, graph=GRAPH)
    win(org, owner)
    run = WorkflowRun.objects.get()
    assert run.status == "partial"  # failures on the record, and the fallback did its work
    steps = {s.node_id: s for s in WorkflowRunAction.objects.filter(run=run)}
    assert (steps["primary"].status, steps["backup"].status, steps["ops"].status) == ("failed", "failed", "completed")
    assert steps["primary"].result["policy"] == "fallback" and "500" in steps["primary"].error
    assert "after" not in steps
    task = Task.objects.get()
    assert task.priority == "urgent" and "answered 500" in task.title and "answered 503" in task.title


def test_the_backup_succeeding_goes_on_as_if_nothing_happened_after_it(org, owner, providers):
    primary, backup = providers
    primary.reply(500, "primary down")
    make_workflow(org, actions=STEPS, graph=GRAPH)
    win(org, owner)
    run = WorkflowRun.objects.get()
    steps = {s.node_id: s.status for s in WorkflowRunAction.objects.filter(run=run)}
    assert steps == {"primary": "failed", "backup": "completed", "after": "completed"} and run.status == "partial"
    assert list(Task.objects.values_list("title", flat=True)) == ["Sent: Website"]
    assert len(backup.requests) == 1


def test_the_workflows_policy_falls_back_for_nodes_without_their_own(org, owner, providers):
    primary, _backup = providers
    primary.reply(500, "down")
    steps = [{**step, "on_error": None} if step["id"] == "primary" else step for step in STEPS]
    steps = [{k: v for k, v in step.items() if v is not None} for step in steps]
    make_workflow(org, actions=steps, graph=GRAPH, error_handling="fallback")
    win(org, owner)
    assert WorkflowRunAction.objects.get(node_id="backup").status == "completed"


def test_the_yaml_shows_the_error_edge_and_round_trips(org, owner, providers):
    workflow = make_workflow(org, actions=STEPS, graph=GRAPH, activate=False)
    document = workflow_document(workflow)
    assert {"source": "primary", "target": "backup", "sourceHandle": "error"} in document["edges"]
    primary = next(n for n in document["nodes"] if n["id"] == "primary")
    assert primary["data"]["onError"] == {"policy": "fallback"}


def test_an_error_edge_without_a_fallback_and_a_fallback_without_an_edge_are_refused(org):
    with pytest.raises(ValidationError) as caught:
        make_workflow(org, actions=[{**STEPS[0], "on_error": {"policy": "skip"}}, *STEPS[1:]], graph=GRAPH)
    assert "has an error edge but does not fall back" in " ".join(caught.value.messages)
    edges = [e for e in GRAPH["edges"] if e.get("sourceHandle") != "error" or e["source"] != "backup"]
    with pytest.raises(ValidationError) as caught:
        make_workflow(org, actions=STEPS, graph={"edges": edges})
    assert "a fallback runs the node its “error” edge leads to" in " ".join(caught.value.messages)


def test_a_condition_has_no_error_edge(org):
    text = """\
id: x
name: X
nodes:
- {id: trigger, type: workflow, data: {subtype: chat-app, label: T, config: {event: deal_created}}}
- {id: check, type: workflow, data: {subtype: condition, label: C, config: {rules: [{field: deal.amount,
  operator: gt, value: 1}]}}}
- {id: t, type: workflow, data: {subtype: tool-call, label: Task, config: {toolName: crm/create_task,
  defaults: {title: x}}}}
edges:
- {source: trigger, target: check}
- {source: check, target: t, sourceHandle: error}
"""
    with pytest.raises(DocumentError) as caught:
        parse_yaml(text, org.pk)
    assert "ways out are condition-false, condition-true" in str(caught.value)
