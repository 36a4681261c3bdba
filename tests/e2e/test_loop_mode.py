"""``bwsync sync --every``: loop mode serves /metrics and /healthz and stops on SIGTERM; a
configuration error still reaches the metrics."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bwsync.cli import main
from bwsync.sources.file import demo_directory
from tests.e2e.bwsync_process import BwsyncProcess
from tests.fixtures.ldap import free_port
from tests.standins.bitwarden import FakeBitwarden


def _demo_copy(tmp_path: Path) -> Path:
    """The demo directory as a file: a sync never reads the built-in one by omission."""
    path = tmp_path / "directory.json"
    path.write_bytes(demo_directory())
    return path


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _loop_env(fake: FakeBitwarden, tmp_path: Path, port: int) -> dict[str, str]:
    return {
        "BWSYNC_BITWARDEN__SERVER": fake.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake.client_secret,
        "BWSYNC_STATE__PATH": str(tmp_path / "state.json"),
        "BWSYNC_FILE__PATH": str(_demo_copy(tmp_path)),
        "BWSYNC_METRICS__LISTEN": f"127.0.0.1:{port}",
        "BWSYNC_PROFILE": "loop",
        "BWSYNC_SECRETS_DIR": str(tmp_path),
    }


def test_loop_serves_metrics_and_stops_on_sigterm(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """The first pass's result is served; a SIGTERM between two passes (the next is an hour
    away) ends the loop with 0."""
    port = free_port()
    run = BwsyncProcess.start(_loop_env(fake_bitwarden, tmp_path, port), "sync", "--every", "1h")
    try:
        run.wait_for("summary")
        with httpx.Client(trust_env=False) as http:
            results = _samples(http.get(f"http://127.0.0.1:{port}/metrics").text,
                               "bwsync_last_run_result")  # fmt: skip
            assert results[(("profile", "loop"), ("result", "success"), ("source", "file"))] == 1
            assert http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        run.signal(signal.SIGTERM)
        assert run.finish() == 0, run.log()
        assert [s["result"] for s in run.events("summary")] == ["success"]
        assert len(fake_bitwarden.requests_to("import")) == 1
    finally:
        if run.proc.poll() is None:
            run.kill()


def test_config_error_still_writes_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    textfile = tmp_path / "bwsync.prom"
    monkeypatch.setenv("BWSYNC_METRICS__TEXTFILE_PATH", str(textfile))
    monkeypatch.setenv("BWSYNC_SOURCE", "ldap")
    monkeypatch.setenv("BWSYNC_LDAP__PAGE_SIZE", "not-a-number")
    assert main(["sync"]) == 2
    results = _samples(textfile.read_text(), "bwsync_last_run_result")
    key = (("profile", "default"), ("result", "config_error"), ("source", "ldap"))
    assert results[key] == 1.0


def test_loop_reuses_its_access_token(fake_bitwarden: FakeBitwarden, tmp_path: Path) -> None:
    """Each pass that talks to Bitwarden reuses the token of the first: Vaultwarden counts
    every token request against its login rate limit (one a minute after a burst of 10).
    The fourth pass is held at its import and stopped there: the loop exits 7."""
    env = _loop_env(fake_bitwarden, tmp_path, free_port())
    env["BWSYNC_SYNC__FULL_RECONCILE_EVERY"] = "1"  # a pass a second after the last applies
    fourth = fake_bitwarden.pause("import", 4)
    run = BwsyncProcess.start(env, "sync", "--every", "1s")
    try:
        fourth.wait()
        run.signal(signal.SIGTERM)
        run.wait_for("stop_requested")
        fourth.drop()  # the import in flight is cut; the stop allows no retry
        assert run.finish() == 7, run.log()
        *passes, last = [s["result"] for s in run.events("summary")]
        # Three passes imported; a pass less than a second after a reconcile found nothing.
        assert last == "interrupted" and passes.count("success") == 3, passes
        assert set(passes) <= {"success", "no_change"}, passes
        assert fake_bitwarden.tokens_issued == 1
    finally:
        if run.proc.poll() is None:
            run.kill()
