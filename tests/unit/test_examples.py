"""Every example env file is a valid bwsync configuration (``bwsync check --offline``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bwsync.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name] = value
    return out


def test_every_source_has_examples() -> None:
    names = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert names == {"ldap", "active-directory", "file", "entra", "google", "okta", "onelogin"}
    for name in names:
        assert (EXAMPLES / name / "sync.env").is_file()
        assert (EXAMPLES / name / "values.yaml").is_file()


@pytest.mark.parametrize("example", sorted(p.parent.name for p in EXAMPLES.glob("*/sync.env")))
def test_env_example_validates(
    example: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = EXAMPLES / example / "sync.env"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    # The secret files each example's header names.
    for line in path.read_text().splitlines():
        for word in line.replace(",", " ").split():
            if word.startswith("bwsync_") and "__" in word:
                (secrets / word).write_text("placeholder\n")
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secrets))
    for key, value in _env(path).items():
        monkeypatch.setenv(key, value)
    assert main(["check", "--offline"]) == 0, capsys.readouterr().err
    assert f"ok    settings ({_env(path)['BWSYNC_SOURCE']} source" in capsys.readouterr().out
