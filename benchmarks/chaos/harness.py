"""What every scenario shares: the environment of the worker and mover processes, where files go,
sizes, and the small steps most scenarios take (make a backlog, wait for progress, kill)."""

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.chaos.checks import Row, finished_count
from benchmarks.chaos.data import OrgData, write_ids
from benchmarks.chaos.procs import Cluster, Kill, run_mover

# Inherited variables that would change how a worker behaves are dropped; the harness sets its own.
OWN_PREFIXES = ("AUTOMATION_", "Q_", "EMAIL_", "REDIS_", "DATABASE_", "DB_", "SQLITE_")
SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_TIMEOUT = 5


@dataclass
class Harness:
    database_url: str
    redis_url: str
    out: Path  # this run's directory for logs, id files and reports
    quick: bool = False
    workers: int = 2
    wait: float = 90.0  # how long a scenario waits for the workers after its fault
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def path(self, name: str) -> Path:
        return self.out / name

    def env(self, *, broker: str = "orm", smtp_port: int | None = None, **extra: str) -> dict:
        """Environment of a qcluster or mover: the chaos database; the ORM broker, or Redis
        (`broker="redis"`), or any Redis URL (a dead or hanging one); email through the fake
        SMTP server when `smtp_port` is given."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
        env.update(DATABASE_URL=self.database_url, DJANGO_SETTINGS_MODULE="config.settings",
                   Q_WORKERS=str(self.workers), Q_CLUSTER_NAME="crm-chaos", AUTOMATION_NUDGE="1",
                   LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
        if broker == "redis":
            env["REDIS_URL"] = self.redis_url
        elif broker.startswith("redis://"):
            env["REDIS_URL"] = broker
        if smtp_port is not None:
            env.update(EMAIL_BACKEND=SMTP_BACKEND, EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp_port),
                       EMAIL_TIMEOUT=str(EMAIL_TIMEOUT))
        else:
            env["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
        env.update(extra)
        return env

    def cluster(self, env: dict, tag: str) -> Cluster:
        return Cluster(env=env, log=self.path(f"{tag}.log"), workers=self.workers).start()

    def move(self, env: dict, data: OrgData, tag: str, ids: list[str] | None = None, **kwargs):
        """Move the org's deals (or `ids`) to won from one mover process; raise if it failed."""
        ids_file = write_ids(self.path(f"{tag}.ids"), data.deal_ids if ids is None else ids)
        result = run_mover(env, ids_file, self.path(f"{tag}.json"), **kwargs)
        if result.returncode != 0:
            raise RuntimeError(f"mover {tag} exited with {result.returncode}")
        return result


def wait_progress(org_ids: list[int], target: int, timeout: float = 60) -> int:
    """Until at least `target` runs have finished; returns how many had."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = finished_count(org_ids)
        if done >= target:
            return done
        time.sleep(0.02)
    raise RuntimeError(f"the cluster finished fewer than {target} runs in {timeout:.0f}s")


def busy_worker(cluster: Cluster, rng: random.Random, patience: float = 2.0) -> int:
    """A worker that is processing a task (any worker if none is, after `patience` seconds)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        busy = cluster.worker_pids(busy_only=True)
        if busy:
            return rng.choice(busy)
        time.sleep(0.01)
    workers = cluster.worker_pids()
    if not workers:
        raise RuntimeError("the cluster has no worker to kill")
    return rng.choice(workers)


def describe_kills(row: Row, kills: list[Kill]) -> None:
    for kill in kills:
        row.notes.append(f"killed pid {kill.pid} ({kill.role}{', mid-delivery' if kill.in_delivery else ''}): "
                         f"{kill.title}")
