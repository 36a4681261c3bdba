"""run: stage order guarantees that need a controlled interleaving (the rest is in tests/e2e)."""

from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

from bwsync.config import Settings, SyncSettings, load_settings
from bwsync.errors import DirectoryError
from bwsync.model import Directory, Group, OrgMember, User
from bwsync.payload import build_payload
from bwsync.plan import OrgSnapshot, make_plan
from bwsync.run import RunOptions, execute, unchanged_batches
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


class _WaitingSource:
    """Holds the directory read until the stand-in has seen the member list requested (or a
    deadline passes): only a read made beside the fetch lets it return early."""

    name = "file"
    server = "waiting test source"

    def __init__(self, fake: FakeBitwarden, *, patience: float = 5, fail: bool = False) -> None:
        self.fake = fake
        self.patience = patience
        self.fail = fail
        self.saw_list_during_fetch = False

    def fetch(self, request: FetchRequest) -> Directory:
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline and not self.fake.requests_to("list_members"):
            time.sleep(0.01)
        self.saw_list_during_fetch = bool(self.fake.requests_to("list_members"))
        if self.fail:
            raise DirectoryError("waiting test source: bind refused")
        return Directory(users=[User("u1", "u1", "u1@example.com")], groups=None)

    def check(self) -> list[CheckResult]:
        return []


def test_without_a_remembered_hash_the_org_is_read_beside_the_fetch(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    source = _WaitingSource(fake_bitwarden)
    outcome = execute(
        _settings(fake_bitwarden, tmp_path / "state.json"), RunOptions(), source=source
    )
    assert outcome.report.result == "success"
    assert source.saw_list_during_fetch
    assert len(fake_bitwarden.requests_to("list_members")) == 2  # the snapshot, the re-read
    assert outcome.report.planned == {"invite": 1}


def test_with_a_remembered_hash_an_unchanged_directory_costs_no_request(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    settings = _settings(fake_bitwarden, tmp_path / "state.json")
    assert execute(settings, RunOptions(), source=_DeltaSource()).report.result == "success"
    fake_bitwarden.clear_requests()
    source = _WaitingSource(fake_bitwarden, patience=0.5)
    outcome = execute(settings, RunOptions(), source=source)
    assert outcome.report.result == "no_change"
    assert not source.saw_list_during_fetch
    assert fake_bitwarden.requests == []


def test_a_directory_failure_is_reported_without_waiting_for_the_org_read(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    source = _WaitingSource(fake_bitwarden, patience=0, fail=True)
    fake_bitwarden.slow("list_members", seconds=8, times=1)
    start = time.monotonic()
    outcome = execute(
        _settings(fake_bitwarden, tmp_path / "state.json"), RunOptions(), source=source
    )
    assert time.monotonic() - start < 7  # the slow answer (8 s) was not awaited
    assert outcome.report.exit_code == 3
    assert "bind refused" in (outcome.report.error or "")
    assert fake_bitwarden.requests_to("import") == []


class _Cycle:
    def __init__(self) -> None:
        self.me = self


class _CycleSource(_DeltaSource):
    """Leaves one reference cycle behind per read, watched through a weak reference."""

    def __init__(self) -> None:
        super().__init__()
        self.left: list[weakref.ref[_Cycle]] = []

    def fetch(self, request: FetchRequest) -> Directory:
        self.left.append(weakref.ref(_Cycle()))
        return super().fetch(request)


def test_the_collector_is_paused_for_a_pass_and_catches_up_at_the_next(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    settings = _settings(fake_bitwarden, tmp_path / "state.json")
    source = _CycleSource()
    try:
        assert gc.isenabled()
        execute(settings, RunOptions(), source=source)
        assert gc.isenabled()  # resumed after the pass
        gc.collect()
        assert source.left[0]() is not None  # frozen with the pass's objects, not yet collected
        execute(settings, RunOptions(), source=source)  # the next pass (sync --every)
        assert source.left[0]() is None  # collected when the next pass started
    finally:
        gc.unfreeze()


def test_unchanged_batches_are_member_batches_without_a_planned_import_change() -> None:
    users = [User(f"u{i}", f"u{i}", f"u{i}@example.com") for i in range(4100)]
    groups = [Group("g", "g", "G", user_member_external_ids={"u1": None})]
    sync = SyncSettings(large_import=True)
    payload = build_payload(users, groups, sync, api_url="https://x", org_id="o")
    assert [(r.members, r.groups) for r in payload.requests] == [
        (2000, 0),
        (2000, 0),
        (100, 0),
        (0, 1),
    ]
    members = [OrgMember(f"m{i}", f"u{i}@example.com", f"u{i}") for i in range(4100) if i != 2500]
    org = OrgSnapshot(members=members, groups=[])
    plan = make_plan(Directory(users=users, groups=groups), org, sync)
    assert {(c.action, c.external_id) for c in plan.changes} == {
        ("invite", "u2500"),
        ("group_create", "g"),
    }
    assert unchanged_batches(payload, plan) == {0, 2}  # the group batch always goes
    assert (
        unchanged_batches(payload, make_plan(Directory(users=users, groups=groups), None, sync))
        == set()
    )
    single = build_payload(users[:10], groups, SyncSettings(), api_url="https://x", org_id="o")
    assert (
        unchanged_batches(
            single, make_plan(Directory(users=users[:10], groups=groups), org, SyncSettings())
        )
        == set()
    )
