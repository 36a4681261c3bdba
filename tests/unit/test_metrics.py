"""The metrics a ``RunReport`` turns into, the textfile, and the loop-mode server (loopback)."""

from __future__ import annotations

import importlib.metadata
import os
import socket
import stat
import threading
import typing
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bwsync.changes import ACTIONS, APPLYING
from bwsync.config import MetricsSettings
from bwsync.errors import ConfigError, RunResult
from bwsync.metrics import (
    METRIC_NAMES,
    RESULTS,
    MetricsServer,
    build_registry,
    deliver,
    parse_listen,
    write_textfile,
)
from bwsync.model import RunReport
from bwsync.settings import load_settings

L = {"profile": "corp", "source": "ldap"}


def full_report(result: RunResult = "success") -> RunReport:
    return RunReport(
        profile="corp",
        source="ldap",
        result=result,
        exit_code=0,
        started=100.0,
        finished=130.0,
        stage_seconds={"fetch": 10.0, "apply": 15.0},
        directory_objects={"users": 50, "groups": 5},
        planned={"invite": 3, "revoke": 1},
        applied={"invite": 3, "revoke": 1},
        skipped={"no_email": 4, "duplicate": 1},
        requests={("import", 200): 2, ("members", 0): 1},
        retries=3,
        directory_requests={200: 307, 429: 1},
        directory_retries=1,
        unsent_batches=2,
        safety_breach=False,
        applied_differs=True,
        last_success_timestamp=50.0,
    )


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, {**L, **labels})


def names(registry: CollectorRegistry) -> set[str]:
    return {m.name for m in registry.collect()}


def test_every_metric_of_a_full_report() -> None:
    reg = build_registry(full_report())
    exported = {m.name + ("_total" if m.type == "counter" else "") for m in reg.collect()}
    assert exported == METRIC_NAMES
    assert value(reg, "bwsync_run_duration_seconds") == 30.0
    assert value(reg, "bwsync_last_run_timestamp_seconds") == 130.0
    assert value(reg, "bwsync_stage_duration_seconds", stage="fetch") == 10.0
    assert value(reg, "bwsync_directory_objects", kind="groups") == 5
    assert value(reg, "bwsync_planned_changes", action="revoke") == 1
    assert value(reg, "bwsync_applied_changes", action="invite") == 3
    assert value(reg, "bwsync_applied_differs") == 1
    assert value(reg, "bwsync_safety_limit_breached") == 0
    assert value(reg, "bwsync_skipped_entries", reason="no_email") == 4
    assert value(reg, "bwsync_bitwarden_requests_total", endpoint="members", code="0") == 1
    assert value(reg, "bwsync_retries_total") == 3
    assert value(reg, "bwsync_directory_requests_total", code="200") == 307
    assert value(reg, "bwsync_directory_requests_total", code="429") == 1
    assert value(reg, "bwsync_directory_retries_total") == 1
    assert value(reg, "bwsync_unsent_batches") == 2
    version = importlib.metadata.version("bwsync")
    assert value(reg, "bwsync_build_info", version=version) == 1


def test_every_series_has_profile_and_source() -> None:
    for family in build_registry(full_report()).collect():
        for sample in family.samples:
            assert sample.labels["profile"] == "corp", sample
            assert sample.labels["source"] == "ldap", sample


def test_no_created_samples_and_nothing_on_the_global_registry() -> None:
    reg = build_registry(full_report())
    assert not any(s.name.endswith("_created") for m in reg.collect() for s in m.samples)
    assert REGISTRY.get_sample_value("bwsync_retries_total", L) is None


def test_registries_are_independent() -> None:
    a = build_registry(full_report("success"))
    b = build_registry(full_report("failed"))
    assert value(a, "bwsync_last_run_result", result="success") == 1
    assert value(b, "bwsync_last_run_result", result="success") == 0


@pytest.mark.parametrize("result", RESULTS)
def test_last_run_result_is_one_hot(result: RunResult) -> None:
    reg = build_registry(full_report(result))
    for r in RESULTS:
        assert value(reg, "bwsync_last_run_result", result=r) == (1 if r == result else 0)


@pytest.mark.parametrize(
    ("result", "carried", "expected"),
    [
        ("success", 50.0, 130.0),  # this run is the last success
        ("no_change", None, 130.0),  # no change is a success too
        ("success", 120.0, 120.0),  # the run recorded its success time: used as is
        ("failed", 50.0, 50.0),  # carried through a failure
        ("safety_stop", 50.0, 50.0),
        ("config_error", None, 0.0),  # never succeeded: 0, so "no recent success" fires
    ],
)
def test_last_success_timestamp(result: RunResult, carried: float | None, expected: float) -> None:
    report = RunReport(
        profile="corp",
        source="ldap",
        result=result,
        started=100.0,
        finished=130.0,
        last_success_timestamp=carried,
    )
    reg = build_registry(report)
    assert value(reg, "bwsync_last_success_timestamp_seconds") == expected


def test_a_completed_run_has_every_action_even_at_zero() -> None:
    """Every action the plan knows, link and skip included: the series come from the one
    definition of the actions (``bwsync.changes``). A skip applies nothing: it has no applied
    series."""
    report = RunReport(profile="corp", source="ldap", result="no_change", exit_code=0)
    reg = build_registry(report)
    assert {"link", "skip", "group_relink"} <= set(ACTIONS)
    for action in ACTIONS:
        assert value(reg, "bwsync_planned_changes", action=action) == 0
        applied = value(reg, "bwsync_applied_changes", action=action)
        assert applied == (0 if action in APPLYING else None), action
    assert "skip" not in APPLYING


def test_a_failed_run_reports_only_what_it_measured() -> None:
    report = RunReport(
        profile="corp", source="ldap", result="failed", started=1.0, stage_seconds={"fetch": 1.0}
    )
    reg = build_registry(report)
    present = {s.name for m in reg.collect() for s in m.samples}
    assert "bwsync_planned_changes" not in present
    assert "bwsync_directory_objects" not in present
    assert value(reg, "bwsync_last_run_timestamp_seconds") == 1.0  # started, as it never finished
    assert value(reg, "bwsync_last_run_result", result="failed") == 1


# --- textfile ----------------------------------------------------------------------------------


def test_textfile_parses_back(tmp_path: Path) -> None:
    (tmp_path / "collector").mkdir()
    path = tmp_path / "collector" / "bwsync.prom"
    assert deliver(full_report(), MetricsSettings(textfile_path=path)) == []
    families = {f.name: f for f in text_string_to_metric_families(path.read_text())}
    assert {f + ("_total" if families[f].type == "counter" else "") for f in families} == (
        METRIC_NAMES
    )
    [sample] = [
        s for s in families["bwsync_last_run_result"].samples if s.labels["result"] == "success"
    ]
    assert sample.value == 1
    assert sample.timestamp is None  # node_exporter refuses timestamps in textfiles
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(path.parent) == ["bwsync.prom"]  # no temporary file left behind


def test_textfile_is_replaced_not_appended(tmp_path: Path) -> None:
    path = tmp_path / "bwsync.prom"
    write_textfile(build_registry(full_report("success")), path)
    write_textfile(build_registry(full_report("failed")), path)
    text = path.read_text()
    assert text.count("# TYPE bwsync_last_run_result gauge") == 1
    assert 'bwsync_last_run_result{profile="corp",result="failed",source="ldap"} 1.0' in text


def test_textfile_in_a_missing_directory_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "bwsync.prom"
    [warning] = deliver(full_report(), MetricsSettings(textfile_path=path))
    assert str(path) in warning
    assert "not written" in warning


def test_textfile_over_a_directory_is_a_warning_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "collector" / "bwsync.prom"
    path.mkdir(parents=True)
    [warning] = deliver(full_report(), MetricsSettings(textfile_path=path))
    assert "not written" in warning
    assert os.listdir(path.parent) == ["bwsync.prom"]


def test_textfile_without_prom_suffix_is_written_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "bwsync.txt"
    [warning] = deliver(full_report(), MetricsSettings(textfile_path=path))
    assert ".prom" in warning
    assert path.exists()


def test_nothing_configured_delivers_nothing() -> None:
    assert deliver(full_report(), MetricsSettings()) == []


def test_bad_pushgateway_scheme_is_a_settings_error_and_never_a_failed_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = "ftp://u:pw@127.0.0.1/x"
    monkeypatch.setenv("BWSYNC_METRICS__PUSHGATEWAY_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    [problem] = caught.value.problems
    assert problem.startswith("BWSYNC_METRICS__PUSHGATEWAY_URL: must be an http")
    assert "pw" not in problem  # the URL's password is not echoed
    # Settings built without the models' checks: still a warning, never an exception.
    [warning] = deliver(full_report(), MetricsSettings.model_construct(pushgateway_url=url))
    assert "scheme" in warning
    assert "pw" not in warning


# --- loop-mode server --------------------------------------------------------------------------


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
    with MetricsServer("127.0.0.1:0", timeout=120, max_connections=16) as srv:
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
