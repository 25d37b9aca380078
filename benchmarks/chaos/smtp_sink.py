"""A fake SMTP server on 127.0.0.1 that records every message it accepts (stdlib only).

    python -m benchmarks.chaos.smtp_sink --log FILE [--delay 0.3] [--stall-domain slow.example] [--hang]

It prints `PORT <n>` on its first line of output once it listens, then serves until killed. It
offers ESMTP PIPELINING, as Postfix and Exim do. Each accepted message is appended to --log as one
JSON line, flushed at once:
{"t": epoch seconds, "message_id": "<...>", "rcpt": ["a@b"], "peer": 51234}; a stalled
recipient as {"t": ..., "stalled_rcpt": "a@slow.example", "peer": ...}.

Modes:
- `--delay S`: wait S seconds after the message's final "." before answering 250, so deliveries
  are in flight long enough for a worker to be killed in the middle of one. The message is
  recorded before the reply, as a real server commits before it confirms: a client killed
  while waiting for the 250 leaves a message that *was* delivered (the "unknown" case).
  SIGUSR1 drops the delay from then on: a test whose faults are over has the rest delivered at
  full speed instead of waiting out the slow server it needed while they happened.
- `--stall-domain D`: a RCPT TO at domain D is never answered (until the client gives up and
  closes, or `--stall-seconds`), like a provider stuck on one recipient's domain.
- `--hang`: accept connections and never say anything (no greeting). Also used by the harness
  as a broker that accepts and never answers (a Redis URL pointing here).
"""

import argparse
import json
import select
import signal
import socket
import socketserver
import sys
import threading
import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from pathlib import Path

MAX_LINE = 8192


@dataclass
class SinkConfig:
    log: Path
    delay: float = 0.0
    stall_domain: str = ""
    stall_seconds: float = 300.0
    hang: bool = False


class Recorder:
    """Appends one JSON line per accepted message; thread safe."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def record(self, message_id: str, rcpt: list[str], peer: int) -> None:
        self.write({"t": time.time(), "message_id": message_id, "rcpt": rcpt, "peer": peer})

    def record_stall(self, address: str, peer: int) -> None:
        self.write({"t": time.time(), "stalled_rcpt": address, "peer": peer})

    def write(self, entry: dict) -> None:
        line = json.dumps(entry)
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def wait_for_close(sock: socket.socket, seconds: float) -> None:
    """Say nothing until the client closes the connection or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], min(left, 1.0))
        if readable:
            try:
                if not sock.recv(4096):
                    return
            except OSError:
                return


def address_of(argument: str) -> str:
    """`TO:<ada@example.com> SIZE=1` → `ada@example.com`."""
    value = argument.split(":", 1)[1] if ":" in argument else argument
    return value.strip().split(" ", 1)[0].strip("<>")


class Session(socketserver.StreamRequestHandler):
    server: "SinkServer"

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        config = self.server.config
        if config.hang:
            wait_for_close(self.request, config.stall_seconds)
            return
        self.reply("220 chaos-sink ESMTP")
        recipients: list[str] = []
        while True:
            raw = self.rfile.readline(MAX_LINE)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":  # (its commands are read one line at a time: a pipelined envelope is fine)
                self.reply("250-chaos-sink\r\n250 PIPELINING")
            elif verb == "HELO":
                self.reply("250 chaos-sink")
            elif verb == "MAIL":
                recipients = []
                self.reply("250 OK")
            elif verb == "RCPT":
                address = address_of(argument)
                if config.stall_domain and address.lower().endswith("@" + config.stall_domain):
                    self.server.recorder.record_stall(address, self.client_address[1])
                    wait_for_close(self.request, config.stall_seconds)
                    return
                recipients.append(address)
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                message = self.read_data()
                if message is None:
                    return
                time.sleep(config.delay)
                headers = BytesHeaderParser().parsebytes(message)
                self.server.recorder.record(str(headers.get("Message-ID", "")).strip(), recipients,
                                            self.client_address[1])
                self.reply("250 OK queued")
                recipients = []
            elif verb in ("RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 Command not implemented")

    def read_data(self) -> bytes | None:
        """The message up to the lone ".", dot-unstuffed; None if the client went away."""
        lines: list[bytes] = []
        while True:
            raw = self.rfile.readline(MAX_LINE)
            if not raw:
                return None
            if raw in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(raw[1:] if raw.startswith(b".") else raw)


class SinkServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, config: SinkConfig, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), Session)
        self.config = config
        self.recorder = Recorder(config.log)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--stall-domain", default="")
    parser.add_argument("--stall-seconds", type=float, default=300.0)
    parser.add_argument("--hang", action="store_true")
    args = parser.parse_args(argv)
    config = SinkConfig(log=args.log, delay=args.delay, stall_domain=args.stall_domain.lower(),
                        stall_seconds=args.stall_seconds, hang=args.hang)
    server = SinkServer(config, args.port)
    signal.signal(signal.SIGUSR1, lambda *_: setattr(config, "delay", 0.0))
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
