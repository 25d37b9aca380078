"""The fault scenarios (7, the admin race, lives in admin_race.py). Each owns fresh organizations
in a freshly emptied database, starts its own fake SMTP server and clusters, injects one fault,
waits for the workers, and returns its row(s). Clusters and servers are stopped in `finally`."""

import json
import statistics
import time
from collections import Counter

from benchmarks.chaos.checks import Check, Row, Scope, finished_count, last_finish, measure, wait_settled
from benchmarks.chaos.data import OrgData, add_workflow, make_org, tamper_template, write_ids
from benchmarks.chaos.harness import Harness, busy_worker, describe_kills, wait_progress
from benchmarks.chaos.procs import Cluster, Sink, closed_port, remote_ports, start_mover, wait_movers
from crm_automation.automation.models import WorkflowRun
from crm_automation.crm.models import EmailMessage, Task

STALL_DOMAIN = "stall.example"
TEMPLATE_BOMB = "{{" + " " * 5000
# How much later than alone the normal org of scenario 8 may finish next to the hostile one: an
# organization's runs get a delivery slice of a few seconds (AUTOMATION_GROUP_SLICE_SECONDS, 3)
# before the next organization's take their turn.
NEIGHBOUR_DELAY = 5.0


def settle(row: Row, scope: Scope, fault_at: float, timeout: float) -> None:
    """Wait for the workers; recovery = last run finished − the fault."""
    row.timed_out = not wait_settled(scope, timeout)
    finish = last_finish(scope.org_ids)
    row.recovery = None if finish is None else max(0.0, finish - fault_at)


def run_latencies(org_ids: list[int]) -> list[float]:
    """For each finished run: finished − its event's commit, in seconds."""
    return [(done - created).total_seconds() for done, created in
            WorkflowRun.objects.filter(organization_id__in=org_ids, finished_at__isnull=False)
            .values_list("finished_at", "event__created_at") if done is not None]  # (none is None: filtered on)


# --- 1 and 2: kill -9 mid-drain ------------------------------------------------------------------
def kill_one_worker(h: Harness, broker: str) -> list[Row]:
    """kill -9 of one busy worker (a child of the sentinel) a quarter into a drain."""
    tag, n = f"s1-{broker}", h.size(2000, 400)
    row = Row(f"1 kill -9 one worker ({broker})")
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"))
    cluster = None
    try:
        data = make_org(f"kill-one-{broker}", deals=n)
        wf = add_workflow(data)
        env = h.env(broker=broker, smtp_port=sink.port)
        h.move(env, data, tag)
        cluster = h.cluster(env, tag)
        wait_progress([data.pk], n // 4)
        kill = cluster.freeze_and_kill(busy_worker(cluster, h.rng), sink.port)
        at_kill = finished_count([data.pk])
        row.checks.append(Check("fault mid-drain", at_kill < n, f"{at_kill}/{n} runs had finished at the kill"))
        row.checks.append(Check("the victim was a worker", kill.role == "worker", kill.title))
        row.unknown_limit = int(kill.in_delivery)
        describe_kills(row, [kill])
        row.notes.append(f"{at_kill}/{n} runs finished at the kill")
        scope = Scope([data.pk], [wf.pk], triggers=n)
        settle(row, scope, kill.at, h.wait)
        row.notes.append(f"workers alive afterwards: {len(cluster.worker_pids())} (django-q2 respawns the dead one)")
        measure(row, scope, sink.messages())
    finally:
        if cluster is not None:
            cluster.stop()
        sink.stop()
    return [row]


def kill_whole_cluster(h: Harness, broker: str) -> list[Row]:
    """kill -9 of the qcluster's process group a quarter into a drain; a new cluster takes over."""
    tag, n = f"s2-{broker}", h.size(2000, 400)
    row = Row(f"2 kill -9 whole cluster ({broker})")
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"))
    clusters: list[Cluster] = []
    try:
        data = make_org(f"kill-all-{broker}", deals=n)
        wf = add_workflow(data)
        env = h.env(broker=broker, smtp_port=sink.port)
        h.move(env, data, tag)
        clusters.append(h.cluster(env, f"{tag}-first"))
        wait_progress([data.pk], n // 4)
        kills = clusters[0].kill_whole(sink.port)
        at_kill = finished_count([data.pk])
        clusters.append(h.cluster(env, f"{tag}-second"))
        row.checks.append(Check("fault mid-drain", at_kill < n, f"{at_kill}/{n} runs had finished at the kill"))
        row.unknown_limit = sum(k.in_delivery for k in kills if k.role == "worker")
        killed = clusters[0].proc
        assert killed is not None  # (started)
        row.notes.append(f"{at_kill}/{n} runs finished at the kill; kill -9 of process group {killed.pid} "
                         f"(qcluster, its sentinel and the {len(kills)} below); new cluster started "
                         f"{time.time() - kills[0].at:.1f} s after it")
        describe_kills(row, kills)
        scope = Scope([data.pk], [wf.pk], triggers=n)
        settle(row, scope, kills[0].at, h.wait)
        measure(row, scope, sink.messages())
    finally:
        for cluster in clusters:
            cluster.stop()
        sink.stop()
    return [row]


# --- 3: kill -9 mid-delivery ---------------------------------------------------------------------
def delivering_worker(cluster: Cluster, sink: Sink, min_accepted: int = 3, timeout: float = 60) -> int:
    """A worker holding a connection to the SMTP server once it has accepted a few messages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(sink.messages()) >= min_accepted:
            for pid in cluster.worker_pids():
                if sink.port in remote_ports(pid):
                    return pid
        time.sleep(0.02)
    raise RuntimeError("no worker was delivering email")


def kill_mid_delivery(h: Harness) -> list[Row]:
    tag, n = "s3", h.size(40, 24)
    row = Row("3 kill -9 worker mid-delivery (SMTP 0.3 s/msg)")
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"), delay=0.3)
    cluster = None
    try:
        data = make_org("kill-delivery", deals=n)
        wf = add_workflow(data)
        env = h.env(broker="orm", smtp_port=sink.port)
        h.move(env, data, tag)
        cluster = h.cluster(env, tag)
        kill = cluster.freeze_and_kill(delivering_worker(cluster, sink), sink.port)
        sending = EmailMessage.objects.filter(organization_id=data.pk, status="sending").count()
        row.checks.append(Check("killed while delivering", kill.in_delivery, kill.title))
        row.unknown_limit = int(kill.in_delivery)
        describe_kills(row, [kill])
        row.notes.append(f"at the kill: {len(sink.messages())} messages accepted, {sending} email(s) in `sending`")
        scope = Scope([data.pk], [wf.pk], triggers=n)
        settle(row, scope, kill.at, h.wait)
        measure(row, scope, sink.messages())
    finally:
        if cluster is not None:
            cluster.stop()
        sink.stop()
    return [row]


# --- 4: the process that saved exits at once -----------------------------------------------------
def exit_after_commit(h: Harness) -> list[Row]:
    """Short-lived processes, one deal each, os._exit(0) right after the commit. With Redis the
    nudge never leaves, so only the workers' watchdog (and the minute sweep) can find the events;
    with the ORM broker on PostgreSQL the commit itself notifies the cluster (its outbox trigger),
    so there is no nudge to lose."""
    return [_exit_after_commit(h, broker) for broker in ("orm", "redis")]


def _exit_after_commit(h: Harness, broker: str) -> Row:
    tag, n, parallel = f"s4-{broker}", h.size(16, 8), 4
    row = Row(f"4 os._exit right after commit ({broker})")
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"))
    cluster = None
    try:
        data = make_org(f"exit-hard-{broker}", deals=n)
        wf = add_workflow(data)
        env = h.env(broker=broker, smtp_port=sink.port)
        cluster = h.cluster(env, tag)
        exits = []
        for start in range(0, n, parallel):
            procs = [start_mover(env, write_ids(h.path(f"{tag}-{i}.ids"), [data.deal_ids[i]]), exit_hard=True)
                     for i in range(start, min(n, start + parallel))]
            exits += wait_movers(procs, timeout=60)
        codes = Counter(code for code, _ in exits)
        row.checks.append(Check("every mover exited 0", set(codes) == {0}, str(dict(codes))))
        scope = Scope([data.pk], [wf.pk], triggers=n)
        settle(row, scope, max(at for _, at in exits), h.wait)
        latencies = run_latencies([data.pk])
        if latencies:
            # Recovery per fault: each process died at its commit; its run finished this much later.
            row.recovery = max(latencies)
            found_by = ("the commit's notification woke the cluster" if broker == "orm" else
                        "a watchdog looks every ~5 s; when the oldest waiting event is the same at two looks, "
                        "its sweep takes every waiting event")
            row.notes.append(f"commit → run finished: min {min(latencies):.1f} s, median "
                             f"{statistics.median(latencies):.1f} s, max {max(latencies):.1f} s ({found_by})")
        measure(row, scope, sink.messages())
    finally:
        if cluster is not None:
            cluster.stop()
        sink.stop()
    return row


# --- 5: the broker is down or hangs for the process making the changes ---------------------------
def broker_faults(h: Harness) -> list[Row]:
    """Movers whose REDIS_URL is a closed port, or a server that accepts and never answers; the
    cluster's own broker (Redis db 14) works. Their exit must not wait for the broker."""
    tag, n = "s5", h.size(30, 15)
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"))
    blackhole = Sink.start(h.path(f"{tag}-blackhole.jsonl"), hang=True)
    cluster = None
    rows = []
    try:
        cluster = h.cluster(h.env(broker="redis", smtp_port=sink.port), tag)
        base = make_org("broker-ok", deals=2 * n)
        add_workflow(base)
        normal = [h.move(h.env(broker="redis"), base, f"{tag}-normal-{i}", ids=base.deal_ids[i * n:(i + 1) * n])
                  for i in range(2)]
        normal_wall = statistics.mean(r.wall for r in normal)
        normal_tail = statistics.mean(r.exited - r.report["last_commit"] for r in normal)
        variants = {"unreachable": f"redis://127.0.0.1:{closed_port()}/14",
                    "hanging": f"redis://127.0.0.1:{blackhole.port}/14"}
        for name, url in variants.items():
            row = Row(f"5 broker {name} for the saver")
            data = make_org(f"broker-{name}", deals=n)
            wf = add_workflow(data)
            result = h.move(h.env(broker=url), data, f"{tag}-{name}")
            delay = result.wall - normal_wall
            tail = result.exited - result.report["last_commit"]
            row.checks.append(Check("saver exits ≤ 2 s later than normal", delay <= 2.0,
                                    f"{result.wall:.2f} s vs {normal_wall:.2f} s normal (+{delay:.2f} s)"))
            row.notes.append(f"saver: {n} moves, ran {result.wall:.2f} s (normal {normal_wall:.2f} s, +{delay:.2f} s); "
                             f"last commit → exit {tail:.2f} s (normal {normal_tail:.2f} s)")
            scope = Scope([data.pk], [wf.pk], triggers=n)
            settle(row, scope, result.report["first_move"], h.wait)
            measure(row, scope, sink.messages())
            rows.append(row)
    finally:
        if cluster is not None:
            cluster.stop()
        sink.stop()
        blackhole.stop()
    return rows


# --- 6: four processes move the same deals at once -----------------------------------------------
def racing_movers(h: Harness) -> list[Row]:
    tag, n, racers = "s6", 20, 4
    row = Row(f"6 {racers} processes move the same {n} deals")
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"))
    cluster = None
    try:
        data = make_org("race", deals=n)
        wf = add_workflow(data)
        env = h.env(broker="orm", smtp_port=sink.port)
        cluster = h.cluster(env, tag)
        ids_file = write_ids(h.path(f"{tag}.ids"), data.deal_ids)
        start_at = time.time() + 5  # every racer has loaded its deals by then
        reports = [h.path(f"{tag}-{i}.json") for i in range(racers)]
        procs = [start_mover(env, ids_file, start_at=start_at, shuffle_seed=i, report=reports[i])
                 for i in range(racers)]
        codes = [code for code, _ in wait_movers(procs, timeout=60)]
        row.checks.append(Check("every racer exited 0", codes == [0] * racers, str(codes)))
        firsts = [json.loads(r.read_text())["first_move"] for r in reports if r.exists()]
        if firsts:
            row.notes.append(f"racers' first moves within {1000 * (max(firsts) - min(firsts)):.1f} ms of each other")
        scope = Scope([data.pk], [wf.pk], triggers=n)
        settle(row, scope, start_at, h.wait)
        measure(row, scope, sink.messages())
        counts = {"runs": WorkflowRun.objects.filter(organization_id=data.pk).count(),
                  "tasks": Task.objects.filter(organization_id=data.pk).count(),
                  "emails": EmailMessage.objects.filter(organization_id=data.pk).count()}
        row.checks.append(Check(f"exactly {n} runs, tasks, emails", set(counts.values()) == {n}, str(counts)))
        row.notes.append(f"{counts}")
    finally:
        if cluster is not None:
            cluster.stop()
        sink.stop()
    return [row]


# --- 8: a hostile organization next to a normal one ----------------------------------------------
def hostile_neighbour(h: Harness, backlog: bool) -> list[Row]:
    """Org H: one workflow emails a domain the SMTP server stalls on (each message costs the
    worker EMAIL_TIMEOUT), one carries a stored template "{{" + 5,000 spaces (bypassing
    validation). Org N: a normal workflow. N's time to finish is compared with the same
    triggers for an org alone (the baseline).

    live: the cluster runs; H's and N's movers start at the same instant.
    backlog: H's triggers, then N's, wait in the outbox when the cluster starts (a restart, or
    workers busy elsewhere): the first claimed batch holds both orgs' events, H's first."""
    mode = "backlog" if backlog else "live"
    tag, n_normal, n_hostile = f"s8-{mode}", h.size(100, 40), h.size(8, 4)
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"), stall_domain=STALL_DOMAIN)
    env = h.env(broker="orm", smtp_port=sink.port)
    clusters: list[Cluster] = []
    try:
        alone = make_org(f"calm-alone-{mode}", deals=n_normal)
        add_workflow(alone)
        baseline = time_alone(h, env, clusters, alone, f"{tag}-alone", backlog)

        normal = make_org(f"calm-{mode}", deals=n_normal)
        wf_n = add_workflow(normal)
        hostile = make_org(f"hostile-{mode}", deals=n_hostile, email_domain=STALL_DOMAIN)
        wf_stall = add_workflow(hostile, "Email to a stalling domain")
        wf_bomb = add_workflow(hostile, "Template bomb")
        tamper_template(wf_bomb, 0, "title", TEMPLATE_BOMB)
        start = start_triggers(h, env, clusters, [hostile, normal], tag, backlog)

        row_n = Row(f"8 hostile neighbour, {mode}: normal org N")
        scope_n = Scope([normal.pk], [wf_n.pk], triggers=n_normal)
        settle(row_n, scope_n, start, h.wait)
        measure(row_n, scope_n, sink.messages())
        if row_n.recovery is not None:
            row_n.checks.append(Check(f"N at most {NEIGHBOUR_DELAY:.0f} s slower than alone",
                                      row_n.recovery <= baseline + NEIGHBOUR_DELAY,
                                      f"{row_n.recovery:.1f} s vs {baseline:.1f} s alone "
                                      f"({row_n.recovery / max(baseline, 0.001):.1f}×)"))
        describe_late(row_n, normal.pk, start)

        row_h = Row(f"8 hostile neighbour, {mode}: hostile org H", unknown_limit=None, recovery_limit=None)
        scope_h = Scope([hostile.pk], [wf_stall.pk, wf_bomb.pk], triggers=n_hostile)
        settle(row_h, scope_h, start, max(h.wait, 60 + n_hostile * 8))
        measure(row_h, scope_h, sink.messages())
        describe_hostile(row_h, wf_stall.pk, wf_bomb.pk)
        stalls = sum(1 for m in sink.messages() if m.get("stalled_rcpt", "").endswith("@" + STALL_DOMAIN))
        row_h.notes.append(f"SMTP: {stalls} sessions stalled at RCPT TO (the message itself was never sent)")
        return [row_n, row_h]
    finally:
        for cluster in clusters:
            cluster.stop()
        sink.stop()


def start_triggers(h: Harness, env: dict, clusters: list[Cluster], orgs: list[OrgData], tag: str,
                   backlog: bool) -> float:
    """Make the orgs' triggers and return when the workers could start on them. live: one mover
    per org on a running cluster, all starting at the same instant; backlog: the movers one
    after the other (in `orgs` order) with no cluster running, then a new cluster."""
    if backlog:
        for cluster in clusters:
            cluster.stop()
        for data in orgs:
            h.move(env, data, f"{tag}-{data.org.slug}")
        start = time.time()
        clusters.append(h.cluster(env, tag))
        return start
    if not clusters:
        clusters.append(h.cluster(env, tag))
    start = time.time() + 4
    procs = [start_mover(env, write_ids(h.path(f"{tag}-{d.org.slug}.ids"), d.deal_ids), start_at=start)
             for d in orgs]
    wait_movers(procs, timeout=60)
    return start


def time_alone(h: Harness, env: dict, clusters: list[Cluster], data: OrgData, tag: str, backlog: bool) -> float:
    """The baseline: seconds from the start to the last run finished, for one org alone."""
    start = start_triggers(h, env, clusters, [data], tag, backlog)
    wait_settled(Scope([data.pk], [], 0), h.wait)
    return (last_finish([data.pk]) or start) - start


def describe_late(row: Row, org_id: int, start_at: float, late: float = 5.0) -> None:
    """Which of the normal org's runs were late, and how long they waited after being dispatched."""
    runs = WorkflowRun.objects.filter(organization_id=org_id, finished_at__isnull=False).only(
        "started_at", "finished_at", "attempts")
    slow = [(r, r.finished_at) for r in runs if r.finished_at and r.finished_at.timestamp() - start_at > late]
    if slow:
        waits = sorted((finished - r.started_at).total_seconds() for r, finished in slow)
        row.notes.append(f"{len(slow)} N runs finished > {late:.0f} s after the triggers: dispatched, then done "
                         f"{waits[0]:.1f}–{waits[-1]:.1f} s later (claims per run: "
                         f"{dict(Counter(r.attempts for r, _ in slow))})")


def describe_hostile(row: Row, stall_id: int, bomb_id: int) -> None:
    """What happened to org H's runs: statuses, how long, and the first error of each workflow."""
    for label, wf_id in (("stalling email", stall_id), ("template bomb", bomb_id)):
        runs = WorkflowRun.objects.filter(workflow_id=wf_id)
        statuses = Counter(runs.values_list("status", flat=True))
        durations = [r.duration_ms / 1000 for r in runs if r.duration_ms is not None]
        error = runs.exclude(error="").values_list("error", flat=True).first() or ""
        longest = f", longest run {max(durations):.1f} s" if durations else ""
        row.notes.append(f"H {label}: {dict(statuses)}{longest}; error: {error[:160]!r}")
    if row.recovery is not None:
        row.notes.append(f"all H runs done {row.recovery:.1f} s after the triggers (not judged: H is the fault)")
