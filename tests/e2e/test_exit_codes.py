"""Exit code 1 means a bug (issue 15): input and surroundings that used to end in a Python
exception, each now ending with the exit code of the side at fault and a message naming it.

Found by a search of the code and by feeding the CLI what an admin's files and machines
hold: a directory export of the wrong shape (3), a kubeconfig of the wrong shape or encoding
(5), a negative allowance (2, argparse), a terminal that cannot show an arrow (2, not 1).
Malformed directory-server answers are in tests/unit/sources/test_malformed_answers.py,
unreadable settings in tests/unit/test_settings.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bwsync.cli import main

EXPORTS = {
    "users is a number": {"users": 5},
    "members is text": {
        "users": [{"id": "u1", "email": "a@x.test"}],
        "groups": [{"id": "g", "name": "G", "members": "u1"}],
    },
    "members is a number": {
        "users": [{"id": "u1", "email": "a@x.test"}],
        "groups": [{"id": "g", "name": "G", "members": 5}],
    },
    "nested groups is an object": {
        "users": [],
        "groups": [{"id": "g", "name": "G", "groups": {"id": "h"}}],
    },
}


@pytest.mark.parametrize("export", list(EXPORTS))
def test_a_file_export_of_the_wrong_shape_is_exit_3(
    export: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "people.json"
    path.write_text(json.dumps(EXPORTS[export]))
    for name, value in {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(path),
        "BWSYNC_STATE__BACKEND": "none",
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["plan", "--directory-only"]) == 3
    err = capsys.readouterr().err
    assert f"bwsync: {path}" in err and "expected a list" in err
    assert "unexpected error" not in err


KUBECONFIGS: dict[str, tuple[bytes, str]] = {
    "not UTF-8": (b"\xff\xfeapiVersion: v1\n", "is not UTF-8 text"),
    "clusters not a list": (b"clusters: 5\ncurrent-context: c\n", "`clusters` is not a list"),
    "exec args not a list": (
        b"""apiVersion: v1
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {exec: {command: /bin/false, args: 7}}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
""",
        "`args` and `env` must be lists",
    ),
    "socks proxy": (
        b"""apiVersion: v1
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", proxy-url: "socks5://p:1080"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
""",
        "proxy-url socks5:// is not supported",
    ),
}


@pytest.mark.parametrize("kubeconfig", list(KUBECONFIGS))
def test_a_kubeconfig_of_the_wrong_shape_is_exit_5(
    kubeconfig: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    content, words = KUBECONFIGS[kubeconfig]
    path = tmp_path / "kubeconfig"
    path.write_bytes(content)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for name, value in {
        "KUBECONFIG": str(path),
        "BWSYNC_STATE__BACKEND": "configmap",
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)
    assert main(["state", "show"]) == 5
    err = capsys.readouterr().err
    assert words in err
    assert "unexpected error" not in err


@pytest.mark.parametrize("option", ["--allow-removals", "--allow-emptied-groups"])
@pytest.mark.parametrize("command", ["sync", "plan"])
def test_a_negative_allowance_is_a_usage_error(
    command: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main([command, option, "-3"])
    assert caught.value.code == 2
    assert "cannot be negative" in capsys.readouterr().err


def test_a_terminal_that_cannot_show_an_arrow_still_gets_the_answer(tmp_path: Path) -> None:
    """The API key's message says "Admin Console → Settings": on an ASCII terminal (or a
    latin-1 locale) printing it raised UnicodeEncodeError, exit 1."""
    people = tmp_path / "people.json"
    people.write_text('{"users": []}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("BWSYNC_")}
    env |= {
        "PYTHONIOENCODING": "ascii",
        "BWSYNC_SECRETS_DIR": str(tmp_path),
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(people),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bwsync", "check", "--offline"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    out = done.stdout.decode("ascii")
    assert done.returncode == 2, done.stderr.decode("ascii", "replace")
    assert "FAIL  settings: BWSYNC_BITWARDEN__CLIENT_ID: required" in out
    assert "\\u2192" in out  # the arrow, escaped
    assert b"Traceback" not in done.stderr
