"""cli: what the command wrapper guarantees around a pass (the commands themselves: tests/e2e)."""

from __future__ import annotations

import gc
import json
import logging
import socket
from pathlib import Path

import pytest

from bwsync import cli
from bwsync.model import RunReport
from bwsync.run import Outcome, RunOptions
from bwsync.settings import load_settings
from bwsync.stop import StopRequest


def test_paused_gc_restores_the_collector_even_on_error() -> None:
    seen: list[bool] = []

    def fail_inside() -> None:
        with cli.paused_gc():
            seen.append(gc.isenabled())
            raise RuntimeError

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        fail_inside()
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()
    try:
        with cli.paused_gc():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def test_a_sync_runs_with_the_collector_paused_and_leaves_it_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bool] = []
    real = cli.execute

    def spy(settings: object, options: RunOptions, **kw: object) -> object:
        seen.append(gc.isenabled())
        return real(settings, options, **kw)  # type: ignore[arg-type]

    directory = tmp_path / "dir.json"
    directory.write_text(json.dumps({"users": [{"id": "u1", "email": "u1@example.com"}]}))
    monkeypatch.setattr(cli, "execute", spy)
    for k, v in {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(directory),
        "BWSYNC_STATE__BACKEND": "none",
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["plan", "--directory-only", "--output", "json"]) == 0
    assert seen == [False]
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("broken", "metric_written"),
    [
        ("non_utf8_secret_file", True),  # the metrics settings themselves are readable
        ("metrics_section_not_json", False),  # they are not: exit 2 all the same
        ("secrets_dir_is_a_file", True),
    ],
)
def test_a_sync_whose_settings_cannot_be_read_is_exit_2_with_its_metric(
    broken: str,
    metric_written: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Reading (not validating) the settings can fail too: a secret file that is not UTF-8, a
    section that is not JSON. The run is a configuration problem (exit 2), and the
    ``config_error`` result still reaches the metrics when their own settings can be read."""
    textfile = tmp_path / "bwsync.prom"
    monkeypatch.setenv("BWSYNC_METRICS__TEXTFILE_PATH", str(textfile))
    secrets = tmp_path / "secrets"
    if broken == "non_utf8_secret_file":
        secrets.mkdir()
        (secrets / "bwsync_ldap__bind_password").write_bytes(b"\xff\xfepw")
    elif broken == "secrets_dir_is_a_file":
        secrets.write_text("x")
    else:
        monkeypatch.setenv("BWSYNC_METRICS", "{bad")
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secrets))
    assert cli.main(["sync"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bwsync: invalid configuration" in err
    assert textfile.exists() is metric_written
    if metric_written:
        assert 'bwsync_last_run_result{profile="default",result="config_error"' in (
            textfile.read_text()
        )


def test_after_a_stop_a_silent_pushgateway_does_not_hold_the_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The Pushgateway accepts the connection and never answers (its socket timeout is 10 s):
    after a stop request the push is given up at the grace period and said so; the textfile is
    written all the same."""
    caplog.set_level(logging.WARNING, logger="bwsync")
    with socket.create_server(("127.0.0.1", 0)) as silent:  # never accepts, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        textfile = tmp_path / "bwsync.prom"
        settings = load_settings(metrics={"pushgateway_url": url, "textfile_path": textfile})
        stop = StopRequest(grace=0.01)
        stop.request("SIGTERM")
        report = RunReport(profile="p", source="file", result="interrupted")
        cli._deliver(settings, Outcome(report), stop)
    warnings = [
        r.bwsync_fields["warning"]  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "metrics_not_delivered"
    ]
    assert warnings == [
        f"metrics not pushed to the Pushgateway {url}: did not answer within the time left "
        "after the stop (0.01 s)"
    ]
    assert 'result="interrupted"' in textfile.read_text()
