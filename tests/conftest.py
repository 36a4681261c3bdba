"""Suite-wide hygiene: no BWSYNC_* variable or secrets directory leaks into a test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Fixtures that start real servers or stand-ins, one module per kind, usable from any layer.
pytest_plugins = [
    "tests.fixtures.ldap",
    "tests.fixtures.bitwarden",
    "tests.fixtures.state",
    "tests.fixtures.metrics",
    "tests.fixtures.okta_onelogin",
    "tests.fixtures.cloud",
]


@pytest.fixture(autouse=True)
def _clean_bwsync_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("BWSYNC_"):
            monkeypatch.delenv(name)
    # An empty secrets directory, so a developer's /run/secrets/bwsync never leaks in.
    empty = tmp_path / "no-secrets"
    empty.mkdir()
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(empty))
