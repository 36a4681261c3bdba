"""``bwsync config from-bwdc``: every directory type, both data-file layouts, no secret printed,
and the output is a valid bwsync configuration (``bwsync check --offline``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bwsync.bwdc_config import convert, load_data_file, render_env
from bwsync.cli import main
from bwsync.errors import ConfigError
from tests.fixtures.setting_files import localize, write_setting_file

DATA = Path(__file__).resolve().parents[1] / "data" / "bwdc"
SECRET_KEYS = {
    "password",
    "key",
    "token",
    "clientSecret",
    "apiKeyClientSecret",
    "accessToken",
    "privateKey",
    "refreshToken",
}


def _secret_values(obj: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in SECRET_KEYS and isinstance(v, str) and v and v != "[STORED SECURELY]":
                found.add(v)
            found |= _secret_values(v)
    return found


def _env(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value.strip("'")
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.json")))
def test_converts_without_secrets_and_validates(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = DATA / name
    secrets = _secret_values(json.loads(path.read_text()))
    for fmt in ("env", "helm"):
        assert main(["config", "from-bwdc", str(path), "--format", fmt]) == 0
        out = capsys.readouterr().out
        for s in secrets:
            assert s not in out, f"{fmt} output of {name} leaks a secret"
        if fmt == "helm":
            values = yaml.safe_load(out)
            assert values["settings"]["source"] in {"ldap", "entra", "google", "okta", "onelogin"}
        else:
            env = out
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    for line in env.splitlines():
        if line.startswith("#   bwsync_"):
            (secret_dir / line[4:].strip()).write_text("placeholder\n")
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secret_dir))
    # The files the settings name (a CA, a key file), as the admin mounts them.
    for k, v in localize(_env(env), tmp_path / "files").items():
        monkeypatch.setenv(k, v)
    assert main(["check", "--offline"]) == 0, capsys.readouterr()


def test_the_google_key_goes_in_the_secrets_directory_under_a_name_no_setting_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file named as the variable (``bwsync_google__credentials_file``) would be read as
    the path setting itself: the key's JSON taken for a path. The advised name is the path's,
    and that file in the secrets directory is read as nothing but the key."""
    conv = convert(load_data_file(DATA / "google-v8.json"))
    env = _env(render_env(conv, "data.json"))
    path = Path(env["BWSYNC_GOOGLE__CREDENTIALS_FILE"])
    assert path.parent == Path("/run/secrets/bwsync")
    assert path.name != "bwsync_google__credentials_file"
    advice = dict(conv.unmapped)["directoryGsuite.clientEmail / privateKey"]
    assert f"in the secrets directory as {path.name} " in advice
    secrets = tmp_path / "secrets"
    write_setting_file("BWSYNC_GOOGLE__CREDENTIALS_FILE", secrets / path.name)
    (secrets / "bwsync_bitwarden__client_secret").write_text("placeholder\n")
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secrets))
    for name, value in env.items():
        if name != "BWSYNC_GOOGLE__CREDENTIALS_FILE":
            monkeypatch.setenv(name, value)
    # Without the path variable the key file is no setting's value: the path is missing.
    assert main(["check", "--offline"]) == 2
    assert "BWSYNC_GOOGLE__CREDENTIALS_FILE: required" in capsys.readouterr().out
    # With it (the secrets directory mounted here rather than at /run/secrets/bwsync): valid.
    monkeypatch.setenv("BWSYNC_GOOGLE__CREDENTIALS_FILE", str(secrets / path.name))
    assert main(["check", "--offline"]) == 0, capsys.readouterr()


def _settings(name: str) -> dict[str, Any]:
    conv = convert(load_data_file(DATA / name))
    return {s.env: s.value for s in conv.settings}


def test_ldap_plaintext_example() -> None:
    s = _settings("ldap-v8-plaintext.json")
    assert s["BWSYNC_LDAP__URL"] == "ldap://127.0.0.1:18389"
    assert s["BWSYNC_LDAP__MEMBER_ATTRIBUTE"] == "memberUid"
    assert s["BWSYNC_SYNC__INVITE_USERS"] is False
    assert s["BWSYNC_BITWARDEN__SERVER"] == "http://127.0.0.1:18080"
    assert s["BWSYNC_BITWARDEN__CLIENT_SECRET"] == "<secret>"


def test_ad_with_start_tls_prefix_and_suffix() -> None:
    conv = convert(load_data_file(DATA / "ldap-ad-keychain-v8.json"))
    s = {x.env: x.value for x in conv.settings}
    assert s["BWSYNC_LDAP__URL"] == "ldap://dc1.corp.example.com:389"
    assert s["BWSYNC_LDAP__START_TLS"] is True
    assert s["BWSYNC_LDAP__CA_FILE"] == "/etc/ssl/corp-ca.pem"
    assert s["BWSYNC_LDAP__BASE_DN"] == "DC=corp,DC=example,DC=com"
    assert s["BWSYNC_LDAP__EMAIL_SUFFIX"] == "@corp.example.com"
    assert s["BWSYNC_LDAP__USER_FILTER"].startswith("(!(userAccountControl")
    reasons = dict(conv.unmapped)
    assert "OU=Staff" in reasons["directoryLdap.rootPath prefix"]
    assert "sync.revisionDateAttribute" in reasons


def test_nested_v4_layout() -> None:
    conv = convert(load_data_file(DATA / "ldap-v4-nested.json"))
    s = {x.env: x.value for x in conv.settings}
    assert s["BWSYNC_LDAP__URL"] == "ldaps://ldap.example.org:636"
    assert s["BWSYNC_BITWARDEN__SERVER"] == "https://bw.example.org"
    assert s["BWSYNC_BITWARDEN__CLIENT_ID"] == "organization.cccccccc-bbbb-cccc-dddd-eeeeeeeeeeee"
    assert s["BWSYNC_SYNC__GROUPS"] is False
    assert s["BWSYNC_SYNC__INVITE_USERS"] is True  # the 7→8 migration default
    assert conv.schedule_minutes == 120


def test_cloud_sources() -> None:
    entra = _settings("entra-v8.json")
    assert entra["BWSYNC_ENTRA__CLOUD"] == "usgov"
    assert entra["BWSYNC_BITWARDEN__SERVER"] == "https://vault.bitwarden.eu"
    assert entra["BWSYNC_SYNC__USER_FILTER"] == "includeGroup:abc|exclude:x@y.com"
    okta = _settings("okta-v8.json")
    assert okta["BWSYNC_OKTA__ORG_URL"] == "https://example.okta.com"
    onelogin = _settings("onelogin-v8.json")
    assert onelogin["BWSYNC_ONELOGIN__REGION"] == "eu"
    assert onelogin["BWSYNC_ONELOGIN__EMAIL_SUFFIX"] == "@example.com"
    google = _settings("google-v8.json")
    assert google["BWSYNC_GOOGLE__CUSTOMER"] == "C01abcd"


def test_not_a_data_file(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not a bwdc data file"):
        load_data_file(f)
    f.write_text('{"stateVersion": 2, "directoryType": 0}')
    with pytest.raises(ConfigError, match="refuses versions < 3"):
        load_data_file(f)


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("entra-v8.json", "environmentUrls", 5),
        ("entra-v8.json", "sync", "x"),
        ("entra-v8.json", "directoryType", []),
        ("ldap-ad-keychain-v8.json", "directoryLdap", 5),
        ("google-v8.json", "directoryGsuite", 5),
        ("ldap-v4-nested.json", "global", 5),
    ],
)
def test_a_data_file_edited_into_another_shape_is_a_config_error(
    name: str, key: str, value: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each of these ended in an AttributeError or TypeError: exit 1."""
    data = json.loads((DATA / name).read_text())
    data[key] = value
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    assert main(["config", "from-bwdc", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path} is not a bwdc data file bwsync can read" in err or "not a bwdc" in err


def _variant(tmp_path: Path, **ldap: Any) -> Path:
    """The plaintext LDAP example with some of its directoryLdap keys changed."""
    data = json.loads((DATA / "ldap-v8-plaintext.json").read_text())
    data["directoryLdap"].update(ldap)
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("fmt", ["env", "helm"])
def test_unverified_tls_is_carried_over_loudly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    path = _variant(tmp_path, ssl=True, sslAllowUnauthorized=True, hostname="dc1.example.com")
    assert main(["config", "from-bwdc", str(path), "--format", fmt]) == 0
    out, err = capsys.readouterr()
    assert "tls_verify: false" in out if fmt == "helm" else "BWSYNC_LDAP__TLS_VERIFY=false" in out
    assert "# WARNING: directoryLdap.sslAllowUnauthorized is on" in out
    assert "bwsync: warning: directoryLdap.sslAllowUnauthorized is on" in err


def test_a_bind_without_tls_and_an_http_server_are_loud(tmp_path: Path) -> None:
    data = json.loads(_variant(tmp_path, hostname="ldap.example.com").read_text())
    data["environmentUrls"]["base"] = "http://vault.example.com"
    conv = convert(data)
    assert len(conv.warnings) == 2
    assert "ldap://ldap.example.com:18389 without TLS" in conv.warnings[1]
    assert "BWSYNC_BITWARDEN__ALLOW_HTTP" in conv.warnings[0]
    assert "BWSYNC_BITWARDEN__ALLOW_HTTP" not in {s.env for s in conv.settings}


def test_loopback_and_tls_carry_no_warning() -> None:
    assert convert(load_data_file(DATA / "ldap-v8-plaintext.json")).warnings == []
    assert convert(load_data_file(DATA / "ldap-v4-nested.json")).warnings == []
