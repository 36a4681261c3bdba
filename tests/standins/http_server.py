"""The HTTPS plumbing under the cloud stand-ins (``graph``, ``google_workspace``): a threaded
stdlib server on loopback, request recording, and throttling on demand, on the loopback server
and handler the shipped Bitwarden stand-in also uses.

Only the standard library and the runtime dependencies are used, so the stand-ins can run in a
benchmark's parent process or from ``python -m`` without pytest. A subclass implements
``route(request) -> Reply``; this base parses the request, applies injected faults first
(``throttle``), records every request (``requests``), and writes JSON replies with
``Content-Length`` over HTTP/1.1 keep-alive, as the real services do.
"""

from __future__ import annotations

import json
import ssl
import threading
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

    def handle(self, request: Request) -> Reply:
        with self._lock:
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
        with self._lock:
            self.requests.append(
                Recorded(request.method, request.path, dict(request.query), reply.status)
            )
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
