"""One writer at a time, across processes, on every backend.

First the store alone (processes calling ``acquire_lease`` at one instant), then the real
thing: two ``bwsync sync`` processes started together against the file source and the
Bitwarden stand-in. Exactly one applies; the other exits 5 and names the lease holder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orjson
import pytest

from tests.fixtures.state import BACKEND_FIXTURES, BACKENDS
from tests.standins.bitwarden import FakeBitwarden

# A process that takes the lease at an agreed instant, and says how it went.
CONTENDER = textwrap.dedent(
    """
    import sys, time
    from bwsync.settings import load_settings
    from bwsync.state import open_store
    from bwsync.errors import LeaseHeldError

    store = open_store(load_settings().state)
    start = float(sys.argv[1])
    while time.time() < start:
        time.sleep(0.001)
    try:
        store.acquire_lease(sys.argv[2], 900)
    except LeaseHeldError as exc:
        print("lost:", exc)
        sys.exit(5)
    print("won")
    """
)


@pytest.fixture(params=BACKENDS)
def backend_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """Environment for a ``bwsync`` process using the parametrized state backend."""
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("BWSYNC_")}
    base["BWSYNC_SECRETS_DIR"] = os.environ["BWSYNC_SECRETS_DIR"]
    if request.param == "file":
        extra = {
            "BWSYNC_STATE__BACKEND": "file",
            "BWSYNC_STATE__PATH": str(tmp_path / "state" / "state.json"),
        }
    else:
        extra = request.getfixturevalue(BACKEND_FIXTURES[request.param]).env()
    return base | extra


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_processes_racing_for_the_lease_exactly_one_wins(backend_env: dict[str, str]) -> None:
    start = time.time() + 2.0  # every process imported and ready before the gun
    procs = [
        _start(["-c", CONTENDER, str(start), f"default/racer/{i}"], backend_env) for i in range(3)
    ]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 5, 5], results
    winner = next(i for i, (code, _, _) in enumerate(results) if code == 0)
    for code, out, _ in results:
        if code == 5:
            assert f"default/racer/{winner}" in out


def test_two_syncs_started_together_only_one_applies(
    backend_env: dict[str, str], fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    directory = tmp_path / "directory.json"
    directory.write_bytes(
        orjson.dumps(
            {
                "users": [{"id": f"u{i}", "email": f"user{i}@example.com"} for i in range(5)],
                "groups": [{"id": "g1", "name": "Staff", "members": ["u0", "u1"]}],
            }
        )
    )
    env = backend_env | {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(directory),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_BITWARDEN__MAX_RETRIES": "0",
        "BWSYNC_LOG__FORMAT": "json",
    }
    # The winner holds the lease across a slow import, so the other run is surely still
    # running (it has read the state) while the lease is held.
    fake_bitwarden.slow("import", 3.0, times=1)
    procs = [_start(["-m", "bwsync", "sync"], env) for _ in range(2)]
    results = [(p.pid, p.wait(90), *p.communicate()) for p in procs]
    codes = sorted(code for _, code, _, _ in results)
    assert codes == [0, 5], results
    assert len(fake_bitwarden.requests_to("import")) == 1
    assert {m.external_id for m in fake_bitwarden.members} >= {f"u{i}" for i in range(5)}
    winner_pid = next(pid for pid, code, _, _ in results if code == 0)
    loser_err = next(err for _, code, _, err in results if code == 5)
    assert "lease" in loser_err
    assert f"/{winner_pid}" in loser_err  # who holds it: profile/host/pid
    # the winner recorded itself and let the lease go; the loser wrote nothing
    show = subprocess.run(
        [sys.executable, "-m", "bwsync", "state", "show"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert show.returncode == 0, show.stderr
    state = orjson.loads(show.stdout)
    assert state["lease"] is None
    assert state["hash"]
    assert [h["result"] for h in state["history"]] == ["success"]
