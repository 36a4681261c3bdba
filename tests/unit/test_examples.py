"""Every example env file is a complete bwsync configuration (``bwsync check --offline``) once
the files its header names are in place, and each line or file it cannot do without is
refused, when removed, with exit 2 naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bwsync.cli import main
from tests.fixtures.setting_files import kind_of, localize

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SECRETS = "/run/secrets/bwsync/"

#: What each example cannot do without: variables of its sync.env and files its header names.
#: Removing anything else must leave a valid configuration (defaults take over).
REQUIRED = {
    "ldap": {
        "BWSYNC_SOURCE",
        "BWSYNC_LDAP__URL",
        "BWSYNC_LDAP__BASE_DN",
        "BWSYNC_LDAP__BIND_DN",  # the password file would be unused: an anonymous bind
        "BWSYNC_BITWARDEN__CLIENT_ID",
        "bwsync_ldap__bind_password",
        "bwsync_bitwarden__client_secret",
        "ldap-ca.pem",
    },
    "active-directory": {
        "BWSYNC_SOURCE",
        "BWSYNC_LDAP__URL",
        "BWSYNC_LDAP__BASE_DN",
        "BWSYNC_LDAP__BIND_DN",
        "BWSYNC_BITWARDEN__CLIENT_ID",
        "bwsync_ldap__bind_password",
        "bwsync_bitwarden__client_secret",
        "corp-ca.pem",
    },
    "file": {
        "BWSYNC_FILE__PATH",  # the demo directory is never synced by omission
        "BWSYNC_BITWARDEN__CLIENT_ID",
        "bwsync_bitwarden__client_secret",
        "people.csv",
    },
    "google": {
        "BWSYNC_SOURCE",
        "BWSYNC_GOOGLE__CREDENTIALS_FILE",
        "BWSYNC_GOOGLE__ADMIN_EMAIL",
        "BWSYNC_BITWARDEN__CLIENT_ID",
        "bwsync_bitwarden__client_secret",
        "google-sa.json",
    },
    "okta": {
        "BWSYNC_SOURCE",
        "BWSYNC_OKTA__ORG_URL",
        "BWSYNC_OKTA__CLIENT_ID",
        "BWSYNC_OKTA__PRIVATE_KEY_FILE",
        "BWSYNC_BITWARDEN__CLIENT_ID",
        "bwsync_bitwarden__client_secret",
        "okta-key.pem",
    },
    "entra": {
        "BWSYNC_SOURCE",
        "BWSYNC_ENTRA__TENANT_ID",
        "BWSYNC_ENTRA__CLIENT_ID",
        "BWSYNC_BITWARDEN__CLIENT_ID",
        "bwsync_entra__client_secret",
        "bwsync_bitwarden__client_secret",
    },
    "onelogin": {
        "BWSYNC_SOURCE",
        "BWSYNC_ONELOGIN__CLIENT_ID",
        "BWSYNC_BITWARDEN__CLIENT_ID",
        "bwsync_onelogin__client_secret",
        "bwsync_bitwarden__client_secret",
    },
}


def _env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


def _header_words(path: Path) -> set[str]:
    return {
        word
        for line in path.read_text().splitlines()
        if line.startswith("#")
        for word in line.replace(",", " ").replace(":", " ").split()
    }


def _secret_files(path: Path) -> set[str]:
    """The files the header says to put in the secrets directory, by name."""
    return {w for w in _header_words(path) if w.startswith("bwsync_") and "__" in w}


def _mounted_files(env: dict[str, str]) -> dict[str, str]:
    """File name → the variable naming it, for every file setting of ``env``."""
    return {Path(v).name: k for k, v in env.items() if kind_of(k) and v.startswith("/")}


def _examples() -> list[str]:
    return sorted(p.parent.name for p in EXAMPLES.glob("*/sync.env"))


def _items(example: str) -> list[str]:
    path = EXAMPLES / example / "sync.env"
    env = _env(path)
    return [*env, *sorted(_secret_files(path)), *sorted(_mounted_files(env))]


def _check_offline(
    example: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    *,
    without: str | None = None,
) -> tuple[int, str]:
    """``check --offline`` on the example as deployed (its files in place under ``tmp_path``),
    less the line or file ``without``."""
    path = EXAMPLES / example / "sync.env"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in _secret_files(path) - {without}:
        (secrets / name).write_text("placeholder\n")
    env = localize(_env(path), tmp_path / "files")
    for name, variable in _mounted_files(_env(path)).items():
        if name == without:
            Path(env[variable]).unlink()
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secrets))
    for key, value in env.items():
        if key != without:
            monkeypatch.setenv(key, value)
    code = main(["check", "--offline"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_every_source_has_examples() -> None:
    names = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert names == {"ldap", "active-directory", "file", "entra", "google", "okta", "onelogin"}
    assert set(REQUIRED) == names
    for name in names:
        assert (EXAMPLES / name / "sync.env").is_file()
        assert (EXAMPLES / name / "values.yaml").is_file()


@pytest.mark.parametrize("example", _examples())
def test_the_header_names_every_file_the_example_needs(example: str) -> None:
    path = EXAMPLES / example / "sync.env"
    words = _header_words(path)
    for name, variable in _mounted_files(_env(path)).items():
        assert name in words or f"{Path(_env(path)[variable])}" in words, (example, name)


@pytest.mark.parametrize("example", _examples())
def test_env_example_validates(
    example: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _check_offline(example, tmp_path, monkeypatch, capsys)
    assert code == 0, out
    assert f"ok    settings ({_env(EXAMPLES / example / 'sync.env')['BWSYNC_SOURCE']} source" in out


@pytest.mark.parametrize(("example", "item"), [(e, i) for e in _examples() for i in _items(e)])
def test_removing_what_an_example_needs_is_refused_naming_it(
    example: str,
    item: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = _check_offline(example, tmp_path, monkeypatch, capsys, without=item)
    if item not in REQUIRED[example]:
        assert code == 0, out
        return
    assert code == 2, out
    problems = [line for line in out.splitlines() if line.startswith("FAIL  settings: ")]
    assert problems, out
    env = _env(EXAMPLES / example / "sync.env")
    named = _mounted_files(env).get(item) or item.upper()  # a file: the variable naming it
    assert any(named in line for line in problems), out
    assert "Traceback" not in out
