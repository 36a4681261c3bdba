"""Clear text is never silent (issue 23): every run logs a warning for each setting that sends
a credential in clear or skips a certificate check, and ``check`` shows the same lines."""

from __future__ import annotations

import json
import socket

import pytest

from bwsync.cli import main


def _warnings(err: str) -> list[dict[str, str]]:
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    return [e for e in events if e["event"] == "cleartext" and e["level"] == "warning"]


@pytest.fixture
def base_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWSYNC_LOG__FORMAT", "json")
    monkeypatch.setenv("BWSYNC_STATE__BACKEND", "none")


def test_check_shows_each_exposure(
    base_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BWSYNC_SOURCE", "ldap")
    monkeypatch.setenv("BWSYNC_LDAP__URL", "ldap://dc1.example.com:389")
    monkeypatch.setenv("BWSYNC_LDAP__BASE_DN", "dc=example,dc=com")
    monkeypatch.setenv("BWSYNC_LDAP__BIND_DN", "cn=bwsync,dc=example,dc=com")
    monkeypatch.setenv("BWSYNC_LDAP__BIND_PASSWORD", "pw-in-clear")
    monkeypatch.setenv("BWSYNC_LDAP__TLS_VERIFY", "false")
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", "http://vault.example.com")
    monkeypatch.setenv("BWSYNC_BITWARDEN__ALLOW_HTTP", "true")
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_ID", "organization.1")
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_SECRET", "bw-secret")
    assert main(["check", "--offline"]) == 0
    out = capsys.readouterr().out.splitlines()
    warned = [line.split(":")[1].strip() for line in out if line.startswith("WARN  settings:")]
    assert warned == ["BWSYNC_LDAP__URL", "BWSYNC_LDAP__TLS_VERIFY", "BWSYNC_BITWARDEN__SERVER"]
    assert "pw-in-clear" not in "\n".join(out)


def test_every_run_logs_them(
    base_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # plan --directory-only contacts no Bitwarden server, and still says the URL is in clear
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", "http://vault.example.com")
    monkeypatch.setenv("BWSYNC_BITWARDEN__ALLOW_HTTP", "true")
    for _ in range(2):
        assert main(["plan", "--directory-only"]) == 0
        (warning,) = _warnings(capsys.readouterr().err)
        assert warning["setting"] == "BWSYNC_BITWARDEN__SERVER"
        assert "in clear" in warning["warning"]


def test_a_failing_ldap_run_warned_first(
    base_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s, socket.socket() as t:  # ports nothing listens on
        s.bind(("127.0.0.1", 0))
        t.bind(("127.0.0.1", 0))
        port, bitwarden_port = s.getsockname()[1], t.getsockname()[1]
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", f"http://127.0.0.1:{bitwarden_port}")
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_ID", "organization.1")
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_SECRET", "bw-secret")
    monkeypatch.setenv("BWSYNC_BITWARDEN__MAX_RETRIES", "0")
    monkeypatch.setenv("BWSYNC_SOURCE", "ldap")
    monkeypatch.setenv("BWSYNC_LDAP__URL", f"ldaps://127.0.0.1:{port}")
    monkeypatch.setenv("BWSYNC_LDAP__BASE_DN", "dc=example,dc=com")
    monkeypatch.setenv("BWSYNC_LDAP__TLS_VERIFY", "false")
    monkeypatch.setenv("BWSYNC_LDAP__TIMEOUT", "5")
    for command in ("sync", "plan"):
        assert main([command]) == 3  # the directory is not there…
        err = capsys.readouterr().err
        assert [w["setting"] for w in _warnings(err)] == ["BWSYNC_LDAP__TLS_VERIFY"]
        assert err.index('"cleartext"') < err.index('"run_failed"')  # …said after the warning
