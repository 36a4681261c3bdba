"""Every ``BWSYNC_…`` variable the code and the docs name is a setting that exists.

Messages take names from ``config.env_name``, which refuses a path that is no setting; this
catches the rest (docstrings, comments, the README, docs/, the chart's notes): a renamed or
removed setting cannot leave a text sending an admin to a variable bwsync then refuses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bwsync.config import ENV_PREFIX, env_name

ROOT = Path(__file__).resolve().parents[2]
#: A whole name: not a prefix written as ``BWSYNC_METRICS__PUSHGATEWAY_*`` or ``BWSYNC_…``.
NAME = re.compile(
    r"\bBWSYNC_[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*(?:__[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)*(?![A-Z0-9_*…<])"
)
#: Names that are not settings, and why.
NOT_SETTINGS = {
    "BWSYNC_X": "the README's example of a misspelt name",
}


def _texts() -> list[Path]:
    paths = sorted((ROOT / "job" / "bwsync").rglob("*.py"))
    paths += [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    paths += sorted((ROOT / "helm" / "bwsync").rglob("*.yaml"))
    paths += sorted((ROOT / "helm" / "bwsync").rglob("*.txt"))
    return [p for p in paths if "standin" not in p.parts]


def _names() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in _texts():
        for match in NAME.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match.group(0), []).append(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("name", sorted(_names()))
def test_each_name_is_a_setting(name: str) -> None:
    if name in NOT_SETTINGS:
        return
    path = name[len(ENV_PREFIX) :].lower().split("__")
    try:
        assert env_name(*path) == name
    except KeyError:
        pytest.fail(f"{name} is no setting; named in {sorted(set(_names()[name]))}")
