"""``bwsync sync --every``: loop mode serves /metrics and /healthz and stops on SIGTERM; a
configuration error still reaches the metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bwsync.cli import main
from bwsync.sources.file import demo_directory
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


def test_loop_serves_metrics_and_stops_on_sigterm(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWSYNC_")}
    env.update(
        {
            "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
            "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
            "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
            "BWSYNC_STATE__PATH": str(tmp_path / "state.json"),
            "BWSYNC_FILE__PATH": str(_demo_copy(tmp_path)),
            "BWSYNC_METRICS__LISTEN": f"127.0.0.1:{port}",
            "BWSYNC_PROFILE": "loop",
            "BWSYNC_SECRETS_DIR": str(tmp_path),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bwsync", "sync", "--every", "1s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        results: dict[tuple[tuple[str, str], ...], float] = {}
        deadline = time.monotonic() + 30
        with httpx.Client(trust_env=False) as http:
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    text = http.get(f"http://127.0.0.1:{port}/metrics").text
                except httpx.TransportError:
                    time.sleep(0.1)
                    continue
                results = _samples(text, "bwsync_last_run_result")
                if results.get((("profile", "loop"), ("result", "no_change"), ("source", "file"))):
                    break  # the second run found nothing to do
                time.sleep(0.2)
            assert (
                results.get((("profile", "loop"), ("result", "no_change"), ("source", "file")))
                == 1.0
            ), results
            assert http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert len(fake_bitwarden.requests_to("import")) == 1
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert proc.stderr is not None
        results = [
            orjson.loads(line)["result"]
            for line in proc.stderr.read().decode().splitlines()
            if '"event":"summary"' in line
        ]
        # Stopped between two passes: 0. The signal may also find a third pass under way
        # (every second): that pass stops cleanly, reports interrupted, and the loop exits 7.
        assert code == (7 if results[-1] == "interrupted" else 0), results
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


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
    every token request against its login rate limit (one a minute after a burst of 10)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWSYNC_")}
    env.update(
        {
            "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
            "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
            "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
            "BWSYNC_STATE__PATH": str(tmp_path / "state.json"),
            "BWSYNC_FILE__PATH": str(_demo_copy(tmp_path)),
            "BWSYNC_METRICS__LISTEN": f"127.0.0.1:{port}",
            "BWSYNC_SYNC__FULL_RECONCILE_EVERY": "1",  # every pass applies
            "BWSYNC_SECRETS_DIR": str(tmp_path),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "bwsync", "sync", "--every", "1s"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(fake_bitwarden.requests_to("import")) < 3 and proc.poll() is None:
            assert time.monotonic() < deadline, "three passes did not happen"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert len(fake_bitwarden.requests_to("import")) >= 3
        assert fake_bitwarden.tokens_issued == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
