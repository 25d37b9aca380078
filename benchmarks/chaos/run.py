#!/usr/bin/env python
"""Fault harness: break a real qcluster on purpose and check that no trigger, run or email is
lost or doubled.

    make chaos                                         # every scenario (≈ 4 minutes on 2 cores)
    .venv/bin/python benchmarks/chaos/run.py --only 1,3 --quick
    .venv/bin/python benchmarks/chaos/run.py --only 1,2,3 --repeat 3   # hunt rare races
    make chaos CHAOS_ARGS="--only 7"

It uses PostgreSQL at 127.0.0.1 in its own database (CHAOS_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/crm_chaos, dropped and recreated at start, emptied before
each scenario) and Redis db 14 at 127.0.0.1 (flushed before each scenario; nothing else is
touched). Email goes to a fake SMTP server on 127.0.0.1 (smtp_sink.py) that logs every message
it accepts. Workers are real `manage.py qcluster` processes (Q_WORKERS=2) and the changes are
made by separate "mover" processes (mover.py) calling `deal_move_to_stage`. Each organization
has a workflow deal → won: create_task + update_field (probability 100) + send_email to
{{deal.contact.email}}. Every subprocess is killed at the end, even on Ctrl-C; --time-limit
stops the whole run.

Scenarios (--only takes numbers or keys, e.g. 1,3 or 1-redis):
  1  kill -9 of one busy worker mid-drain (ORM broker, Redis broker);
  2  kill -9 of the whole qcluster process group mid-drain, then a new cluster (ORM, Redis);
  3  kill -9 of a worker while it hands an email to SMTP (the server takes 0.3 s per message);
  4  processes that move a deal and os._exit(0) right after the commit (no nudge ever sent):
     only the workers' watchdog can find those events;
  5  the saving process's broker is unreachable (closed port) or hangs (accepts, never
     answers): its exit may take at most 2 s longer than with a working broker, and a cluster
     on a working broker processes every event;
  6  4 processes move the same 20 deals to won at the same instant: exactly 20 runs, tasks, emails;
  7  admin description saves and Pause/Activate presses race a drain; then rounds of
     simultaneous activations in a Pro organization (limit 10);
  8  a hostile organization (emails to a domain the SMTP server stalls on; a stored template
     "{{" + 5,000 spaces) next to a normal one; the normal org's time is compared with its
     time alone. live: triggers at the same instant while the cluster runs; backlog: H's then
     N's triggers wait in the outbox when the cluster starts (a restart, or busy workers);
  9  a noisy organization H starts 30 runs of about 5,000 steps in two bulk actions and
     posts 600 signed inbound webhooks while a normal one N saves a deal every second: each of
     N's runs finishes at most 5 s later than the same saves on the idle cluster (long_runs.py);
  10 kill -9 of a worker while it hands SMS to a Twilio stand-in (0.3 s per message), each
     deal's run waiting for its contact's reply, the replies arriving while it is dead: no SMS
     sent twice, at most one unknown per killed worker, no reply lost (sms_scenario.py).

Columns (per row, over the organizations the scenario owns):
  events lost      events never processed or set aside with an error, plus stage changes
                   that left no event;
  runs missing     (event, workflow that should run) pairs without a run; in 7, a "paused"
                   decision explains a missing run;
  runs doubled     more than one run per (event, workflow), or per (deal, workflow);
  effects doubled  more than one task / field change / email per run, plus Message-IDs the
                   SMTP server accepted more than once;
  never sent       emails left queued or sending, failed without an attempt, completed runs
                   without an email, and emails marked sent that the server never received;
  unknown          emails whose outcome is unknown / how many workers were killed while
                   delivering (the most allowed; "-": not judged);
  recovery s       from the fault to the last run finished (in parentheses: shown, not judged).
A row passes with 0 in the first five columns, unknown within its allowance, recovery < 30 s,
and its own checks (listed under the table). The table is also written to
benchmarks/results/chaos-<timestamp>.txt, next to a folder with the cluster and SMTP logs.
"""

import argparse
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DB_URL = os.environ.get("CHAOS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crm_chaos")
REDIS_URL = "redis://127.0.0.1:6379/14"
RESULTS = ROOT / "benchmarks" / "results"


class TimeLimit(BaseException):
    """The run's overall time limit: not an Exception, so no scenario swallows it."""


def configure_environment() -> None:
    """The harness process: the chaos database, no nudges (it makes no trigger itself)."""
    host = urlsplit(DB_URL).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"CHAOS_DATABASE_URL must point at 127.0.0.1, not {host}")
    for key in [k for k in os.environ if k.startswith(("REDIS_", "AUTOMATION_", "Q_", "EMAIL_"))]:
        del os.environ[key]
    os.environ.update(DATABASE_URL=DB_URL, DJANGO_SETTINGS_MODULE="config.settings", AUTOMATION_NUDGE="0",
                      LOG_LEVEL="WARNING", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")


def recreate_database(url: str = DB_URL) -> None:
    """Drop and create the database of `url` (a benchmark's own, on the local server)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5).flushdb()


def scenarios() -> dict[str, tuple[str, Callable]]:
    from benchmarks.chaos import scenarios as s
    from benchmarks.chaos.admin_race import admin_race
    from benchmarks.chaos.long_runs import long_runs_neighbour
    from benchmarks.chaos.sms_scenario import kill_mid_sms

    return {
        "1-orm": ("1 kill -9 one worker (orm)", partial(s.kill_one_worker, broker="orm")),
        "1-redis": ("1 kill -9 one worker (redis)", partial(s.kill_one_worker, broker="redis")),
        "2-orm": ("2 kill -9 whole cluster (orm)", partial(s.kill_whole_cluster, broker="orm")),
        "2-redis": ("2 kill -9 whole cluster (redis)", partial(s.kill_whole_cluster, broker="redis")),
        "3": ("3 kill -9 worker mid-delivery", s.kill_mid_delivery),
        "4": ("4 os._exit right after commit", s.exit_after_commit),
        "5": ("5 broker down/hanging for the saver", s.broker_faults),
        "6": ("6 racing movers", s.racing_movers),
        "7": ("7 admin race", admin_race),
        "8-live": ("8 hostile neighbour, live", partial(s.hostile_neighbour, backlog=False)),
        "8-backlog": ("8 hostile neighbour, backlog", partial(s.hostile_neighbour, backlog=True)),
        "9": ("9 long runs neighbour", long_runs_neighbour),
        "10": ("10 kill -9 worker mid-SMS, replies during the kill", kill_mid_sms),
    }


def selected(keys: list[str], only: str) -> list[str]:
    if not only:
        return keys
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    chosen = [k for k in keys if any(k == w or k.split("-")[0] == w for w in wanted)]
    if not chosen:
        raise SystemExit(f"--only {only}: no such scenario; choose from {', '.join(keys)}")
    return chosen


def run_one(title: str, scenario: Callable, harness, suffix: str = "") -> list:
    from benchmarks.chaos.checks import Row
    from benchmarks.chaos.data import reset_database

    started = time.monotonic()
    print(f"\n== {title}{suffix}", flush=True)
    try:
        reset_database()
        flush_redis()
        rows = scenario(harness)
    except Exception as exc:
        traceback.print_exc()
        rows = [Row(title, crashed=f"{type(exc).__name__}: {exc}"[:300])]
    for row in rows:
        row.name += suffix
        failures = row.failures()
        print(f"   {'PASS' if not failures else 'FAIL'}  {row.name}" + (f": {'; '.join(failures)}" if failures else ""))
    print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    return rows


COLUMNS = ["scenario", "events lost", "runs missing", "runs doubled", "effects doubled", "never sent",
           "unknown/allowed", "recovery s", "result"]


def cells(row) -> list[str]:
    if row.crashed:
        return [row.name, *["-"] * 7, "FAIL"]
    allowed = "-" if row.unknown_limit is None else str(row.unknown_limit)
    if row.timed_out:
        recovery = "TIMEOUT"
    elif row.recovery is None:
        recovery = "-"
    else:
        recovery = f"{row.recovery:.1f}" if row.recovery_limit is not None else f"({row.recovery:.1f})"
    return [row.name, str(row.events_lost), str(row.runs_missing), str(row.runs_doubled), str(row.effects_doubled),
            str(row.never_sent), f"{row.unknown}/{allowed}", recovery, "PASS" if row.ok else "FAIL"]


def format_table(rows: list) -> str:
    table = [COLUMNS, *[cells(r) for r in rows]]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths,
                                                                                               strict=True)))

    return "\n".join([line(COLUMNS), "  ".join("-" * w for w in widths), *[line(c) for c in table[1:]]])


def format_details(rows: list) -> str:
    out = []
    for row in rows:
        out.append(f"{'PASS' if row.ok else 'FAIL'}  {row.name}")
        out += [f"    failed: {f}" for f in row.failures()]
        out += [f"    [{'ok' if c.ok else 'FAILED'}] {c.label}: {c.detail}" for c in row.checks]
        out += [f"    - {note}" for note in row.notes]
    return "\n".join(out)


def start_time_limit(seconds: float) -> None:
    """SIGALRM raises TimeLimit in the main thread; if that does not end the run within a
    minute, a last thread kills every subprocess and exits."""
    from benchmarks.chaos.procs import PROCESSES

    def alarm(signum, frame):
        raise TimeLimit(f"the overall time limit of {seconds:.0f} s was reached")

    def last_resort():
        time.sleep(seconds + 60)
        print("\nchaos: time limit + 60 s, killing everything", file=sys.stderr, flush=True)
        PROCESSES.kill_all()
        os._exit(3)

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(int(seconds))
    threading.Thread(target=last_resort, daemon=True).start()


def main() -> int:
    parser = argparse.ArgumentParser(description="Fault harness for crm-automation (see the module docstring).")
    parser.add_argument("--only", default="", help="scenarios: numbers or keys, comma separated (1,3 or 1-redis)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (lease waits stay)")
    parser.add_argument("--repeat", type=int, default=1, help="run the selected scenarios this many times")
    parser.add_argument("--workers", type=int, default=2, help="Q_WORKERS of every cluster (default 2)")
    parser.add_argument("--wait", type=float, default=90, help="seconds a scenario waits for the workers")
    parser.add_argument("--time-limit", type=float, default=1500, help="seconds for the whole run")
    args = parser.parse_args()

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM → KeyboardInterrupt → finally
    start_time_limit(args.time_limit)
    configure_environment()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS / f"chaos-{stamp}"
    out.mkdir(parents=True, exist_ok=True)

    from benchmarks.chaos.procs import PROCESSES

    rows: list = []
    began = time.monotonic()
    try:
        recreate_database()
        import django

        django.setup()
        from django.core.management import call_command

        from benchmarks.chaos.harness import Harness

        call_command("migrate", verbosity=0)
        harness = Harness(database_url=DB_URL, redis_url=REDIS_URL, out=out, quick=args.quick,
                          workers=args.workers, wait=args.wait)
        table = scenarios()
        keys = selected(list(table), args.only)
        print(f"chaos: {len(keys)} scenario(s) on {DB_URL} and {REDIS_URL}; {os.cpu_count()} cores; "
              f"Q_WORKERS={args.workers}{'; quick sizes' if args.quick else ''}; logs in {out}")
        for round_ in range(1, args.repeat + 1):
            for key in keys:
                title, scenario = table[key]
                rows += run_one(title, scenario, harness, f" #{round_}" if args.repeat > 1 else "")
    except (TimeLimit, KeyboardInterrupt) as exc:
        from benchmarks.chaos.checks import Row

        rows.append(Row("(run stopped)", crashed=str(exc) or type(exc).__name__))
    finally:
        signal.alarm(0)
        PROCESSES.kill_all()
    elapsed = time.monotonic() - began
    report = (f"crm-automation chaos run {stamp}: {elapsed / 60:.1f} min, {os.cpu_count()} cores, "
              f"Q_WORKERS={args.workers}{', quick' if args.quick else ''}\n\n{format_table(rows)}\n\n"
              f"{format_details(rows)}\n")
    print("\n" + report)
    (RESULTS / f"chaos-{stamp}.txt").write_text(report)
    print(f"written to {RESULTS / f'chaos-{stamp}.txt'}")
    return 0 if rows and all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
