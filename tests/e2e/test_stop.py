"""SIGTERM and SIGINT on real ``bwsync`` processes: what the crash-consistency matrix does not
show (a second signal, the grace period running out, a retry wait cut short, loop mode,
``plan``). The file source keeps these small; the LDAP ones use the crash scenario's slapd."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bwsync.state.file import FileStateStore
from tests.e2e.bwsync_process import BwsyncProcess, run_bwsync
from tests.e2e.crash import PEOPLE, StateTarget, base_env, start_directory, state_target
from tests.fixtures.ldap import Slapd
from tests.fixtures.proxy import HoldingProxy, ldap_search
from tests.standins.bitwarden import FakeBitwarden

DIRECTORY = """{"users": [%s], "groups": []}"""


def _file_env(fake: FakeBitwarden, tmp_path: Path, users: int = 3) -> dict[str, str]:
    """A file directory of ``users`` people (over 2,000: three import batches)."""
    people = ",".join(f'{{"id": "u{i}", "email": "u{i}@example.com"}}' for i in range(users))
    directory = tmp_path / "directory.json"
    directory.write_text(DIRECTORY % people)
    return {
        "BWSYNC_PROFILE": "stop",
        "BWSYNC_SECRETS_DIR": str(tmp_path),
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(directory),
        "BWSYNC_BITWARDEN__SERVER": fake.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake.client_secret,
        "BWSYNC_STATE__PATH": str(tmp_path / "state.json"),
        "BWSYNC_SYNC__LARGE_IMPORT": "true",
    }


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_second_signal_ends_bwsync_at_once(
    fake_bitwarden: FakeBitwarden, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    env = _file_env(fake_bitwarden, tmp_path)
    pause = fake_bitwarden.pause("import")
    run = BwsyncProcess.start(env)
    pause.wait()
    run.signal(sig)
    run.wait_for("stop_requested")
    run.signal(sig)
    assert run.finish() == code
    (line,) = run.events("stopped_at_once")
    assert line["signal"] == sig.name and line["exit_code"] == code
    assert run.events("summary") == []  # no time for anything
    pause.drop()
    # The lease stays with the process that is gone; the next run here takes it over.
    lease = FileStateStore(tmp_path / "state.json").load().lease
    assert lease is not None and lease.holder == f"stop/{lease.holder.split('/')[1]}/{run.pid}"
    again_code, again = run_bwsync(env)
    assert again_code == 0, again.log()
    assert again.events("lease_taken_over")[0]["holder"] == lease.holder
    assert again.summary()["result"] == "success"


def test_sigint_stops_cleanly_like_sigterm(fake_bitwarden: FakeBitwarden, tmp_path: Path) -> None:
    """Ctrl-C at a terminal: the same clean stop, exit 7."""
    env = _file_env(fake_bitwarden, tmp_path, users=2100)
    pause = fake_bitwarden.pause("import")
    run = BwsyncProcess.start(env)
    pause.wait()
    run.signal(signal.SIGINT)
    run.wait_for("stop_requested")
    pause.release()
    assert run.finish() == 7, run.log()
    assert run.summary()["error"].startswith("stopped by SIGINT before import 2/2")
    assert FileStateStore(tmp_path / "state.json").load().lease is None


def test_past_the_grace_period_the_request_in_flight_is_given_up(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """The import given up may still run on the server: the lease stays until its timeout
    (3 s here), without a process identity, and the next run waits for that before it reads
    the organization (it was given back at once: the next run could overlap that import)."""
    env = _file_env(fake_bitwarden, tmp_path) | {
        "BWSYNC_STOP_GRACE_SECONDS": "0.5",
        "BWSYNC_BITWARDEN__TIMEOUT": "3",
    }
    pause = fake_bitwarden.pause("import")  # an import that never ends
    run = BwsyncProcess.start(env)
    pause.wait()
    run.signal(signal.SIGTERM)
    assert run.finish() == 7, run.log()
    summary = run.summary()
    assert summary["result"] == "interrupted"
    assert "did not end within the 0.5 s grace period" in summary["error"]
    doc = FileStateStore(tmp_path / "state.json").load()
    assert doc.hash is None and doc.lease is not None
    assert doc.lease.holder.endswith(f"/{run.pid}") and doc.lease.process is None
    assert "gave up at a stop may still run on the server" in (doc.lease.busy or "")
    pause.drop()
    code, again = run_bwsync(env)
    assert code == 0, again.log()
    (waited,) = again.events("waiting_for_a_given_up_write")
    assert waited["holder"] == doc.lease.holder and 0 < waited["seconds"] <= 3
    assert again.events("lease_taken_over") == []
    assert FileStateStore(tmp_path / "state.json").load().lease is None


def test_a_stop_once_every_write_succeeded_lets_the_run_finish(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """SIGTERM while the run re-reads the organization to verify its writes, all accepted:
    the re-read (member list, then groups) and the state write go on, and the run succeeds;
    interrupting it would keep the old hash, and the next run would send everything again."""
    env = _file_env(fake_bitwarden, tmp_path)
    verifying = fake_bitwarden.pause("list_members", nth=2)  # 1: the plan's read, 2: verify's
    run = BwsyncProcess.start(env)
    verifying.wait()
    run.signal(signal.SIGTERM)
    run.wait_for("stop_requested")
    verifying.release()
    assert run.finish() == 0, run.log()
    assert run.summary()["result"] == "success"
    assert run.events("verify")[0]["differences"] == 0
    doc = FileStateStore(tmp_path / "state.json").load()
    assert doc.lease is None and doc.hash is not None
    again_code, again = run_bwsync(env)
    assert again_code == 0, again.log()
    assert again.summary()["result"] == "no_change"


def test_an_interrupted_forced_sync_is_finished_by_the_next_run(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """`sync --force` stopped at its first import batch of two: the stored hash, that of an
    unchanged directory, must not make the next (plain) run find nothing to do."""
    env = _file_env(fake_bitwarden, tmp_path, users=2100)
    code, first = run_bwsync(env)
    assert code == 0, first.log()
    applied = FileStateStore(tmp_path / "state.json").load().hash
    first_batch = fake_bitwarden.pause("import")
    forced = BwsyncProcess.start(env, "sync", "--force")
    first_batch.wait()
    forced.signal(signal.SIGTERM)
    forced.wait_for("stop_requested")
    first_batch.release()
    assert forced.finish() == 7, forced.log()
    assert forced.summary()["error"].startswith("stopped by SIGTERM before import 2/2")
    doc = FileStateStore(tmp_path / "state.json").load()
    assert doc.lease is None and doc.hash is None
    imports = len(fake_bitwarden.requests_to("import"))
    code, again = run_bwsync(env)
    assert code == 0, again.log()
    assert again.summary()["result"] == "success"  # no_change before
    assert "no hash remembered" in again.events("full_apply")[0]["reason"]
    assert len(fake_bitwarden.requests_to("import")) == imports + 2
    assert FileStateStore(tmp_path / "state.json").load().hash == applied


def test_a_retry_wait_is_cut_short(fake_bitwarden: FakeBitwarden, tmp_path: Path) -> None:
    """A 429 asking for 100 s: the stop ends the wait, and no attempt follows (past the 20 s
    grace period the message would say the request was given up instead)."""
    env = _file_env(fake_bitwarden, tmp_path)
    fake_bitwarden.throttle("import", retry_after=100)
    answered = fake_bitwarden.pause("import", before=False)
    run = BwsyncProcess.start(env)
    answered.wait()
    run.signal(signal.SIGTERM)
    run.wait_for("stop_requested")
    answered.release()  # the 429 reaches bwsync, which would wait 100 s
    assert run.finish() == 7, run.log()
    assert run.summary()["error"].startswith("stopped by SIGTERM before import;")
    assert [r.status for r in fake_bitwarden.requests_to("import")] == [429]


def test_loop_mode_stops_the_pass_under_way(fake_bitwarden: FakeBitwarden, tmp_path: Path) -> None:
    """Stopped at its first import of two (at its last, the pass would finish: see
    test_a_stop_once_every_write_succeeded_lets_the_run_finish)."""
    from tests.fixtures.ldap import free_port

    env = _file_env(fake_bitwarden, tmp_path, users=2100) | {
        "BWSYNC_METRICS__LISTEN": f"127.0.0.1:{free_port()}"
    }
    pause = fake_bitwarden.pause("import")
    run = BwsyncProcess.start(env, "sync", "--every", "1h")
    pause.wait()
    run.signal(signal.SIGTERM)
    run.wait_for("stop_requested")
    pause.release()
    assert run.finish() == 7, run.log()
    assert [s["result"] for s in run.events("summary")] == ["interrupted"]
    # Stopped between two passes instead: exit 0 (tests/e2e/test_loop_mode.py).


def test_loop_mode_a_pass_failing_after_the_stop_request_exits_with_its_code(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """The stop comes while the import is in flight; the import then fails on its own (HTTP
    400): the pass fails with exit 4, and so does the loop (it exited 0 before: the pass's
    failure was lost once the stop ended the loop)."""
    from tests.fixtures.ldap import free_port

    env = _file_env(fake_bitwarden, tmp_path) | {
        "BWSYNC_METRICS__LISTEN": f"127.0.0.1:{free_port()}"
    }
    fake_bitwarden.fail("import", status=400)
    pause = fake_bitwarden.pause("import")
    run = BwsyncProcess.start(env, "sync", "--every", "1h")
    pause.wait()
    run.signal(signal.SIGTERM)
    run.wait_for("stop_requested")
    pause.release()  # answered 400
    assert run.finish() == 4, run.log()
    (summary,) = run.events("summary")
    assert summary["result"] == "failed" and summary["exit_code"] == 4
    assert "import failed: HTTP 400" in summary["error"]


def test_loop_mode_stopped_between_passes_exits_0(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    from tests.fixtures.ldap import free_port

    env = _file_env(fake_bitwarden, tmp_path) | {
        "BWSYNC_METRICS__LISTEN": f"127.0.0.1:{free_port()}"
    }
    run = BwsyncProcess.start(env, "sync", "--every", "1h")
    run.wait_for("summary")  # the first pass is over; the next is an hour away
    run.signal(signal.SIGTERM)
    assert run.finish() == 0, run.log()
    assert [s["result"] for s in run.events("summary")] == ["success"]


def test_plan_is_stopped_too(fake_bitwarden: FakeBitwarden, tmp_path: Path) -> None:
    env = _file_env(fake_bitwarden, tmp_path)
    pause = fake_bitwarden.pause("list_members")
    run = BwsyncProcess.start(env, "plan", "--output", "json")
    pause.wait()
    run.signal(signal.SIGTERM)
    run.wait_for("stop_requested")
    pause.release()
    assert run.finish() == 7, run.log()
    assert "stopped by SIGTERM before list groups" in run.log()
    assert fake_bitwarden.writes() == []


# -- the LDAP wait: python-ldap's C library and ldap3 ------------------------------------------


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_directory(tmp_path_factory.mktemp("stop-directory"))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("engine", ["python-ldap", "ldap3"])
@pytest.mark.parametrize("grace", ["20", "0.5"])
def test_a_stop_while_waiting_for_an_ldap_page(
    directory: Slapd,
    fake_bitwarden: FakeBitwarden,
    holding_proxy: Callable[..., HoldingProxy],
    tmp_path: Path,
    engine: str,
    grace: str,
) -> None:
    """Waiting for page 2: the page is let arrive and no page 3 is asked for; or, when it
    never arrives, the wait is given up after the grace period. Neither is a directory
    failure (python-ldap reports a signal in its wait as a lost server)."""
    ldap = holding_proxy(directory.port, ldap=True)
    env = base_env(directory, ldap.port, fake_bitwarden, tmp_path / "s", tmp_path / "m.prom")
    env |= {"BWSYNC_LDAP__ENGINE": engine, "BWSYNC_STOP_GRACE_SECONDS": grace,
            "BWSYNC_STATE__PATH": str(tmp_path / "state.json")}  # fmt: skip
    page = ldap.hold("up", ldap_search(2, containing=PEOPLE.encode()))
    run = BwsyncProcess.start(env)
    page.wait()
    run.signal(signal.SIGTERM)
    run.wait_for("stop_requested")
    if grace == "20":
        page.release()
    assert run.finish() == 7, run.log()
    error = run.summary()["error"]
    if grace == "20":
        assert error.startswith(
            f"stopped by SIGTERM before the next page of the search under {PEOPLE}"
        )
    else:
        assert "did not end within the 0.5 s grace period" in error, error
        page.drop()
    assert fake_bitwarden.writes() == []


# -- object storage: obstore's calls block in Rust, where no signal reaches ------------------


def _s3_env(
    fake: FakeBitwarden, tmp_path: Path, request: pytest.FixtureRequest,
    holding_proxy: Callable[..., HoldingProxy], users: int = 3,
) -> tuple[dict[str, str], StateTarget]:  # fmt: skip
    """The file source against S3 state (moto) behind a proxy that can hold a state call. The
    state timeout is far longer than any test waits: only bwsync's own deadlines end a call
    the proxy holds."""
    target = state_target("s3", request, tmp_path, holding_proxy)
    env = _file_env(fake, tmp_path, users=users) | target.env
    env.pop("BWSYNC_STATE__PATH")
    env |= {"BWSYNC_STATE__TIMEOUT": "900", "BWSYNC_STOP_GRACE_SECONDS": "0.5",
            "BWSYNC_METRICS__TEXTFILE_PATH": str(tmp_path / "bwsync.prom")}  # fmt: skip
    return env, target


def test_the_grace_period_ends_a_state_call_blocked_in_object_storage(
    fake_bitwarden: FakeBitwarden,
    holding_proxy: Callable[..., HoldingProxy],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """bwsync waits on S3 (its lease step: the read before the conditional write) that never
    answers. The SIGALRM of the grace period cannot interrupt obstore's call (Rust); the run
    must end at the grace period all the same, not when the call times out (the review of
    issue 19 saw it end at the store's timeout)."""
    env, target = _s3_env(fake_bitwarden, tmp_path, request, holding_proxy)
    planned = fake_bitwarden.pause("list_groups", before=False)  # the org read, before the lease
    run = BwsyncProcess.start(env)
    planned.wait()
    held = target.hold_write()  # the next call to the store: the lease step's read
    planned.release()
    held.wait(run.pid)
    run.signal(signal.SIGTERM)
    assert run.finish() == 7, run.log()  # while the store still holds the call
    summary = run.summary()
    assert summary["result"] == "interrupted"
    assert "did not end within the 0.5 s grace period" in summary["error"], summary
    assert fake_bitwarden.writes() == []
    held.drop()


def test_a_state_store_silent_after_the_stop_does_not_hold_the_run_past_its_wrap_up(
    fake_bitwarden: FakeBitwarden,
    holding_proxy: Callable[..., HoldingProxy],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Stopped at its first import of two, the run gives its lease back: that write never
    gets an answer.
    bwsync gives it up once the grace period is over once more (the wrap-up's bound: the
    metrics must still go out before the pod's SIGKILL), says so, writes its summary and its
    metrics, and exits 7. The lease stays; the next run here takes it over."""
    env, target = _s3_env(fake_bitwarden, tmp_path, request, holding_proxy, users=2100)
    imported = fake_bitwarden.pause("import")
    run = BwsyncProcess.start(env)
    imported.wait()
    release = target.hold_write()  # the next call to the store: giving the lease back
    run.signal(signal.SIGTERM)
    run.wait_for("stop_requested")
    imported.release()
    release.wait(run.pid)
    assert run.finish() == 7, run.log()  # while the store still holds the write
    (not_updated,) = run.events("state_not_updated")
    assert "did not answer within the time left after the stop" in not_updated["error"]
    assert run.summary()["result"] == "interrupted"
    assert 'result="interrupted"' in (tmp_path / "bwsync.prom").read_text()
    release.drop()
    doc = target.document()
    assert doc is not None and doc.lease is not None and doc.lease.holder.endswith(f"/{run.pid}")
    code, again = run_bwsync(env)
    assert code == 0, again.log()
    assert again.events("lease_taken_over")[0]["holder"] == doc.lease.holder
