#!/usr/bin/env python
"""Scale-out, measured: 1, 2 and 4 separate `qcluster` processes on the same backlog.

    .venv/bin/python benchmarks/scale_out.py [--n 4000] [--brokers redis,orm] [--clusters 1,2,4]
                                             [--workers 2] [--time-limit 900]

PostgreSQL in its own database (SCALE_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/crm_scale, dropped and recreated), Redis db 13 (flushed before
each configuration). For each broker and each cluster count: every table emptied, one
organization with N deals in "proposal" and the fault harness's workflow (deal → won:
create_task + update_field + send_email), N stage changes made by a separate mover process
while no cluster runs (their nudges wait on the broker), then that many `manage.py qcluster`
processes started at once, each in its own process group as on separate hosts (Q_WORKERS each,
one cluster name, so they share one queue). Email goes to the harness's fake SMTP server.

Columns:
  s / runs/s      from the clusters' start (start-up included) to the last run finished;
  first           when the first run finished, from the clusters' start (the start-up);
  p50 / p99       run finished − clusters' start, over the N runs (a backlog: the event's own
                  time would measure how long the mover took, not the workers);
  doubles         runs per (event, workflow) or per (deal, workflow) beyond one, tasks /
                  field changes / emails per run beyond one, Message-IDs the SMTP server
                  accepted twice — must be 0;
  lost            events unprocessed or set aside, runs missing, emails never sent — must be 0;
  commits/run, rows/run (inserted / updated / deleted), DB ms/run: pg_stat_database deltas of
                  the bench database over the drain (every cluster stopped and every session
                  closed before the second look, so each backend has flushed its counters),
                  divided by runs; DB ms is `active_time` (time backends spent executing
                  statements). The harness's own polls (one commit each) are subtracted.
  worker CPU ms/run  user + system CPU of the cluster processes (getrusage of the reaped
                  children), less one idle cluster's start and stop measured first, per run.

pg_stat_statements is installed but not in shared_preload_libraries, so statements are counted
from Django's side: an in-process drain of the same workflow (no cluster, no broker) under
CaptureQueriesContext. The save path's cost (the mover) is measured the same way.

Then a commit-rate baseline with pgbench (INSERT + UPDATE by key + COMMIT, from this machine)
and an extrapolation on paper to a 16-core PostgreSQL and 8 worker hosts. On this 2-core
machine the clusters, PostgreSQL, Redis, the SMTP server and the harness share two cores: more
clusters do not mean more speed; the table shows correctness and overhead.

The report goes to benchmarks/results/scale-out-<timestamp>.txt (cluster logs in the folder of
the same name).
"""

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DB_URL = os.environ.get("SCALE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crm_scale")
DB_NAME = DB_URL.rsplit("/", 1)[1]
ADMIN_URL = DB_URL.rsplit("/", 1)[0] + "/postgres"
REDIS_URL = "redis://127.0.0.1:6379/13"
RESULTS = ROOT / "benchmarks" / "results"
CLUSTER_NAME = "crm-scale"
STATS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "active_time", "sessions")

# The paper extrapolation's assumptions (printed with it).
DB_CORES = 16
WORKER_HOSTS, CORES_PER_HOST = 8, 4
DB_EFFICIENCY = 0.5  # of linear scaling from this machine's per-core figures to 16 cores
WORKER_EFFICIENCY = 0.8


def configure_environment() -> None:
    """The harness process: the bench database, no nudges (its own moves are in-process and
    drained in-process), email in memory."""
    if urlsplit(DB_URL).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit("SCALE_DATABASE_URL must point at 127.0.0.1")
    for key in [k for k in os.environ if k.startswith(("REDIS_", "AUTOMATION_", "Q_", "EMAIL_", "DATABASE_"))]:
        del os.environ[key]
    os.environ.update(DATABASE_URL=DB_URL, DJANGO_SETTINGS_MODULE="config.settings", AUTOMATION_NUDGE="0",
                      LOG_LEVEL="WARNING", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")


def admin_connection():
    """A connection to the `postgres` database: reading the statistics costs the bench database nothing."""
    import psycopg

    return psycopg.connect(ADMIN_URL, autocommit=True)


def recreate_database() -> None:
    with admin_connection() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5).flushdb()


# --- pg_stat_database -----------------------------------------------------------------------------
class PollCount:
    """Counts the harness's own statements (each one commit in autocommit) and their time, to
    subtract them from the database's counters."""

    def __init__(self) -> None:
        self.n = 0
        self.seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        self.n += 1
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - t


def quiesce(admin, timeout: float = 20) -> None:
    """Close our connections and wait until no client session is left on the bench database:
    a backend flushes its statistics when it exits."""
    from django.db import connections

    connections.close_all()
    deadline = time.monotonic() + timeout
    while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = "
                        "'client backend'", [DB_NAME]).fetchone()[0]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"sessions still open on {DB_NAME} after {timeout:.0f} s")
        time.sleep(0.05)


def db_stats(admin) -> dict:
    row = admin.execute(f"SELECT {', '.join(STATS)} FROM pg_stat_database WHERE datname = %s", [DB_NAME]).fetchone()
    return dict(zip(STATS, row, strict=True))


def table_stats() -> dict[str, tuple[int, int, int]]:
    """Rows inserted, updated, deleted so far, per table of the bench database (its own short session)."""
    import psycopg

    with psycopg.connect(DB_URL, autocommit=True) as conn:
        return {name: (i, u, d) for name, i, u, d in conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")}


def rows_by_table(before: dict, after: dict, runs: int, top: int = 12) -> str:
    """The tables written most per run: `table ins/upd/del`."""
    deltas = []
    for name, (i, u, d) in after.items():
        bi, bu, bd = before.get(name, (0, 0, 0))
        if (i - bi) + (u - bu) + (d - bd):
            deltas.append((name, (i - bi) / runs, (u - bu) / runs, (d - bd) / runs))
    deltas.sort(key=lambda t: -(t[1] + t[2] + t[3]))
    return ", ".join(f"{name} {i:.2f}/{u:.2f}/{d:.2f}" for name, i, u, d in deltas[:top])


@dataclass
class DbCost:
    """pg_stat_database deltas per run (or per trigger)."""

    per: int
    commits: float
    inserted: float
    updated: float
    deleted: float
    active_ms: float
    statements: float | None = None
    by_table: str = ""

    @property
    def rows(self) -> float:
        return self.inserted + self.updated + self.deleted

    @classmethod
    def between(cls, before: dict, after: dict, per: int, own: PollCount | None = None) -> "DbCost":
        """`own`: the harness's statements in the window (no writes): their commits and, as an upper
        bound of their time in the database, their time seen from here, are taken off."""
        d = {k: float(after[k] - before[k]) for k in STATS}
        per = max(1, per)
        own_commits, own_ms = (own.n, own.seconds * 1000) if own else (0, 0.0)
        return cls(per=per, commits=(d["xact_commit"] - own_commits) / per, inserted=d["tup_inserted"] / per,
                   updated=d["tup_updated"] / per, deleted=d["tup_deleted"] / per,
                   active_ms=max(0.0, d["active_time"] - own_ms) / per)

    def rows_text(self) -> str:
        return f"{self.rows:.1f} ({self.inserted:.1f}/{self.updated:.1f}/{self.deleted:.1f})"


# --- one configuration ----------------------------------------------------------------------------
@dataclass
class Result:
    broker: str
    clusters: int
    workers: int
    runs: int = 0
    seconds: float = 0.0
    first: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    doubles: int = 0
    lost: int = 0
    unknown: int = 0
    cost: DbCost | None = None
    save: DbCost | None = None
    worker_cpu_ms: float | None = None
    statuses: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def children_cpu() -> float:
    """CPU seconds of every child process reaped so far (and of their reaped descendants)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_clusters(h, env: dict, count: int, tag: str) -> list:
    """`count` qcluster processes started at once, each the leader of its own process group."""
    from benchmarks.chaos.procs import PROCESSES, PYTHON, Cluster

    clusters = []
    for i in range(count):
        cluster = Cluster(env=env, log=h.path(f"{tag}-cluster{i + 1}.log"), workers=h.workers)
        cluster.proc = PROCESSES.start([PYTHON, "manage.py", "qcluster"], env=env, log=cluster.log)
        clusters.append(cluster)
    return clusters


def stop_clusters(clusters: list, grace: float = 30) -> int:
    """SIGTERM to every cluster at once, then wait; returns how many had to be killed (their
    children's CPU time is then lost to getrusage)."""
    from benchmarks.chaos.procs import PROCESSES

    for cluster in clusters:
        if cluster.proc.poll() is None:
            cluster.proc.send_signal(signal.SIGTERM)
    killed = 0
    deadline = time.monotonic() + grace
    for cluster in clusters:
        try:
            cluster.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed += 1
        PROCESSES.kill(cluster.proc)  # the group: a straggler of a cluster that did exit
    return killed


def idle_cluster_cpu(h, broker: str, settle: float = 2.0) -> float:
    """CPU seconds one cluster spends starting, idling `settle` s with nothing to do, stopping."""
    flush_redis()
    before = children_cpu()
    (cluster,) = start_clusters(h, h.env(broker=broker, Q_CLUSTER_NAME=CLUSTER_NAME), 1, f"idle-{broker}")
    deadline = time.monotonic() + 30
    while len(cluster.members()) < h.workers + 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(settle)
    stop_clusters([cluster])
    return children_cpu() - before


def wait_all_finished(org_id: int, n: int, clusters: list, timeout: float) -> bool:
    from crm_automation.automation.models import WorkflowRun

    deadline = time.monotonic() + timeout
    runs = WorkflowRun.objects.filter(organization_id=org_id)
    while time.monotonic() < deadline:
        if runs.exclude(status__in=["started", "waiting"]).count() >= n:
            return True
        dead = [c.proc.pid for c in clusters if c.proc.poll() is not None]
        if dead:
            raise RuntimeError(f"qcluster {dead} exited during the drain")
        time.sleep(0.1)
    return False


def measure_configuration(h, admin, broker: str, count: int, n: int, idle_cpu: float, timeout: float) -> Result:
    from django.db import connection

    from benchmarks.chaos.checks import Row, Scope, measure, wait_settled
    from benchmarks.chaos.data import add_workflow, make_org, reset_database
    from benchmarks.chaos.procs import Sink
    from crm_automation.automation.models import WorkflowRun

    tag = f"{broker}-{count}"
    result = Result(broker=broker, clusters=count, workers=h.workers)
    reset_database()
    flush_redis()
    sink = Sink.start(h.path(f"{tag}-smtp.jsonl"))
    clusters = []
    try:
        data = make_org(f"scale-{tag}", deals=n)
        workflow = add_workflow(data)
        env = h.env(broker=broker, smtp_port=sink.port, Q_CLUSTER_NAME=CLUSTER_NAME)
        quiesce(admin)
        before_moves = db_stats(admin)
        h.move(env, data, f"{tag}-mover", timeout=600)
        quiesce(admin)
        tables_before = table_stats()
        quiesce(admin)
        before = db_stats(admin)
        result.save = DbCost.between(before_moves, before, n)
        cpu_before = children_cpu()
        polls = PollCount()
        t0 = time.time()
        clusters = start_clusters(h, env, count, tag)
        with connection.execute_wrapper(polls):
            done = wait_all_finished(data.pk, n, clusters, timeout)
            scope = Scope([data.pk], [workflow.pk], triggers=n)
            settled = wait_settled(scope, 30)
        if not done or not settled:
            result.notes.append(f"not finished within {timeout:.0f} s")
        killed = stop_clusters(clusters)
        cpu = children_cpu() - cpu_before
        with connection.execute_wrapper(polls):
            quiesce(admin)
        after = db_stats(admin)
        result.cost = DbCost.between(before, after, n, own=polls)
        result.cost.by_table = rows_by_table(tables_before, table_stats(), n)
        if killed:
            result.notes.append(f"{killed} cluster(s) did not stop within 30 s of SIGTERM and were killed: "
                                "worker CPU not measured")
        else:
            result.worker_cpu_ms = max(0.0, cpu - count * idle_cpu) * 1000 / n
            result.notes.append(f"cluster CPU {cpu:.1f} s in all, less {count} × {idle_cpu:.1f} s for an idle "
                                "cluster's start and stop")

        finished = [f.timestamp() - t0 for f in WorkflowRun.objects.filter(organization_id=data.pk)
                    .exclude(finished_at=None).values_list("finished_at", flat=True) if f is not None]
        result.runs = len(finished)
        if finished:
            result.seconds, result.first = max(finished), min(finished)
            result.p50, result.p99 = statistics.median(finished), pct(finished, 99)
        row = measure(Row(tag), Scope([data.pk], [workflow.pk], triggers=n), sink.messages())
        result.doubles = row.runs_doubled + row.effects_doubled
        result.lost = row.events_lost + row.runs_missing + row.never_sent
        result.unknown = row.unknown
        result.statuses = "; ".join(row.notes)
    finally:
        if clusters:
            stop_clusters(clusters, grace=5)
        sink.stop()
    return result


# --- statements per run: the engine in process ------------------------------------------------------
def engine_in_process(admin, n: int) -> DbCost:
    """The same workflow's runs drained in this process (no cluster, no broker, no watchdog): the
    statements Django sends per run, and the database's counters over the same drain."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from benchmarks.chaos.data import add_workflow, make_org, reset_database
    from crm_automation.automation.models import WorkflowRun
    from crm_automation.automation.runtime.tasks import drain_events
    from crm_automation.crm.models import Deal
    from crm_automation.crm.services import deal_move_to_stage

    reset_database()
    data = make_org("in-process", deals=n)
    add_workflow(data)
    for deal in Deal.objects.filter(organization=data.org).select_related("stage"):
        deal_move_to_stage(deal=deal, stage=data.stages["won"])
    quiesce(admin)
    tables_before = table_stats()
    quiesce(admin)
    before = db_stats(admin)
    with CaptureQueriesContext(connection) as queries:
        drain_events(fan_out=False)
    statements = len(queries)
    quiesce(admin)
    cost = DbCost.between(before, db_stats(admin), n)
    runs = WorkflowRun.objects.filter(organization=data.org, status="completed").count()
    cost.statements = statements / n
    cost.by_table = rows_by_table(tables_before, table_stats(), n)
    if runs != n:
        raise RuntimeError(f"in process: {runs} of {n} runs completed")
    return cost


# --- the commit-rate baseline -----------------------------------------------------------------------
PGBENCH_SCRIPT = """\\set id random(1, 10000)
BEGIN;
INSERT INTO scale_baseline_events (payload) VALUES ('{"from": "proposal", "to": "won"}');
UPDATE scale_baseline_rows SET n = n + 1 WHERE id = :id;
COMMIT;
"""


def commit_baseline(out: Path, seconds: int = 5) -> dict[int, float]:
    """Transactions per second of pgbench with 2, 8 and 16 clients on this machine: one INSERT (an
    outbox-like row with jsonb), one UPDATE by primary key, COMMIT (synchronous, as configured)."""
    import psycopg

    if not shutil.which("pgbench"):
        return {}
    parts = urlsplit(DB_URL)
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("CREATE TABLE scale_baseline_events (id bigserial PRIMARY KEY, payload jsonb NOT NULL, "
                     "created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute("CREATE TABLE scale_baseline_rows (id int PRIMARY KEY, n int NOT NULL)")
        conn.execute("INSERT INTO scale_baseline_rows SELECT g, 0 FROM generate_series(1, 10000) g")
    script = out / "baseline.sql"
    script.write_text(PGBENCH_SCRIPT)
    rates = {}
    try:
        for clients in (2, 8, 16):
            proc = subprocess.run(["pgbench", "-n", "-f", str(script), "-c", str(clients), "-j", "2",
                                   "-T", str(seconds), "-h", parts.hostname or "localhost",
                                   "-p", str(parts.port or 5432),
                                   "-U", parts.username or "postgres", DB_NAME],
                                  capture_output=True, text=True, timeout=seconds + 60)
            found = re.search(r"tps = ([\d.]+)", proc.stdout)
            if found:
                rates[clients] = float(found.group(1))
    finally:
        with psycopg.connect(DB_URL, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS scale_baseline_events, scale_baseline_rows")
    return rates


# --- the report -----------------------------------------------------------------------------------
HEADER = ["clusters", "broker", "runs", "s", "runs/s", "first s", "p50 s", "p99 s", "doubles", "lost",
          "commits/run", "rows/run (ins/upd/del)", "DB ms/run", "worker CPU ms/run"]


def table(results: list[Result]) -> str:
    lines = [HEADER]
    for r in results:
        cost = r.cost
        lines.append([
            f"{r.clusters} × {r.workers}w", r.broker, str(r.runs), f"{r.seconds:.1f}", f"{r.rate:.0f}",
            f"{r.first:.1f}", f"{r.p50:.1f}", f"{r.p99:.1f}", str(r.doubles), str(r.lost),
            f"{cost.commits:.1f}" if cost else "-", cost.rows_text() if cost else "-",
            f"{cost.active_ms:.2f}" if cost else "-",
            f"{r.worker_cpu_ms:.1f}" if r.worker_cpu_ms is not None else "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    out = ["  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths, strict=True)))
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def extrapolate(results: list[Result], in_process: DbCost, baseline: dict[int, float]) -> str:
    """Paper figures for a 16-core PostgreSQL and 8 worker hosts from the per-run costs measured.

    The unit of database work is one pgbench transaction of the baseline (1 commit, 2 rows
    written), measured on this machine: a run costs as many units as its commits, or half its
    rows written, whichever is more. Statement time is a second, independent bound."""
    cores = os.cpu_count() or 2
    measured = [r for r in results if r.cost and r.runs]
    save = measured[0].save if measured else None
    if not measured or not baseline or save is None:
        return "(no extrapolation: nothing measured, or pgbench missing)"
    per_core = max(baseline.values()) / cores
    units = per_core * DB_CORES * DB_EFFICIENCY
    db_ms = DB_CORES * 1000 * DB_EFFICIENCY
    worker_ms = WORKER_HOSTS * CORES_PER_HOST * 1000 * WORKER_EFFICIENCY
    uncontended = in_process.active_ms + save.active_ms
    lines = [
        f"On paper: a {DB_CORES}-core PostgreSQL and {WORKER_HOSTS} worker hosts ({CORES_PER_HOST} cores, "
        f"{CORES_PER_HOST} workers each)",
        "- baseline, this machine: pgbench (INSERT + UPDATE by key + COMMIT) "
        + ", ".join(f"{c} clients {t:,.0f} tps" for c, t in sorted(baseline.items()))
        + f" → {per_core:,.0f} transactions/s per core (the pgbench client shares the {cores} cores);",
        f"- {DB_CORES} cores at {DB_EFFICIENCY:.0%} of linear: {units:,.0f} such transactions/s, and "
        f"{db_ms:,.0f} ms of statement time per second;",
        f"- save path per trigger (deal_move_to_stage, measured with the mover): {save.commits:.1f} commits, "
        f"{save.rows_text()} rows, {save.active_ms:.2f} ms; the engine in process, no contention "
        f"({in_process.per} runs): {in_process.statements:.1f} statements, {in_process.commits:.1f} commits, "
        f"{in_process.rows_text()} rows, {in_process.active_ms:.2f} ms per run.",
    ]
    for broker in sorted({r.broker for r in measured}):
        one = min((r for r in measured if r.broker == broker), key=lambda r: r.clusters)
        assert one.cost is not None  # (measured)
        commits, written = one.cost.commits + save.commits, one.cost.rows + save.rows
        contended = one.cost.active_ms + save.active_ms
        by_commits, by_rows = units / commits, units * 2 / written
        by_time, by_time_free = db_ms / contended, db_ms / uncontended
        database = min(by_commits, by_rows, by_time)
        lines += [
            f"\n{broker} broker, per run with its save path ({one.clusters}-cluster row): {commits:.1f} commits, "
            f"{written:.1f} rows written, {contended:.2f} ms of statement time ({uncontended:.2f} ms uncontended)",
            f"  database: {by_commits:,.0f} runs/s by commits, {by_rows:,.0f} by rows written (pessimistic: the "
            f"engine writes its rows in multi-row statements), {by_time:,.0f} by statement time as measured here "
            f"({by_time_free:,.0f} uncontended) → ≈ {database:,.0f} runs/s",
        ]
        if one.worker_cpu_ms:
            workers = worker_ms / one.worker_cpu_ms
            lines.append(f"  workers: {WORKER_HOSTS * CORES_PER_HOST} cores, {WORKER_EFFICIENCY:.0%} busy, at "
                         f"{one.worker_cpu_ms:.1f} CPU ms per run → ≈ {workers:,.0f} runs/s")
            lines.append(f"  → ≈ {min(database, workers):,.0f} runs/s ({min(database, workers) * 3600 / 1e6:.1f} "
                         f"million runs an hour), {'the database' if database < workers else 'the workers'} "
                         "bound first")
    lines.append(
        "\nAssumptions: a server core does at least the work of one of this machine's (its disk flushes commits at "
        f"least as fast; group commit helps with many clients); {DB_EFFICIENCY:.0%} of linear scaling to "
        f"{DB_CORES} cores (WAL insertion, locks, index contention); per-run costs of the 1-cluster row (each "
        "extra cluster adds polling, watchdogs and sweeps: see the other rows); worker hosts run one worker per "
        "core, CPU-bound, with PostgreSQL and the email provider a network hop away and keeping up. Paper "
        "figures, not measurements.")
    lines.append(
        f"\nOn this {cores}-core machine the clusters, PostgreSQL, Redis, the SMTP server and this harness share "
        f"{cores} cores: more clusters do not mean more speed here (statement time per run grows with the "
        "clusters because backends wait for a core). The table shows that 1, 2 and 4 clusters on one queue "
        "double nothing and lose nothing, and what each extra cluster costs.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Scale-out benchmark (see the module docstring).")
    parser.add_argument("--n", type=int, default=4000, help="stage changes in the backlog (default 4000)")
    parser.add_argument("--brokers", default="redis,orm")
    parser.add_argument("--clusters", default="1,2,4")
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS of each cluster (default 2)")
    parser.add_argument("--in-process", type=int, default=500, help="runs of the in-process drain (statements)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one drain may take")
    parser.add_argument("--time-limit", type=float, default=1200, help="seconds for the whole run")
    args = parser.parse_args()
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    counts = [int(c) for c in args.clusters.split(",") if c.strip()]
    if not set(brokers) <= {"redis", "orm"}:
        raise SystemExit("--brokers: redis and/or orm")

    configure_environment()
    from benchmarks.chaos.run import TimeLimit, start_time_limit

    signal.signal(signal.SIGTERM, signal.default_int_handler)
    start_time_limit(args.time_limit)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"scale-out-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    recreate_database()
    import django

    django.setup()
    from django.core.management import call_command

    from benchmarks.chaos.harness import Harness
    from benchmarks.chaos.procs import PROCESSES

    call_command("migrate", verbosity=0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    print(f"scale-out: n={args.n}, brokers {brokers}, clusters {counts}, Q_WORKERS={args.workers}, "
          f"{os.cpu_count()} cores, {DB_URL}, {REDIS_URL}; logs in {out}", flush=True)
    h = Harness(database_url=DB_URL, redis_url=REDIS_URL, out=out, workers=args.workers)
    results: list[Result] = []
    began = time.monotonic()
    admin = admin_connection()
    baseline: dict[int, float] = {}  # what was measured before a time limit or ^C, if anything
    in_process: DbCost | None = None
    try:
        baseline = commit_baseline(out)
        print(f"commit baseline (pgbench): {baseline}", flush=True)
        in_process = engine_in_process(admin, args.in_process)
        print(f"in process: {in_process.statements:.1f} statements/run, {in_process.commits:.1f} commits/run",
              flush=True)
        for broker in brokers:
            idle = idle_cluster_cpu(h, broker)
            print(f"idle {broker} cluster start + stop: {idle:.1f} CPU s", flush=True)
            for count in counts:
                started = time.monotonic()
                try:
                    result = measure_configuration(h, admin, broker, count, args.n, idle, args.timeout)
                except Exception as exc:
                    traceback.print_exc()
                    results.append(Result(broker=broker, clusters=count, workers=args.workers, lost=-1,
                                          notes=[f"crashed: {type(exc).__name__}: {exc}"[:300]]))
                    continue
                results.append(result)
                assert result.cost is not None  # (measured)
                print(f"  {count} cluster(s), {broker}: {result.runs} runs in {result.seconds:.1f} s "
                      f"({result.rate:.0f}/s), doubles {result.doubles}, lost {result.lost}; "
                      f"{result.cost.commits:.1f} commits/run ({time.monotonic() - started:.0f} s)", flush=True)
    except (TimeLimit, KeyboardInterrupt) as exc:
        print(f"stopped: {exc}", flush=True)
    finally:
        signal.alarm(0)
        PROCESSES.kill_all()
        admin.close()
    elapsed = time.monotonic() - began
    details = [f"- {r.clusters} cluster(s), {r.broker}: {r.statuses}"
               + "".join(f"; {note}" for note in r.notes)
               + (f"; unknown emails {r.unknown}" if r.unknown else "")
               + (f"\n  rows per run by table (ins/upd/del): {r.cost.by_table}" if r.cost else "") for r in results]
    tree = " (uncommitted changes in the tree)" if dirty else ""
    report = (f"crm-automation scale-out {stamp}, commit {commit}{tree}"
              f": {elapsed / 60:.1f} min, {os.cpu_count()} cores, n={args.n} stage changes, Q_WORKERS={args.workers} "
              f"per cluster, PostgreSQL {DB_NAME}\n\n{table(results)}\n\n" + "\n".join(details) + "\n\n"
              + (extrapolate(results, in_process, baseline) if in_process else "") + "\n")
    print("\n" + report)
    (RESULTS / f"scale-out-{stamp}.txt").write_text(report)
    print(f"written to {RESULTS / f'scale-out-{stamp}.txt'}")
    return 0 if results and all(r.doubles == 0 and r.lost == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
