#!/usr/bin/env python
"""Automation benchmarks on PostgreSQL. Prints medians and ratios measured in the same run.

    make bench                       # or: .venv/bin/python benchmarks/run.py [--only a,b,c,d]
    .venv/bin/python benchmarks/compare.py    # (a)–(d) of a baseline commit and of this tree, side by side

(a) save overhead: a deal stage change with 0, 1 and 50 activated workflows listening,
    against the same save with automation switched off (receiver disconnected);
(b) throughput: 5,000 stage changes → time until every run (3 actions, fully logged, the email to a
    local SMTP server) completes: a backlog let go at once (with the cost of a run: the workers'
    CPU, commits and rows written per run), and the same changes made one by one while it runs;
(c) bulk: 5,000 leads converted in one operation → time until all their runs complete (and the
    cost per run, the conversion included);
(d) latency: trigger → run completed (the run's finished_at), p50 and p99, at light load, the
    same as the bench saw it (it looks every 5 ms), and the median of each hop (save, nudge,
    broker, claim, run);
(e) admin: the run list and a run's page with 1,000,000 runs in the table (--only e);
(f) waits: 100,000 runs waiting cost one indexed query per wake-up pass (time and queries of a
    pass with nothing due, and with 200 due); 10,000 runs that wait 1 s then run 2 actions;
(g) graph: a 10-node graph (condition, parallel + merge, loop over 5 items) against the 3-action
    chain, backlogs of the same size in the same run;
(h) API: GET /api/v1/runs/ with 1,000,000 runs, first page and deep pages by cursor, against the
    goal of 100 ms a page (--only h; with e, both use the same runs);
(t) template scan: the audit's hostile template, old regex against the linear scanner.

It creates (and drops) its own database, BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/crm_bench, and starts a real `qcluster` for (b)–(d), with the
ORM broker (--broker redis: Redis db 14) and email to a local SMTP server (--email locmem: Django's
in-memory backend inside the workers). --tree DIR measures the code of another checkout (its
qcluster runs with cwd and PYTHONPATH = DIR); --json FILE writes the figures for compare.py.
How each figure is measured: benchmarks/README.md, "Old code against new".
"""

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="a,b,c,d,f,g,t",
                        help="any of a,b,c,d,e,f,g,h,p,r,t (e: admin, h: API run list, p: pages, with 1M runs; "
                             "r: relative-time triggers over 100,000 deals; i: impact preview over 100,000 events)")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=60, help="(d): changes made one at a time")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("Q_WORKERS", "2")))
    parser.add_argument("--broker", choices=["orm", "redis"], default="orm")
    parser.add_argument("--email", choices=["smtp", "locmem"], default="smtp",
                        help="smtp: a local SMTP server the workers send to (default); "
                             "locmem: Django's in-memory backend")
    parser.add_argument("--tree", type=Path, default=HERE.parent,
                        help="the checkout whose code is measured (default: this one)")
    parser.add_argument("--json", type=Path, help="write the figures of (a)–(d) here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the qcluster and SMTP logs")
    return parser.parse_args()


ARGS = parse_args()
ROOT = ARGS.tree.resolve()
sys.path.insert(0, str(ROOT))  # before the editable install of /work/main: the tree's code, not this one's
from instruments import (  # noqa: E402
    BENCH_APP,
    CLUSTER_APP,
    IDLE_FLUSH,
    Cluster,
    Cost,
    PgCounters,
    PollCount,
    SmtpSink,
    cost_table,
    modules_elsewhere,
    sessions_busy,
    wait_sessions,
)

DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crm_bench")
DB_NAME = DB_URL.rsplit("/", 1)[1]
REDIS_URL = "redis://127.0.0.1:6379/14"
OUT = Path(tempfile.mkdtemp(prefix="crm-bench-"))  # cluster logs, the SMTP log, the probe's notes
RESULTS: dict = {"tree": str(ROOT), "broker": ARGS.broker, "email": ARGS.email, "n": ARGS.n}
SINK: SmtpSink | None = None


def configure_environment() -> None:
    """This process and the qclusters it starts: the bench database, the broker, the email
    backend; nothing inherited that would change how a worker behaves."""
    global SINK
    for key in [k for k in os.environ if k.startswith(("AUTOMATION_", "EMAIL_", "REDIS_", "DATABASE_"))
                or k in ("Q_CLUSTER_NAME", "DB_POOL", "PGAPPNAME", "VAR_DIR")]:
        del os.environ[key]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # No pool here: the nudger thread's connection then really closes when idle, flushing its
    # counters (the qclusters get each tree's default).
    os.environ.update(DATABASE_URL=DB_URL, VAR_DIR=str(OUT / "var"), Q_CLUSTER_NAME=f"crm-bench-{os.getpid()}",
                      DB_POOL="0", PGAPPNAME=BENCH_APP)
    if ARGS.broker == "redis":
        os.environ["REDIS_URL"] = REDIS_URL
    if ARGS.email == "smtp":
        SINK = SmtpSink(OUT / "smtp.jsonl")
        os.environ.update(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="127.0.0.1",
                          EMAIL_PORT=str(SINK.port), EMAIL_TIMEOUT="5")
    else:
        os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"


def admin_connection():
    """A connection to the `postgres` database: reading pg_stat_activity costs the bench database nothing."""
    import psycopg

    return psycopg.connect(DB_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True)


def recreate_database() -> None:
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def first_module(*names: str):
    """The first of `names` that imports: the layout moved modules (runtime/, services/, ...)
    after 87808ce, and compare.py runs this file against both."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(f"{exc.name}.")):
                raise  # the module exists but failed to import something else: say so
    raise ModuleNotFoundError(f"none of {names}")


configure_environment()
recreate_database()
import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

import crm_automation  # noqa: E402

if not Path(crm_automation.__file__).resolve().is_relative_to(ROOT):
    raise SystemExit(f"crm_automation comes from {crm_automation.__file__}, not from {ROOT}")
RESULTS["bench_imports"] = crm_automation.__file__
call_command("migrate", verbosity=0)

from crm_automation.automation.models import AutomationEvent, WorkflowRun, WorkflowRunAction  # noqa: E402
from crm_automation.crm.changes import records_changed  # noqa: E402
from crm_automation.crm.models import Contact, Deal, Lead, Organization, Stage  # noqa: E402
from crm_automation.crm.services import deal_move_to_stage, leads_convert_bulk  # noqa: E402

record_changes = first_module("crm_automation.automation.runtime.outbox",
                              "crm_automation.automation.outbox").record_changes
_services = first_module("crm_automation.automation.services.workflows", "crm_automation.automation.services")
workflow_create, workflow_transition = _services.workflow_create, _services.workflow_transition

STAGES = ["new", "qualified", "proposal", "negotiation", "won", "lost"]
THREE_ACTIONS = [
    {"type": "create_task", "config": {"title": "Kick off {{deal.title}}", "due_in_days": 2}},
    {"type": "update_field", "config": {"field": "probability", "value": 100}},
    {"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Welcome {{deal.title}}",
                                      "body": "Hi {{deal.contact.first_name}}"}},
]


def make_org(slug: str, plan: str = "enterprise") -> tuple[Organization, dict]:
    org = Organization.objects.create(name=slug, slug=slug, plan=plan)
    stages = {s: Stage.objects.create(organization=org, slug=s, name=s, order=i, is_won=s == "won")
              for i, s in enumerate(STAGES)}
    return org, stages


def make_deals(org, stages, n: int, stage="proposal") -> list[Deal]:
    contact = Contact.objects.create(organization=org, first_name="Ada", email="ada@example.com")
    deals = [Deal(organization=org, title=f"Deal {i}", stage=stages[stage], contact=contact) for i in range(n)]
    Deal.objects.bulk_create(deals, batch_size=1000)
    return list(Deal.objects.filter(organization=org).select_related("stage"))


def add_workflows(org, n: int, trigger="deal_stage_change", actions=THREE_ACTIONS, config=None) -> None:
    for i in range(n):
        wf = workflow_create(organization=org, name=f"wf {i}", trigger_type=trigger,
                             trigger_config={"to_stage": "won"} if config is None else config, actions=actions)
        workflow_transition(workflow_id=wf.pk, name="activate", by=None)


def pct(values, p) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# --- (a) ----------------------------------------------------------------------------------------
def bench_save_overhead(rounds: int = 10, per_round: int = 200) -> None:
    # Nudges stay on, as in production: each save also registers an on-commit poke and the
    # nudger thread enqueues (coalesced) drain tasks; no cluster runs yet, so they just queue.
    setups = {}
    for label, n in (("off", 0), ("0 workflows", 0), ("1 workflow", 1), ("50 workflows", 50)):
        org, stages = make_org(f"save-{n}-{label[:3]}")
        add_workflows(org, n, config={"to_stage": "won"})
        setups[label] = (make_deals(org, stages, per_round), stages)
    samples: dict[str, list[float]] = {label: [] for label in setups}
    for r in range(rounds):
        for label, (deals, stages) in setups.items():
            target = stages["negotiation" if r % 2 == 0 else "proposal"]
            if label == "off":
                records_changed.disconnect(record_changes, dispatch_uid="automation-record-changes")
            try:
                for deal in deals:
                    t0 = time.perf_counter()
                    deal_move_to_stage(deal=deal, stage=target)
                    samples[label].append(time.perf_counter() - t0)
            finally:
                records_changed.connect(record_changes, weak=False, dispatch_uid="automation-record-changes")
    base = statistics.median(samples["off"])
    figures = RESULTS.setdefault("a", {})
    print("\n(a) save overhead: deal_move_to_stage, median of", len(samples["off"]), "saves each")
    for label, values in samples.items():
        med = statistics.median(values)
        figures[f"{label} ms"], figures[f"{label} vs off"] = med * 1000, med / base
        print(f"    {label:<14} median {med * 1000:6.3f} ms   p99 {pct(values, 99) * 1000:6.3f} ms"
              f"   ratio vs off {med / base:4.2f}x")
    flat = statistics.median(samples["50 workflows"]) / statistics.median(samples["1 workflow"])
    figures["50 vs 1 workflow"] = flat
    print(f"    50 vs 1 workflow: {flat:4.2f}x (flat = 1.00)")
    bench_plain_save(setups["1 workflow"][0], rounds)
    forget_pending()


def forget_pending() -> None:
    """The saves above left thousands of events (moves no workflow runs for) and their nudges on
    the broker: they are not the work the next figures measure."""
    from django_q.brokers import get_broker

    time.sleep(0.5)  # the nudger's last send
    AutomationEvent.objects.filter(processed_at__isnull=True).update(processed_at=timezone.now())
    get_broker().purge_queue()


def bench_plain_save(deals, rounds: int) -> None:
    """A plain `Deal.save()` that changes the amount (a form or API edit): with automation off,
    on (a `deal_updated` event with the old and new values), and the locked read of the stored
    fields alone (what deciding the change costs)."""
    from django.db import transaction

    from crm_automation.crm.changes import DEAL_TRACKED

    samples: dict[str, list[float]] = {"off": [], "on": [], "locked read alone": []}
    for r in range(rounds):
        for label in samples:
            if label == "off":
                records_changed.disconnect(record_changes, dispatch_uid="automation-record-changes")
            try:
                for deal in deals:
                    t0 = time.perf_counter()
                    if label == "locked read alone":
                        with transaction.atomic():
                            Deal.objects.select_for_update().filter(pk=deal.pk).values(*DEAL_TRACKED).first()
                    else:
                        deal.amount = 1000 + r * 10 + (label == "on")
                        deal.save()
                    samples[label].append(time.perf_counter() - t0)
            finally:
                records_changed.connect(record_changes, weak=False, dispatch_uid="automation-record-changes")
    base = statistics.median(samples["off"])
    print("    plain Deal.save() of an amount change (a form or API edit), median of", len(samples["off"]))
    for label, values in samples.items():
        med = statistics.median(values)
        RESULTS["a"][f"plain save, {label} vs off"] = med / base
        print(f"      {label:<18} median {med * 1000:6.3f} ms   ratio vs off {med / base:4.2f}x")


# --- the worker cluster -------------------------------------------------------------------------
ADMIN = admin_connection()
COUNTERS = PgCounters(DB_URL)
_CLUSTERS = [0]


def new_cluster(probe_log: Path | None = None) -> Cluster:
    """A qcluster of the measured tree, starting (not waited for)."""
    _CLUSTERS[0] += 1
    return Cluster(ROOT, dict(os.environ), ARGS.workers, OUT / f"cluster{_CLUSTERS[0]}.log", probe_log)


def ready_cluster(probe_log: Path | None = None) -> tuple[Cluster, float]:
    """A qcluster done starting, running the measured tree's code; and when it was ready."""
    cluster = new_cluster(probe_log)
    try:
        ready = cluster.wait_ready()
        imported = cluster.imported()
        if not Path(imported).resolve().is_relative_to(ROOT):
            raise SystemExit(f"the qcluster imports {imported}, not the code of {ROOT}")
    except BaseException:
        cluster.stop()
        raise
    RESULTS["cluster_imports"] = imported
    return cluster, ready


def flush_own() -> None:
    """This process's statistics into pg_stat_* now (its Django connection; one commit)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")


def settle(since: float) -> None:
    """Until the idle qcluster's sessions have flushed what its start-up wrote."""
    time.sleep(max(0.0, since + IDLE_FLUSH - time.monotonic()))


def wait_for_runs(org, expected: int, timeout: float = 600) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = WorkflowRun.objects.filter(organization=org).exclude(status__in=["started", "waiting"]).count()
        if done >= expected:
            return time.perf_counter()
        time.sleep(0.05)
    raise SystemExit(f"only {done} of {expected} runs completed in {timeout}s")


def last_finished(org) -> float:
    """Epoch seconds of the last run's finish (the workers' clock is this machine's)."""
    return max(f for f in WorkflowRun.objects.filter(organization=org).values_list("finished_at", flat=True)
               if f is not None).timestamp()


def not_completed(org) -> int:
    return WorkflowRun.objects.filter(organization=org).exclude(status="completed").count()


def win_one_by_one(org, stages, deals) -> tuple[float, float]:
    """Move each deal to won while the cluster runs: (seconds the saves took, seconds until every
    run completed), both from the first save."""
    t0 = time.perf_counter()
    for deal in deals:
        deal_move_to_stage(deal=deal, stage=stages["won"])
    saved = time.perf_counter() - t0
    return saved, wait_for_runs(org, len(deals)) - t0


def bench_throughput_live(n: int = 5000) -> None:
    org, stages = make_org("throughput-live")
    add_workflows(org, 1)
    saved, total = win_one_by_one(org, stages, make_deals(org, stages, n))
    failed = not_completed(org)
    RESULTS.setdefault("b", {})["live runs/s"] = n / total
    print(f"\n(b) throughput, live: {n} stage changes made one by one while the cluster runs")
    print(f"    saves took {saved:.2f} s; every run completed {total:.2f} s after the first save"
          f" → {n / total:.0f} runs/s ({failed} not completed)")


def bench_throughput_backlog(n: int) -> None:
    """A backlog let go at once. The qcluster starts and settles, is stopped (SIGSTOP to its
    process group) while the n stage changes are made, their nudges waiting on the broker, then
    let go (SIGCONT): runs/s and the cost per run count from that moment to the last run's
    finish, start-up excluded. The saves' own cost is measured in between."""
    emails = SINK.count() if SINK else 0
    cluster, ready = ready_cluster()
    polls = PollCount()
    try:
        paused = cluster.pause(lambda: sessions_busy(ADMIN, DB_NAME, CLUSTER_APP))
        org, stages = make_org("throughput-backlog")
        add_workflows(org, 1)
        deals = make_deals(org, stages, n)
        settle(max(ready, paused))
        flush_own()
        before_saves = COUNTERS.snapshot()
        for deal in deals:
            deal_move_to_stage(deal=deal, stage=stages["won"])
        flush_own()
        wait_sessions(ADMIN, DB_NAME, BENCH_APP, at_most=1)  # the nudger thread's connection has closed
        before = COUNTERS.snapshot()
        cpu = cluster.cpu()
        released = time.time()
        cluster.resume()
        with connection.execute_wrapper(polls):
            wait_for_runs(org, n)
            cpu = cluster.cpu() - cpu
            seconds = last_finished(org) - released
            failed = not_completed(org)
    finally:
        cluster.stop()
    wait_sessions(ADMIN, DB_NAME, CLUSTER_APP, at_most=0)  # its sessions closed: their counters flushed
    with connection.execute_wrapper(polls):
        flush_own()
    cost = Cost.between(before, COUNTERS.snapshot(), n, own=polls.n, cpu_seconds=cpu)
    saves = Cost.between(before_saves, before, n, own=1)
    sent = (SINK.count() - emails) if SINK else None
    RESULTS.setdefault("b", {}).update({"backlog runs/s": n / seconds, "backlog s": seconds, "per run": cost.as_dict(),
                                        "save path": saves.as_dict(), "emails": sent})
    print(f"\n(b) throughput, backlog: {n} stage changes waiting; the cluster, started and idle, was stopped "
          "(SIGSTOP) while they were made, then let go")
    print(f"    every run completed {seconds:.2f} s after it was let go → {n / seconds:.0f} runs/s ({failed} not "
          "completed" + ("" if sent is None else f"; {sent} emails reached the SMTP server") + ")")
    print(cost_table([("per run", n / seconds, cost)]))
    print(f"    rows per run by table (ins/upd/del): {cost.tables_text()}")
    print(f"    the save path, per stage change (before the cluster was let go): {saves.commits:.2f} commits, "
          f"{saves.rows_text()} rows; {saves.tables_text(4)}")
    if not COUNTERS.statements_available():
        print("    statements per run: not measured (pg_stat_statements is not in shared_preload_libraries)")


def bench_bulk(n: int = 5000) -> None:
    """5,000 leads converted in one operation while a settled qcluster runs: the time until all
    their runs complete, and the cost per converted lead (conversion and run, from the
    conversion's start to the qcluster's exit)."""
    emails = SINK.count() if SINK else 0
    cluster, ready = ready_cluster()
    polls = PollCount()
    try:
        org, stages = make_org("bulk")
        add_workflows(org, 1, trigger="lead_converted", config={}, actions=[
            {"type": "create_task", "config": {"title": "Onboard {{lead.company}}"}},
            {"type": "update_field", "config": {"field": "deal.probability", "value": 50}},
            {"type": "send_email", "config": {"to": "{{lead.email}}", "subject": "Welcome {{lead.name}}"}}])
        Lead.objects.bulk_create([Lead(organization=org, name=f"Lead {i}", email=f"l{i}@example.com",
                                       company=f"Co {i}") for i in range(n)], batch_size=1000)
        ids = list(Lead.objects.filter(organization=org).values_list("pk", flat=True))
        settle(ready)
        flush_own()
        before = COUNTERS.snapshot()
        cpu = cluster.cpu()
        t0 = time.perf_counter()
        leads_convert_bulk(organization_id=org.pk, lead_ids=ids)
        converted = time.perf_counter() - t0
        with connection.execute_wrapper(polls):
            total = wait_for_runs(org, n) - t0
            cpu = cluster.cpu() - cpu
            failed = not_completed(org)
    finally:
        cluster.stop()
    wait_sessions(ADMIN, DB_NAME, CLUSTER_APP, at_most=0)
    wait_sessions(ADMIN, DB_NAME, BENCH_APP, at_most=1)
    with connection.execute_wrapper(polls):
        flush_own()
    cost = Cost.between(before, COUNTERS.snapshot(), n, own=polls.n, cpu_seconds=cpu)
    sent = (SINK.count() - emails) if SINK else None
    RESULTS["c"] = {"all done s": total, "runs/s": n / total, "convert s": converted, "per run": cost.as_dict(),
                    "emails": sent}
    print(f"\n(c) bulk: {n} leads converted in one operation ({converted:.2f} s)")
    print(f"    all runs completed after {total:.2f} s → {n / total:.0f} runs/s ({failed} not completed"
          + ("" if sent is None else f"; {sent} emails reached the SMTP server") + ")")
    print(cost_table([("per lead (conversion + run)", n / total, cost)]))
    print(f"    rows per lead by table (ins/upd/del): {cost.tables_text()}")


# --- (d) ----------------------------------------------------------------------------------------
HOPS = [  # (name, from, to): the moments one trigger passes, medians of their differences
    ("save: call → returned (committed)", "call", "returned"),
    ("commit → nudge enqueued", "returned", "enqueued"),
    ("enqueued → drain task started", "enqueued", "picked"),
    ("commit → drain task started", "returned", "picked"),
    ("task started → events claimed", "picked", "claimed"),
    ("claimed → run created", "claimed", "created"),
    ("run created → run completed", "created", "finished"),
    ("completed → seen by the bench", "finished", "seen"),
    ("trigger → run completed", "call", "finished"),
]


def bench_latency(drain_starts: Path | None, samples: int = 60, gap: float = 0.25) -> None:
    """One change at a time; afterwards, the moments each one passed, from this process's clock
    (the call, its return, the nudge's enqueue: enqueue_drain wrapped here), the probe's log of
    drain-task starts in the workers, and the rows (the event's claim, the run's start and end)."""
    queue = first_module("crm_automation.automation.runtime.queue", "crm_automation.automation.queue")
    enqueue_drain, enqueued = queue.enqueue_drain, []

    def noted_enqueue() -> None:
        start = time.time()
        enqueue_drain()
        enqueued.append((start, time.time()))

    org, stages = make_org("latency")
    add_workflows(org, 1)
    deals = make_deals(org, stages, samples)
    latencies, moments = [], []
    queue.enqueue_drain = noted_enqueue  # the nudger looks it up at each send
    try:
        for deal in deals:
            time.sleep(gap)
            t0 = time.perf_counter()
            call = time.time()
            deal_move_to_stage(deal=deal, stage=stages["won"])
            returned = time.time()
            while not WorkflowRun.objects.filter(trigger_entity_id=deal.pk).exclude(status="started").exists():
                time.sleep(0.005)
            latencies.append(time.perf_counter() - t0)
            moments.append({"deal": deal.pk, "call": call, "returned": returned, "seen": time.time()})
    finally:
        queue.enqueue_drain = enqueue_drain
    spans = spans_of(moments, enqueued, drain_starts)
    done = spans.get("trigger → run completed", [])  # (the run's finished_at, written by the worker)
    seen = [value * 1000 for value in latencies]
    print(f"\n(d) latency, trigger → run completed, {samples} changes {gap}s apart")
    if done:
        print(f"    p50 {statistics.median(done):.1f} ms   p99 {pct(done, 99):.1f} ms   max {max(done):.1f} ms"
              "   (call → the run's finished_at)")
    print(f"    p50 {statistics.median(seen):.1f} ms   p99 {pct(seen, 99):.1f} ms   max {max(seen):.1f} ms"
          "   (call → the bench saw it done: it looks every 5 ms)")
    RESULTS["d"] = {"p50 ms": statistics.median(done) if done else None, "p99 ms": pct(done, 99) if done else None,
                    "seen p50 ms": statistics.median(seen), "seen p99 ms": pct(seen, 99), "max ms": max(seen),
                    "hops": {name: statistics.median(values) for name, values in spans.items() if values}}
    for name, value in RESULTS["d"]["hops"].items():
        print(f"    {name:<38} median {value:7.1f} ms")


def spans_of(moments: list[dict], enqueued: list[tuple[float, float]], drain_starts: Path | None
             ) -> dict[str, list[float]]:
    """Each hop's durations (ms), one per change that passed both of its moments."""
    from django.conf import settings

    lease = settings.AUTOMATION["LEASE_SECONDS"]
    starts = sorted(float(line.split()[0]) for line in drain_starts.read_text().splitlines()) if drain_starts else []
    from django.core.exceptions import FieldError

    fields = ["trigger_entity_id", "started_at", "finished_at", "event__claimed_until"]
    runs = WorkflowRun.objects.filter(trigger_entity_id__in=[m["deal"] for m in moments])
    try:
        rows = {r["trigger_entity_id"]: r for r in runs.values(*fields)}
    except FieldError:  # a tree whose events keep no claim time: that hop is left out
        rows = {r["trigger_entity_id"]: {**r, "event__claimed_until": None} for r in runs.values(*fields[:3])}
    spans: dict[str, list[float]] = {name: [] for name, _, _ in HOPS}
    for m in moments:
        row = rows[m["deal"]]
        m["created"], m["finished"] = row["started_at"].timestamp(), row["finished_at"].timestamp()
        if row["event__claimed_until"] is not None:
            m["claimed"] = row["event__claimed_until"].timestamp() - lease
        # the first nudge sent after the call, and the first drain a worker started after that;
        # with no nudge (the listening broker: the event's commit wakes the pusher), the first
        # drain started after the call returned
        m["enqueued"] = next((end for start, end in sorted(enqueued) if start >= m["call"]), None)
        after = m["enqueued"] if m["enqueued"] is not None else m["returned"]
        m["picked"] = next((t for t in starts if t >= after - 0.001), None)
        for name, a, b in HOPS:
            if m.get(a) is not None and m.get(b) is not None:
                spans[name].append((m[b] - m[a]) * 1000)
    return spans


def insert_runs(org, deal, wf, total: int, *, status: str, finished: bool) -> None:
    """`total` events and one run each, written by SQL (the ORM would take minutes): finished
    runs 40 ms long, or runs waiting a year."""
    from django.db import connection

    end = ("'', e.created_at, e.created_at + interval '40 ms', NULL" if finished
           else "'', now(), NULL, now() + interval '365 days'")
    with connection.cursor() as c:
        c.execute("""INSERT INTO automation_automationevent
                     (organization_id, kind, entity_type, entity_id, payload, depth, created_at, processed_at)
                     SELECT %s, 'deal_stage_change', 'deal', %s, '{}', 0, now() - g * interval '1 second', now()
                     FROM generate_series(1, %s) g""", [org.pk, deal.pk, total])
        c.execute(f"""INSERT INTO workflow_runs (organization_id, workflow_id, version_id, event_id, trigger_type,
                     trigger_entity_type, trigger_entity_id, status, metadata, error, history_suppressed, attempts,
                     lease_owner, started_at, finished_at, wake_at)
                     SELECT e.organization_id, %s, %s, e.id, e.kind, 'deal', e.entity_id, %s,
                     '{{"to_stage": "won"}}', '', false, 1, {end}
                     FROM automation_automationevent e WHERE e.organization_id = %s""",
                  [wf.pk, wf.current_version_id, status, org.pk])
        c.execute("ANALYZE workflow_runs")


def one_in_a_hundred_failed(org) -> None:
    """As in a real history, a few runs failed: what "what went wrong?" filters look for."""
    from django.db import connection

    with connection.cursor() as c:
        c.execute("""UPDATE workflow_runs SET status = 'failed', error = 'Email server refused the message'
                     WHERE organization_id = %s AND id %% 100 = 0""", [org.pk])
        c.execute("ANALYZE workflow_runs")


_MILLION: dict = {}


def million_runs(total: int = 1_000_000) -> dict:
    """An organization with `total` finished runs (1 in 100 failed) and an org admin, made once per process: (e)
    and (h) share them when both are asked."""
    if not _MILLION:
        from django.contrib.auth import get_user_model

        from crm_automation.crm.models import Membership

        org, stages = make_org("million")
        add_workflows(org, 1)
        deal = make_deals(org, stages, 1)[0]
        wf = org.workflows.get()
        t0 = time.perf_counter()
        insert_runs(org, deal, wf, total, status="completed", finished=True)
        one_in_a_hundred_failed(org)
        admin_user = get_user_model().objects.create_user("bench-admin", is_staff=True, password="x")
        Membership.objects.create(user=admin_user, organization=org, role="admin")
        _MILLION.update(org=org, wf=wf, admin=admin_user, total=total, deal_id=deal.pk,
                        made=f"inserted in {time.perf_counter() - t0:.1f} s")
    else:
        _MILLION["made"] = "the same runs"
    return _MILLION


def bench_admin_million(total: int = 1_000_000) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    data = million_runs(total)
    org, admin_user = data["org"], data["admin"]
    print(f"\n(e) admin with {total:,} runs ({data['made']})")
    root = get_user_model().objects.create_superuser("bench-root", password="x")
    run_id = WorkflowRun.objects.filter(organization=org).order_by("-started_at").values_list("pk", flat=True)[0]
    for label, user in (("org admin", admin_user), ("superuser", root)):
        client = Client()
        client.force_login(user)
        for name, url in (("run list", "/admin/automation/workflowrun/"),
                          ("list, status filter", "/admin/automation/workflowrun/?status__exact=completed"),
                          ("run page", f"/admin/automation/workflowrun/{run_id}/change/")):
            client.get(url)
            times = []
            for _ in range(5):
                with CaptureQueriesContext(connection) as queries:
                    t = time.perf_counter()
                    response = client.get(url)
                    times.append(time.perf_counter() - t)
            assert response.status_code == 200, response.status_code
            print(f"    {label:<10} {name:<20} median {statistics.median(times) * 1000:6.0f} ms"
                  f"   {len(queries)} queries")


# --- (h) ----------------------------------------------------------------------------------------
API_GOAL_MS = 100


def bench_api_million(total: int = 1_000_000, rounds: int = 40) -> None:
    """GET /api/v1/runs/ with a token of an org admin (Django's test client: the whole request
    path, middleware, authentication, throttling, pagination and JSON rendering, no network):
    the first page, the next one, and pages deep in the history through a cursor."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from knox.models import AuthToken
    from rest_framework.pagination import Cursor

    from crm_automation.api.pagination import NewestFirst

    data = million_runs(total)
    org, wf = data["org"], data["wf"]
    print(f"\n(h) API run list with {total:,} runs ({data['made']}), token of an org admin, "
          f"{rounds} requests each (goal: ≤ {API_GOAL_MS} ms)")
    client = Client(HTTP_AUTHORIZATION=f"Token {AuthToken.objects.create(user=data['admin'])[1]}")
    url = "/api/v1/runs/"
    first = client.get(url)
    assert first.status_code == 200, first.content[:500]

    def deep(skip: int) -> str:
        """The link to the page after the run at index `skip`, as `next` links write it (DRF's
        own encoding, so the request is the one a client following links would send)."""
        run = WorkflowRun.objects.filter(organization=org).order_by("-started_at", "-id")[skip]
        paginator = NewestFirst()
        paginator.base_url = f"http://testserver{url}"
        position = paginator._get_position_from_instance(run, paginator.ordering)
        # (DRF's stubs type a cursor's position as a number; CursorPagination's is the ordering field's text)
        return paginator.encode_cursor(Cursor(offset=0, reverse=False, position=position))  # type: ignore[arg-type]

    cases = [("first page", url), ("next page (its link)", first.json()["next"]),
             *[(f"{skip:,} runs deep", deep(skip - 1)) for skip in sorted({min(100_000, total // 10), total // 2})],
             ("the last 9 runs", deep(total - 10)),
             ("first page, ?workflow=", f"{url}?workflow={wf.pk}"),
             ("first page, ?page_size=200", f"{url}?page_size=200"),
             # Filters no run matches: the worst case, every run of the organization is looked at.
             ("?status=failed (1 in 100)", f"{url}?status=failed"),
             ("?status=paused (none)", f"{url}?status=paused"),
             ("?trigger_type= (none)", f"{url}?trigger_type=manual_deal")]
    for name, page in cases:
        client.get(page)  # warm
        times, counts = [], set()
        for _ in range(rounds):
            with CaptureQueriesContext(connection) as queries:
                t = time.perf_counter()
                response = client.get(page)
                times.append(time.perf_counter() - t)
            counts.add(len(queries))
        assert response.status_code == 200, (page, response.content[:300])
        median, p95 = statistics.median(times) * 1000, pct(times, 95) * 1000
        print(f"    {name:<28} median {median:6.1f} ms   p95 {p95:6.1f} ms   "
              f"{'/'.join(map(str, sorted(counts)))} queries   {len(response.json()['results'])} runs   "
              f"{'ok' if p95 <= API_GOAL_MS else 'OVER the goal'}")
    plans_of_the_list(org)


# --- (p) ----------------------------------------------------------------------------------------
def bench_pages_million(total: int = 1_000_000, rounds: int = 20) -> None:
    """/crm/automation with `total` runs: the workflow list with the history's first page, the
    history's pages by cursor and with filters, and one run's steps (Django's test client, a
    logged-in org admin: sessions, middleware, templates; no network)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    data = million_runs(total)
    org, wf = data["org"], data["wf"]
    print(f"\n(p) pages with {total:,} runs ({data['made']}), an org admin logged in, "
          f"{rounds} requests each (goal: ≤ {API_GOAL_MS} ms)")
    client = Client()
    client.force_login(data["admin"])
    middle = WorkflowRun.objects.filter(organization=org).order_by("-started_at", "-id").values_list(
        "pk", flat=True)[total // 2]
    day = timezone.localdate().isoformat()
    cases = [("workflow list + history", "/crm/automation/"),
             ("history, next page", f"/crm/automation/runs/?after={middle}&fragment=1"),
             ("history, ?workflow=", f"/crm/automation/runs/?workflow={wf.pk}&fragment=1"),
             ("history, ?status=failed", "/crm/automation/runs/?status=failed&fragment=1"),
             ("history, ?since=&until= today", f"/crm/automation/runs/?since={day}&until={day}&fragment=1"),
             ("history, a record's runs", f"/crm/automation/runs/?record={data['deal_id']}&fragment=1"),
             ("one run's steps", f"/crm/automation/runs/{middle}/?fragment=1"),
             ("approvals inbox", "/crm/automation/approvals/")]
    for name, url in cases:
        response = client.get(url)  # warm
        assert response.status_code == 200, (url, response.status_code)
        times, counts = [], set()
        for _ in range(rounds):
            with CaptureQueriesContext(connection) as queries:
                t = time.perf_counter()
                client.get(url)
                times.append(time.perf_counter() - t)
            counts.add(len(queries))
        median, p95 = statistics.median(times) * 1000, pct(times, 95) * 1000
        print(f"    {name:<30} median {median:6.1f} ms   p95 {p95:6.1f} ms   "
              f"{'/'.join(map(str, sorted(counts)))} queries   {'ok' if p95 <= API_GOAL_MS else 'OVER the goal'}")


# --- (r) ----------------------------------------------------------------------------------------
def bench_relative_time(total: int = 100_000, rounds: int = 20) -> None:
    """One minute's pass of the relative-time triggers over `total` deals (close dates and stage
    entries spread over a year), against a pass that looks at every deal (the polling a range
    query replaces). Two activated workflows: "in Proposal for 14 days" and "3 days before the
    close date at 09:00". Passes of an ordinary minute and of the 09:00 minute (the day's
    close-date occasions fire), events written and rolled back."""
    from datetime import UTC, datetime, timedelta

    from django.db import connection, transaction

    from crm_automation.automation.models import RelativeTrigger

    relative_time = first_module("crm_automation.automation.triggers.relative_time",
                                 "crm_automation.automation.relative_time")

    org, stages = make_org("relative")
    contact = Contact.objects.create(organization=org, first_name="Ada", email="ada@example.com")
    t0 = time.perf_counter()
    with connection.cursor() as c:
        c.execute("""INSERT INTO crm_deal (id, organization_id, title, amount, stage_id, probability, contact_id,
                     close_date, stage_entered_at, created_at, updated_at)
                     SELECT gen_random_uuid(), %s, 'Deal ' || g, 1000, %s, 10, %s,
                            DATE '2031-01-01' + (g %% 365),
                            TIMESTAMPTZ '2030-06-01' + (g %% 525600) * interval '1 minute',
                            TIMESTAMPTZ '2030-01-01', TIMESTAMPTZ '2030-01-01'
                     FROM generate_series(1, %s) g""", [org.pk, stages["proposal"].pk, contact.pk, total])
        c.execute("ANALYZE crm_deal")
    made = time.perf_counter() - t0
    add_workflows(org, 1, trigger="deal_in_stage", config={"stage": "proposal", "days": 14}, actions=[
        {"type": "create_task", "config": {"title": "Chase {{deal.title}}"}}])
    add_workflows(org, 1, trigger="deal_date_reached", config={"field": "close_date", "offsetDays": -3,
                                                              "time": "09:00"},
                  actions=[{"type": "create_task", "config": {"title": "Close {{deal.title}}"}}])
    print(f"\n(r) relative-time triggers over {total:,} deals (inserted in {made:.1f} s), two workflows, "
          f"{rounds} passes each (rolled back)")

    def timed_pass(now) -> tuple[float, int]:
        RelativeTrigger.objects.filter(organization=org).update(checked_until=now - timedelta(minutes=1))
        with transaction.atomic():
            t = time.perf_counter()
            fired = relative_time.fire_due(now=now)
            took = time.perf_counter() - t
            transaction.set_rollback(True)
        return took, fired

    relative_time.fire_due(now=datetime(2031, 3, 1, tzinfo=UTC))  # the workflows go live
    medians = {}
    for name, now in (("an ordinary minute (14:37)", datetime(2030, 7, 15, 14, 37, tzinfo=UTC)),
                      ("the 09:00 minute", datetime(2031, 3, 10, 9, 0, 30, tzinfo=UTC))):
        results = [timed_pass(now) for _ in range(rounds)]
        times = [t for t, _ in results]
        medians[name] = statistics.median(times)
        print(f"    pass at {name:<28} median {medians[name] * 1000:7.1f} ms   "
              f"p95 {pct(times, 95) * 1000:7.1f} ms   {results[0][1]} workflows started")

    def polling() -> int:  # the baseline: every deal read, its occasions computed in Python
        due, now = 0, datetime(2030, 7, 15, 14, 37, tzinfo=UTC)
        for close, entered in Deal.objects.filter(organization=org).values_list("close_date", "stage_entered_at"):
            due += now - timedelta(minutes=1) < entered + timedelta(days=14) <= now
            due += close is not None and close - timedelta(days=3) == now.date()
        return due

    base = statistics.median(_timed(polling) for _ in range(3))
    ratios = ", ".join(f"{base / m:,.0f}x ({name.split(' (')[0]})" for name, m in medians.items())
    print(f"    baseline: reading every deal per pass  median {base * 1000:7.1f} ms   range queries faster: {ratios}")


# --- (i) ----------------------------------------------------------------------------------------
def bench_impact(total: int = 100_000) -> None:
    """The impact preview of a draft (a condition, a task on each side) over `total` recorded
    stage changes of as many deals in the last 30 days: one replay, timed."""
    from django.db import connection


    impact = first_module("crm_automation.automation.services.impact", "crm_automation.automation.impact")

    org, stages = make_org("impact")
    contact = Contact.objects.create(organization=org, first_name="Ada", email="ada@example.com")
    t0 = time.perf_counter()
    with connection.cursor() as c:
        c.execute("""INSERT INTO crm_deal (id, organization_id, title, amount, stage_id, probability, contact_id,
                     stage_entered_at, created_at, updated_at)
                     SELECT gen_random_uuid(), %s, 'Deal ' || g, (g %% 20) * 1000, %s, 10, %s, now(), now(), now()
                     FROM generate_series(1, %s) g""", [org.pk, stages["won"].pk, contact.pk, total])
        c.execute("""INSERT INTO automation_automationevent
                     (organization_id, kind, entity_type, entity_id, payload, depth, created_at, processed_at)
                     SELECT %s, 'deal_stage_change', 'deal', d.id,
                            jsonb_build_object('from_stage_id', %s, 'to_stage_id', %s), 0, now(), now()
                     FROM crm_deal d WHERE d.organization_id = %s""",
                  [org.pk, stages["proposal"].pk, stages["won"].pk, org.pk])
        c.execute("ANALYZE crm_deal")
        c.execute("ANALYZE automation_automationevent")
    made = time.perf_counter() - t0
    draft = workflow_create(organization=org, name="Sort", trigger_type="deal_stage_change",
                            trigger_config={"to_stage": "won"}, actions=[
                                {"id": "big", "type": "condition", "config": {"rules": [
                                    {"field": "deal.amount", "operator": "gt", "value": 10000}]}},
                                {"id": "yes", "type": "create_task", "config": {"title": "Big {{deal.title}}"}},
                                {"id": "no", "type": "create_task", "config": {"title": "Small {{deal.title}}"}}],
                            graph={"edges": [{"source": "trigger", "target": "big"},
                                             {"source": "big", "target": "yes", "sourceHandle": "condition-true"},
                                             {"source": "big", "target": "no", "sourceHandle": "condition-false"}]})
    result = impact.preview(draft, days=30)
    print(f"\n(i) impact preview over {total:,} recorded stage changes (inserted in {made:.1f} s)")
    print(f"    replay {result.seconds:.1f} s ({total / result.seconds:,.0f} events/s): {result.entered:,} would have "
          f"entered; yes {result.reached['yes']:,}, no {result.reached['no']:,}")


def plans_of_the_list(org) -> None:
    """How PostgreSQL reads the first page, without and with a filter no run matches (EXPLAIN
    ANALYZE; the scans, sorts and the time)."""
    from django.db import connection

    from crm_automation.automation.selectors import runs_of_organization

    for name, filters in (("first page", {}), ("?status=failed", {"status": "failed"}),
                          ("?trigger_type= (none)", {"trigger_type": "manual_deal"})):
        sql, params = runs_of_organization(organization_id=org.pk).filter(**filters)[:51].query.sql_with_params()
        with connection.cursor() as c:
            c.execute(f"EXPLAIN (ANALYZE) {sql}", params)
            plan = [row[0].strip() for row in c.fetchall()]
        shown = [line for line in plan if ("workflow_runs" in line and "Scan" in line and "pkey" not in line)
                 or line.startswith(("Filter:", "Rows Removed", "Sort Key", "Execution Time"))]
        print(f"    plan, {name}:" + "\n        ".join(["", *shown]))


# --- (f) ----------------------------------------------------------------------------------------
WAIT_THEN_TWO = [
    {"type": "wait", "config": {"delayAmount": 1, "delayUnit": "seconds"}},
    {"type": "create_task", "config": {"title": "After the wait: {{deal.title}}"}},
    {"type": "update_field", "config": {"field": "probability", "value": 100}},
]


def bench_waiting_cost(parked: int = 100_000) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext


    tasks = first_module("crm_automation.automation.runtime.tasks", "crm_automation.automation.tasks")
    WAKE_BATCH, wake_due_runs = tasks.WAKE_BATCH, tasks.wake_due_runs  # noqa: N806

    org, stages = make_org("waits-parked")
    add_workflows(org, 1, actions=WAIT_THEN_TWO)
    deal = make_deals(org, stages, 1)[0]
    wf = org.workflows.get()
    t0 = time.perf_counter()
    insert_runs(org, deal, wf, parked, status="waiting", finished=False)
    print(f"\n(f) waits: {parked:,} runs waiting (inserted in {time.perf_counter() - t0:.1f} s)")
    for label, due in (("nothing due", 0), (f"{WAKE_BATCH} due", WAKE_BATCH)):
        times, counts = [], []
        for _ in range(5):
            if due:
                ids = list(WorkflowRun.objects.filter(organization=org).values_list("pk", flat=True)[:due])
                WorkflowRun.objects.filter(pk__in=ids).update(status="waiting", wake_at=timezone_now())
            with CaptureQueriesContext(connection) as queries:
                t = time.perf_counter()
                woken = wake_due_runs()
                times.append(time.perf_counter() - t)
            counts.append(len(queries))
            WorkflowRun.objects.filter(pk__in=woken).update(status="waiting")  # park them again
        print(f"    one wake-up pass, {label:<12} median {statistics.median(times) * 1000:6.2f} ms, "
              f"{max(counts)} queries, woke {len(woken)}")
    WorkflowRun.objects.filter(organization=org).delete()


def timezone_now():
    from django.utils import timezone

    return timezone.now()


def bench_waits(n: int = 10_000) -> None:
    org, stages = make_org("waits-live")
    add_workflows(org, 1, actions=WAIT_THEN_TWO)
    saved, total = win_one_by_one(org, stages, make_deals(org, stages, n))
    print(f"\n(f) {n} runs that wait 1 s, then create a task and update a field (saves made one by one)")
    print(f"    saves took {saved:.2f} s; every run completed {total:.2f} s after the first save"
          f" → {n / total:.0f} runs/s; the last trigger waited {total - saved:.2f} s in all")


# --- (g) ----------------------------------------------------------------------------------------
def _task(node_id: str, title: str) -> dict:
    return {"id": node_id, "type": "create_task", "config": {"title": title}}


GRAPH_NODES = [
    {"id": "big", "type": "condition", "config": {"rules": [{"field": "deal.amount", "operator": "gte", "value": 0}]}},
    {"id": "fan-out", "type": "parallel", "config": {}},
    _task("kickoff", "Kick off {{deal.title}}"),
    {"id": "probability", "type": "update_field", "config": {"field": "probability", "value": 100}},
    {"id": "rejoin", "type": "merge", "config": {"strategy": "wait-all"}},
    {"id": "each", "type": "loop", "config": {"items": ["brief", "plan", "design", "build", "launch"]}},
    _task("phase", "{{loop.current}} for {{deal.title}}"),
    {"id": "breathe", "type": "wait", "config": {"delayAmount": 0, "delayUnit": "seconds"}},
    _task("wrap-up", "Wrap up {{deal.title}}"),
    _task("small", "Small deal {{deal.title}}"),
]
GRAPH_EDGES = [
    {"source": "trigger", "target": "big"},
    {"source": "big", "target": "fan-out", "sourceHandle": "condition-true"},
    {"source": "big", "target": "small", "sourceHandle": "condition-false"},
    {"source": "fan-out", "target": "kickoff", "sourceHandle": "branch-0"},
    {"source": "fan-out", "target": "probability", "sourceHandle": "branch-1"},
    {"source": "kickoff", "target": "rejoin"},
    {"source": "probability", "target": "rejoin"},
    {"source": "rejoin", "target": "each"},
    {"source": "each", "target": "phase", "sourceHandle": "loop-body"},
    {"source": "each", "target": "breathe", "sourceHandle": "loop-done"},
    {"source": "breathe", "target": "wrap-up"},
]


def bench_graph(n: int) -> None:
    """A 10-node graph (condition, parallel + merge, a loop over 5 items, a wait of 0) against
    the 3-action chain, both as a backlog the cluster starts on, same run."""
    results: dict[str, tuple[float, int]] = {}
    for name, actions, graph in (("3-action chain", THREE_ACTIONS, {}), ("10-node graph", GRAPH_NODES,
                                                                        {"edges": GRAPH_EDGES})):
        org, stages = make_org(f"graph-{len(results)}")
        wf = workflow_create(organization=org, name=name, trigger_type="deal_stage_change",
                             trigger_config={"to_stage": "won"}, actions=actions, graph=graph)
        workflow_transition(workflow_id=wf.pk, name="activate", by=None)
        for deal in make_deals(org, stages, n):
            deal_move_to_stage(deal=deal, stage=stages["won"])
        t0 = time.perf_counter()
        cluster = new_cluster()
        try:
            total = wait_for_runs(org, n) - t0
        finally:
            cluster.stop()
        steps = WorkflowRunAction.objects.filter(run__organization=org).count()
        bad = WorkflowRun.objects.filter(organization=org).exclude(status="completed").count()
        results[name] = (total, steps)
        print(f"    {name}: {n} runs ({steps} steps) in {total:.2f} s → {n / total:.0f} runs/s, "
              f"{steps / total:.0f} steps/s ({bad} not completed)")
    (chain_t, chain_s), (graph_t, graph_s) = results.values()
    print(f"    the graph takes {graph_t / chain_t:.2f}x the chain's time for {graph_s / chain_s:.1f}x its steps")


# --- (t) ----------------------------------------------------------------------------------------
def bench_template_scan() -> None:
    """The audit's hostile template, "{{" then spaces: the old backtracking regex against the
    linear scanner, same inputs, same run."""
    import re


    template_paths = first_module("crm_automation.automation.definition.templating",
                                  "crm_automation.automation.templating").template_paths

    old = re.compile(r"\{\{\s*(.*?)\s*\}\}")
    print("\n(t) template scan of '{{' + N spaces (median of 3)")
    for n in (250, 500, 1000, 4998):
        text = "{{" + " " * n
        new_t = statistics.median(_timed(lambda text=text: template_paths(text)) for _ in range(3))
        if n <= 1000:  # the old regex grows ~cubically: 1,000 chars take ~1 s, 5,000 took 91 s
            scan_old = lambda text=text: [m.group(1) for m in old.finditer(text)]  # noqa: E731
            old_t = statistics.median(_timed(scan_old) for _ in range(3))
            print(f"    N={n:<5} regex {old_t * 1000:9.1f} ms   linear {new_t * 1000:7.3f} ms   "
                  f"ratio {old_t / new_t:,.0f}x")
        else:
            print(f"    N={n:<5} regex (not run: ~90 s)   linear {new_t * 1000:7.3f} ms")


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    only = set(ARGS.only.split(","))
    print(f"PostgreSQL {DB_URL}; {os.cpu_count()} cores; Q_WORKERS={ARGS.workers}; {ARGS.broker} broker; "
          f"email {'to a local SMTP server' if SINK else 'in memory (locmem)'}; code {crm_automation.__file__}; "
          f"logs in {OUT}")
    try:
        run_benchmarks(only)
    finally:
        if SINK:
            SINK.stop()
        COUNTERS.close()
        ADMIN.close()
    strays = modules_elsewhere(ROOT)
    if strays:
        raise SystemExit(f"modules of the project imported from outside {ROOT}: {strays}")
    if "cluster_imports" in RESULTS:
        print(f"\nthe qclusters imported {RESULTS['cluster_imports']}")
    if ARGS.json:
        ARGS.json.write_text(json.dumps(RESULTS, indent=1, default=str))
    if not ARGS.keep_logs:
        shutil.rmtree(OUT, ignore_errors=True)


def run_benchmarks(only: set[str]) -> None:
    if "t" in only:
        bench_template_scan()
    if "f" in only:
        bench_waiting_cost()
    if "e" in only:
        bench_admin_million()
    if "h" in only:
        bench_api_million()
    if "p" in only:
        bench_pages_million()
    if "r" in only:
        bench_relative_time()
    if "i" in only:
        bench_impact()
    if "a" in only:
        bench_save_overhead()
    if "b" in only:
        bench_throughput_backlog(ARGS.n)
    if "g" in only:
        print(f"\n(g) graph: backlog of {ARGS.n // 2} runs each, cluster started (start-up included)")
        bench_graph(ARGS.n // 2)
    if only & {"b", "d", "f"}:
        drain_starts = OUT / "drain-starts.log" if "d" in only else None
        cluster, _ = ready_cluster(drain_starts)
        try:
            if "d" in only:
                bench_latency(drain_starts, samples=ARGS.latency_samples)
            if "b" in only:
                bench_throughput_live(ARGS.n)
            if "f" in only:
                bench_waits(ARGS.n * 2)
        finally:
            cluster.stop()
    if "c" in only:
        bench_bulk(ARGS.n)


if __name__ == "__main__":
    main()
