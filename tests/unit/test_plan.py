"""plan: the pure diff of directory against organization, and the safety limits."""

from __future__ import annotations

import pytest

from bwsync.config import SyncSettings
from bwsync.errors import SafetyLimitError
from bwsync.model import (
    STATUS_CONFIRMED,
    STATUS_INVITED,
    STATUS_REVOKED,
    TYPE_ADMIN,
    TYPE_OWNER,
    TYPE_USER,
    Directory,
    Group,
    OrgGroup,
    OrgMember,
    User,
)
from bwsync.plan import OrgSnapshot, check_safety, enforce_safety, make_plan


def _m(
    i: str, email: str, ext: str | None, status: int = STATUS_CONFIRMED, type_: int = TYPE_USER
) -> OrgMember:
    return OrgMember(id=i, email=email, external_id=ext, status=status, type=type_)


def _d(*users: User, groups: list[Group] | None = None) -> Directory:
    return Directory(users=list(users), groups=groups)


def _actions(plan: object) -> list[tuple[str, str]]:
    return [(c.action, c.subject) for c in plan.changes]  # type: ignore[attr-defined]


def test_invite_link_skip_and_unchanged() -> None:
    org = OrgSnapshot(
        members=[
            _m("1", "kept@x.com", "kept"),
            _m("2", "hand@x.com", None),
            _m("3", "taken@x.com", "other-ext"),
        ],
        groups=[],
    )
    d = _d(
        User("kept", "kept", "kept@x.com"),
        User("hand", "hand", "hand@x.com"),
        User("new", "new", "new@x.com"),
        User("t", "t", "taken@x.com"),
    )
    plan = make_plan(d, org, SyncSettings())
    assert _actions(plan) == [
        ("link", "hand@x.com"),
        ("invite", "new@x.com"),
        ("skip", "taken@x.com"),
    ]
    assert plan.removals == 0 and plan.synced_members == 2


def test_deleted_and_disabled_users_are_removed_but_never_owners_or_admins() -> None:
    org = OrgSnapshot(
        members=[
            _m("1", "gone@x.com", "gone"),
            _m("2", "off@x.com", "off"),
            _m("3", "boss@x.com", "boss", type_=TYPE_OWNER),
            _m("4", "adm@x.com", "adm", type_=TYPE_ADMIN),
        ],
        groups=[],
    )
    d = _d(
        User("gone", "gone", "gone@x.com", deleted=True),
        User("off", "off", "off@x.com", disabled=True),
        User("boss", "boss", "boss@x.com", deleted=True),
        User("adm", "adm", "adm@x.com", deleted=True),
        User("never", "never", "never@x.com", deleted=True),
    )
    assert _actions(make_plan(d, org, SyncSettings())) == [
        ("remove", "gone@x.com"),
        ("skip", "boss@x.com"),
        ("skip", "adm@x.com"),
    ]
    plan = make_plan(d, org, SyncSettings(remove_disabled=True))
    assert ("remove", "off@x.com") in _actions(plan)
    assert plan.protected_external_ids == {"boss", "adm"}


def test_remove_missing_revokes_restores_and_leaves_hand_added_alone() -> None:
    org = OrgSnapshot(
        members=[
            _m("1", "left@x.com", "left"),
            _m("2", "back@x.com", "back", status=STATUS_REVOKED),
            _m("3", "hand@x.com", None),
            _m("4", "adm@x.com", "adm", type_=TYPE_ADMIN),
            _m("5", "already@x.com", "already", status=STATUS_REVOKED),
        ],
        groups=[],
    )
    d = _d(User("back", "back", "back@x.com"))
    off = make_plan(d, org, SyncSettings())
    assert _actions(off) == [("restore", "back@x.com")]
    on = make_plan(d, org, SyncSettings(remove_missing=True))
    assert _actions(on) == [("restore", "back@x.com"), ("revoke", "left@x.com")]
    rm = make_plan(d, org, SyncSettings(remove_missing=True, removal_mode="remove"))
    assert _actions(rm) == [("remove", "left@x.com"), ("remove", "already@x.com")]


def test_overwrite_predicts_server_removals() -> None:
    org = OrgSnapshot(
        members=[
            _m("1", "a@x.com", "a"),
            _m("2", "b@x.com", "b"),
            _m("3", "o@x.com", "o", type_=TYPE_OWNER),
        ],
        groups=[],
    )
    plan = make_plan(_d(User("a", "a", "a@x.com")), org, SyncSettings(overwrite_existing=True))
    assert _actions(plan) == [("remove", "b@x.com")]


def test_overwrite_plans_each_removal_once_and_spares_only_owners() -> None:
    """§3.4: a deleted entry's member goes in step 3, every other synced non-owner without an
    active entry in step 4, admins included; each is one removal for the safety limits."""
    org = OrgSnapshot(
        members=[
            _m("1", "gone@x.com", "gone"),
            _m("2", "adm-gone@x.com", "adm-gone", type_=TYPE_ADMIN),
            _m("3", "adm-absent@x.com", "adm-absent", type_=TYPE_ADMIN),
            _m("4", "own@x.com", "own", type_=TYPE_OWNER),
            _m("5", "off@x.com", "off"),
        ],
        groups=[],
    )
    directory = _d(
        User("gone", "gone", "gone@x.com", deleted=True),
        User("adm-gone", "adm-gone", "adm-gone@x.com", deleted=True),
        User("own", "own", "own@x.com", deleted=True),
        User("off", "off", "off@x.com", disabled=True),
    )
    sync = SyncSettings(
        overwrite_existing=True, remove_disabled=True, max_removals=3, max_removal_percent=100
    )
    plan = make_plan(directory, org, sync)
    assert _actions(plan) == [
        ("remove", "gone@x.com"),
        ("remove", "adm-gone@x.com"),
        ("skip", "own@x.com"),
        ("remove", "off@x.com"),
        ("remove", "adm-absent@x.com"),
    ]
    assert plan.removals == 4
    assert "admins too" in plan.changes[1].reason and "admins too" in plan.changes[4].reason
    assert check_safety(plan, directory, sync)  # 4 > 3: counted once each
    assert not check_safety(plan, directory, sync.model_copy(update={"max_removals": 4}))


def test_groups_create_rename_and_membership_detail() -> None:
    eng = Group("g1", "g1", "Engineering")
    eng.add_user("a")
    eng.add_user("new")
    ops = Group("g2", "g2", "Ops")
    org = OrgSnapshot(
        members=[_m("m-a", "a@x.com", "a"), _m("m-h", "hand@x.com", None)],
        groups=[OrgGroup("og1", "Eng", "g1"), OrgGroup("og9", "Manual", None)],
        group_member_ids={"og1": ["m-h"]},
    )
    d = _d(User("a", "a", "a@x.com"), User("new", "new", "new@x.com"), groups=[eng, ops])
    plan = make_plan(d, org, SyncSettings())
    assert [
        (c.action, c.subject, c.group)
        for c in plan.of("group_create", "group_rename", "member_add", "member_remove")
    ] == [
        ("group_rename", "Engineering", None),
        ("member_add", "a@x.com", "Engineering"),
        ("member_add", "new@x.com", "Engineering"),
        ("member_remove", "hand@x.com", "Engineering"),
        ("group_create", "Ops", None),
    ]


def test_unknown_org_plan_says_what_will_be_sent() -> None:
    plan = make_plan(_d(User("a", "a", "a@x.com")), None, SyncSettings(), sent_members=1)
    assert not plan.org_known and plan.changes == []
    assert "1 members" in plan.notes[0]


def _org(n: int) -> OrgSnapshot:
    return OrgSnapshot(members=[_m(str(i), f"u{i}@x.com", f"u{i}") for i in range(n)], groups=[])


def test_safety_count_and_percent_limits() -> None:
    org = _org(100)
    keep = [User(f"u{i}", f"u{i}", f"u{i}@x.com") for i in range(89)]
    plan = make_plan(_d(*keep), org, SyncSettings(remove_missing=True))
    assert plan.removals == 11
    reasons = check_safety(plan, _d(*keep), SyncSettings())
    assert len(reasons) == 1 and "11.0% of 100" in reasons[0]
    assert check_safety(plan, _d(*keep), SyncSettings(max_removal_percent=20)) == []
    assert (
        "MAX_REMOVALS=5"
        in check_safety(plan, _d(*keep), SyncSettings(max_removals=5, max_removal_percent=50))[0]
    )
    assert check_safety(plan, _d(*keep), SyncSettings(), allow_removals=11) == []
    assert check_safety(plan, _d(*keep), SyncSettings(), allow_removals=10)
    with pytest.raises(SafetyLimitError, match="--allow-removals"):
        enforce_safety(check_safety(plan, _d(*keep), SyncSettings()))


def test_empty_directory_with_synced_members_is_a_safety_stop() -> None:
    plan = make_plan(_d(), _org(3), SyncSettings())
    reasons = check_safety(plan, _d(), SyncSettings())
    assert reasons and "no users" in reasons[0]
    # users not synced at all (None) is not "empty"
    nothing = Directory(users=None, groups=[])
    assert check_safety(make_plan(nothing, _org(3), SyncSettings()), nothing, SyncSettings()) == []


def test_invited_member_revoked_when_gone_too() -> None:
    org = OrgSnapshot(members=[_m("1", "i@x.com", "i", status=STATUS_INVITED)], groups=[])
    plan = make_plan(_d(User("z", "z", "z@x.com")), org, SyncSettings(remove_missing=True))
    assert _actions(plan) == [("invite", "z@x.com"), ("revoke", "i@x.com")]


def test_a_revoked_member_deleted_in_the_directory_is_removed_in_either_mode() -> None:
    # The entry goes out as deleted: true and the server removes the membership whatever its
    # status (§3.4 step 3); the plan must say so, and count it against the limits.
    org = OrgSnapshot(members=[_m("1", "gone@x.com", "gone", status=STATUS_REVOKED)], groups=[])
    d = _d(User("gone", "gone", "gone@x.com", deleted=True))
    for mode in ("revoke", "remove"):
        plan = make_plan(d, org, SyncSettings(removal_mode=mode))
        assert _actions(plan) == [("remove", "gone@x.com")]
        assert plan.removals == 1
