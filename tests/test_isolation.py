"""One run's failure, crash or slowness never takes down the other runs (invariant 13)."""

import contextlib

import pytest
from django.core import mail

from crm_automation.automation.models import WorkflowRun
from crm_automation.automation.runtime import engine
from crm_automation.automation.runtime.dispatch import claim_events, dispatch_events
from crm_automation.automation.runtime.engine import runs
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.crm.models import Contact, Deal, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import make_workflow, stage
from tests.drafts import store_around_validation
from tests.test_engine import die, expire_leases


def won_deals(org, n: int, prefix: str = "Deal") -> list[Deal]:
    contact = Contact.objects.create(organization=org, first_name="Client", email=f"client@{org.slug}.example")
    deals = [Deal.objects.create(organization=org, title=f"{prefix} {i}", stage=stage(org, "proposal"),
                                 contact=contact) for i in range(n)]
    for deal in deals:
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    return deals


def dispatched() -> list[int]:
    return dispatch_events(claim_events(100))


def test_runs_of_different_organizations_are_executed_as_separate_groups(org, other_org):
    make_workflow(org)
    make_workflow(other_org)
    won_deals(org, 2)
    won_deals(other_org, 2)
    groups = [group for _, group in engine.plan(dispatched())]
    assert sorted(len(g) for g in groups) == [2, 2]
    orgs = [set(WorkflowRun.objects.filter(pk__in=g).values_list("organization_id", flat=True)) for g in groups]
    assert all(len(o) == 1 for o in orgs) and orgs[0] != orgs[1]


def test_a_run_that_breaks_its_group_fails_alone_and_the_others_complete(org, monkeypatch):
    make_workflow(org, actions=[{"type": "create_task", "config": {"title": "Kick off {{deal.title}}"}}])
    deals = won_deals(org, 3)
    run_ids = dispatched()
    poison = WorkflowRun.objects.get(trigger_entity_id=deals[1].pk).pk
    step_all = runs.step_all

    def breaks_on_poison(states, segment, *limit):  # a bug that one run's data triggers
        if any(s.run.pk == poison for s in states):
            raise RuntimeError("unexpected data")
        return step_all(states, segment, *limit)

    monkeypatch.setattr(runs, "step_all", breaks_on_poison)
    report = engine.execute_runs(run_ids)
    assert sorted(report.finished) == sorted(set(run_ids) - {poison})
    assert sorted(Task.objects.values_list("title", flat=True)) == ["Kick off Deal 0", "Kick off Deal 2"]
    held = WorkflowRun.objects.get(pk=poison)
    assert held.status == "started" and held.attempts == 2  # retried alone, then backed off


def test_after_a_kill_every_run_of_the_group_is_retried_alone(org, monkeypatch):
    make_workflow(org, actions=[{"type": "create_task", "config": {"title": "Kick off {{deal.title}}"}}])
    won_deals(org, 3)
    run_ids = dispatched()
    monkeypatch.setattr(runs, "step_all", die)  # the worker is killed mid-group
    with pytest.raises(KeyboardInterrupt):
        engine.execute_runs(run_ids)
    monkeypatch.undo()
    expire_leases()
    assert [group for _, group in engine.plan(run_ids)] == [[run_id] for run_id in sorted(run_ids)]
    assert sweep(fan_out=False)["resumed"] == 3


def test_a_run_that_keeps_killing_its_worker_gives_up_and_spares_the_others(org, monkeypatch):
    make_workflow(org, actions=[{"type": "create_task", "config": {"title": "Kick off {{deal.title}}"}}])
    deals = won_deals(org, 3)
    run_ids = dispatched()
    poison = WorkflowRun.objects.get(trigger_entity_id=deals[0].pk).pk
    step_all = runs.step_all

    def killed_by_poison(states, segment, *limit):  # e.g. the task timeout hits while this run executes
        if any(s.run.pk == poison and not s.halted for s in states):
            raise KeyboardInterrupt("worker killed")
        return step_all(states, segment, *limit)

    monkeypatch.setattr(runs, "step_all", killed_by_poison)
    with pytest.raises(KeyboardInterrupt):
        engine.execute_runs(run_ids)
    for _ in range(engine.MAX_ATTEMPTS + 1):  # the watchdog's sweeps after each death
        expire_leases()
        with contextlib.suppress(KeyboardInterrupt):
            sweep(fan_out=False)
    statuses = dict(WorkflowRun.objects.values_list("pk", "status"))
    assert statuses.pop(poison) == "failed"
    assert set(statuses.values()) == {"completed"}
    assert "gave up after 5 attempts" in WorkflowRun.objects.get(pk=poison).error


def test_a_stored_over_long_template_fails_its_step_and_no_other_run(org, other_org):
    hostile = make_workflow(org, actions=[{"type": "create_task", "config": {"title": "ok"}}])
    version = hostile.current_version
    definition = {**version.definition, "actions": [{"type": "create_task", "config": {"title": "{{" + " " * 6000}}]}
    store_around_validation(version, definition)
    make_workflow(other_org)
    won_deals(org, 2, "Hostile")
    won_deals(other_org, 2, "Innocent")
    engine.execute_runs(dispatched())
    theirs = WorkflowRun.objects.filter(organization=other_org)
    assert set(theirs.values_list("status", flat=True)) == {"completed"} and len(mail.outbox) == 2
    mine = WorkflowRun.objects.filter(organization=org)
    assert set(mine.values_list("status", flat=True)) == {"failed"}
    assert "title is longer than 5000 characters" in mine.first().error
