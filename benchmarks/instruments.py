"""What benchmarks/run.py measures with, apart from the code under test: the CPU of a qcluster's
process tree, PostgreSQL's commit and row counters, a local SMTP server, and the qcluster itself
(started, paused, let go, stopped). Standard library and psycopg only, no Django: run.py uses it
against any tree (the current one or a baseline checkout, see compare.py).

How the counters stay exact. PostgreSQL 15+ keeps a backend's statistics in memory and flushes
them at most once a second while it is busy, or after 10 s once it is idle, or when it exits. So:
- our own statistics connection asks pg_stat_force_next_flush() before each snapshot (its own
  three statements per window are taken off);
- the bench process's Django connection does the same before a snapshot (`flush_own`), and its
  polls are counted and taken off (`PollCount`);
- the bench process runs without a connection pool, so the nudger thread's connection closes
  (and flushes) after a second of idleness (`wait_sessions`);
- a window ends after the qcluster has exited: its backends flush as they close. A window
  starts at least IDLE_FLUSH seconds after the qcluster's start-up, once its idle backends have
  flushed what start-up wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
BENCH_APP = "crm-bench"  # application_name of the bench process's sessions (PGAPPNAME)
CLUSTER_APP = "crm-bench-cluster"
STATS_APP = "crm-bench-stats"
IDLE_FLUSH = 11.0  # PostgreSQL flushes an idle backend's statistics after 10 s (PGSTAT_IDLE_INTERVAL)


def modules_elsewhere(tree: Path) -> list[str]:
    """The project's modules this process imported from anywhere but `tree` (an editable install
    of another checkout would supply what `tree` lacks)."""
    strays = []
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] not in ("crm_automation", "config"):
            continue
        file = getattr(module, "__file__", None)
        places = [file] if file else list(getattr(module, "__path__", []))
        if any(not Path(p).resolve().is_relative_to(tree) for p in places):
            strays.append(name)
    return strays


# --- the CPU of a process tree ------------------------------------------------------------------
def _stat_fields(pid: str) -> list[str] | None:
    """/proc/<pid>/stat after the command name (which may hold spaces and parentheses)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def group_members(pgid: int) -> list[int]:
    """The live processes of a process group (a qcluster started in its own session)."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (fields := _stat_fields(entry.name)) and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_cpu(pgid: int) -> float:
    """User + system CPU seconds of a process group: each member's own time plus that of the
    children it has reaped (a worker django-q2 replaced is counted in its parent)."""
    total = 0
    for pid in group_members(pgid):
        fields = _stat_fields(str(pid))
        if fields:  # utime, stime, cutime, cstime: fields 14–17 of stat(5)
            total += sum(int(v) for v in fields[11:15])
    return total / CLK_TCK


# --- PostgreSQL's counters ----------------------------------------------------------------------
@dataclass
class Snapshot:
    commits: int
    tables: dict[str, tuple[int, int, int]]  # relname → rows inserted, updated, deleted so far


class PgCounters:
    """Snapshots of pg_stat_database.xact_commit and pg_stat_user_tables for the bench database,
    from a connection of its own."""

    OWN_COMMITS = 3  # per window: the two reads of the first snapshot, the flush of the second

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True, application_name=STATS_APP)
        if self.conn.info.server_version < 150000:
            raise SystemExit("the per-run counters need PostgreSQL 15+ (pg_stat_force_next_flush)")

    def snapshot(self) -> Snapshot:
        self.conn.execute("SELECT pg_stat_force_next_flush()")
        commits = self._value("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        tables = {name: (i, u, d) for name, i, u, d in self.conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables")}
        return Snapshot(commits=commits, tables=tables)

    def statements_available(self) -> bool:
        """pg_stat_statements counts statements only when preloaded by the server."""
        return "pg_stat_statements" in self._value("SHOW shared_preload_libraries")

    def _value(self, sql: str) -> Any:
        """The one value a query answers."""
        row = self.conn.execute(sql).fetchone()
        assert row is not None
        return row[0]

    def close(self) -> None:
        self.conn.close()


class PollCount:
    """A Django execute_wrapper counting the bench's own statements (one commit each in
    autocommit), to take them off the database's counters."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, execute, sql, params, many, context):
        self.n += 1
        return execute(sql, params, many, context)


@dataclass
class Cost:
    """Per run: the qcluster's CPU, commits and rows written in a window."""

    runs: int
    commits: float
    inserted: float
    updated: float
    deleted: float
    cpu_ms: float | None = None
    by_table: list[tuple[str, float, float, float]] = field(default_factory=list)

    @property
    def rows(self) -> float:
        return self.inserted + self.updated + self.deleted

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot, runs: int, *, own: int = 0,
                cpu_seconds: float | None = None) -> Cost:
        runs = max(1, runs)
        ins = upd = dele = 0
        by_table = []
        for name, (i, u, d) in after.tables.items():
            bi, bu, bd = before.tables.get(name, (0, 0, 0))
            di, du, dd = i - bi, u - bu, d - bd
            ins, upd, dele = ins + di, upd + du, dele + dd
            if di or du or dd:
                by_table.append((name, di / runs, du / runs, dd / runs))
        by_table.sort(key=lambda t: -(t[1] + t[2] + t[3]))
        commits = after.commits - before.commits - PgCounters.OWN_COMMITS - own
        return cls(runs=runs, commits=commits / runs, inserted=ins / runs, updated=upd / runs, deleted=dele / runs,
                   cpu_ms=None if cpu_seconds is None else cpu_seconds * 1000 / runs, by_table=by_table)

    def rows_text(self) -> str:
        return f"{self.rows:.1f} ({self.inserted:.1f}/{self.updated:.1f}/{self.deleted:.1f})"

    def tables_text(self, top: int = 8) -> str:
        return ", ".join(f"{name} {i:.2f}/{u:.2f}/{d:.2f}" for name, i, u, d in self.by_table[:top])

    def as_dict(self) -> dict:
        return {"cpu_ms": self.cpu_ms, "commits": self.commits, "rows": self.rows, "inserted": self.inserted,
                "updated": self.updated, "deleted": self.deleted, "by_table": self.by_table[:8]}


def cost_table(rows: list[tuple[str, float, Cost]]) -> str:
    """`label | runs/s | worker CPU ms | commits | rows written (ins/upd/del)`, one line per window."""
    head = ("", "runs/s", "worker CPU ms/run", "commits/run", "rows written/run (ins/upd/del)")
    lines = [head] + [(label, f"{rate:.0f}", "-" if c.cpu_ms is None else f"{c.cpu_ms:.2f}", f"{c.commits:.2f}",
                       c.rows_text()) for label, rate, c in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("    " + "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                                        enumerate(zip(line, widths, strict=True))) for line in lines)


def wait_sessions(admin, database: str, app: str, at_most: int, timeout: float = 10) -> None:
    """Until at most `at_most` sessions named `app` are open on `database` (a session that closes
    flushes its counters)."""
    deadline = time.monotonic() + timeout
    while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                        [database, app]).fetchone()[0] > at_most:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{app} sessions still open on {database} after {timeout:.0f} s")
        time.sleep(0.05)


def sessions_busy(admin, database: str, app: str) -> bool:
    """Whether a session named `app` is inside a statement or a transaction."""
    return bool(admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
                              "AND state <> 'idle'", [database, app]).fetchone()[0])


# --- the SMTP server ----------------------------------------------------------------------------
class SmtpSink:
    """benchmarks/chaos/smtp_sink.py in a process of its own (its CPU is not the workers'): it
    accepts every message and logs one line per message."""

    def __init__(self, log: Path) -> None:
        self.log = log
        log.write_text("")
        self.proc = subprocess.Popen([sys.executable, str(HERE / "chaos" / "smtp_sink.py"), "--log", str(log)],
                                     stdout=subprocess.PIPE, start_new_session=True)
        assert self.proc.stdout is not None  # (a pipe: stdout=PIPE)
        line = self.proc.stdout.readline().decode().split()
        self.proc.stdout.close()
        if len(line) != 2 or line[0] != "PORT":
            raise RuntimeError(f"the SMTP sink did not start: {line}")
        self.port = int(line[1])

    def count(self) -> int:
        return sum(1 for line in self.log.read_text().splitlines() if '"message_id"' in line)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- the qcluster -------------------------------------------------------------------------------
class Cluster:
    """`manage.py qcluster` of `tree` (through qcluster_probe.py, which notes the code it imports),
    in its own process group so that its whole tree can be measured, paused and stopped."""

    def __init__(self, tree: Path, env: dict, workers: int, log: Path, probe_log: Path | None = None) -> None:
        self.workers = workers
        self.info = log.with_suffix(".json")
        self.info.unlink(missing_ok=True)
        env = {k: v for k, v in env.items() if k != "DB_POOL"}  # each tree's own default, as in production
        env.update(Q_WORKERS=str(workers), AUTOMATION_NUDGE="1", PGAPPNAME=CLUSTER_APP, PYTHONPATH=str(tree),
                   BENCH_PROBE_INFO=str(self.info))
        if probe_log is not None:
            env["BENCH_PROBE_LOG"] = str(probe_log)
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(HERE / "qcluster_probe.py")], cwd=tree, env=env,
                                         start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        self.paused = False

    def cpu(self) -> float:
        return group_cpu(self.proc.pid)

    def wait_ready(self, timeout: float = 60) -> float:
        """Until every process is up (qcluster, sentinel, pusher, monitor, the workers) and the
        tree's CPU has calmed down (start-up done); returns the time.monotonic() of that moment."""
        deadline = time.monotonic() + timeout
        while len(group_members(self.proc.pid)) < self.workers + 4:
            self._check(deadline)
            time.sleep(0.05)
        last = self.cpu()
        while True:
            self._check(deadline)
            time.sleep(0.3)
            now = self.cpu()
            if now - last <= 0.03:  # under 10 % of a core: polling, not starting
                return time.monotonic()
            last = now

    def _check(self, deadline: float) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"qcluster exited with {self.proc.returncode} (see its log)")
        if time.monotonic() > deadline:
            raise RuntimeError("qcluster did not start in time")

    def imported(self) -> str:
        """crm_automation.__file__ as the qcluster imported it (raises if, once Django was set up,
        any of the project's modules came from outside its working directory)."""
        deadline = time.monotonic() + 10
        while not self.info.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        info = json.loads(self.info.read_text())
        if info["elsewhere"]:
            raise RuntimeError(f"the qcluster imported {info['elsewhere']} from outside its tree")
        return info["crm_automation"]

    def pause(self, busy: Callable[[], bool]) -> float:
        """SIGSTOP the whole tree at a moment none of its sessions is inside a transaction (a
        stopped process must not hold a lock the bench would wait for); returns when."""
        for _ in range(200):
            os.killpg(self.proc.pid, signal.SIGSTOP)
            self.paused = True
            if not busy():
                return time.monotonic()
            self.resume()
            time.sleep(0.05)
        raise RuntimeError("the qcluster's sessions never went idle")

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 30) -> None:
        if self.paused:
            self.resume()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group, or all of it after the timeout
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
