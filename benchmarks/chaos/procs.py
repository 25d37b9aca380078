"""Processes the harness starts, finds and kills: qcluster, the fake SMTP server, movers.

Every subprocess is started in a session of its own (its own process group), so killing the
group reaches its children too, and is registered in PROCESSES, whose `kill_all` the harness
runs in a `finally` (and at exit): nothing outlives the harness, even on Ctrl-C.

A qcluster is a tree: qcluster → sentinel → {worker × Q_WORKERS, monitor, pusher}. django-q2
names them with setproctitle (installed by `make chaos`): "qcluster Process-… idle" or
"… processing <task>" for a worker, "… monitor", "… pusher". Without setproctitle the titles are
all alike and the workers are told apart by spawn order (the sentinel spawns its workers
first, then the monitor and the pusher).
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


class Processes:
    """Every subprocess the harness started, each the leader of its own process group."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []

    def start(self, args: list[str], *, env: dict, log: Path | None = None,
              stdout: int | None = None) -> subprocess.Popen:
        logged = log.open("ab") if log is not None else None
        out = logged if logged is not None else (stdout if stdout is not None else subprocess.DEVNULL)
        try:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL)
        finally:
            if logged is not None:
                logged.close()
        self._procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """SIGKILL the process's whole group (its children too) and reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def kill_all(self) -> None:
        for proc in self._procs:
            self.kill(proc)
        self._procs.clear()


PROCESSES = Processes()


# --- /proc ---------------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # after "pid (comm) "


def children(pid: int) -> list[int]:
    """Live (non-zombie) children of `pid`, oldest pid first."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[1] == str(pid) and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def remote_ports(pid: int) -> set[int]:
    """Remote ports of the established TCP connections (IPv4 and IPv6) the process holds."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "01" and parts[9] in inodes:  # 01 = ESTABLISHED
                ports.add(int(parts[2].rsplit(":", 1)[1], 16))
    return ports


# --- qcluster ------------------------------------------------------------------------------------
@dataclass
class Kill:
    """One process killed with SIGKILL, as it was when frozen (SIGSTOP) just before."""

    pid: int
    title: str
    role: str
    at: float
    in_delivery: bool  # held a connection to the SMTP server: an email was being handed over


@dataclass
class Cluster:
    env: dict
    log: Path
    workers: int = 2
    proc: subprocess.Popen | None = None
    _first_children: list[int] = field(default_factory=list)

    def start(self, ready_timeout: float = 30) -> "Cluster":
        self.proc = PROCESSES.start([PYTHON, "manage.py", "qcluster"], env=self.env, log=self.log)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            members = self.members()
            if len(members) >= self.workers + 2:
                self._first_children = sorted(members)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"qcluster exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.05)
        raise RuntimeError(f"qcluster did not start its {self.workers} workers within {ready_timeout}s")

    def sentinel(self) -> int | None:
        found = children(self.proc.pid) if self.proc else []
        return found[0] if found else None

    def members(self) -> dict[int, str]:
        """The sentinel's children: {pid: process title}."""
        sentinel = self.sentinel()
        return {pid: title(pid) for pid in children(sentinel)} if sentinel else {}

    def role(self, pid: int, name: str) -> str:
        if name.endswith(" monitor"):
            return "monitor"
        if name.endswith(" pusher"):
            return "pusher"
        if name.endswith(" idle") or " processing " in f"{name} ":
            return "worker"
        # No setproctitle: the first `workers` children were the workers, the next two the
        # monitor and the pusher; a child born later replaced a dead worker.
        if pid in self._first_children:
            return "worker" if self._first_children.index(pid) < self.workers else "monitor/pusher"
        return "worker"

    def worker_pids(self, busy_only: bool = False) -> list[int]:
        found = []
        for pid, name in self.members().items():
            if self.role(pid, name) == "worker" and (not busy_only or "processing" in name):
                found.append(pid)
        return found

    def freeze_and_kill(self, pid: int, smtp_port: int | None) -> Kill:
        """SIGSTOP (so what we look at is what the kill hits), look, then SIGKILL."""
        os.kill(pid, signal.SIGSTOP)
        name = title(pid)
        in_delivery = smtp_port is not None and smtp_port in remote_ports(pid)
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        return Kill(pid=pid, title=name, role=self.role(pid, name), at=at, in_delivery=in_delivery)

    def kill_whole(self, smtp_port: int | None) -> list[Kill]:
        """kill -9 of the qcluster's process group: every process of the cluster at once."""
        assert self.proc is not None, "the cluster was started"
        pgid = self.proc.pid
        os.killpg(pgid, signal.SIGSTOP)
        members = self.members()
        at = time.time()
        kills = [Kill(pid=pid, title=name, role=self.role(pid, name), at=at,
                      in_delivery=smtp_port is not None and smtp_port in remote_ports(pid))
                 for pid, name in members.items()]
        os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        return kills

    def stop(self, grace: float = 5) -> None:
        """SIGTERM (django-q2's own shutdown), then SIGKILL of the group if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
        PROCESSES.kill(self.proc)


# --- the fake SMTP server, and a "broker" that never answers -------------------------------------
@dataclass
class Sink:
    log: Path
    port: int
    proc: subprocess.Popen

    @classmethod
    def start(cls, log: Path, *, delay: float = 0.0, stall_domain: str = "", hang: bool = False) -> "Sink":
        log.unlink(missing_ok=True)
        log.touch()
        args = [PYTHON, "-m", "benchmarks.chaos.smtp_sink", "--log", str(log), "--delay", str(delay)]
        if stall_domain:
            args += ["--stall-domain", stall_domain]
        if hang:
            args.append("--hang")
        proc = PROCESSES.start(args, env=dict(os.environ), stdout=subprocess.PIPE)
        assert proc.stdout is not None  # (a pipe: stdout=PIPE)
        line = proc.stdout.readline().decode().split()
        proc.stdout.close()
        if len(line) != 2 or line[0] != "PORT":
            raise RuntimeError(f"the fake SMTP server did not start: {line}")
        return cls(log=log, port=int(line[1]), proc=proc)

    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def hurry(self) -> None:
        """No more --delay: the messages still to come are answered at once."""
        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        PROCESSES.kill(self.proc)


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- movers: separate processes that make the changes --------------------------------------------
@dataclass
class MoverResult:
    returncode: int | None
    started: float
    exited: float
    report: dict

    @property
    def wall(self) -> float:
        return self.exited - self.started


def start_mover(env: dict, ids_file: Path, *, start_at: float | None = None, exit_hard: bool = False,
                shuffle_seed: int | None = None, report: Path | None = None,
                one_transaction: bool = False) -> subprocess.Popen:
    args = [PYTHON, "-m", "benchmarks.chaos.mover", "--ids-file", str(ids_file)]
    if one_transaction:
        args.append("--one-transaction")
    if start_at is not None:
        args += ["--start-at", repr(start_at)]
    if exit_hard:
        args.append("--exit-hard")
    if shuffle_seed is not None:
        args += ["--shuffle", str(shuffle_seed)]
    if report is not None:
        args += ["--report", str(report)]
    return PROCESSES.start(args, env=env, log=(report or ids_file).with_suffix(".log"))


def wait_movers(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int | None, float]]:
    """Wait for the movers; (return code, time.time() when seen exited) for each, None if killed
    at the timeout."""
    deadline = time.monotonic() + timeout
    done: dict[int, tuple[int | None, float]] = {}
    while len(done) < len(procs):
        for proc in procs:
            if proc.pid not in done and proc.poll() is not None:
                done[proc.pid] = (proc.returncode, time.time())
        if time.monotonic() > deadline:
            for proc in procs:
                if proc.pid not in done:
                    PROCESSES.kill(proc)
                    done[proc.pid] = (None, time.time())
            break
        time.sleep(0.005)
    return [done[p.pid] for p in procs]


def run_mover(env: dict, ids_file: Path, report: Path, timeout: float = 120, **kwargs) -> MoverResult:
    report.unlink(missing_ok=True)
    started = time.time()
    proc = start_mover(env, ids_file, report=report, **kwargs)
    ((code, exited),) = wait_movers([proc], timeout)
    data = json.loads(report.read_text()) if report.exists() else {}
    return MoverResult(returncode=code, started=started, exited=exited, report=data)
