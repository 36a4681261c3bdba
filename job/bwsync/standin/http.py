"""The wire under the Bitwarden stand-in: the answers its endpoints build (``Response``, the
public API's error bodies) and the threaded loopback HTTP server that reads requests and writes
those answers.

``StandInServer`` and ``StandInHandler`` are also the base of the test stand-ins' servers
(``tests/standins``): quiet about clients that hang up, HTTP/1.1 keep-alive like the real
services. Only the standard library and orjson are used: the demo ships this module.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

__all__ = [
    "UNHANDLED",
    "BitwardenHttpServer",
    "HttpError",
    "Response",
    "StandInHandler",
    "StandInServer",
    "json_response",
    "public_error",
    "unhandled",
]

UNHANDLED = "An unhandled server error has occurred."


@dataclass(slots=True)
class Response:
    """One answer: status, body and headers (``Content-Length`` and ``Date`` are added when it
    is written); ``disconnect`` hangs up instead of answering."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: bool = False


class HttpError(Exception):
    """Raised inside a handler to answer with this response (the state stays as it is)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": "application/json; charset=utf-8"}
    h.update(headers or {})
    return Response(status, orjson.dumps(obj), h)


def public_error(status: int, message: str, errors: dict[str, list[str]] | None = None) -> Response:
    """The public API's ErrorResponseModel (§3.6)."""
    return json_response(status, {"object": "error", "message": message, "errors": errors})


def unhandled() -> HttpError:
    """The 500 the server answers when its code throws (a crash the contract documents)."""
    return HttpError(public_error(500, UNHANDLED))


# --------------------------------------------------------------------------------------------
# The loopback server


class StandInServer(ThreadingHTTPServer):
    """The threaded loopback server under every stand-in. A client that hangs up or refuses our
    certificate (a test of exactly that) is not a stand-in failure: ``quiet_errors`` are not
    printed; anything else still prints its traceback."""

    quiet_errors: tuple[type[BaseException], ...] = (ConnectionError, ssl.SSLError, TimeoutError)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], self.quiet_errors):
            return
        super().handle_error(request, client_address)


class StandInHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, as the real services; silent (tests read the recorded requests)."""

    protocol_version = "HTTP/1.1"
    # Headers and body are separate small writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        return


Answer = Callable[[str, str, dict[str, str], bytes], Response]
"""What the server asks of the stand-in for each request: (method, request target, headers
with lower-cased names, body) -> the response."""


class BitwardenHttpServer(StandInServer):
    """The Bitwarden stand-in's server: every request goes to ``answer``."""

    # Quiet for every connection and TLS failure (a client dropping the connection or refusing
    # our certificate is a test scenario); anything else is a bug and is printed.
    quiet_errors = (OSError,)
    # server_close() would otherwise join every handler thread, and one blocked on a client's
    # idle keep-alive connection would hang stop(); close_connections() ends those instead.
    block_on_close = False

    def __init__(self, address: tuple[str, int], answer: Answer) -> None:
        super().__init__(address, _Handler)
        self.answer = answer
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on every open client connection, as a stopped server would."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(StandInHandler):
    server: BitwardenHttpServer
    server_version = "FakeBitwarden/1.0"

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        response = self.server.answer(self.command, self.path, headers, raw)
        if response.disconnect:
            self.close_connection = True
            return
        self.send_response(response.status)
        self.send_header("Date", formatdate(usegmt=True))
        for k, v in response.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve
