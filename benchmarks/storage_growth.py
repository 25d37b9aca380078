#!/usr/bin/env python
"""Storage growth per 1,000 runs: what the outbox, the run history and the effects
take on disk, on PostgreSQL and on SQLite.

    .venv/bin/python benchmarks/storage_growth.py [--runs 5000] [--databases postgres,sqlite]

For each database, in a child process of its own (Django is set up once per process): a fresh
database (PostgreSQL: STORAGE_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/crm_storage,
dropped and recreated; SQLite: a new file under benchmarks/results/), migrated; one
organization with K deals in "proposal" and the fault harness's workflow (deal → won:
create_task + update_field + send_email, email to the locmem backend); every table's size;
K stage changes by a separate mover process, drained by one real `qcluster` (ORM broker,
Q_WORKERS=2); every table's size again.

PostgreSQL: `pg_total_relation_size` (table + indexes + TOAST) just after the drain ("as
written": dead row versions of updated rows included, which (auto)vacuum makes reusable but does
not give back), and after VACUUM FULL ("compacted": the live rows alone). SQLite: pages per table
and its indexes from the `dbstat` table after a WAL checkpoint, and the database file's growth.
The deltas are printed in MB per 1,000 runs, per table and in total, and written to
benchmarks/results/storage-growth-<timestamp>.txt.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PG_URL = os.environ.get("STORAGE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crm_storage")
RESULTS = ROOT / "benchmarks" / "results"
MB = 1024 * 1024


# --- the child: one database ----------------------------------------------------------------------
def prepare(database: str, out: Path) -> str:
    """Create the empty database; returns its URL."""
    if database == "sqlite":
        path = out / "storage.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    import psycopg

    if urlsplit(PG_URL).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit("STORAGE_DATABASE_URL must point at 127.0.0.1")
    name = PG_URL.rsplit("/", 1)[1]
    with psycopg.connect(PG_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_URL


def sizes() -> dict[str, int]:
    """Bytes per table, its indexes included."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables")
            return dict(cursor.fetchall())
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.execute("SELECT m.tbl_name, SUM(s.pgsize) FROM dbstat s JOIN sqlite_master m ON m.name = s.name "
                       "GROUP BY m.tbl_name")
        return {name: int(size) for name, size in cursor.fetchall()}


def file_size(url: str) -> int:
    path = url.removeprefix("sqlite:///")
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))


def child(database: str, runs: int, out: Path, report: Path) -> None:
    url = prepare(database, out)
    for key in [k for k in os.environ if k.startswith(("REDIS_", "AUTOMATION_", "Q_", "EMAIL_", "DATABASE_"))]:
        del os.environ[key]
    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings", AUTOMATION_NUDGE="0",
                      LOG_LEVEL="WARNING", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from benchmarks.chaos.checks import Scope, wait_settled
    from benchmarks.chaos.data import add_workflow, make_org
    from benchmarks.chaos.harness import Harness
    from benchmarks.chaos.procs import PROCESSES
    from crm_automation.automation.models import WorkflowRun

    call_command("migrate", verbosity=0)
    h = Harness(database_url=url, redis_url="", out=out, workers=2)
    try:
        data = make_org(f"storage-{database}", deals=runs)
        workflow = add_workflow(data)
        env = h.env(broker="orm", Q_CLUSTER_NAME=f"crm-storage-{database}")
        if database == "postgres":
            with connection.cursor() as cursor:
                cursor.execute("VACUUM FULL")  # "before" compacted too: the columns compare like with like
        before, file_before = sizes(), file_size(url) if database == "sqlite" else 0
        h.move(env, data, f"{database}-mover", timeout=900)
        started = time.monotonic()
        cluster = h.cluster(env, f"{database}-cluster")
        if not wait_settled(Scope([data.pk], [workflow.pk], triggers=runs), timeout=900):
            raise RuntimeError("the drain did not finish within 15 minutes")
        drained = time.monotonic() - started
        cluster.stop(grace=30)
        done = WorkflowRun.objects.filter(organization_id=data.pk, status="completed").count()
        after = sizes()
        result = {"database": database, "runs": done, "drain_seconds": drained, "before": before, "after": after}
        if database == "sqlite":
            result["file"] = [file_before, file_size(url)]
        else:
            connection.close()
            with connection.cursor() as cursor:
                cursor.execute("VACUUM FULL")
            result["compacted"] = sizes()
        report.write_text(json.dumps(result))
    finally:
        PROCESSES.kill_all()


# --- the parent: both databases, one table ----------------------------------------------------------
def per_thousand(result: dict, key: str) -> dict[str, float]:
    """MB per 1,000 runs for each table that grew."""
    runs = result["runs"] / 1000
    return {name: (size - result["before"].get(name, 0)) / MB / runs for name, size in result[key].items()
            if size != result["before"].get(name, 0)}


def report_table(results: dict[str, dict]) -> str:
    columns = []
    for database, result in results.items():
        if database == "postgres":
            columns += [("PostgreSQL as written", per_thousand(result, "after")),
                        ("PostgreSQL compacted", per_thousand(result, "compacted"))]
        else:
            columns.append(("SQLite", per_thousand(result, "after")))
    names = sorted({n for _, col in columns for n in col}, key=lambda n: -max(col.get(n, 0) for _, col in columns))
    header = ["table (MB per 1,000 runs)", *[title for title, _ in columns]]
    lines = [header, *[[name, *[f"{col.get(name, 0):.3f}" for _, col in columns]] for name in names],
             ["total", *[f"{sum(col.values()):.3f}" for _, col in columns]]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths, strict=True)))
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.insert(len(out) - 1, out[1])
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description="Storage growth per 1,000 runs (see the module docstring).")
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--databases", default="postgres,sqlite")
    parser.add_argument("--child", choices=["postgres", "sqlite"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.runs, args.out, args.report)
        return 0

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"storage-growth-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for database in [d.strip() for d in args.databases.split(",") if d.strip()]:
        report = out / f"{database}.json"
        began = time.monotonic()
        code = subprocess.run([sys.executable, __file__, "--child", database, "--runs", str(args.runs),
                               "--out", str(out), "--report", str(report)], cwd=ROOT).returncode
        if code or not report.exists():
            print(f"{database}: the measurement failed (exit {code})", flush=True)
            continue
        results[database] = json.loads(report.read_text())
        r = results[database]
        print(f"{database}: {r['runs']} runs drained in {r['drain_seconds']:.1f} s "
              f"({time.monotonic() - began:.0f} s in all)", flush=True)
    if not results:
        return 1
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    lines = [f"crm-automation storage growth {stamp}, commit {commit}: "
             + ", ".join(f"{d} {r['runs']} runs" for d, r in results.items())
             + " (3-action workflow: create_task + update_field + send_email; ORM broker, 1 cluster)", "",
             report_table(results)]
    if "sqlite" in results:
        before, after = results["sqlite"]["file"]
        lines.append(f"\nSQLite database file: {before / MB:.2f} MB → {after / MB:.2f} MB after a WAL checkpoint: "
                     f"{(after - before) / MB / (results['sqlite']['runs'] / 1000):.3f} MB per 1,000 runs")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    (RESULTS / f"storage-growth-{stamp}.txt").write_text(text)
    print(f"written to {RESULTS / f'storage-growth-{stamp}.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
