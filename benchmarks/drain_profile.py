#!/usr/bin/env python
"""Where a worker's CPU goes: n waiting stage changes drained in this one process under cProfile.

    .venv/bin/python benchmarks/drain_profile.py [--n 2000] [--top 40] [--sort tottime]
    .venv/bin/python benchmarks/drain_profile.py --single 150     # one change at a time instead

PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/crm_profile, created
and dropped here), Django's in-memory email (`--email smtp`: to the benchmarks' SMTP server, as
in (b)), no broker: `drain_events(fan_out=False)` claims,
dispatches and executes every run right here. Prints the process CPU per run with the profiler
off (a first drain) and on (a second one), the statements per run, and the profile's top rows.

`--single K`: the light-load case instead, K times one stage change and then its drain (a
worker woken for that one event, `fan_out=True` as in a worker; one event queues no other
task), and the median wall time, CPU and statements of those drains:
what a single change pays between "claimed" and "run completed" before any broker or process hop.
"""

import argparse
import atexit
import cProfile
import os
import pstats
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

parser = argparse.ArgumentParser()
parser.add_argument("--n", type=int, default=2000)
parser.add_argument("--top", type=int, default=40)
parser.add_argument("--repeat", type=int, default=3, help="drains without the profiler (the median is printed)")
parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
parser.add_argument("--callers", default="", help="also print the callers of functions matching this regex")
parser.add_argument("--single", type=int, default=0, help="time K drains of one event each instead")
parser.add_argument("--plans", action="store_true",
                    help="with --single: then one more drain with each statement's EXPLAIN ANALYZE (planning "
                         "and execution on the server), on this warm connection, rolled back")
parser.add_argument("--statements", action="store_true",
                    help="with --single: list the last drain's statements, each with its round trip and the "
                         "Python time before it")
parser.add_argument("--email", choices=["locmem", "smtp"], default="locmem",
                    help="locmem: Django's in-memory backend (default); smtp: to the benchmarks' SMTP server in a "
                         "process of its own, as in run.py's (b) (locmem copies every message: CPU (b) does not spend)")
parser.add_argument("--profile", action="store_true",
                    help="with --single: the drains under cProfile, and the profile's top rows (--top, --sort)")
ARGS = parser.parse_args()

DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crm_profile")
DB_NAME = DB_URL.rsplit("/", 1)[1]
for key in [k for k in os.environ if k.startswith(("AUTOMATION_", "EMAIL_", "REDIS_", "DATABASE_"))]:
    del os.environ[key]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.update(LOG_LEVEL="WARNING", DATABASE_URL=DB_URL,
                  DB_POOL="0", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
if ARGS.email == "smtp":
    from benchmarks.instruments import SmtpSink

    SINK = SmtpSink(Path(tempfile.mkdtemp(prefix="drain-profile-")) / "smtp.jsonl")
    atexit.register(SINK.stop)
    os.environ.update(EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend", EMAIL_HOST="127.0.0.1",
                      EMAIL_PORT=str(SINK.port), EMAIL_TIMEOUT="5")

import psycopg  # noqa: E402

with psycopg.connect(DB_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
    admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{DB_NAME}"')

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

call_command("migrate", verbosity=0)

from crm_automation.automation.models import WorkflowRun  # noqa: E402
from crm_automation.automation.runtime.tasks import drain_events  # noqa: E402
from crm_automation.automation.services.workflows import workflow_create, workflow_transition  # noqa: E402
from crm_automation.crm.models import Contact, Deal, Organization, Stage  # noqa: E402
from crm_automation.crm.services import deal_move_to_stage  # noqa: E402

THREE_ACTIONS = [
    {"type": "create_task", "config": {"title": "Kick off {{deal.title}}", "due_in_days": 2}},
    {"type": "update_field", "config": {"field": "probability", "value": 100}},
    {"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Welcome {{deal.title}}",
                                      "body": "Hi {{deal.contact.first_name}}"}},
]


def backlog(slug: str, n: int) -> Organization:
    org = Organization.objects.create(name=slug, slug=slug, plan="enterprise")
    stages = {s: Stage.objects.create(organization=org, slug=s, name=s, order=i, is_won=s == "won")
              for i, s in enumerate(["new", "proposal", "won"])}
    wf = workflow_create(organization=org, name="kickoff", trigger_type="deal_stage_change",
                         trigger_config={"to_stage": "won"}, actions=THREE_ACTIONS)
    workflow_transition(workflow_id=wf.pk, name="activate", by=None)
    contact = Contact.objects.create(organization=org, first_name="Ada", email="ada@example.com")
    Deal.objects.bulk_create([Deal(organization=org, title=f"Deal {i}", stage=stages["proposal"], contact=contact)
                              for i in range(n)], batch_size=1000)
    for deal in Deal.objects.filter(organization=org).select_related("stage"):
        deal_move_to_stage(deal=deal, stage=stages["won"])
    return org


def drained(org: Organization, n: int, profiler: cProfile.Profile | None) -> tuple[float, int]:
    cpu = time.process_time()
    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        if profiler:
            profiler.enable()
        drain_events(fan_out=False, stop_at=time.monotonic() + 3600)
        if profiler:
            profiler.disable()
    cpu = time.process_time() - cpu
    done = WorkflowRun.objects.filter(organization=org, status="completed").count()
    if done != n:
        raise SystemExit(f"{done} of {n} runs completed")
    return cpu, statements[0]


warm = backlog("warm-up", 50)
drained(warm, 50, None)


def single_drains(k: int) -> None:
    """K times: a deal moves back and on to "won" (one event), then a drain of that one event."""
    org = backlog("single", k)
    stages = {s.slug: s for s in Stage.objects.filter(organization=org)}
    drain_events(fan_out=False, stop_at=time.monotonic() + 3600)
    costs: list[tuple[float, float, int]] = []
    statements = [0]
    trace: list[tuple[float, float, str]] = []  # (start, end, statement) of the current drain

    def count(execute, sql, params, many, context):
        statements[0] += 1
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            trace.append((start, time.perf_counter(), " ".join(sql.split())))

    profiler = cProfile.Profile() if ARGS.profile else None
    for deal in Deal.objects.filter(organization=org).select_related("stage"):
        deal_move_to_stage(deal=deal, stage=stages["proposal"])
        drain_events(fan_out=False, stop_at=time.monotonic() + 3600)  # (the move back matches nothing)
        deal.refresh_from_db()
        deal_move_to_stage(deal=deal, stage=stages["won"])
        statements[0] = 0
        trace.clear()
        wall, cpu = time.perf_counter(), time.thread_time()
        with connection.execute_wrapper(count):  # as a worker drains (one event: nothing is enqueued)
            if profiler:
                profiler.enable()
            drain_events(fan_out=True, stop_at=time.monotonic() + 3600)
            if profiler:
                profiler.disable()
        costs.append((1000 * (time.perf_counter() - wall), 1000 * (time.thread_time() - cpu), statements[0]))
        end = time.perf_counter()
    done = WorkflowRun.objects.filter(organization=org, status="completed").count()
    if done != 2 * k:
        raise SystemExit(f"{done} of {2 * k} runs completed")
    print(f"one event a drain, {k} drains: median wall {statistics.median(c[0] for c in costs):.2f} ms, "
          f"CPU {statistics.median(c[1] for c in costs):.2f} ms, {statistics.median(c[2] for c in costs):.0f} "
          "statements")
    if ARGS.statements:
        print(f"\nthe last drain ({1000 * (end - wall):.2f} ms): Python before the statement, its round trip, ms")
        before = wall
        for start, stop, sql in trace:
            print(f"  {1000 * (start - before):6.2f} {1000 * (stop - start):6.2f}  {sql[:110]}")
            before = stop
        print(f"  {1000 * (end - before):6.2f}         (after the last statement)")
    if profiler:
        print(f"\nthe {k} drains under cProfile (the figures above include its overhead), by {ARGS.sort}:")
        stats = pstats.Stats(profiler)
        stats.sort_stats(ARGS.sort).print_stats(ARGS.top)
        if ARGS.callers:
            stats.print_callers(ARGS.callers)
    if ARGS.plans:
        server_times(org, stages)


class _Undo(Exception):
    pass


def server_times(org: Organization, stages: dict[str, Stage]) -> None:
    """One more single-change drain, each statement first run under EXPLAIN ANALYZE in a savepoint
    rolled back: what PostgreSQL spends planning and executing it, against the round trips above.
    All in one transaction, rolled back at the end (the drain's own commits become savepoints)."""
    timed: list[tuple[float, float, str]] = []

    def explain(execute, sql, params, many, context):
        if sql.lstrip()[:6].upper() in ("SELECT", "UPDATE", "INSERT", "DELETE") or sql.lstrip()[:4].upper() == "WITH":
            with connection.cursor() as cursor:
                cursor.execute("SAVEPOINT plan_probe")
                try:
                    cursor.execute("EXPLAIN (ANALYZE, SUMMARY) " + sql, params)
                    out = "\n".join(row[0] for row in cursor.fetchall())
                    timed.append((float(re.search(r"Planning Time: ([\d.]+)", out).group(1)),
                                  float(re.search(r"Execution Time: ([\d.]+)", out).group(1)), " ".join(sql.split())))
                finally:
                    cursor.execute("ROLLBACK TO SAVEPOINT plan_probe")
        return execute(sql, params, many, context)

    deal = Deal.objects.filter(organization=org).select_related("stage")[0]
    try:
        with transaction.atomic():
            deal_move_to_stage(deal=deal, stage=stages["proposal"])
            drain_events(fan_out=False, stop_at=time.monotonic() + 3600)
            deal.refresh_from_db()
            deal_move_to_stage(deal=deal, stage=stages["won"])
            with connection.execute_wrapper(explain):
                drain_events(fan_out=True, stop_at=time.monotonic() + 3600)
            raise _Undo
    except _Undo:
        pass
    print(f"\nthe same drain on the server (EXPLAIN ANALYZE, warm connection): planning "
          f"{sum(t[0] for t in timed):.2f} ms, execution {sum(t[1] for t in timed):.2f} ms for {len(timed)} "
          "statements; each: planning, execution, ms")
    for plan, run, sql in timed:
        print(f"  {plan:6.3f} {run:6.3f}  {sql[:110]}")


def drop_database() -> None:
    connection.close()
    with psycopg.connect(DB_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


if ARGS.single:
    single_drains(ARGS.single)
    drop_database()
    raise SystemExit(0)
costs = []
for i in range(ARGS.repeat):
    plain = backlog(f"plain-{i}", ARGS.n)
    cpu, statements = drained(plain, ARGS.n, None)
    costs.append(1000 * cpu / ARGS.n)
print(f"profiler off: {ARGS.n} runs a drain, CPU ms per run {', '.join(f'{c:.2f}' for c in costs)} → median "
      f"{statistics.median(costs):.2f}; {statements / ARGS.n:.1f} statements per run")
profiled = backlog("profiled", ARGS.n)
profiler = cProfile.Profile(time.process_time)  # CPU only: waiting for PostgreSQL is not counted
cpu, _ = drained(profiled, ARGS.n, profiler)
print(f"profiler on:  {1000 * cpu / ARGS.n:.2f} ms CPU per run\n")
stats = pstats.Stats(profiler).sort_stats(ARGS.sort)
stats.print_stats(ARGS.top)
if ARGS.callers:
    stats.print_callers(ARGS.callers)
drop_database()
