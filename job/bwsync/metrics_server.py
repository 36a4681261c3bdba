"""``/metrics`` and ``/healthz`` for ``sync --every`` loop mode: the latest run's metrics, served.

``sync --every`` serves the latest run on ``BWSYNC_METRICS__LISTEN`` (``/metrics``,
``/healthz``) with ``MetricsServer``: loopback (``127.0.0.1:9464``) unless the setting says
otherwise, each connection closed ``HANDLER_TIMEOUT`` seconds after it was accepted, however
it trickles its request (a deadline per connection, not per read: a client sending a byte every
few seconds must not hold a thread for ever), at most ``MAX_CONNECTIONS`` served at once and
``MAX_PER_CLIENT`` of them for one client address (more are closed at once: one slow or hostile
client cannot starve Prometheus and the kubelet's probes), and its errors logged as JSON
events, never as tracebacks. What the series are is ``bwsync.metrics``'s; the push and the
textfile after each run are ``bwsync.metrics_delivery``'s.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import AF_INET6
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from bwsync.config import env_name, split_listen
from bwsync.errors import ConfigError
from bwsync.logs import event
from bwsync.metrics import ReportCollector, last_success_of
from bwsync.model import RunReport


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) → (host, port)."""
    try:
        return split_listen(listen)
    except ValueError as exc:
        raise ConfigError(f"{env_name('metrics', 'listen')}: {exc} (got {listen!r})") from None


#: Seconds a connection is served, from its accept, before it is closed (the request read and
#: the response written by then). A scrape takes milliseconds; a half-open or trickling
#: connection must not hold a thread for ever.
HANDLER_TIMEOUT = 10.0
#: Connections served at once; one more is closed as soon as it is accepted. Prometheus scrapes
#: one at a time and the kubelet's probes add one or two.
MAX_CONNECTIONS = 16
#: Connections served at once for one client address: half the slots, so that one client
#: holding its share leaves the other half to Prometheus and the probes.
MAX_PER_CLIENT = MAX_CONNECTIONS // 2


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each given what is left of the connection's deadline as its timeout:
    socket timeouts alone count from the last byte, so a client sending one byte every few
    seconds would never time out."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the connection's deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Server(ThreadingHTTPServer):
    """One thread per connection, but at most ``max_connections`` at once; errors go to the
    JSON log instead of socketserver's traceback on stderr."""

    daemon_threads = True
    #: listen backlog: socketserver's 5 drops the SYNs of a burst, each retried a second later
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: Any,
        max_connections: int,
        max_per_client: int = MAX_PER_CLIENT,
    ) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        self._max_per_client = max_per_client
        self._per_client: dict[str, int] = {}
        self._lock = threading.Lock()
        self.refused = 0
        """Connections closed unanswered because every slot was taken (tests, debugging)."""
        super().__init__(address, handler)

    def _take(self, client: str) -> bool:
        """A slot for this client, if it has fewer than its share and one is free."""
        with self._lock:
            if self._per_client.get(client, 0) >= self._max_per_client:
                return False
            if not self._slots.acquire(blocking=False):
                return False
            self._per_client[client] = self._per_client.get(client, 0) + 1
            return True

    def _give_back(self, client: str) -> None:
        with self._lock:
            left = self._per_client.pop(client, 1) - 1
            if left:
                self._per_client[client] = left
            self._slots.release()

    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0]) if client_address else ""
        if not self._take(client):
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                event(
                    "metrics_connections_refused",
                    logging.WARNING,
                    refused=self.refused,
                    limit=MAX_CONNECTIONS,
                    note="more connections than the metrics server serves at once (in all, "
                    "or from one client); "
                    "the extra ones were closed",
                )
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._give_back(client)  # the thread never started
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._give_back(str(client_address[0]) if client_address else "")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is routine (debug); anything else is a warning.
        Never a traceback: stderr carries JSON lines only."""
        import sys

        exc = sys.exc_info()[1]
        routine = isinstance(exc, ConnectionError | TimeoutError | socket.timeout)
        event(
            "metrics_request_failed",
            logging.DEBUG if routine else logging.WARNING,
            client=str(client_address[0]) if client_address else "",
            error=f"{type(exc).__name__}: {exc}" if exc is not None else "unknown",
        )


class _Server6(_Server):
    address_family = AF_INET6


class MetricsServer:
    """``/metrics`` and ``/healthz`` for ``sync --every`` loop mode, on a background thread.

    It serves the latest run's registry; ``update`` swaps the report in one assignment, so a
    scrape sees one run or the next, never a mix. Before the first run ``/metrics`` is empty
    (valid, with no series) and ``/healthz`` is 200: the process is alive and a long first run
    must not get the pod killed by a liveness probe.
    """

    def __init__(
        self,
        listen: str,
        *,
        timeout: float = HANDLER_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        max_per_client: int | None = None,
    ) -> None:
        self.host, self.port = parse_listen(listen)
        self.timeout = timeout
        self.max_connections = max_connections
        self.max_per_client = (
            max(1, max_connections // 2) if max_per_client is None else max_per_client
        )
        self._collector = ReportCollector()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self._collector)
        self._healthy = True
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) actually bound: with port 0 the system picks the port."""
        if self._server is None:
            return self.host, self.port
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def update(self, report: RunReport) -> None:
        """Serve this run's metrics from now on. A run that could not read its state keeps
        the last-success time served before."""
        previous = self._collector.report
        kept = last_success_of(previous) if previous is not None else None
        if not report.last_success_known and kept is not None:
            report = dataclasses.replace(
                report, last_success_timestamp=kept, last_success_known=True
            )
        self._collector.report = report

    def set_healthy(self, ok: bool) -> None:
        """``/healthz`` answers 200 when ``ok``, 503 otherwise."""
        self._healthy = ok

    def start(self) -> None:
        """Bind and serve in a daemon thread; a bind failure is a ``ConfigError`` (exit 2)."""
        if self._server is not None:
            return
        server_cls = _Server6 if ":" in self.host else _Server
        try:
            server = server_cls(
                (self.host, self.port),
                self._handler_class(),
                self.max_connections,
                self.max_per_client,
            )
        except OSError as exc:
            raise ConfigError(
                f"{env_name('metrics', 'listen')}: cannot listen on "
                f"{self.host or '*'}:{self.port}: {exc.strerror or exc}"
            ) from None
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="bwsync-metrics", daemon=True
        )
        self._thread.start()

    @property
    def refused(self) -> int:
        """Connections closed unanswered because ``max_connections`` were being served."""
        return self._server.refused if self._server is not None else 0

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "bwsync"
            timeout = owner.timeout  # the first read's; then what is left of the deadline

            def setup(self) -> None:
                super().setup()
                deadline = time.monotonic() + owner.timeout
                self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._send(200, content_type, encoder(owner._registry))
                elif path == "/healthz":
                    ok = owner._healthy
                    self._send(200 if ok else 503, "text/plain", b"ok\n" if ok else b"unhealthy\n")
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Silent: scrapes every 15 s would drown the run's own log lines."""

        return Handler
