"""A forward proxy on loopback, as ``HTTPS_PROXY`` names one: ``CONNECT host:port`` opens a
TCP tunnel to the target and relays bytes both ways (TLS stays end to end, as through a
corporate proxy that does not intercept). Every CONNECT target is recorded in ``connects``; a
plain ``GET http://…`` (an ``HTTP_PROXY`` request) is refused with 501, since bwsync's cloud
APIs are all https.

Only the standard library: it runs in the tests' process, one thread per client connection.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

__all__ = ["ConnectProxy"]


class ConnectProxy:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.connects: list[str] = []
        """``host:port`` of every CONNECT, in order."""
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.2)
        self.url = f"http://{host}:{self._listener.getsockname()[1]}"
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="connect-proxy", daemon=True)
        self._workers: list[threading.Thread] = []

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()
        for worker in self._workers:
            worker.join(5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._workers.append(worker)
            worker.start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = [*line.split(" ", 2), "", ""][:3]
            if method != "CONNECT":
                client.sendall(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
                return
            with self._lock:
                self.connects.append(target)
            host, _, port = target.rpartition(":")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rest = head.split(b"\r\n\r\n", 1)[1]
                if rest:
                    upstream.sendall(rest)
                self._relay(client, upstream)

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        """Copy bytes both ways until either side closes (or the proxy stops)."""

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while not self._stopping.is_set():
                    try:
                        data = src.recv(65536)
                    except TimeoutError:
                        continue
                    if not data:
                        break
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        a.settimeout(0.5)
        b.settimeout(0.5)
        back = threading.Thread(target=pump, args=(b, a), daemon=True)
        back.start()
        pump(a, b)
        back.join(10)
