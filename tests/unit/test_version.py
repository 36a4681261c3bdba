"""The version written in bwsync/__init__.py is the project's."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import bwsync

ROOT = Path(__file__).resolve().parents[2]


def test_version_is_pyprojects_and_the_installed_one() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert bwsync.__version__ == project["version"]
    assert bwsync.__version__ == importlib.metadata.version("bwsync")
