"""Taking over the lease of a run that died, with real processes (file source, file state, the
Bitwarden stand-in): a run may only apply a plan made once the holder was gone.

Run 1 holds the lease; run 2 reads the state and the organization while run 1 still runs;
run 1 then applies (imports, revokes) and is killed before its state write. Run 2's plan
predates what run 1 applied: it must not take the lease over and apply it (the review of
issue 19 saw it revoke again: HTTP 400 "Already revoked.", exit 4). It exits 5 and sends
nothing; the next run, which reads the state with run 1 gone, takes over and finishes.
"""

from __future__ import annotations

import json
from pathlib import Path

from bwsync.state.file import FileStateStore
from tests.e2e.bwsync_process import BwsyncProcess, run_bwsync
from tests.e2e.crash import _LockHold
from tests.standins.bitwarden import FakeBitwarden

PROFILE = "takeover"


def _directory(path: Path, users: range) -> None:
    people = [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in users]
    path.write_text(json.dumps({"users": people, "groups": []}))


def _env(fake: FakeBitwarden, tmp_path: Path) -> dict[str, str]:
    return {
        "BWSYNC_PROFILE": PROFILE,
        "BWSYNC_SECRETS_DIR": str(tmp_path),
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(tmp_path / "directory.json"),
        "BWSYNC_BITWARDEN__SERVER": fake.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake.client_secret,
        "BWSYNC_STATE__PATH": str(tmp_path / "state" / "state.json"),
        "BWSYNC_SYNC__REMOVE_MISSING": "true",
        "BWSYNC_SYNC__MAX_REMOVAL_PERCENT": "100",
    }


def test_a_plan_made_while_the_holder_ran_is_not_applied_after_it_died(
    fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    env = _env(fake_bitwarden, tmp_path)
    state = tmp_path / "state" / "state.json"
    _directory(tmp_path / "directory.json", range(5))
    code, first = run_bwsync(env)
    assert code == 0, first.log()
    _directory(tmp_path / "directory.json", range(3))  # u3 and u4 left: both are revoked

    imported = fake_bitwarden.pause("import")
    run1 = BwsyncProcess.start(env)
    imported.wait()  # run 1 holds the lease, its import not yet run
    read = fake_bitwarden.pause("list_groups", before=False)
    run2 = BwsyncProcess.start(env)
    read.wait()  # run 2 has read the state and the organization: its plan is made now
    write = _LockHold(state.with_name("state.json.lock"))
    imported.release()
    write.wait(run1.pid)  # run 1 applied and verified, and waits to write its state
    assert run1.kill() < 0
    write.release()
    revoked = sorted(m.email for m in fake_bitwarden.members if m.status == -1)
    assert revoked == ["u3@example.com", "u4@example.com"]
    fake_bitwarden.clear_requests()

    read.release()
    assert run2.finish() == 5, run2.log()
    error = run2.summary()["error"]
    assert f"{PROFILE}/" in error and f"/{run1.pid}" in error, error
    assert "still running when this run read the state" in error, error
    assert fake_bitwarden.writes() == []  # nothing applied on the old view
    assert run2.events("lease_taken_over") == []
    lease = FileStateStore(state).load().lease
    assert lease is not None and lease.holder.endswith(f"/{run1.pid}")  # left alone

    code, run3 = run_bwsync(env)  # reads the state with run 1 gone: takes over, plans afresh
    assert code == 0, run3.log()
    (taken,) = run3.events("lease_taken_over")
    assert taken["holder"] == lease.holder
    assert run3.summary()["result"] == "success"
    assert [r.status for r in fake_bitwarden.requests_to("revoke_member")] == []
    doc = FileStateStore(state).load()
    assert doc.lease is None and doc.last_run is not None
    assert doc.last_run["result"] == "success"
