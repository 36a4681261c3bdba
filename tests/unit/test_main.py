"""The process entry point: what it skips at exit must not lose output or the exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bwsync

SCRIPT = Path(sys.executable).with_name("bwsync")


def _env(**extra: str) -> dict[str, str]:
    """Without PYTHONUNBUFFERED (set on some machines), so piped output is buffered."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BWSYNC_") and k != "PYTHONUNBUFFERED"
    }
    return {**env, "BWSYNC_SECRETS_DIR": "/nonexistent", **extra}


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "bwsync"],
        pytest.param(
            [str(SCRIPT)],
            marks=pytest.mark.skipif(not SCRIPT.exists(), reason="no console script installed"),
        ),
    ],
    ids=["-m", "script"],
)
def test_piped_output_and_the_exit_code_survive_the_fast_exit(command: list[str]) -> None:
    # Piped, stdout is block-buffered: without the flush before os._exit it would be lost.
    ok = subprocess.run(
        [*command, "version"], check=False, capture_output=True, text=True, env=_env()
    )
    assert (ok.returncode, ok.stdout) == (0, f"bwsync {bwsync.__version__}\n")
    bad = subprocess.run(
        [*command, "sync"],
        check=False,
        capture_output=True,
        text=True,
        env=_env(BWSYNC_SOURCE="ldap", BWSYNC_LOG__FORMAT="json"),
    )
    assert bad.returncode == 2
    assert "BWSYNC_LDAP__URL" in bad.stderr


def test_argument_errors_end_the_ordinary_way() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "bwsync", "--no-such-flag"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "usage: bwsync" in res.stderr


def test_a_reader_that_stops_early_is_not_an_error(tmp_path: Path) -> None:
    """`bwsync plan | head`: the plan's exit code, and no 'unexpected error' in the log."""
    directory = tmp_path / "dir.json"
    users = [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in range(20_000)]
    directory.write_text(json.dumps({"users": users, "groups": []}))
    env = _env(
        BWSYNC_SOURCE="file",
        BWSYNC_FILE__PATH=str(directory),
        BWSYNC_STATE__BACKEND="none",
        BWSYNC_LOG__FORMAT="json",
    )
    with subprocess.Popen(
        [sys.executable, "-m", "bwsync", "plan", "--directory-only", "--output", "text"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline()  # the first line, then the reader goes away
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0
    assert "unexpected error" not in err and "Traceback" not in err
