"""``bwsync sync`` as a real process against OpenLDAP slapd and the Bitwarden stand-in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.fixtures.ldap import Slapd, person
from tests.standins.bitwarden import FakeBitwarden


def _bwsync(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BWSYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "bwsync", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def directory(slapd: Slapd) -> str:
    base = slapd.new_tree("e2e")
    people, groups = f"ou=people,{base}", f"ou=groups,{base}"
    slapd.add(
        [
            (f"uid=ada,{people}", person("ada", mail="Ada@Example.com")),
            (f"uid=alan,{people}", person("alan", mail="alan@example.com")),
            (f"uid=nomail,{people}", person("nomail")),
            (
                f"cn=platform,{groups}",
                {"objectClass": "groupOfNames", "cn": "platform", "member": f"uid=alan,{people}"},
            ),
            (
                f"cn=engineering,{groups}",
                {
                    "objectClass": "groupOfNames",
                    "cn": "engineering",
                    "member": [
                        f"uid=ada,{people}",
                        f"cn=platform,{groups}",
                        f"uid=nomail,{people}",
                    ],
                },
            ),
        ]
    )
    return base


@pytest.mark.parametrize("engine", ["python-ldap", "ldap3"])
@pytest.mark.parametrize("tls", ["ldaps", "starttls"])
def test_sync_from_slapd_then_nothing_to_do(
    slapd: Slapd,
    directory: str,
    fake_bitwarden: FakeBitwarden,
    tmp_path: Path,
    engine: str,
    tls: str,
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "bwsync_ldap__bind_password").write_text(slapd.bind_password + "\n")
    (secrets / "bwsync_bitwarden__client_secret").write_text(fake_bitwarden.client_secret)
    env = {
        "BWSYNC_SECRETS_DIR": str(secrets),
        "BWSYNC_SOURCE": "ldap",
        "BWSYNC_LDAP__URL": slapd.ldaps_url if tls == "ldaps" else slapd.url,
        "BWSYNC_LDAP__START_TLS": "true" if tls == "starttls" else "false",
        "BWSYNC_LDAP__CA_FILE": str(slapd.ca_file),
        "BWSYNC_LDAP__BIND_DN": slapd.bind_dn,
        "BWSYNC_LDAP__BASE_DN": directory,
        "BWSYNC_LDAP__ENGINE": engine,
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_STATE__PATH": str(tmp_path / "state.json"),
        "BWSYNC_LOG__FORMAT": "json",
    }
    first = _bwsync(env, "sync")
    assert first.returncode == 0, first.stderr
    (imp,) = fake_bitwarden.requests_to("import")
    people, groups = f"ou=people,{directory}", f"ou=groups,{directory}"
    assert imp.body == {
        "groups": [
            {
                "name": "platform",
                "externalId": f"cn=platform,{groups}",
                "memberExternalIds": [f"uid=alan,{people}"],
            },
            {
                "name": "engineering",
                "externalId": f"cn=engineering,{groups}",
                "memberExternalIds": [
                    f"uid=ada,{people}",
                    f"uid=nomail,{people}",
                    f"uid=alan,{people}",
                ],
            },
        ],
        "members": [
            {"email": "ada@example.com", "externalId": f"uid=ada,{people}", "deleted": False},
            {"email": "alan@example.com", "externalId": f"uid=alan,{people}", "deleted": False},
        ],
        "overwriteExisting": False,
        "largeImport": False,
        "inviteUsersAfterProvisioning": True,
    }
    summary = [orjson.loads(line) for line in first.stderr.splitlines() if '"summary"' in line]
    assert summary[-1]["skipped"] == {"no_email": 1}
    assert slapd.bind_password not in first.stderr
    assert fake_bitwarden.client_secret not in first.stderr

    fake_bitwarden.clear_requests()
    second = _bwsync(env, "sync")
    assert second.returncode == 0, second.stderr
    assert fake_bitwarden.requests == []
    assert '"nothing_to_do"' in second.stderr


def test_wrong_password_is_exit_3_and_sends_nothing(
    slapd: Slapd, directory: str, fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    env = {
        "BWSYNC_SECRETS_DIR": str(tmp_path),
        "BWSYNC_SOURCE": "ldap",
        "BWSYNC_LDAP__URL": slapd.url,
        "BWSYNC_LDAP__BIND_DN": slapd.bind_dn,
        "BWSYNC_LDAP__BIND_PASSWORD": "wrong-password-42",
        "BWSYNC_LDAP__BASE_DN": directory,
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_STATE__BACKEND": "none",
    }
    res = _bwsync(env, "sync")
    assert res.returncode == 3
    assert "invalid credentials" in res.stderr.lower() and slapd.url in res.stderr
    assert "wrong-password-42" not in res.stderr
    assert fake_bitwarden.writes() == []  # a first run may have read the organization
    assert {r.endpoint for r in fake_bitwarden.requests} <= {"token", "list_members", "list_groups"}
    res = _bwsync(env, "check")
    assert res.returncode == 3
    assert "FAIL" in res.stdout and "ok    bitwarden" in res.stdout
