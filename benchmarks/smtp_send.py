#!/usr/bin/env python
"""One email over a kept SMTP connection: its envelope pipelined (EMAIL_PIPELINING=1) against one
command at a time (0), and the project's backend against the same one making its addresses and
bytes as Django does (crm/smtp_message.py), interleaved, in this process, to the fault
harness's SMTP server.

    .venv/bin/python benchmarks/smtp_send.py [--messages 2000] [--rounds 2] [--rtt-ms 0 20]

`--rtt-ms`: the server as far away as a provider on the internet: every byte crosses a forwarder
here that holds it for half the round trip each way. Prints, per round trip and per mode, the
median wall time of a message and the process CPU per message (this process: the client side,
the forwarder's threads included when it runs; the server is another process).
"""

import argparse
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.update(LOG_LEVEL="WARNING", EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend")

import django  # noqa: E402

django.setup()
from django.core import mail  # noqa: E402
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from crm_automation.crm import smtp_pipelining  # noqa: E402


class DjangoBytes(smtp_pipelining.EmailBackend):
    """The project's backend with Django's own `_send` (sanitize_address and as_bytes each time)."""

    _send = DjangoSMTPBackend._send  # type: ignore[attr-defined]  # (private: not in the stubs)


class Distance:
    """A TCP forwarder on 127.0.0.1 that delivers each chunk `one_way` seconds after it read it,
    in order, in both directions: a network with that latency (and no loss)."""

    def __init__(self, target_port: int, one_way: float) -> None:
        self.target, self.one_way = target_port, one_way
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target))
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for source, sink in ((client, server), (server, client)):
                held: queue.Queue = queue.Queue()
                threading.Thread(target=self._read, args=(source, held), daemon=True).start()
                threading.Thread(target=self._deliver, args=(held, sink), daemon=True).start()

    def _read(self, source: socket.socket, held: queue.Queue) -> None:
        while True:
            # Acknowledged at once, as the far end would (its own ACKs are what the delay is
            # for): a forwarder delaying its ACKs would hold a server's Nagle-buffered answers.
            source.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = source.recv(65536)
            if not chunk:
                break
            held.put((time.monotonic() + self.one_way, chunk))
        held.put((0.0, b""))

    @staticmethod
    def _deliver(held: queue.Queue, sink: socket.socket) -> None:
        while True:
            due, chunk = held.get()
            if not chunk:
                sink.close()
                return
            time.sleep(max(0.0, due - time.monotonic()))
            sink.sendall(chunk)


DJANGO_BYTES = "pipelined, Django's bytes"
MODES = {"one command at a time": (False, smtp_pipelining.EmailBackend),
         "pipelined": (True, smtp_pipelining.EmailBackend),
         DJANGO_BYTES: (True, DjangoBytes)}


def timed(port: int, mode: str, messages: int) -> tuple[float, float]:
    """(median wall ms, CPU ms) per message, over one connection opened beforehand."""
    pipelining, backend = MODES[mode]
    with override_settings(EMAIL_PIPELINING=pipelining):
        connection = backend(host="127.0.0.1", port=port, use_tls=False, username="", password="", timeout=10)
        connection.open()
        walls = []
        cpu = time.process_time()
        for i in range(messages):
            message = mail.EmailMessage(subject=f"Welcome Deal {i}", body="Hi Ada,\n\nwelcome aboard.",
                                        to=["ada@example.com"], connection=connection,
                                        headers={"Message-ID": f"<bench.{i}@crm.example>"})
            start = time.perf_counter()
            message.send()
            walls.append(time.perf_counter() - start)
        cpu = time.process_time() - cpu
        connection.close()
    return statistics.median(walls) * 1000, cpu / messages * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rtt-ms", type=float, nargs="+", default=[0.0, 20.0])
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="smtp-send-")) / "sink.jsonl"
    sink = subprocess.Popen([sys.executable, "-m", "benchmarks.chaos.smtp_sink", "--log", str(log)],
                            cwd=HERE.parent, stdout=subprocess.PIPE, text=True)
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline().split()[1])
        print(f"one message over a kept connection to benchmarks/chaos/smtp_sink.py (it offers PIPELINING); "
              f"{args.rounds} interleaved rounds, the median of each round in parentheses")
        print(f"{'round trip':>10}  {'envelope':<26} {'wall ms/message':<24} {'client CPU ms/message':<24}")
        for rtt in args.rtt_ms:
            target = port if rtt == 0 else Distance(port, rtt / 2000).port
            n = args.messages if rtt == 0 else max(20, min(args.messages, int(4000 / rtt)))
            results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
            for rnd in range(args.rounds):
                for mode in (list(MODES) if rnd % 2 == 0 else list(MODES)[::-1]):
                    timed(target, mode, max(5, n // 10))  # (warm-up)
                    results[mode].append(timed(target, mode, n))
            for mode in MODES:
                walls = [w for w, _ in results[mode]]
                cpus = [c for _, c in results[mode]]
                wall = f"{statistics.median(walls):.2f} ({', '.join(f'{w:.2f}' for w in walls)})"
                cpu = f"{statistics.median(cpus):.3f} ({', '.join(f'{c:.3f}' for c in cpus)})"
                print(f"{rtt:>8.0f} ms  {mode:<26} {wall:<24} {cpu:<24}")

            def ratio(mode: str, other: str, column: int, results: dict = results) -> float:
                return (statistics.median(r[column] for r in results[mode])
                        / statistics.median(r[column] for r in results[other]))

            print(f"{'':>10}  pipelined ÷ one at a time, wall: {ratio('pipelined', 'one command at a time', 0):.2f}; "
                  f"smtp_message ÷ Django's bytes, CPU: {ratio('pipelined', DJANGO_BYTES, 1):.2f}")
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
