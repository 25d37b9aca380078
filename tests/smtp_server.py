"""A scripted SMTP server for the tests, on 127.0.0.1: what each session said, whether commands
came pipelined, refusals and stalls on demand."""

import select
import socket
import threading


class ScriptedSMTP:
    """An SMTP server on 127.0.0.1 (a thread per session) that notes every command and whether
    it arrived while an earlier one was still unanswered (pipelined).

    `pipelining`: EHLO offers it; `hold`: answer nothing until DATA has arrived too (a client
    that waits for each answer then never gets one); `refuse`: recipients answered 550;
    `stall_on`: "rcpt" never answers a RCPT TO, "data" never answers once the message is in."""

    def __init__(self, *, pipelining: bool = True, hold: bool = False, refuse: frozenset[str] = frozenset(),
                 stall_on: str = "") -> None:
        self.pipelining, self.hold, self.refuse, self.stall_on = pipelining, hold, refuse, stall_on
        self.commands: list[str] = []
        self.pipelined: list[str] = []  # commands that came before the previous one's answer
        self.messages: list[bytes] = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(5)
        self.port = self.server.getsockname()[1]
        self.sessions: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.sessions.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        lines = Lines(conn)
        conn.sendall(b"220 scripted ESMTP\r\n")
        held: list[bytes] = []
        accepted = False
        while line := lines.next():
            command = line.decode().strip()
            verb = command[:4].upper()
            self.commands.append(command)
            if lines.pending():
                self.pipelined.append(command)  # the next command came before this one's answer
            if verb == "EHLO":
                offers = b"250-PIPELINING\r\n" if self.pipelining else b""
                reply = b"250-scripted\r\n" + offers + b"250 SIZE 1000000\r\n"
            elif verb == "MAIL":
                reply = b"250 sender ok\r\n"
            elif verb == "RCPT":
                if self.stall_on == "rcpt":
                    return
                address = command.split(":", 1)[1].strip("<> ")
                accepted = accepted or address not in self.refuse
                reply = b"550 no such mailbox\r\n" if address in self.refuse else b"250 recipient ok\r\n"
            elif verb == "DATA":
                reply = b"354 go ahead\r\n" if accepted else b"554 no valid recipients\r\n"
            else:
                reply = b"250 ok\r\n"
                accepted = accepted and verb != "RSET"
            if self.hold and verb in ("MAIL", "RCPT"):
                held.append(reply)
                continue
            conn.sendall(b"".join(held) + reply)
            held.clear()
            if reply.startswith(b"354"):
                body = []
                while (part := lines.next()) not in (b".\r\n", b""):
                    body.append(part[1:] if part.startswith(b".") else part)
                self.messages.append(b"".join(body))
                if self.stall_on == "data":
                    return  # the message is in; the answer never comes
                accepted = False
                conn.sendall(b"250 queued\r\n")

    def close(self) -> None:
        self.server.close()
        for conn in self.sessions:
            conn.close()


class Lines:
    """A connection's lines, and whether more has arrived than the line just read."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn, self.buffer = conn, b""

    def next(self) -> bytes:
        while b"\r\n" not in self.buffer:
            try:
                chunk = self.conn.recv(65536)
            except OSError:
                return b""
            if not chunk:
                return b""
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def pending(self) -> bool:
        return bool(self.buffer) or bool(select.select([self.conn], [], [], 0)[0])
