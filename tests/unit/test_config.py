"""config: names, precedence (env > secret files > defaults) and one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from bwsync.errors import ConfigError
from bwsync.settings import load_settings


def _ldap_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWSYNC_SOURCE", "ldap")
    monkeypatch.setenv("BWSYNC_LDAP__URL", "ldaps://dc1.example.com:636")
    monkeypatch.setenv("BWSYNC_LDAP__BASE_DN", "dc=example,dc=com")


def test_defaults_are_the_demo() -> None:
    s = load_settings()
    assert s.source == "file" and s.file.path is None
    assert s.bitwarden.resolved_api_url == "https://api.bitwarden.com"
    assert s.bitwarden.resolved_identity_url == "https://identity.bitwarden.com"
    assert s.sync.invite_users is True and s.sync.removal_mode == "revoke"


@pytest.mark.parametrize(
    ("server", "api", "identity"),
    [
        ("eu", "https://api.bitwarden.eu", "https://identity.bitwarden.eu"),
        (
            "https://vault.example.com/",
            "https://vault.example.com/api",
            "https://vault.example.com/identity",
        ),
        (
            "vault.example.com",
            "https://vault.example.com/api",
            "https://vault.example.com/identity",
        ),
        (
            "http://127.0.0.1:8080/vw",
            "http://127.0.0.1:8080/vw/api",
            "http://127.0.0.1:8080/vw/identity",
        ),
    ],
)
def test_server_derivation(
    monkeypatch: pytest.MonkeyPatch, server: str, api: str, identity: str
) -> None:
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", server)
    s = load_settings()
    assert (s.bitwarden.resolved_api_url, s.bitwarden.resolved_identity_url) == (api, identity)


def test_explicit_urls_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", "eu")
    monkeypatch.setenv("BWSYNC_BITWARDEN__API_URL", "https://api.example.net")
    s = load_settings()
    assert s.bitwarden.resolved_api_url == "https://api.example.net"
    assert s.bitwarden.resolved_identity_url == "https://identity.bitwarden.eu"


def test_secret_files_lose_to_env_and_drop_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _ldap_env(monkeypatch)
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "bwsync_ldap__bind_password").write_text("from-file\n")
    (secrets / "bwsync_bitwarden__client_secret").write_text("file-secret\n")
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("BWSYNC_LDAP__BIND_DN", "cn=sync,dc=example,dc=com")
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_SECRET", "env-secret")
    s = load_settings()
    assert s.ldap.bind_password is not None
    assert s.ldap.bind_password.get_secret_value() == "from-file"
    assert s.bitwarden.client_secret is not None
    assert s.bitwarden.client_secret.get_secret_value() == "env-secret"
    assert "from-file" not in repr(s) and "env-secret" not in repr(s)


def test_every_problem_named_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWSYNC_SOURCE", "ldap")
    monkeypatch.setenv("BWSYNC_LDAP__URL", "http://dc1")
    monkeypatch.setenv("BWSYNC_LDAP__PAGE_SIZE", "lots")
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_ID", "user.123")
    monkeypatch.setenv("BWSYNC_BITWARDEN__CLIENT_SECRET", "hunter2-secret")
    monkeypatch.setenv("BWSYNC_SYNCC__USERS", "true")
    monkeypatch.setenv("BWSYNC_LDAP__EMAIL_ATTRIBUT", "mail")
    with pytest.raises(ConfigError) as info:
        load_settings()
    problems = info.value.problems
    assert info.value.exit_code == 2
    joined = "\n".join(problems)
    for name in (
        "BWSYNC_SYNCC__USERS",
        "BWSYNC_LDAP__URL",
        "BWSYNC_LDAP__PAGE_SIZE",
        "BWSYNC_BITWARDEN__CLIENT_ID",
        "BWSYNC_LDAP__EMAIL_ATTRIBUT",
    ):
        assert sum(p.startswith(name + ":") for p in problems) == 1, (name, joined)
    assert "hunter2" not in joined


def test_ldap_source_needs_url_and_base(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWSYNC_SOURCE", "ldap")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems == [
        "BWSYNC_LDAP__URL: required for the ldap source",
        "BWSYNC_LDAP__BASE_DN: required for the ldap source",
    ]


@pytest.mark.parametrize("kind", ["USER", "GROUP"])
def test_a_filter_the_file_source_cannot_apply_is_refused(
    monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv(f"BWSYNC_SYNC__{kind}_FILTER", "exclude:ceo@example.com")
    with pytest.raises(ConfigError) as info:
        load_settings()  # the file source is the default
    assert info.value.exit_code == 2
    assert (
        f"BWSYNC_SYNC__{kind}_FILTER: set, but BWSYNC_SOURCE is file, which cannot filter"
        in str(info.value)
    )
    monkeypatch.setenv("BWSYNC_SOURCE", "okta")
    monkeypatch.setenv("BWSYNC_OKTA__ORG_URL", "https://example.okta.com")
    monkeypatch.setenv("BWSYNC_OKTA__TOKEN", "00token")
    sync = load_settings().sync  # a source that filters takes it
    assert (sync.user_filter or sync.group_filter) == "exclude:ceo@example.com"


def test_bind_dn_needs_password_and_start_tls_needs_ldap(monkeypatch: pytest.MonkeyPatch) -> None:
    _ldap_env(monkeypatch)
    monkeypatch.setenv("BWSYNC_LDAP__BIND_DN", "cn=x")
    monkeypatch.setenv("BWSYNC_LDAP__START_TLS", "true")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "BWSYNC_LDAP__START_TLS cannot be combined" in str(info.value)


# -- clear text: refused where nothing needs it, consented to where something might ------------


@pytest.mark.parametrize("setting", ["SERVER", "API_URL", "IDENTITY_URL"])
def test_http_bitwarden_on_another_host_needs_consent(
    monkeypatch: pytest.MonkeyPatch, setting: str
) -> None:
    monkeypatch.setenv(f"BWSYNC_BITWARDEN__{setting}", "http://vault.example.com")
    with pytest.raises(ConfigError, match=f"BWSYNC_BITWARDEN__{setting}: http:// would send"):
        load_settings()
    monkeypatch.setenv("BWSYNC_BITWARDEN__ALLOW_HTTP", "true")
    assert load_settings().bitwarden.allow_http


@pytest.mark.parametrize(
    "server", ["http://127.0.0.1:8080", "http://[::1]:80", "http://localhost", "http://127.9.0.1"]
)
def test_http_bitwarden_on_loopback_needs_no_consent(
    monkeypatch: pytest.MonkeyPatch, server: str
) -> None:
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", server)
    assert load_settings().bitwarden.server == server


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BWSYNC_ENTRA__GRAPH_URL", "http://graph.example"),
        ("BWSYNC_ENTRA__AUTHORITY_URL", "http://127.0.0.1:8443"),
        ("BWSYNC_GOOGLE__API_URL", "http://admin.example"),
    ],
)
def test_bearer_token_apis_are_https_only(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"{variable}: must be an https:// URL"):
        load_settings()


def test_a_refused_url_is_echoed_without_its_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWSYNC_BITWARDEN__SERVER", "ftp://admin:hunter2@vault.example.com")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value) and "vault.example.com" in str(info.value)
    assert "hunter2" not in "\n".join(info.value.problems)
