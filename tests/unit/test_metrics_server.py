"""The loop-mode metrics server (``sync --every``), on loopback."""

from __future__ import annotations

import http.client
import socket
import threading
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bwsync.config import MetricsSettings
from bwsync.errors import ConfigError
from bwsync.metrics_server import MetricsServer, parse_listen
from bwsync.model import RunReport
from tests.fixtures.metrics import full_report


def get(url: str, accept: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback http only
    if accept:
        request.add_header("Accept", accept)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    with MetricsServer("127.0.0.1:0") as srv:
        yield srv


def base(srv: MetricsServer) -> str:
    host, port = srv.address
    return f"http://{host}:{port}"


def test_server_serves_the_latest_report(server: MetricsServer) -> None:
    status, _, body = get(base(server) + "/metrics")
    assert status == 200
    assert list(text_string_to_metric_families(body)) == []  # nothing before the first run

    server.update(full_report("success"))
    server.update(full_report("safety_stop"))
    status, ctype, body = get(base(server) + "/metrics")
    assert ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    current = {s.labels["result"]: s.value for s in families["bwsync_last_run_result"].samples}
    assert current["safety_stop"] == 1
    assert current["success"] == 0


def test_server_keeps_the_last_success_through_a_run_that_read_no_state(
    server: MetricsServer,
) -> None:
    server.update(full_report("success"))
    unread = RunReport(profile="corp", source="ldap", result="failed", exit_code=2,
                       started=200.0, finished=200.0, last_success_known=False)  # fmt: skip
    server.update(unread)
    _, _, body = get(base(server) + "/metrics")
    families = {f.name: f for f in text_string_to_metric_families(body)}
    [kept] = families["bwsync_last_success_timestamp_seconds"].samples
    assert kept.value == 130.0  # the success's end, not 0


def test_server_speaks_openmetrics_when_asked(server: MetricsServer) -> None:
    server.update(full_report())
    _, ctype, body = get(base(server) + "/metrics", "application/openmetrics-text; version=1.0.0")
    assert ctype.startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")


def test_healthz(server: MetricsServer) -> None:
    assert get(base(server) + "/healthz")[0] == 200
    server.set_healthy(False)
    assert get(base(server) + "/healthz")[0] == 503
    server.set_healthy(True)
    assert get(base(server) + "/healthz")[0] == 200
    assert get(base(server) + "/nope")[0] == 404


def test_stop_releases_the_port() -> None:
    srv = MetricsServer("127.0.0.1:0")
    srv.start()
    port = srv.address[1]
    srv.stop()
    srv.stop()  # twice is fine
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_port_in_use_is_a_config_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ConfigError, match="BWSYNC_METRICS__LISTEN"):
            MetricsServer(f"127.0.0.1:{port}").start()


def test_the_default_listen_address_is_loopback() -> None:
    assert parse_listen(MetricsSettings().listen) == ("127.0.0.1", 9464)


def _wait_closed(socks: list[socket.socket], count: int) -> int:
    """Wait (on the sockets, not the clock) until ``count`` of them were closed by the server;
    return how many were. A generous bound keeps a broken server from hanging the suite."""
    import selectors

    closed = 0
    with selectors.DefaultSelector() as sel:
        for sock in socks:
            sel.register(sock, selectors.EVENT_READ)
        while closed < count:
            ready = sel.select(timeout=60)
            if not ready:
                break
            for key, _ in ready:
                sock = typing.cast(socket.socket, key.fileobj)
                sel.unregister(sock)
                try:
                    data = sock.recv(1)
                except ConnectionResetError:
                    data = b""
                assert data == b"", "the server answered a silent client"
                closed += 1
    return closed


def test_half_open_connections_hold_at_most_the_cap_of_threads() -> None:
    """300 clients that connect and say nothing: before, one thread each for ever (302
    threads); now at most ``max_connections`` handler threads, the rest closed at once."""
    with MetricsServer("127.0.0.1:0", timeout=120, max_connections=16, max_per_client=16) as srv:
        before = threading.active_count()
        socks = [socket.create_connection(srv.address) for _ in range(300)]
        try:
            assert _wait_closed(socks, 300 - 16) == 300 - 16
            assert srv.refused == 300 - 16
            assert threading.active_count() <= before + 16
            # once one of the held connections goes, a scrape is served again
            socks[0].close()
            status = None
            for _ in range(200):  # the freed slot is back when the handler notices the close
                try:
                    status = get(base(srv) + "/healthz")[0]
                    break
                except (urllib.error.URLError, ConnectionError):
                    continue
            assert status == 200
        finally:
            for sock in socks:
                sock.close()


def test_a_silent_connection_is_closed_after_the_handler_timeout() -> None:
    with MetricsServer("127.0.0.1:0", timeout=0.2) as srv:
        with socket.create_connection(srv.address) as sock:
            sock.settimeout(60)  # a bound for a broken server, far above the 0.2 s
            assert sock.recv(1) == b""
        assert get(base(srv) + "/healthz")[0] == 200


def test_a_trickling_connection_is_closed_at_its_deadline_not_kept_alive_by_each_byte() -> None:
    """Slowloris: a byte of the request line every 0.1 s, each well within the 0.5 s. A
    timeout per read never fires; the deadline per connection does."""
    with MetricsServer("127.0.0.1:0", timeout=0.5) as srv:
        with socket.create_connection(srv.address) as sock:
            sock.settimeout(0.1)
            closed = False
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200:  # ~20 s at most
                try:
                    sock.sendall(bytes([byte]))
                    closed = sock.recv(1) == b""  # the server closed it: EOF
                except TimeoutError:
                    continue  # still open: the recv waited the 0.1 s between bytes
                except (ConnectionResetError, BrokenPipeError):
                    closed = True
                if closed:
                    break
            assert closed, "the trickling connection was kept open"
        assert get(base(srv) + "/healthz")[0] == 200


def test_one_client_holds_at_most_its_share_of_the_connections() -> None:
    """One address holding its ``max_per_client`` connections silent is refused more, and
    another address is still served."""
    with MetricsServer("127.0.0.1:0", timeout=120, max_connections=16) as srv:
        assert srv.max_per_client == 8
        held = [socket.create_connection(srv.address) for _ in range(8)]
        extra = socket.create_connection(srv.address)
        try:
            assert _wait_closed([extra], 1) == 1
            assert srv.refused == 1
            other = http.client.HTTPConnection(
                *srv.address, timeout=60, source_address=("127.0.0.2", 0)
            )
            other.request("GET", "/healthz")
            assert other.getresponse().status == 200
            other.close()
        finally:
            for sock in [*held, extra]:
                sock.close()


def test_a_client_gone_mid_answer_is_a_json_log_line_not_a_traceback(
    server: MetricsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from bwsync import logs

    logs.setup("json", "debug")
    inner = server._server
    assert inner is not None
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        inner.handle_error(None, ("10.0.0.7", 51234))
    try:
        raise ValueError("odd request")
    except ValueError:
        inner.handle_error(None, ("10.0.0.8", 51235))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [json.loads(line) for line in err.splitlines()]
    assert [(x["event"], x["level"], x["client"]) for x in lines] == [
        ("metrics_request_failed", "debug", "10.0.0.7"),
        ("metrics_request_failed", "warning", "10.0.0.8"),
    ]
    assert "BrokenPipeError" in lines[0]["error"]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("0.0.0.0:9464", ("0.0.0.0", 9464)),  # noqa: S104 - parsing only
        (":9464", ("", 9464)),
        ("[::]:9464", ("::", 9464)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_parse_listen(listen: str, expected: tuple[str, int]) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["9464", "host:", "host:http", "host:70000"])
def test_parse_listen_rejects(listen: str) -> None:
    with pytest.raises(ConfigError, match="BWSYNC_METRICS__LISTEN"):
        parse_listen(listen)
