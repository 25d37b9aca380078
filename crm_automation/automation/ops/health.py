"""Is this deployment healthy? For load balancers (/healthz, /readyz) and operators
(`manage.py automation_status`).

Readiness asks, each check bounded and independent of the others' failure:
- database: a `SELECT 1` on the default connection;
- broker: Redis answers PING (the ORM broker is the database: its queue table is read);
- migrations: every migration this code knows is applied (a web server started before
  `migrate` finished, or code newer than the schema, is not ready);
- backlog: changes in the outbox not processed yet, and the oldest one's age, below
  HEALTH["MAX_BACKLOG"] and HEALTH["MAX_EVENT_AGE_SECONDS"] (0 turns a limit off): above
  them the workers are not keeping up, or none is running.

The operator's status adds what a person diagnosing a problem asks first, so an incident is
diagnosed in minutes: the backlog per organization, runs under way, waiting and due, failed
runs in the last hour, and the workers seen recently (their heartbeats, watchdog.py).
"""

import os
import socket
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Min
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent, RunStatus, WorkerHeartbeat, WorkflowRun

MIGRATIONS_CACHE_SECONDS = 30  # reading the migration graph costs ~0.1 s; a probe comes every few seconds


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    ms: float = 0.0
    data: dict = field(default_factory=dict)


def _timed(name: str, probe) -> Check:
    started = time.monotonic()
    try:
        ok, detail, data = probe()
    except Exception as exc:  # an outage is an answer, not a crash: say what failed
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        ok, detail, data = False, f"{type(exc).__name__}: {first_line}", {}
        if isinstance(exc, DatabaseError):
            connection.close()  # the next probe reconnects instead of reusing a broken connection
    return Check(name, ok, detail, round((time.monotonic() - started) * 1000, 1), data)


def _database():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return True, f"{connection.vendor} answers", {}


def broker_name() -> str:
    return "redis" if settings.Q_CLUSTER.get("redis") else "orm"


def _broker():
    from django_q.brokers import get_broker

    broker = get_broker()
    if broker_name() == "redis":
        broker.connection.ping()
        return True, "Redis answers", {"queued_tasks": broker.queue_size()}
    return True, "the ORM broker (the database's django_q_ormq table)", {"queued_tasks": broker.queue_size()}


_migrations_ok_until = 0.0


def _migrations():
    global _migrations_ok_until
    if time.monotonic() < _migrations_ok_until:
        return True, "all applied", {}
    executor = MigrationExecutor(connection)
    unapplied = [f"{m.app_label}.{m.name}" for m, _ in executor.migration_plan(executor.loader.graph.leaf_nodes())]
    if unapplied:
        return False, f"{len(unapplied)} not applied: run `manage.py migrate`", {"unapplied": unapplied[:20]}
    _migrations_ok_until = time.monotonic() + MIGRATIONS_CACHE_SECONDS
    return True, "all applied", {}


def _backlog():
    limits = settings.HEALTH
    max_count, max_age = limits["MAX_BACKLOG"], limits["MAX_EVENT_AGE_SECONDS"]
    pending = AutomationEvent.objects.filter(processed_at__isnull=True)
    # Count at most one past the limit: a backlog of a million costs what one of a thousand does.
    cap = max_count + 1 if max_count else 100_001
    count = pending.values("pk")[:cap].count()
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    age = round((timezone.now() - oldest).total_seconds(), 1) if oldest else 0.0
    data = {"events": count, "oldest_event_age_seconds": age, "max_events": max_count,
            "max_oldest_event_age_seconds": max_age}
    problems = []
    if max_count and count > max_count:
        problems.append(f"more than {max_count} changes wait in the outbox")
    if max_age and age > max_age:
        problems.append(f"the oldest change has waited {age:.0f} s (limit {max_age} s)")
    if problems:
        return False, "; ".join(problems) + ": are the workers running?", data
    return True, f"{count} waiting, oldest {age:.0f} s" if count else "nothing waiting", data


def readiness() -> tuple[bool, list[Check]]:
    database = _timed("database", _database)
    checks = [database, _timed("broker", _broker)]
    if database.ok:
        checks += [_timed("migrations", _migrations), _timed("backlog", _backlog)]
    else:
        checks += [Check(name, False, "not checked: the database does not answer")
                   for name in ("migrations", "backlog")]
    return all(c.ok for c in checks), checks


def readiness_body(ok: bool, checks: list[Check]) -> dict:
    return {"status": "ready" if ok else "unready",
            "checks": {c.name: {"ok": c.ok, "detail": c.detail, "ms": c.ms, **c.data} for c in checks}}


# --- Workers' heartbeats ----------------------------------------------------------------------
def heartbeat(started_at) -> None:
    """A worker process says it is alive (called by its watchdog thread)."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        host=socket.gethostname()[:255], pid=os.getpid(),
        defaults={"cluster": settings.Q_CLUSTER["name"][:100], "started_at": started_at, "seen_at": now})
    WorkerHeartbeat.objects.filter(seen_at__lt=now - timedelta(days=1)).delete()


def workers_seen(now=None) -> list[WorkerHeartbeat]:
    """Workers whose heartbeat came within three beats."""
    now = now or timezone.now()
    recent = now - timedelta(seconds=3 * settings.HEALTH["HEARTBEAT_SECONDS"])
    return list(WorkerHeartbeat.objects.filter(seen_at__gte=recent).order_by("host", "pid"))


# --- The operator's status --------------------------------------------------------------------
@dataclass
class Status:
    ready: bool
    checks: list[Check]
    backlog: list[dict]
    runs: dict
    workers: list[dict]

    def as_data(self) -> dict:
        return {**readiness_body(self.ready, self.checks), "backlog_by_organization": self.backlog,
                "runs": self.runs, "workers": self.workers}


def status() -> Status:
    ready, checks = readiness()
    by_name = {c.name: c for c in checks}
    if not (by_name["database"].ok and by_name["migrations"].ok):
        return Status(ready, checks, [], {}, [])  # the tables may not be there
    now = timezone.now()
    pending = (AutomationEvent.objects.filter(processed_at__isnull=True).values("organization__slug")
               .annotate(events=Count("id"), first=Min("created_at")).order_by("-events"))
    backlog = [{"organization": row["organization__slug"], "events": row["events"],
                "oldest_event_age_seconds": round((now - row["first"]).total_seconds(), 1)} for row in pending]
    live = WorkflowRun.objects.filter(simulated=False)
    runs = {
        "under_way": live.filter(status=RunStatus.STARTED).count(),
        "waiting": live.filter(status=RunStatus.WAITING).count(),
        "wake_ups_due": live.filter(status=RunStatus.WAITING, wake_at__lte=now).count(),
        "paused": live.filter(status=RunStatus.PAUSED).count(),
        "failed_last_hour": live.filter(status__in=[RunStatus.FAILED, RunStatus.PARTIAL],
                                        finished_at__gte=now - timedelta(hours=1)).count(),
        "abandoned": _abandoned(),
    }
    workers = [{"host": w.host, "pid": w.pid, "cluster": w.cluster, "up_since": w.started_at.isoformat(),
                "seen_seconds_ago": round((now - w.seen_at).total_seconds(), 1)} for w in workers_seen(now)]
    return Status(ready, checks, backlog, runs, workers)


def _abandoned() -> int:
    from crm_automation.automation.runtime.tasks import abandoned_runs

    return abandoned_runs().count()
