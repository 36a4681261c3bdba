"""apply: which batches of a batched import a run leaves out (the requests themselves are
exercised end to end, against the stand-in, in tests/unit/test_run.py and tests/e2e)."""

from __future__ import annotations

from bwsync.apply import unchanged_batches
from bwsync.config import SyncSettings
from bwsync.model import Directory, Group, OrgMember, User
from bwsync.payload import build_payload
from bwsync.plan import OrgSnapshot, make_plan


def test_unchanged_batches_are_member_batches_without_a_planned_import_change() -> None:
    users = [User(f"u{i}", f"u{i}", f"u{i}@example.com") for i in range(4100)]
    groups = [Group("g", "g", "G", user_member_external_ids={"u1": None})]
    sync = SyncSettings(large_import=True)
    payload = build_payload(users, groups, sync, api_url="https://x", org_id="o")
    assert [(r.members, r.groups) for r in payload.requests] == [
        (2000, 0),
        (2000, 0),
        (100, 0),
        (0, 1),
    ]
    members = [OrgMember(f"m{i}", f"u{i}@example.com", f"u{i}") for i in range(4100) if i != 2500]
    org = OrgSnapshot(members=members, groups=[])
    plan = make_plan(Directory(users=users, groups=groups), org, sync)
    assert {(c.action, c.external_id) for c in plan.changes} == {
        ("invite", "u2500"),
        ("group_create", "g"),
    }
    assert unchanged_batches(payload, plan) == {0, 2}  # the group batch always goes
    assert (
        unchanged_batches(payload, make_plan(Directory(users=users, groups=groups), None, sync))
        == set()
    )
    single = build_payload(users[:10], groups, SyncSettings(), api_url="https://x", org_id="o")
    assert (
        unchanged_batches(
            single, make_plan(Directory(users=users[:10], groups=groups), org, SyncSettings())
        )
        == set()
    )
