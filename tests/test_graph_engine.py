"""Workflows as graphs: both sides of a condition, parallel branches and merges, loops (also
nested and of 100 items), waits inside branches, and resuming a graph where it stopped."""

import pytest
from django.core.exceptions import ValidationError

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.crm.models import Deal, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage, time_passes


def task(node_id: str, title: str, **extra) -> dict:
    return {"id": node_id, "type": "create_task", "config": {"title": title}, **extra}


def edge(source: str, target: str, handle: str | None = None) -> dict:
    return {"source": source, "target": target, **({"sourceHandle": handle} if handle else {})}


def win(org, deal, actions, edges, **kwargs) -> WorkflowRun:
    make_workflow(org, actions=actions, graph={"edges": edges}, **kwargs)
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()
    return WorkflowRun.objects.get(parent_run__isnull=True)  # (not the sub-workflows it started)


BIG_DEAL = {"id": "big", "type": "condition", "config": {"rules": [
    {"field": "deal.amount", "operator": "gt", "value": 1000}]}}


@pytest.mark.parametrize(("amount", "made"), [(5000, "Big"), (10, "Small")])
def test_a_condition_takes_one_side_and_records_which(org, deal, amount, made):
    Deal.objects.filter(pk=deal.pk).update(amount=amount)
    run = win(org, deal, [BIG_DEAL, task("big-task", "Big"), task("small-task", "Small")],
              [edge("trigger", "big"), edge("big", "big-task", "condition-true"),
               edge("big", "small-task", "condition-false")])
    assert run.status == "completed"
    assert list(Task.objects.values_list("title", flat=True)) == [made]
    assert run.actions.get(node_id="big").result["handle"] == ("condition-true" if made == "Big"
                                                                else "condition-false")
    assert run.actions.count() == 2  # the side not taken has no step


def test_parallel_branches_meet_at_a_merge_that_waits_for_all(org, deal):
    run = win(org, deal, [
        {"id": "fan-out", "type": "parallel", "config": {}},
        task("a", "A"), task("b", "B"), {"id": "b2", "type": "wait", "config": {"delayAmount": 1,
                                                                               "delayUnit": "hours"}},
        {"id": "join", "type": "merge", "config": {"strategy": "wait-all"}}, task("after", "After")],
        [edge("trigger", "fan-out"), edge("fan-out", "a", "branch-0"), edge("fan-out", "b", "branch-1"),
         edge("b", "b2"), edge("a", "join"), edge("b2", "join"), edge("join", "after")])
    assert run.status == "waiting"  # branch 1 waits an hour: the merge waits for it
    assert sorted(Task.objects.values_list("title", flat=True)) == ["A", "B"]
    time_passes()
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed" and Task.objects.filter(title="After").count() == 1
    assert run.actions.get(node_id="join").result["arrived_from"] == ["a", "b2"]


def test_a_first_merge_goes_on_once(org, deal):
    run = win(org, deal, [
        {"id": "fan-out", "type": "parallel", "config": {}}, task("a", "A"), task("b", "B"),
        {"id": "join", "type": "merge", "config": {"strategy": "first"}}, task("after", "After")],
        [edge("trigger", "fan-out"), edge("fan-out", "a", "branch-0"), edge("fan-out", "b", "branch-1"),
         edge("a", "join"), edge("b", "join"), edge("join", "after")])
    assert run.status == "completed" and Task.objects.filter(title="After").count() == 1


def test_a_wait_all_merge_goes_on_when_a_branch_ends_on_a_false_condition(org, deal):
    Deal.objects.filter(pk=deal.pk).update(amount=1)
    run = win(org, deal, [
        {"id": "fan-out", "type": "parallel", "config": {}}, task("a", "A"), BIG_DEAL, task("b", "B"),
        {"id": "join", "type": "merge", "config": {}}, task("after", "After")],
        [edge("trigger", "fan-out"), edge("fan-out", "a", "branch-0"), edge("fan-out", "big", "branch-1"),
         edge("big", "b", "condition-true"), edge("a", "join"), edge("b", "join"), edge("join", "after")])
    assert run.status == "completed" and sorted(Task.objects.values_list("title", flat=True)) == ["A", "After"]


def test_a_loop_runs_its_body_for_each_item_then_goes_on(org, deal):
    run = win(org, deal, [
        {"id": "each", "type": "loop", "config": {"loopMode": "for-each", "items": ["call", "email", "visit"]}},
        task("step", "{{loop.index}}: {{loop.current}} for {{deal.title}}"), task("after", "Done")],
        [edge("trigger", "each"), edge("each", "step", "loop-body"), edge("step", "each"),
         edge("each", "after", "loop-done")])
    assert run.status == "completed"
    assert list(Task.objects.order_by("created_at", "title").values_list("title", flat=True)) == [
        "0: call for Website", "1: email for Website", "2: visit for Website", "Done"]
    assert sorted(run.actions.filter(node_id="step").values_list("token", flat=True)) == ["0", "1", "2"]


def test_a_loop_of_100_items_and_a_nested_loop(org, deal):
    run = win(org, deal, [
        {"id": "outer", "type": "loop", "config": {"loopMode": "count", "count": 100}},
        {"id": "inner", "type": "loop", "config": {"loopMode": "count", "count": 2}},
        task("step", "{{loop.index}}")],
        [edge("trigger", "outer"), edge("outer", "inner", "loop-body"), edge("inner", "step", "loop-body")])
    assert run.status == "completed"
    assert Task.objects.count() == 200
    assert run.actions.filter(node_id="step", token="99.1").exists()


def test_a_wait_inside_a_loop_parks_and_resumes_in_the_right_iteration(org, deal):
    run = win(org, deal, [
        {"id": "each", "type": "loop", "config": {"loopMode": "count", "count": 2}},
        {"id": "pause", "type": "wait", "config": {"delayAmount": 1, "delayUnit": "days"}},
        task("step", "Iteration {{loop.index}}")],
        [edge("trigger", "each"), edge("each", "pause", "loop-body"), edge("pause", "step")])
    for expected in (["Iteration 0"], ["Iteration 0", "Iteration 1"]):
        assert run.status == "waiting"
        time_passes()
        sweep(fan_out=False)
        run.refresh_from_db()
        assert sorted(Task.objects.values_list("title", flat=True)) == expected
    assert run.status == "completed"


def test_a_failed_step_in_a_branch_stops_the_run_and_skips_what_was_left(org, deal):
    deal.contact.email = ""
    deal.contact.save()
    run = win(org, deal, [
        {"id": "fan-out", "type": "parallel", "config": {}},
        {"id": "bad", "type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Hi"}},
        task("after-bad", "Never")],
        [edge("trigger", "fan-out"), edge("fan-out", "bad", "branch-0"), edge("bad", "after-bad")])
    assert run.status == "failed" and "Step 2" in run.error
    assert run.actions.get(node_id="after-bad").status == "skipped" and not Task.objects.exists()


@pytest.mark.parametrize(("edges", "message"), [
    ([edge("trigger", "a"), edge("a", "b"), edge("b", "a")], "go round in a circle"),
    ([edge("trigger", "a")], r"nodes\[b\]: cannot be reached"),
    ([edge("trigger", "a"), edge("a", "b"), edge("a", "c")], "second edge out of “a”"),
    ([edge("trigger", "a"), edge("a", "b", "condition-true")], "takes no handle|one way out"),
    ([edge("trigger", "a"), edge("a", "ghost")], "“ghost” is not a node"),
])
def test_bad_graphs_are_refused_with_the_place(org, edges, message):
    actions = [task("a", "A"), task("b", "B")] + ([task("c", "C")] if any(e["target"] == "c" for e in edges)
                                                 else [])
    with pytest.raises(ValidationError, match=message):
        make_workflow(org, actions=actions, graph={"edges": edges}, activate=False)


def test_loop_variables_are_known_only_inside_the_loop(org):
    with pytest.raises(ValidationError, match=r"loop\.current.*is not a field"):
        make_workflow(org, actions=[task("a", "{{loop.current}}")], activate=False)


FIND_WON = {"id": "find", "type": "function", "label": "Won Deals", "config": {
    "functionRef": "crm/query_deals", "args": {"filters": [{"field": "stage", "operator": "eq", "value": "won"}]}}}


def test_a_function_feeds_a_condition_and_a_loop_by_the_node_label(org, deal):
    run = win(org, deal, [
        FIND_WON,
        {"id": "any", "type": "condition", "config": {"rules": [
            {"field": "won deals.count", "operator": "gt", "value": 0}]}},
        {"id": "each", "type": "loop", "config": {"items": "{{Won Deals.rows}}"}},
        task("step", "Thank {{loop.current.title}} ({{WON DEALS.count}} won, via {{find.count}})")],
        [edge("trigger", "find"), edge("find", "any"), edge("any", "each", "condition-true"),
         edge("each", "step", "loop-body")])
    assert run.status == "completed"
    assert list(Task.objects.values_list("title", flat=True)) == ["Thank Website (1 won, via 1)"]
    assert run.actions.get(node_id="find").result["output"]["rows"][0]["title"] == "Website"


def test_a_template_may_name_only_nodes_before_it(org):
    with pytest.raises(ValidationError, match=r"actions\[0\].*\{\{Won Deals.rows\}\} is not a field"):
        make_workflow(org, actions=[task("a", "{{Won Deals.rows}}"), FIND_WON], activate=False)


def test_a_label_that_templates_could_not_name_is_refused(org):
    with pytest.raises(ValidationError, match="may not contain dots"):
        make_workflow(org, actions=[{**FIND_WON, "label": "Find v1.2"}], activate=False)
    with pytest.raises(ValidationError, match="is a name templates already use"):
        make_workflow(org, actions=[{**FIND_WON, "label": "Deal"}], activate=False)


def test_a_desktop_notification_reaches_the_admins(org, deal, owner):
    from crm_automation.crm.models import Notification

    run = win(org, deal, [{"id": "tell", "type": "notify", "config": {"title": "{{deal.title}} won"}}],
              [edge("trigger", "tell")])
    assert run.status == "completed"
    assert list(Notification.objects.values_list("user__username", "title")) == [("owner", "Website won")]


def test_a_worker_killed_mid_graph_resumes_from_its_last_step_with_no_effect_twice(org, deal, monkeypatch):
    """Parallel branches, a merge and a loop with an email per item; the worker dies while handing
    over the second email; another one resumes: every task and every email exactly once."""
    from datetime import timedelta

    from django.core import mail
    from django.utils import timezone

    from crm_automation.crm import email_delivery
    from crm_automation.crm.models import EmailMessage

    email = {"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "{{loop.index}}"}}
    claims = {"n": 0}
    real_claim = email_delivery._claim

    def dies_on_the_second(*args, **kwargs):
        claims["n"] += 1
        if claims["n"] == 2:
            raise KeyboardInterrupt  # kill -9: nothing after this line runs in that worker
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(email_delivery, "_claim", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        win(org, deal, [
            {"id": "fan-out", "type": "parallel", "config": {}}, task("a", "A"), task("b", "B"),
            {"id": "join", "type": "merge", "config": {}},
            {"id": "each", "type": "loop", "config": {"loopMode": "count", "count": 3}},
            task("per-item", "Item {{loop.index}}"), {"id": "mail", **email}, task("after", "After")],
            [edge("trigger", "fan-out"), edge("fan-out", "a", "branch-0"), edge("fan-out", "b", "branch-1"),
             edge("a", "join"), edge("b", "join"), edge("join", "each"), edge("each", "per-item", "loop-body"),
             edge("per-item", "mail"), edge("each", "after", "loop-done")])
    run = WorkflowRun.objects.get()
    assert run.status == "started" and sorted(Task.objects.values_list("title", flat=True)) == [
        "A", "B", "Item 0", "Item 1"]
    WorkflowRun.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed"
    assert sorted(Task.objects.values_list("title", flat=True)) == ["A", "After", "B", "Item 0", "Item 1", "Item 2"]
    assert sorted(m.subject for m in mail.outbox) == ["0", "1", "2"]
    assert EmailMessage.objects.filter(status="sent").count() == 3


def test_versions_of_a_graph_compare_roll_back_and_clone(org, owner):
    from crm_automation.automation.services.versions import versions_compare, workflow_clone, workflow_rollback
    from crm_automation.automation.services.workflows import workflow_update

    wf = make_workflow(org, actions=[task("a", "A"), task("b", "B")], activate=False)
    workflow_update(workflow_id=wf.pk, by=owner, actions=[BIG_DEAL, task("a", "A"), task("b", "B")],
                    changes={"graph": {"edges": [edge("trigger", "big"), edge("big", "a", "condition-true"),
                                                 edge("big", "b", "condition-false")]}})
    diff = versions_compare(wf, 1, 2)
    assert [n["id"] for n in diff["nodes_added"]] == ["big"]
    assert ("big", "b", "condition-false") in diff["edges_added"] and ("a", "b", None) in diff["edges_removed"]
    copy = workflow_clone(workflow_id=wf.pk, by=owner)
    assert copy.definition["graph"] == wf.__class__.objects.get(pk=wf.pk).definition["graph"] and copy.key != wf.key
    rolled = workflow_rollback(workflow_id=wf.pk, by=owner, number=1)
    assert "graph" not in rolled.definition and rolled.version == 3
    assert [a["id"] for a in rolled.current_version.definition["actions"]] == ["a", "b"]


def test_the_workflow_page_shows_the_flow_in_words(client, org, owner):
    from django.urls import reverse

    wf = make_workflow(org, actions=[
        {**BIG_DEAL, "label": "Is Big"}, {"id": "each", "type": "loop", "config": {"count": 2}},
        task("step", "x"), task("small", "y")],
        graph={"edges": [edge("trigger", "big"), edge("big", "each", "condition-true"),
                         edge("big", "small", "condition-false"), edge("each", "step", "loop-body"),
                         edge("step", "each")]}, activate=False)
    client.force_login(owner)
    page = client.get(reverse("admin:automation_workflow_change", args=[wf.pk])).content.decode()
    assert "condition-true → each" in page and "condition-false → small" in page
    assert "back to each (next iteration)" in page and "in loop each" in page


def test_loops_in_loops_stop_at_the_step_limit(org, deal, monkeypatch):
    from crm_automation.automation.runtime.engine import walk

    monkeypatch.setattr(walk, "MAX_STEPS", 50)
    run = win(org, deal, [
        {"id": "outer", "type": "loop", "config": {"count": 1000, "maxIterations": 1000}},
        {"id": "inner", "type": "loop", "config": {"count": 1000, "maxIterations": 1000}},
        task("step", "x")],
        [edge("trigger", "outer"), edge("outer", "inner", "loop-body"), edge("inner", "step", "loop-body")])
    assert run.status == "failed" and "limit of 50 steps" in run.error
    assert run.actions.count() <= 60 and Task.objects.count() < 50


def test_the_seeds_trigger_spellings_render(org, deal):
    win(org, deal, [{"id": "t", "type": "create_task", "config": {
        "title": "{{trigger.deal.title}} moved to {{trigger.to_stage}}", "description": "{{trigger}}"}}],
        [edge("trigger", "t")])
    made = Task.objects.get()
    assert made.title == "Website moved to won" and '"to_stage": "won"' in made.description


def test_a_steps_recorded_settings_are_the_texts_it_rendered_once(org, deal, monkeypatch):
    """The record of a step's settings reuses what the step rendered (ExecutionContext.rendered):
    each template of a step is rendered once, not again for the record."""
    from crm_automation.automation.definition import templating
    from crm_automation.automation.nodes import base

    rendered: list[str] = []

    def counted(template, context):
        rendered.append(template)
        return templating_render(template, context)

    templating_render = templating.render
    monkeypatch.setattr(templating, "render", counted)
    monkeypatch.setattr(base, "render", counted)
    run = win(org, deal, [task("made", "Kickoff: {{trigger.deal.title}}")], [edge("trigger", "made")])
    assert run.actions.get(node_id="made").input == {"settings": {"title": "Kickoff: Website"}}
    assert Task.objects.get().title == "Kickoff: Website"
    assert rendered.count("Kickoff: {{trigger.deal.title}}") == 1


def test_a_loop_steps_input_is_its_item(org, deal):
    run = win(org, deal, [{"id": "each", "type": "loop", "config": {"items": [{"name": "Ada"}, {"name": "Bo"}]}},
                          task("step", "Hi {{loop.current.name}}")],
              [edge("trigger", "each"), edge("each", "step", "loop-body")])
    # …and, once it ran, its templated settings as they read for that item.
    assert run.actions.get(node_id="step", token="1").input == {"loop": {"current": {"name": "Bo"}, "index": 1},
                                                                "settings": {"title": "Hi Bo"}}
    assert sorted(Task.objects.values_list("title", flat=True)) == ["Hi Ada", "Hi Bo"]
