"""The threaded loopback HTTP server and handler under the Bitwarden stand-in (and, from
``tests/standins``, under every test stand-in): quiet about clients that hang up, HTTP/1.1
keep-alive like the real services."""

from __future__ import annotations

import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
