"""``bwsync state show|clear`` and a sync's state handling, through the CLI, on every backend."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from bwsync.cli import main
from bwsync.settings import load_settings
from bwsync.state import open_store
from bwsync.state.base import STATE_VERSION, StateStore
from tests.standins.bitwarden import FakeBitwarden

BACKENDS = ["file", "objectstore", "configmap-in-cluster", "configmap-kubeconfig"]


@pytest.fixture(params=BACKENDS)
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> StateStore:
    """The parametrized backend's ``BWSYNC_STATE__*`` set; returns a store on the same object."""
    if request.param == "file":
        env = {
            "BWSYNC_STATE__BACKEND": "file",
            "BWSYNC_STATE__PATH": str(tmp_path / "state.json"),
        }
    elif request.param == "objectstore":
        env = request.getfixturevalue("s3_state").env()
    elif request.param == "configmap-in-cluster":
        env = request.getfixturevalue("kube_in_cluster").env()
    else:
        env = request.getfixturevalue("kubeconfig").env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return open_store(load_settings().state)


@pytest.fixture
def directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_bitwarden: FakeBitwarden
) -> Path:
    path = tmp_path / "directory.json"
    path.write_bytes(
        orjson.dumps({"users": [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(3)]})
    )
    for name, value in {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(path),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_BITWARDEN__MAX_RETRIES": "0",
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    return path


def test_show_and_clear(
    backend: StateStore, directory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["state", "show"]) == 0
    empty = orjson.loads(capsys.readouterr().out)
    assert empty["hash"] is None
    assert empty["version"] == STATE_VERSION
    assert main(["sync"]) == 0
    capsys.readouterr()
    assert main(["state", "show"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert shown["hash"]
    assert shown["last_run"]["result"] == "success"
    assert shown["lease"] is None
    assert main(["state", "clear"]) == 0
    out = capsys.readouterr().out
    assert backend.description in out
    assert backend.load().hash is None


def test_failed_sync_keeps_the_previous_state(
    backend: StateStore,
    directory: Path,
    fake_bitwarden: FakeBitwarden,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["sync"]) == 0
    before = backend.load()
    before.delta = {"users": "delta-token-1"}  # as a delta-capable source would have saved
    backend.save(before)
    directory.write_bytes(
        orjson.dumps({"users": [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(4)]})
    )
    fake_bitwarden.server_error("import", times=None, status=500)
    assert main(["sync"]) == 4
    after = backend.load()
    assert after.hash == before.hash
    assert after.delta == {"users": "delta-token-1"}
    assert after.last_success == before.last_success
    assert after.lease is None
    assert after.last_run is not None
    assert after.last_run["result"] != "success"
    fake_bitwarden.clear_faults()
    assert main(["sync"]) == 0
    final = backend.load()
    assert final.hash != before.hash
    assert final.last_run is not None
    assert final.last_run["result"] == "success"


def test_newer_state_stops_the_sync_with_exit_5(
    backend: StateStore,
    directory: Path,
    fake_bitwarden: FakeBitwarden,
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend.load()
    newer = orjson.dumps({"version": STATE_VERSION + 1, "hash": "future"})
    backend._write(newer, backend._version)
    assert main(["sync"]) == 5
    err = capsys.readouterr().err
    assert backend.description in err
    assert "upgrade bwsync" in err
    assert fake_bitwarden.requests_to("import") == []
    assert backend._read()[0] == newer
