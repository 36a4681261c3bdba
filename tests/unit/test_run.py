"""run: stage order guarantees that need a controlled interleaving (the rest is in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

from bwsync.config import Settings, load_settings
from bwsync.model import Directory, User
from bwsync.run import RunOptions, execute
from bwsync.sources.base import CheckResult, FetchRequest
from bwsync.state.file import FileStateStore
from bwsync.testing.fake_bitwarden import FakeBitwarden


def _settings(fake: FakeBitwarden, state_path: Path) -> Settings:
    return load_settings(
        bitwarden={
            "server": fake.base_url,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
        state={"backend": "file", "path": state_path},
    )


class _RacingSource:
    """Returns one user; while being read, 'another run' finishes and records its success."""

    name = "file"
    server = "racing test source"

    def __init__(self, state_path: Path) -> None:
        self.state_path = state_path

    def fetch(self, request: FetchRequest) -> Directory:
        other = FileStateStore(self.state_path)
        doc = other.load()
        doc.hash = "written-by-the-other-run"
        doc.last_success_timestamp = 1.0
        other.save(doc)
        return Directory(users=[User("u1", "u1", "u1@example.com")], groups=None)

    def check(self) -> list[CheckResult]:
        return []


def test_a_run_that_finished_meanwhile_stops_this_one(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    settings = _settings(fake_bitwarden, path)
    store = FileStateStore(path)
    outcome = execute(settings, RunOptions(), source=_RacingSource(path), store=store)
    assert outcome.report.exit_code == 5
    assert "since this run read it" in (outcome.report.error or "")
    assert fake_bitwarden.requests_to("import") == []
    after = FileStateStore(path).load()
    assert after.hash == "written-by-the-other-run"
    assert after.lease is None  # our lease was given back


class _DeltaSource:
    """A source that hands out a new delta token on every read."""

    name = "file"
    server = "delta test source"

    def __init__(self) -> None:
        self.reads = 0

    def fetch(self, request: FetchRequest) -> Directory:
        self.reads += 1
        return Directory(
            users=[User("u1", "u1", "u1@example.com")],
            groups=None,
            delta={"users": f"token-{self.reads}"},
        )

    def check(self) -> list[CheckResult]:
        return []


def test_unchanged_runs_keep_the_newest_delta_token(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    settings = _settings(fake_bitwarden, path)
    source = _DeltaSource()
    assert execute(settings, RunOptions(), source=source).report.result == "success"
    assert FileStateStore(path).load().delta == {"users": "token-1"}
    assert execute(settings, RunOptions(), source=source).report.result == "no_change"
    assert FileStateStore(path).load().delta == {"users": "token-2"}
    assert len(fake_bitwarden.requests_to("import")) == 1
