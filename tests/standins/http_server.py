"""The HTTPS plumbing under the cloud stand-ins (``graph``, ``google_workspace``): a threaded
stdlib server on loopback, request recording, and throttling on demand, on the loopback server
and handler the shipped Bitwarden stand-in also uses.

Only the standard library and the runtime dependencies are used, so the stand-ins can run in a
benchmark's parent process or from ``python -m`` without pytest. A subclass implements
``route(request) -> Reply``; this base parses the request, applies injected faults first
(``throttle``), records every request (``requests``), and writes JSON replies with
``Content-Length`` over HTTP/1.1 keep-alive, as the real services do.

For the benchmark and the concurrency tests: ``latency`` delays every answer (a cloud API's
round trip), ``storm`` answers 429 to every request for a while, and ``peak_in_flight`` says
how many requests were ever served at once.
"""

from __future__ import annotations

import json
import math
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bwsync.standin.http import StandInHandler, StandInServer


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return {k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass(slots=True)
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    status: int
    arrived: float = 0.0
    """``time.monotonic()`` when the request was read."""
    answered: float = 0.0
    """``time.monotonic()`` when its answer was decided (after ``latency``)."""


@dataclass(slots=True)
class Storm:
    """A burst of 429s: every request under ``prefix`` from the first one until ``seconds``
    later gets 429, with ``Retry-After`` the rest of the window (when ``retry_after``)."""

    prefix: str
    seconds: float
    retry_after: bool = True
    start: float | None = None
    windows: list[tuple[float, float]] = field(default_factory=list)
    """(when a 429 was answered, when its window ends), both ``time.monotonic()``."""

    def reply(self, request: Request, now: float, body: Any) -> Reply | None:
        if not request.path.startswith(self.prefix):
            return None
        if self.start is None:
            self.start = now
        end = self.start + self.seconds
        if now >= end:
            return None
        # Rounded up: a client waiting exactly Retry-After must not come back inside.
        left = math.ceil((end - now) * 1000) / 1000
        headers = {"Retry-After": f"{left:.3f}"} if self.retry_after else {}
        self.windows.append((now, end))
        return Reply(429, body, headers)


@dataclass(slots=True)
class Fault:
    prefix: str
    times: int
    reply: Callable[[Request], Reply]


class FakeHttpsServer:
    """Base of the cloud stand-ins. ``tls=(certfile, keyfile)`` serves HTTPS; ``None`` plain
    HTTP (only for quick manual use — the tests always use TLS)."""

    service = "fake"

    def __init__(
        self, *, tls: tuple[str, str] | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._tls = tls
        self._host = host
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self.requests: list[Recorded] = []
        self._faults: list[Fault] = []
        self.latency = 0.0
        """Seconds each request waits before it is answered: a cloud API's round trip, for the
        benchmark (each connection has its own thread, so concurrent requests overlap)."""
        self.storms: list[Storm] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "not started"
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self._host}:{self._server.server_address[1]}"

    def start(self) -> FakeHttpsServer:
        server = _Server((self._host, self._port), _Handler)
        server.fake = self
        if self._tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self._tls)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHttpsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults and inspection --------------------------------------------------------------
    def throttle(
        self,
        prefix: str = "",
        *,
        times: int = 1,
        status: int = 429,
        retry_after: float | None = 1,
        body: Any = None,
    ) -> None:
        """The next ``times`` requests whose path starts with ``prefix`` get ``status`` with
        ``Retry-After`` (omitted when ``None``) and ``body`` (default: the service's own
        throttling error, ``throttle_body``)."""

        def reply(req: Request) -> Reply:
            headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
            return Reply(status, body if body is not None else self.throttle_body(status), headers)

        with self._lock:
            self._faults.append(Fault(prefix, times, reply))

    def fail(self, prefix: str, reply: Reply, *, times: int = 1) -> None:
        """The next ``times`` requests under ``prefix`` get ``reply`` as is."""
        with self._lock:
            self._faults.append(Fault(prefix, times, lambda _req: reply))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def throttle_body(self, status: int) -> Any:
        return {"error": {"code": "TooManyRequests", "message": "Too many requests"}}

    def requests_to(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- dispatch ----------------------------------------------------------------------------
    def route(self, request: Request) -> Reply:  # pragma: no cover - subclasses
        raise NotImplementedError

    def storm(self, prefix: str = "", seconds: float = 2.0, *, retry_after: bool = True) -> Storm:
        """A 429 storm (``Storm``) on the requests under ``prefix``, starting with the next."""
        storm = Storm(prefix, seconds, retry_after)
        with self._lock:
            self.storms.append(storm)
        return storm

    def handle(self, request: Request) -> Reply:
        arrived = time.monotonic()
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            reply = self._reply(request)
        finally:
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.requests.append(
                Recorded(
                    request.method,
                    request.path,
                    dict(request.query),
                    reply.status,
                    arrived,
                    time.monotonic(),
                )
            )
        return reply

    def _reply(self, request: Request) -> Reply:
        with self._lock:
            now = time.monotonic()
            for storm in self.storms:
                stormed = storm.reply(request, now, self.throttle_body(429))
                if stormed is not None:
                    return stormed
            for fault in self._faults:
                if request.path.startswith(fault.prefix) and fault.times > 0:
                    fault.times -= 1
                    reply = fault.reply(request)
                    break
            else:
                reply = None
        if reply is None:
            try:
                reply = self.route(request)
            except Exception as exc:  # a bug in the stand-in: answer like a server would
                reply = Reply(500, {"error": {"code": "InternalServerError", "message": repr(exc)}})
        return reply


class _Server(StandInServer):
    fake: FakeHttpsServer


class _Handler(StandInHandler):
    server: _Server

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        request = Request(
            self.command,
            parts.path,
            query,
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        reply = self.server.fake.handle(request)
        data = b"" if reply.body is None else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", str(uuid.uuid4()))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve
