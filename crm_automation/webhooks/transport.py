"""An httpx transport that connects only to the address the SSRF guard approved, and gives up
when the request's whole time is spent (not just one read: a receiver that drips one byte at a
time is cut off at the deadline too).

httpx resolves and connects through httpcore's network backend; ours ignores the host name it
is given and connects to the pinned address. The name still goes in the Host header and in TLS
(SNI and certificate checks), so HTTPS works as usual.
"""

import time

import httpcore
import httpx
from httpcore._backends.sync import SyncBackend


class DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def _left(self, timeout: float | None, error) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the request took longer than its time limit")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """Connects every request to `address`, whatever host name the URL has."""

    def __init__(self, *, host: str, address: str, deadline: float) -> None:
        self.host, self.address, self.deadline = host, address, deadline
        self.connections = 0
        self._backend = SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        if host.lower().rstrip(".") != self.host:  # only the checked URL's host (a redirect is never followed)
            raise httpcore.ConnectError(f"refused to connect to {host}: not the checked host")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("the request took longer than its time limit")
        self.connections += 1
        stream = self._backend.connect_tcp(self.address, port, timeout=min(timeout or left, left),
                                           local_address=local_address, socket_options=socket_options)
        return DeadlineStream(stream, self.deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not used for webhooks")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport (request and error mapping), over a connection pool that uses the
    pinned backend and no proxy from the environment (a proxy would connect elsewhere)."""

    def __init__(self, backend: PinnedBackend) -> None:
        super().__init__(trust_env=False)
        ssl_context = httpx.create_ssl_context(trust_env=False)
        # httpx builds its pool without a way to pass a network backend: we build the same pool
        # with ours (tests/test_webhooks_outbound.py fails if httpx stops using it).
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, max_connections=1,
                                             max_keepalive_connections=0, network_backend=backend)
