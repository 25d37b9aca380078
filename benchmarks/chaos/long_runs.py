"""Scenario 9: a noisy neighbour with long runs. Organization H wins 30 deals in two bulk actions
a second apart (a transaction each), which start 30 runs of a workflow of about 5,000 steps (a loop of 5 around a
loop of 997 conditions, a task after each inner loop), and posts 600 signed inbound webhooks
(each runs a one-task workflow), while organization N saves a deal every second (a short
workflow: task, field change, email). Each of N's runs must finish at most NEIGHBOUR_DELAY
seconds later than the same saves on the idle cluster: a long run takes turns like a slow
provider does (runtime/engine/runs.py: segments of a second, slices between them)."""

import time
from collections import Counter

from benchmarks.chaos.checks import Check, Row, Scope, measure, wait_settled
from benchmarks.chaos.data import OrgData, add_workflow, make_org, write_ids
from benchmarks.chaos.harness import Harness
from benchmarks.chaos.procs import PROCESSES, PYTHON, Cluster, Sink, start_mover, wait_movers
from benchmarks.chaos.scenarios import NEIGHBOUR_DELAY, run_latencies
from crm_automation.automation.models import AutomationEvent, Workflow, WorkflowRun, WorkflowRunAction
from crm_automation.automation.services.workflows import workflow_create, workflow_transition
from crm_automation.crm.models import Task
from crm_automation.webhooks.services import webhook_endpoint_create

OUTER, INNER = 5, 997
LONG_STEPS = 1 + OUTER * (1 + INNER + 1)  # the outer loop; per round: the inner loop, its conditions, a task
N_SAVES, SAVE_EVERY = 10, 1.0  # N's saves: one a second from 2 s after H's start, while H is busy


def long_workflow(data: OrgData) -> Workflow:
    nodes = [{"id": "rounds", "type": "loop", "config": {"loopMode": "count", "count": OUTER}},
             {"id": "items", "type": "loop", "config": {"loopMode": "count", "count": INNER, "maxIterations": INNER}},
             {"id": "check", "type": "condition", "config": {"rules": [
                 {"field": "deal.amount", "operator": "gt", "value": 0}]}},
             {"id": "batch", "type": "create_task", "config": {"title": "Batch {{loop.index}} of {{deal.title}}"}}]
    edges = [{"source": "trigger", "target": "rounds"},
             {"source": "rounds", "target": "items", "sourceHandle": "loop-body"},
             {"source": "items", "target": "check", "sourceHandle": "loop-body"},
             {"source": "items", "target": "batch", "sourceHandle": "loop-done"}]
    wf = workflow_create(organization=data.org, name="Long run", trigger_type="deal_stage_change",
                         trigger_config={"to_stage": "won"}, actions=nodes, graph={"edges": edges},
                         timeout_seconds=3600, by=None)
    return workflow_transition(workflow_id=wf.pk, name="activate", by=None)


def order_workflow(data: OrgData, endpoint) -> Workflow:
    wf = workflow_create(organization=data.org, name="Orders", trigger_type="webhook",
                         trigger_config={"endpoint": str(endpoint.public_id)},
                         actions=[{"type": "create_task", "config": {"title": "Ship {{trigger.body.order.id}}"}}],
                         by=None)
    return workflow_transition(workflow_id=wf.pk, name="activate", by=None)


def start_sender(h: Harness, env: dict, endpoint, secret: str, count: int, start_at: float, tag: str):
    secret_file = h.path(f"{tag}.secret")
    secret_file.write_text(secret)
    report = h.path(f"{tag}.json")
    return PROCESSES.start([PYTHON, "-m", "benchmarks.chaos.webhook_sender", "--endpoint", str(endpoint.public_id),
                            "--secret-file", str(secret_file), "--count", str(count), "--start-at", repr(start_at),
                            "--report", str(report)], env=env, log=h.path(f"{tag}.log"))


def spaced_saves(h: Harness, env: dict, data: OrgData, start: float, tag: str) -> list:
    """One mover per deal of `data`, the first 2 s after `start`, then one every SAVE_EVERY s."""
    return [start_mover(env, write_ids(h.path(f"{tag}-{i}.ids"), [deal_id]), start_at=start + 2 + i * SAVE_EVERY)
            for i, deal_id in enumerate(data.deal_ids)]


def long_runs_neighbour(h: Harness) -> list[Row]:
    tag, n_long, n_hooks = "s9", h.size(30, 10), h.size(600, 200)
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"))
    env = h.env(broker="orm", smtp_port=sink.port)
    cluster: Cluster | None = None
    try:
        cluster = h.cluster(env, tag)
        alone = make_org("calm-alone-9", deals=N_SAVES)
        add_workflow(alone)
        start = time.time() + 4
        codes = [code for code, _ in wait_movers(spaced_saves(h, env, alone, start, f"{tag}-alone"), timeout=60)]
        wait_settled(Scope([alone.pk], [], 0), h.wait)
        baseline = max(run_latencies([alone.pk]), default=0.0)

        normal = make_org("calm-9", deals=N_SAVES)
        wf_n = add_workflow(normal)
        noisy = make_org("noisy-9", deals=n_long)
        wf_long = long_workflow(noisy)
        endpoint, secret = webhook_endpoint_create(organization=noisy.org, name="Shop", by=None)
        wf_orders = order_workflow(noisy, endpoint)
        start = time.time() + 5  # every process has loaded by then
        # H's deals won in two bulk actions a second apart (a transaction each): the first is one
        # worker's group of 15 long runs by the time the second commits, which the other worker takes.
        half = len(noisy.deal_ids) // 2
        noise = [start_mover(env, write_ids(h.path(f"{tag}-noisy-{i}.ids"), ids), start_at=start + i,
                             one_transaction=True)
                 for i, ids in enumerate([noisy.deal_ids[:half], noisy.deal_ids[half:]])]
        noise.append(start_sender(h, env, endpoint, secret, n_hooks, start, f"{tag}-hooks"))
        saves = spaced_saves(h, env, normal, start, f"{tag}-normal")
        codes += [code for code, _ in wait_movers(noise + saves, timeout=120)]

        row_n = Row("9 long runs neighbour: normal org N")
        row_n.checks.append(Check("every saver exited 0", set(codes) == {0}, str(dict(Counter(codes)))))
        scope_n = Scope([normal.pk], [wf_n.pk], triggers=N_SAVES)
        row_n.timed_out = not wait_settled(scope_n, h.wait)
        measure(row_n, scope_n, sink.messages())
        latencies = run_latencies([normal.pk])
        if latencies:
            row_n.recovery = max(latencies)  # each save → its run finished; the worst one is judged
            row_n.checks.append(Check(f"N at most {NEIGHBOUR_DELAY:.0f} s slower than alone",
                                      row_n.recovery <= baseline + NEIGHBOUR_DELAY,
                                      f"worst {row_n.recovery:.1f} s vs {baseline:.1f} s alone"))
            row_n.notes.append(f"N save → run finished: {', '.join(f'{x:.1f}' for x in sorted(latencies))} s "
                               f"(alone: worst {baseline:.1f} s)")

        row_h = Row("9 long runs neighbour: noisy org H", unknown_limit=None, recovery_limit=None)
        row_h.timed_out = not wait_settled(Scope([noisy.pk], [], 0), max(h.wait, 240))
        finish = WorkflowRun.objects.filter(organization_id=noisy.pk).order_by("-finished_at").first()
        if finish is not None and finish.finished_at is not None:
            row_h.recovery = finish.finished_at.timestamp() - start
        judge_noisy(row_h, noisy, wf_long, wf_orders, n_long, n_hooks)
        return [row_n, row_h]
    finally:
        if cluster is not None:
            cluster.stop()
        sink.stop()


def judge_noisy(row: Row, data: OrgData, wf_long: Workflow, wf_orders: Workflow, n_long: int, n_hooks: int) -> None:
    """H's own work: every event processed, one run per event, each long run complete with all its
    steps and one task per round, one task per webhook."""
    events = AutomationEvent.objects.filter(organization_id=data.pk)
    row.events_lost = (events.filter(processed_at__isnull=True).count() + events.exclude(error="").count()
                       + max(0, n_long + n_hooks - events.count()))
    runs = WorkflowRun.objects.filter(organization_id=data.pk)
    per_event = Counter(runs.values_list("event_id", "workflow_id"))
    row.runs_doubled = sum(c - 1 for c in per_event.values() if c > 1)
    expected = {wf_long.pk: n_long, wf_orders.pk: n_hooks}
    found = Counter(runs.values_list("workflow_id", flat=True))
    row.runs_missing = sum(max(0, n - found[wf]) for wf, n in expected.items())
    tasks = Counter(Task.objects.filter(organization_id=data.pk).values_list("automation_key", flat=True))
    row.effects_doubled = sum(c - 1 for c in tasks.values() if c > 1)
    statuses = Counter(runs.values_list("workflow__name", "status"))
    row.notes.append(f"runs: {dict(statuses)}")
    long_ids = list(runs.filter(workflow=wf_long).values_list("pk", flat=True))
    steps = Counter(WorkflowRunAction.objects.filter(run_id__in=long_ids).values_list("run_id", flat=True))
    tasks_per_run = Counter(int(key.split(":")[1]) for key in tasks if key)
    whole = [r for r in long_ids if steps[r] == LONG_STEPS and tasks_per_run[r] == OUTER]
    row.checks.append(Check(f"every long run has its {LONG_STEPS:,} steps and {OUTER} tasks", len(whole) == n_long,
                            f"{len(whole)} of {n_long}; steps per run {sorted(set(steps.values()))}"))
    completed = runs.filter(status="completed").count()
    row.checks.append(Check("every run completed", completed == n_long + n_hooks,
                            f"{completed} of {n_long + n_hooks}"))
    row.notes.append(f"H's long runs took up to {max_duration(wf_long):.1f} s each (dispatch to finish)")


def max_duration(wf: Workflow) -> float:
    return max((r.duration_ms / 1000 for r in WorkflowRun.objects.filter(workflow=wf) if r.duration_ms), default=0.0)
