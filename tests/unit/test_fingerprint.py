"""fingerprint: every setting that changes the plan but not the import body changes it; the
settings the body (and so the hash) carries do not."""

from __future__ import annotations

from typing import Any

import pytest

from bwsync.config import SyncSettings
from bwsync.fingerprint import plan_fingerprint

BASE = plan_fingerprint(SyncSettings(), memory=False)


@pytest.mark.parametrize(
    "change",
    [
        {"remove_missing": True},
        {"removal_mode": "remove"},
        {"stale_groups": "delete"},
        {"protected_members": "boss@example.com"},
    ],
)
def test_a_plan_setting_changes_it(change: dict[str, Any]) -> None:
    assert plan_fingerprint(SyncSettings(**change), memory=False) != BASE


def test_the_memory_changes_it() -> None:
    assert plan_fingerprint(SyncSettings(), memory=True) != BASE


@pytest.mark.parametrize(
    "change",
    [
        {"users": False},
        {"overwrite_existing": True},
        {"remove_disabled": True},
        {"large_import": True},
        {"invite_users": False},
        {"max_removals": 1},
        {"max_removal_percent": 1.0},
        {"full_reconcile_every": 60},
    ],
)
def test_what_the_hash_or_the_safety_check_covers_does_not(change: dict[str, Any]) -> None:
    assert plan_fingerprint(SyncSettings(**change), memory=False) == BASE


def test_the_protected_list_is_compared_as_a_set() -> None:
    one = SyncSettings(protected_members="b@x.com, A@x.com")
    other = SyncSettings(protected_members="a@x.com,b@x.com")
    assert plan_fingerprint(one, memory=False) == plan_fingerprint(other, memory=False)
    assert "a@x.com" not in plan_fingerprint(one, memory=False)
