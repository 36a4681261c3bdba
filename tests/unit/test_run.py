"""run: stage order guarantees that need a controlled interleaving (the rest is in tests/e2e).

The directory is ``tests.fixtures.memory_source.MemorySource``; where the order of the fetch and
the organization read beside it matters, the stand-in's pauses (``FakeBitwarden.pause``) say
where the read stands, so no test sleeps or reads a wall clock.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

from bwsync import run
from bwsync.config import OktaSettings, Settings, SyncSettings
from bwsync.errors import DirectoryError
from bwsync.fingerprint import plan_fingerprint
from bwsync.memory import Memory, scope_of
from bwsync.model import STATUS_REVOKED, User
from bwsync.run import RunOptions, execute
from bwsync.settings import load_settings
from bwsync.sources.okta import OktaSource
from bwsync.state.file import FileStateStore
from bwsync.stop import StopRequest
from tests.fixtures.clock import FakeClock
from tests.fixtures.memory_source import MemorySource, one_user
from tests.standins.bitwarden import FakeBitwarden


def _settings(fake: FakeBitwarden, state_path: Path) -> Settings:
    return load_settings(
        bitwarden={
            "server": fake.base_url,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
        state={"backend": "file", "path": state_path},
    )


def test_a_run_that_finished_meanwhile_stops_this_one(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    settings = _settings(fake_bitwarden, path)
    store = FileStateStore(path)

    def another_run_finishes() -> None:
        other = FileStateStore(path)
        doc = other.load()
        doc.hash = "written-by-the-other-run"
        doc.last_success_timestamp = 1.0
        other.save(doc)

    source = MemorySource(one_user(), during=another_run_finishes)
    outcome = execute(settings, RunOptions(), source=source, store=store)
    assert outcome.report.exit_code == 5
    assert "since this run read it" in (outcome.report.error or "")
    assert fake_bitwarden.requests_to("import") == []
    after = FileStateStore(path).load()
    assert after.hash == "written-by-the-other-run"
    assert after.lease is None  # our lease was given back


def test_unchanged_runs_keep_the_newest_delta_token(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    settings = _settings(fake_bitwarden, path)
    source = MemorySource(one_user(), delta=True)
    assert execute(settings, RunOptions(), source=source).report.result == "success"
    assert FileStateStore(path).load().delta == {"users": "token-1"}
    assert execute(settings, RunOptions(), source=source).report.result == "no_change"
    assert FileStateStore(path).load().delta == {"users": "token-2"}
    assert len(fake_bitwarden.requests_to("import")) == 1


PATIENCE = 60.0
"""Seconds a test waits for the read beside the fetch to reach a pause: only a run that broke
the order waits that long, and then the test fails."""


def snapshot_reads() -> set[threading.Thread]:
    """The threads reading the organization beside a fetch (``bwsync.snapshot``) alive now."""
    return {t for t in threading.enumerate() if t.name == "bwsync-snapshot"}


def test_without_a_remembered_hash_the_org_is_read_beside_the_fetch(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    # The fetch returns only once the member list was asked for: a read made after the fetch
    # would never come (the pause fails the test instead of hanging).
    listed = fake_bitwarden.pause("list_members")

    def until_the_org_is_listed() -> None:
        listed.wait(PATIENCE)
        listed.release()

    source = MemorySource(one_user(), during=until_the_org_is_listed)
    outcome = execute(
        _settings(fake_bitwarden, tmp_path / "state.json"), RunOptions(), source=source
    )
    assert outcome.report.result == "success"
    assert len(fake_bitwarden.requests_to("list_members")) == 2  # the snapshot, the re-read
    assert outcome.report.planned == {"invite": 1}


def test_with_a_remembered_hash_an_unchanged_directory_costs_no_request(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    settings = _settings(fake_bitwarden, tmp_path / "state.json")
    source = MemorySource(one_user())
    assert execute(settings, RunOptions(), source=source).report.result == "success"
    fake_bitwarden.clear_requests()
    others = snapshot_reads()
    reading: list[bool] = []
    # A read started with the fetch is either running now or done, its requests logged.
    source.during = lambda: reading.append(
        bool(snapshot_reads() - others) or bool(fake_bitwarden.requests)
    )
    outcome = execute(settings, RunOptions(), source=source)
    assert outcome.report.result == "no_change"
    assert reading == [False]
    assert fake_bitwarden.requests == []


def test_a_directory_failure_is_reported_without_waiting_for_the_org_read(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    # The member list is held until the run has returned: a run that waited for it would
    # not return (until the pause's patience runs out, and then the assertion fails).
    held = fake_bitwarden.pause("list_members")
    source = MemorySource(
        one_user(),
        during=lambda: held.wait(PATIENCE),
        error=DirectoryError("memory source: bind refused"),
    )
    outcome = execute(
        _settings(fake_bitwarden, tmp_path / "state.json"), RunOptions(), source=source
    )
    assert not held.finished.is_set()  # still held: not awaited
    held.release()
    assert outcome.report.exit_code == 3
    assert "bind refused" in (outcome.report.error or "")
    assert fake_bitwarden.requests_to("import") == []


def _batched(fake: FakeBitwarden, path: Path) -> Settings:
    return load_settings(
        bitwarden={
            "server": fake.base_url,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
        },
        state={"backend": "file", "path": path},
        sync={"large_import": True},
    )


def _remember_a_hash(path: Path) -> None:
    """A state as an earlier apply left it, with the default plan settings (remove_missing,
    removal_mode, stale_groups, protected members) and no memory: only the hash differs."""
    store = FileStateStore(path)
    doc = store.load()
    doc.hash = "the hash of an earlier directory"
    doc.fingerprint = plan_fingerprint(SyncSettings(), memory=False)
    store.save(doc)


def test_an_email_freed_by_a_removal_in_another_batch_is_invited(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    # x5 holds jsmith@ in the org and is deleted in the directory (batch 1); a new hire y has
    # jsmith@ (batch 2): the removal frees the email, so the server invites y.
    users = [User(f"u{i}", f"u{i}", f"u{i}@example.com") for i in range(4100)]
    users[5] = User("x5", "x5", "x5-renamed@example.com", deleted=True)
    users[3000] = User("y", "y", "jsmith@example.com")
    for u in users:
        if u.external_id not in ("x5", "y"):
            fake_bitwarden.add_member(u.email, external_id=str(u.external_id))
    fake_bitwarden.add_member("jsmith@example.com", external_id="x5")
    path = tmp_path / "state.json"
    _remember_a_hash(path)  # a plain changed run: the batches that change nothing are left out
    settings = _batched(fake_bitwarden, path).model_copy(
        update={"sync": SyncSettings(large_import=True, max_removal_percent=100)}
    )
    outcome = execute(settings, RunOptions(), source=MemorySource(users))
    assert outcome.report.result == "success", outcome.report.error
    assert outcome.report.planned == {"remove": 1, "invite": 1}
    assert outcome.report.unsent_batches == 1  # batch 3 (u4000-u4099) holds no change
    assert fake_bitwarden.find_member(external_id="y") is not None
    assert outcome.differences == []


def test_a_stop_during_the_fetch_ends_the_run_before_any_bitwarden_request(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    _remember_a_hash(path)
    stop = StopRequest()
    users = [User("u1", "u1", "u1@example.com")]
    outcome = execute(
        _settings(fake_bitwarden, path),
        RunOptions(),
        source=MemorySource(users, during=lambda: stop.request("SIGTERM")),
        stop=stop,
    )
    report = outcome.report
    assert (report.result, report.exit_code) == ("interrupted", 7)
    assert report.error is not None and report.error.startswith("stopped by SIGTERM before")
    assert fake_bitwarden.requests == []
    doc = FileStateStore(path).load()
    assert doc.hash == "the hash of an earlier directory"
    assert doc.lease is None
    assert doc.last_run is not None and doc.last_run["result"] == "interrupted"


def test_a_request_failing_of_the_grace_periods_interruption_is_an_interruption(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    stop = StopRequest(grace=5)

    def grace_period_over() -> None:
        stop.request("SIGTERM")
        stop.given_up = True  # what the signal watcher sets when it interrupts the wait

    # a directory read that the grace period interrupted, as python-ldap reports it
    source = MemorySource(
        during=grace_period_over,
        error=DirectoryError("LDAP ldap://x: server unreachable: Interrupted system call"),
    )
    outcome = execute(
        _settings(fake_bitwarden, tmp_path / "state.json"),
        RunOptions(),
        source=source,
        stop=stop,
    )
    assert (outcome.report.result, outcome.report.exit_code) == ("interrupted", 7)
    assert outcome.report.error == (
        "stopped by SIGTERM: the request in flight did not end within the 5 s grace period "
        "(BWSYNC_STOP_GRACE_SECONDS), and was given up (LDAP ldap://x: server unreachable: "
        "Interrupted system call); the next run starts over"
    )


def test_no_state_call_starts_after_a_stop(fake_bitwarden: FakeBitwarden, tmp_path: Path) -> None:
    """Stopped before the run: not even the state is read. Stopped while the organization is
    read (the last request before the lease): the lease is never taken."""
    from bwsync.bitwarden import BitwardenClient
    from bwsync.model import RunReport

    path = tmp_path / "state.json"
    _remember_a_hash(path)
    before = FileStateStore(path).load()
    early = StopRequest()
    early.request("SIGTERM")
    users = MemorySource(one_user())
    outcome = execute(_settings(fake_bitwarden, path), RunOptions(), source=users, stop=early)
    assert outcome.report.error == (
        "stopped by SIGTERM before reading the state; nothing more was sent, and the next run "
        "starts over"
    )
    assert users.fetches == 0
    assert FileStateStore(path).load() == before  # not even the run recorded: no state call

    stop = StopRequest()

    def client(settings: Settings, report: RunReport) -> BitwardenClient:
        def on_request(endpoint: str, code: int) -> None:
            if endpoint == "list_groups":
                stop.request("SIGTERM")  # the plan's last read is in flight

        return BitwardenClient(settings.bitwarden, on_request=on_request)

    outcome = execute(
        _settings(fake_bitwarden, path),
        RunOptions(),
        source=users,
        client_factory=client,
        stop=stop,
    )
    assert (outcome.report.error or "").startswith(
        "stopped by SIGTERM before taking the state lease"
    )
    assert fake_bitwarden.writes() == []
    doc = FileStateStore(path).load()
    assert doc.lease is None and doc.hash == before.hash


def test_a_stop_while_applying_gives_the_lease_back_and_keeps_the_hash(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """Stopped while import 1/3 is in flight: it is let finish, import 2/3 is never sent, the
    lease is given back and the hash stays the earlier directory's."""
    from bwsync.bitwarden import BitwardenClient
    from bwsync.model import RunReport

    stop = StopRequest()

    def client(settings: Settings, report: RunReport) -> BitwardenClient:
        def on_request(endpoint: str, code: int) -> None:
            report.requests[(endpoint, code)] = report.requests.get((endpoint, code), 0) + 1
            if endpoint == "import":
                stop.request("SIGTERM")  # while the first import is in flight

        return BitwardenClient(settings.bitwarden, on_request=on_request)

    path = tmp_path / "state.json"
    _remember_a_hash(path)
    users = [User(f"u{i}", f"u{i}", f"u{i}@example.com") for i in range(4100)]
    outcome = execute(
        _batched(fake_bitwarden, path),
        RunOptions(),
        source=MemorySource(users),
        client_factory=client,
        stop=stop,
    )
    report = outcome.report
    assert (report.result, report.exit_code) == ("interrupted", 7)
    assert "before import 2/3" in (report.error or "")
    assert report.sent == {"members": 2000, "groups": 0}
    assert len(fake_bitwarden.requests_to("import")) == 1
    assert len(fake_bitwarden.members) == 2000
    doc = FileStateStore(path).load()
    assert doc.hash == "the hash of an earlier directory"
    assert doc.lease is None
    assert doc.last_run is not None and doc.last_run["result"] == "interrupted"
    # The next run finishes the job.
    again = execute(_batched(fake_bitwarden, path), RunOptions(), source=MemorySource(users))
    assert again.report.result == "success", again.report.error
    assert len(fake_bitwarden.members) == 4100


def test_giving_an_externalid_to_a_second_member_is_refused(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    # u1's email changed to new@, which an admin had added by hand: §3.4 step 5 would give the
    # hand-added member externalId u1 too, and every later import would fail with a 500.
    fake_bitwarden.add_member("old@example.com", external_id="u1")
    fake_bitwarden.add_member("new@example.com")
    users = [User("u1", "u1", "new@example.com"), User("u2", "u2", "u2@example.com")]
    outcome = execute(
        _settings(fake_bitwarden, tmp_path / "state.json"), RunOptions(), source=MemorySource(users)
    )
    assert outcome.report.exit_code == 6
    assert "new@example.com: the server would give externalId u1" in (outcome.report.error or "")
    assert fake_bitwarden.writes() == []


def test_a_read_left_running_does_not_change_the_finished_report(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    # The fetch fails once the member list is in, while the read is held at the groups.
    groups = fake_bitwarden.pause("list_groups")
    others = snapshot_reads()
    source = MemorySource(
        error=DirectoryError("memory source: bind refused"), during=lambda: groups.wait(PATIENCE)
    )
    outcome = execute(
        _settings(fake_bitwarden, tmp_path / "state.json"), RunOptions(), source=source
    )
    before = dict(outcome.report.requests)
    assert not fake_bitwarden.requests_to("list_groups")
    (left,) = snapshot_reads() - others
    groups.release()  # the abandoned read goes on to the groups
    left.join()
    assert fake_bitwarden.requests_to("list_groups")
    assert dict(outcome.report.requests) == before


def test_a_first_run_sends_every_batch_as_its_snapshot_is_as_old_as_the_fetch(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    users = [User(f"u{i}", f"u{i}", f"u{i}@example.com") for i in range(4100)]
    for u in users[:-1]:
        fake_bitwarden.add_member(u.email, external_id=str(u.external_id))

    snapshot_in = fake_bitwarden.pause("list_groups", before=False)

    def removed_by_hand_during_the_fetch() -> None:
        snapshot_in.wait(PATIENCE)  # the snapshot, read beside the fetch, is in (its answer held)
        fake_bitwarden.remove_member(fake_bitwarden.find_member(external_id="u10"))  # type: ignore[arg-type]
        snapshot_in.release()

    path = tmp_path / "state.json"
    outcome = execute(
        _batched(fake_bitwarden, path),
        RunOptions(),
        source=MemorySource(users, during=removed_by_hand_during_the_fetch),
    )
    assert outcome.report.result == "success", outcome.report.error
    assert outcome.report.unsent_batches == 0
    assert len(fake_bitwarden.requests_to("import")) == 3
    assert fake_bitwarden.find_member(external_id="u10") is not None  # invited again
    assert FileStateStore(path).load().last_full_reconcile is not None


def test_plan_shows_the_batches_a_sync_would_leave_out(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """bwsync plan and bwsync sync agree on which batches go out: with a remembered hash, the
    member batches holding no change are marked as not sent and their entries are not listed."""
    from bwsync.output import plan_document

    users = [User(f"u{i}", f"u{i}", f"u{i}@example.com") for i in range(4100)]
    for u in users[:-1]:
        fake_bitwarden.add_member(u.email, external_id=str(u.external_id))
    path = tmp_path / "state.json"
    _remember_a_hash(path)
    settings = _batched(fake_bitwarden, path)
    planned = execute(settings, RunOptions(command="plan"), source=MemorySource(users))
    assert planned.unsent == {0, 1}  # u0-u3999 are in the organization already
    doc = plan_document(planned)
    assert [r["sent"] for r in doc["requests"]] == [False, False, True]
    assert [m["externalId"] for m in doc["send"]["members"]] == [f"u{i}" for i in range(4000, 4100)]
    assert fake_bitwarden.writes() == []
    synced = execute(settings, RunOptions(), source=MemorySource(users))
    assert synced.unsent == planned.unsent
    assert synced.report.unsent_batches == 2
    assert len(fake_bitwarden.requests_to("import")) == 1


def test_plan_directory_only_says_why_the_organization_was_not_read(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """With the API key at hand, --directory-only is why nothing was read: the note says so,
    not that a key or list endpoints were missing."""
    settings = _settings(fake_bitwarden, tmp_path / "state.json")
    options = RunOptions(command="plan", bitwarden=False)
    outcome = execute(settings, options, source=MemorySource.of("a@x.com"))
    assert outcome.plan is not None and not outcome.plan.org_known
    assert outcome.plan.notes == [
        "--directory-only: the organization was not read; showing what will be sent "
        "(1 members, 0 groups)"
    ]
    assert fake_bitwarden.requests == []


def test_a_finished_run_is_freed_without_the_cyclic_collector(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """The CLI pauses the collector for a pass: nothing of a finished run may stay alive in a
    reference cycle (a read beside the fetch once held the run that held it), or a 100,000-user
    pass would be kept until a collection walks it all."""
    import gc
    import weakref

    collecting = gc.isenabled()
    gc.disable()
    try:
        for refused in (False, True):  # the read beside the fetch succeeds, or is refused
            if refused:
                fake_bitwarden.fail("list_members", status=403, times=None)
            source = MemorySource(one_user())
            ref = weakref.ref(source)
            outcome = execute(
                _settings(fake_bitwarden, tmp_path / f"{refused}.json"), RunOptions(), source=source
            )
            assert outcome.report.exit_code == (4 if refused else 0), outcome.report.error
            del source, outcome
            assert ref() is None
    finally:
        if collecting:
            gc.enable()


def test_a_bad_bitwarden_ca_file_stops_the_run_before_any_connection(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """Even though the client is built beside the fetch: an empty directory must not turn it
    into 'no change', nor a fetch error into exit 3."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    base = _settings(fake_bitwarden, tmp_path / "state.json")
    settings = base.model_copy(
        update={"bitwarden": base.bitwarden.model_copy(update={"ca_file": bad})}
    )
    for users in ([], [User("u1", "u1", "u1@example.com")]):
        source = MemorySource(users)
        outcome = execute(settings, RunOptions(), source=source)
        assert (outcome.report.result, outcome.report.exit_code) == ("config_error", 2)
        assert "BWSYNC_BITWARDEN__CA_FILE" in (outcome.report.error or "")
        assert source.fetches == 0
    assert fake_bitwarden.requests == []


def test_a_due_full_reconcile_applies_an_unchanged_directory(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    base = _settings(fake_bitwarden, path)
    settings = base.model_copy(
        update={"sync": base.sync.model_copy(update={"full_reconcile_every": 3600})}
    )
    source = MemorySource(one_user())
    assert execute(settings, RunOptions(), source=source).report.result == "success"
    assert execute(settings, RunOptions(), source=source).report.result == "no_change"
    store = FileStateStore(path)
    doc = store.load()
    assert doc.last_full_reconcile is not None
    doc.last_full_reconcile -= 3601  # an hour and a second ago
    store.save(doc)
    imports = len(fake_bitwarden.requests_to("import"))
    outcome = execute(settings, RunOptions(), source=source)
    assert outcome.report.result == "success"
    assert len(fake_bitwarden.requests_to("import")) == imports + 1
    assert (FileStateStore(path).load().last_full_reconcile or 0) > doc.last_full_reconcile


def _vw_settings(fake: FakeBitwarden, state_path: Path, **sync: object) -> Settings:
    return load_settings(
        bitwarden={
            "server": fake.base_url,
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "max_retries": 0,
        },
        sync={"max_removal_percent": 100, **sync},
        state={"backend": "file", "path": state_path},
    )


def _remembered(path: Path, fake: FakeBitwarden) -> Memory | None:
    scope = scope_of(fake.org_id)
    return Memory.load(FileStateStore(path).load().memory, scope)


def test_the_memory_changes_only_with_a_successful_run(
    fake_vaultwarden: FakeBitwarden, tmp_path: Path
) -> None:
    path = tmp_path / "state.json"
    settings = _vw_settings(fake_vaultwarden, path, remove_missing=True)
    source = MemorySource.of("a@x.com", "b@x.com")
    assert execute(settings, RunOptions(), source=source).report.exit_code == 0
    first = _remembered(path, fake_vaultwarden)
    assert first is not None and first.members == {"a@x.com", "b@x.com"}
    source.users = MemorySource.of("a@x.com").users
    fake_vaultwarden.server_error("import", times=1)
    failed = execute(settings, RunOptions(), source=source).report
    assert failed.exit_code == 4
    assert _remembered(path, fake_vaultwarden) == first  # not half-written
    assert execute(settings, RunOptions(), source=source).report.exit_code == 0
    after = _remembered(path, fake_vaultwarden)
    assert after is not None
    assert (after.members, after.revoked) == (frozenset({"a@x.com"}), frozenset({"b@x.com"}))
    assert fake_vaultwarden.find_member(email="b@x.com").status == STATUS_REVOKED  # type: ignore[union-attr]


def test_a_memory_too_big_to_keep(
    fake_vaultwarden: FakeBitwarden, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Needed (removals judged against it): nothing is applied, exit 5. Not needed: the run
    applies and keeps none, and says so."""
    monkeypatch.setattr(run, "MAX_MEMORY_BYTES", 50)
    path = tmp_path / "state.json"
    source = MemorySource.of("a@x.com", "b@x.com")
    needed = execute(
        _vw_settings(fake_vaultwarden, path, remove_missing=True), RunOptions(), source=source
    ).report
    assert needed.exit_code == 5
    assert "over the 50 a state document may hold" in (needed.error or "")
    assert fake_vaultwarden.requests_to("import") == []
    plain = execute(_vw_settings(fake_vaultwarden, path), RunOptions(), source=source).report
    assert plain.exit_code == 0
    assert len(fake_vaultwarden.requests_to("import")) == 1
    assert FileStateStore(path).load().memory is None


def test_a_cloud_sources_requests_are_counted_for_the_metrics_even_when_it_fails(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    def okta(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/groups":
            return httpx.Response(503, json={"errorCode": "E0000009"})
        return httpx.Response(200, json=[])

    source = OktaSource(
        OktaSettings(org_url="https://example.okta.com", token="00token"),
        SyncSettings(),
        transport=httpx.MockTransport(okta),
        policy=FakeClock().policy(max_retries=1),
    )
    outcome = execute(
        _settings(fake_bitwarden, tmp_path / "state.json"), RunOptions(), source=source
    )
    assert outcome.report.exit_code == 3
    # Two users queries answered, the groups query failed twice (one retry).
    assert outcome.report.directory_requests == {200: 2, 503: 2}
    assert outcome.report.directory_retries == 1


def test_a_failed_run_leaves_another_runs_lease_of_the_same_name_alone(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """Another run of the same holder name (a hostNetwork pod of the same node, as PID 1; or a
    lease of an older version, without identity) holds the lease: this run fails before it
    takes the lease, and leaves that run's document alone (its lease above all)."""
    path = tmp_path / "state.json"
    other = FileStateStore(path)
    held = other.acquire_lease(run.lease_holder("default"), 900)
    source = MemorySource(one_user(), error=DirectoryError("memory source: bind refused"))
    outcome = execute(_settings(fake_bitwarden, path), RunOptions(), source=source)
    assert outcome.report.exit_code == 3
    after = FileStateStore(path).load()
    assert after.lease == held.lease
    assert after.last_run is None
