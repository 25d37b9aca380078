"""Sub-workflow nodes: a run starts another workflow's run for the same record, waits for it (or
not), takes its outcome as the node's output; nesting is limited; parent and child link."""

import pytest
from django.core.exceptions import ValidationError

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.nodes.sub_workflow import MAX_DEPTH
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.automation.services.runs import run_cancel
from crm_automation.crm.models import Task
from tests.conftest import make_workflow, time_passes
from tests.test_graph_engine import edge, task, win


def child(org, key="onboarding", actions=None, edges=None, **kwargs):
    """A workflow another one calls (its own trigger never fires in these tests: to_stage lost)."""
    return make_workflow(org, name=key, key=key, trigger_config={"to_stage": "lost"},
                         actions=actions or [task("welcome", "Welcome {{deal.title}}")],
                         graph={"edges": edges or [edge("trigger", "welcome")]}, **kwargs)


def call(key="onboarding", wait=True, **extra):
    return {"id": "call", "type": "sub_workflow", "label": "Onboarding",
            "config": {"workflowId": key, "awaitResponse": wait}, **extra}


def settle() -> None:
    """Run what the nudges would: started runs (children, woken parents), until nothing is left."""
    for _ in range(10):
        ids = list(WorkflowRun.objects.filter(status="started").values_list("pk", flat=True))
        if not ids:
            return
        continue_runs(ids)


def test_a_parent_waits_for_its_child_and_reads_its_output(org, deal):
    child(org)
    after = task("after", "After {{Onboarding.status}}: {{Onboarding.outputs.welcome.title}}")
    parent = win(org, deal, [call(), after], [edge("trigger", "call"), edge("call", "after")])
    assert parent.status == "waiting" and parent.wake_at is None  # woken by its child, not by a clock
    kid = WorkflowRun.objects.get(parent_run=parent)
    assert kid.parent_key == f"run:{parent.pk}:node:call" and kid.trigger_entity_id == deal.pk
    settle()
    parent.refresh_from_db()
    kid.refresh_from_db()
    assert kid.status == "completed" and parent.status == "completed"
    assert list(Task.objects.order_by("created_at").values_list("title", flat=True)) == [
        "Welcome Website", "After completed: Welcome Website"]
    assert parent.actions.get(node_id="call").result["child_run"] == kid.pk


def test_without_await_the_parent_goes_on_at_once(org, deal):
    child(org)
    parent = win(org, deal, [call(wait=False), task("after", "After")],
                 [edge("trigger", "call"), edge("call", "after")])
    assert parent.status == "completed" and Task.objects.get().title == "After"
    settle()
    assert WorkflowRun.objects.get(parent_run=parent).status == "completed" and Task.objects.count() == 2


def test_a_child_that_waits_keeps_its_parent_waiting_durably(org, deal):
    child(org, actions=[{"id": "pause", "type": "wait", "config": {"delayAmount": 1, "delayUnit": "days"}},
                        task("welcome", "Later")], edges=[edge("trigger", "pause"), edge("pause", "welcome")])
    parent = win(org, deal, [call(), task("after", "After")], [edge("trigger", "call"), edge("call", "after")])
    settle()
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {"waiting"}
    time_passes()
    sweep(fan_out=False)
    settle()
    parent.refresh_from_db()
    assert parent.status == "completed" and sorted(Task.objects.values_list("title", flat=True)) == ["After", "Later"]


def test_a_failed_child_fails_the_step_by_its_policy(org, deal):
    deal.contact.email = ""
    deal.contact.save()
    child(org, actions=[{"id": "mail", "type": "send_email", "config": {"to": "{{deal.contact.email}}",
                                                                         "subject": "Hi"}}],
          edges=[edge("trigger", "mail")])
    parent = win(org, deal, [call(on_error={"policy": "skip"}), task("after", "After")],
                 [edge("trigger", "call"), edge("call", "after")])
    settle()
    parent.refresh_from_db()
    step = parent.actions.get(node_id="call")
    assert step.status == "failed" and "failed" in step.error and parent.status == "partial"
    assert Task.objects.get().title == "After"


def test_cancelling_a_child_lets_its_parent_go_on_by_its_policy(org, deal, owner):
    child(org, actions=[{"id": "pause", "type": "wait", "config": {"delayAmount": 1, "delayUnit": "days"}}],
          edges=[edge("trigger", "pause")])
    parent = win(org, deal, [call()], [edge("trigger", "call")])
    settle()
    run_cancel(run_id=WorkflowRun.objects.get(parent_run=parent).pk, by=owner)
    settle()
    parent.refresh_from_db()
    assert parent.status == "failed" and "cancelled" in parent.error


def test_nesting_is_limited(org, deal):
    # a → b → c → … each calling the next; the last one calls the first: a loop cut at MAX_DEPTH.
    keys = [f"level-{i}" for i in range(MAX_DEPTH + 2)]
    for i, key in reversed(list(enumerate(keys[1:], start=1))):
        nxt = keys[i + 1] if i + 1 < len(keys) else None
        if nxt is None:
            child(org, key=key)
        else:
            child(org, key=key, actions=[call(nxt)], edges=[edge("trigger", "call")])
    win(org, deal, [call(keys[1])], [edge("trigger", "call")])
    settle()
    deepest = WorkflowRun.objects.filter(status="failed").order_by("-pk").first()
    assert deepest is not None and f"nest at most {MAX_DEPTH} deep" in deepest.error
    assert WorkflowRun.objects.filter(parent_run__isnull=False).count() == MAX_DEPTH


def test_a_missing_or_other_entity_child_is_refused(org):
    with pytest.raises(ValidationError, match="“nope” is not a workflow of this organization"):
        make_workflow(org, actions=[call("nope")], graph={"edges": [edge("trigger", "call")]}, activate=False)
    make_workflow(org, name="for leads", key="for-leads", trigger_type="lead_created", trigger_config={},
                  actions=[task("t", "x")], activate=False)
    with pytest.raises(ValidationError, match="runs for a lead; this workflow runs for a deal"):
        make_workflow(org, actions=[call("for-leads")], graph={"edges": [edge("trigger", "call")]}, activate=False)


def test_a_paused_child_workflow_is_not_started(org, deal):
    from crm_automation.automation.services.workflows import workflow_transition

    kid = child(org)
    workflow_transition(workflow_id=kid.pk, name="pause", by=None)
    parent = win(org, deal, [call()], [edge("trigger", "call")])
    assert parent.status == "failed" and "is paused, so it was not started" in parent.error


def test_child_runs_count_against_the_quota_and_a_child_without_history_still_answers(org, deal, monkeypatch):
    from crm_automation.automation import plans
    from crm_automation.automation.models import MonthlyUsage

    monkeypatch.setitem(plans.MONTHLY_LOGGED_RUNS, org.plan, 1)  # the parent's run takes the only slot
    child(org)
    parent = win(org, deal, [call(), task("after", "After {{Onboarding.status}}")],
                 [edge("trigger", "call"), edge("call", "after")])
    settle()
    parent.refresh_from_db()
    usage = MonthlyUsage.objects.get(organization=org)
    assert (usage.logged_runs, usage.suppressed_runs) == (1, 1)
    assert not WorkflowRun.objects.filter(parent_run=parent).exists()  # ran without history, then removed
    assert parent.status == "completed" and Task.objects.get(title__startswith="After").title == "After completed"
