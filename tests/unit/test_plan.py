"""plan: the pure diff of directory against organization, and the safety limits."""

from __future__ import annotations

import pytest

from bwsync.changes import PROTECTED_REASONS
from bwsync.config import SyncSettings
from bwsync.errors import ConfigError, SafetyLimitError
from bwsync.memory import Memory
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
from bwsync.plan import (
    OrgSnapshot,
    Plan,
    check_safety,
    enforce_safety,
    make_plan,
    safety_advice,
)


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
    assert "admins too" in plan.changes[1].why and "admins too" in plan.changes[4].why
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
        ("group_rename", "Engineering", "Engineering"),
        ("member_add", "a@x.com", "Engineering"),
        ("member_add", "new@x.com", "Engineering"),
        ("member_remove", "hand@x.com", "Engineering"),
        ("group_create", "Ops", "Ops"),
    ]


def test_unknown_org_plan_says_what_will_be_sent() -> None:
    plan = make_plan(_d(User("a", "a", "a@x.com")), None, SyncSettings(), sent_members=1)
    assert not plan.org_known and plan.changes == []
    assert "1 members" in plan.notes[0]
    assert "only through BWSYNC_SYNC__PROTECTED_MEMBERS (0 listed)" in plan.notes[1]


# -- a server without list endpoints (Vaultwarden): the plan against bwsync's memory ---------

SCOPE = "https://vw.example/api organization o"


def _mem(members: set[str], revoked: set[str] = frozenset()) -> Memory:  # type: ignore[assignment]
    return Memory(SCOPE, frozenset(members), frozenset(revoked))


def _vw(d: Directory, memory: Memory | None, **sync: object) -> Plan:
    return make_plan(d, None, SyncSettings(**sync), memory=memory, scope=SCOPE)


def _u(name: str, **kw: bool) -> User:
    return User(f"cn={name}", f"cn={name}", f"{name}@x.com", **kw)


def test_unlisted_first_run_remembers_what_it_sends() -> None:
    d = _d(_u("a"), _u("b"), _u("gone", deleted=True))
    plan = _vw(d, None, remove_missing=True)
    # the deleted entry revokes a member with its email if there is one: counted, and the base
    # of the percentage is what the import names
    assert _actions(plan) == [("revoke", "gone@x.com")]
    assert plan.changes[0].reason == "deleted_maybe_member"
    assert plan.synced_members == 3 and plan.removals == 1
    assert any("no memory of the members it synced" in n for n in plan.notes)
    assert plan.memory == Memory(
        SCOPE, frozenset({"a@x.com", "b@x.com"}), frozenset({"gone@x.com"})
    )


def test_unlisted_overwrite_without_memory_is_refused() -> None:
    with pytest.raises(ConfigError, match="no memory of the members it synced there yet") as e:
        _vw(_d(_u("a")), None, overwrite_existing=True)
    assert e.value.exit_code == 2
    assert "BWSYNC_SYNC__OVERWRITE_EXISTING=true" in str(e.value)


def test_unlisted_remove_mode_is_refused_unless_overwrite_deletes() -> None:
    with pytest.raises(ConfigError, match="BWSYNC_SYNC__REMOVAL_MODE=remove") as e:
        _vw(_d(_u("a")), _mem({"a@x.com"}), remove_missing=True, removal_mode="remove")
    assert "revokes the members an import marks deleted" in str(e.value)
    plan = _vw(
        _d(_u("a")),
        _mem({"a@x.com", "b@x.com"}),
        remove_missing=True,
        removal_mode="remove",
        overwrite_existing=True,
        max_removal_percent=100,
    )
    assert _actions(plan) == [("remove", "b@x.com")]
    assert "overwrite_existing deletes it" in plan.changes[0].why
    assert plan.send_deleted == []  # left out: the server deletes it
    assert plan.memory is not None and plan.memory.members == {"a@x.com"}


def test_unlisted_plan_against_memory() -> None:
    memory = _mem({"kept@x.com", "off@x.com", "left@x.com"}, {"back@x.com", "old@x.com"})
    d = _d(
        _u("kept"),
        _u("new"),
        _u("back"),
        _u("off", deleted=True),
        _u("never", deleted=True),  # a tombstone bwsync never synced
        _u("old", deleted=True),  # revoked before: nothing new
    )
    plan = _vw(d, memory, max_removal_percent=100)
    assert _actions(plan) == [
        ("invite", "new@x.com"),
        ("restore", "back@x.com"),
        ("revoke", "off@x.com"),
        ("revoke", "never@x.com"),  # the server revokes a member with that email, if any
    ]
    assert plan.synced_members == 3 and plan.removals == 2
    assert any(n.startswith("1 directory entries go out as deleted") for n in plan.notes)
    assert plan.send_deleted == []  # left@x.com is left alone without remove_missing
    assert plan.memory is not None
    assert plan.memory.members == {"kept@x.com", "new@x.com", "back@x.com", "left@x.com"}
    assert plan.memory.revoked == {"off@x.com", "never@x.com", "old@x.com"}


def test_unlisted_remove_missing_revokes_by_sending_deleted() -> None:
    memory = _mem({"kept@x.com", "left@x.com", "boss@x.com"})
    plan = _vw(
        _d(_u("kept")),
        memory,
        remove_missing=True,
        protected_members="Boss@x.com",
        max_removal_percent=100,
    )
    assert [(c.action, c.subject, c.reason) for c in plan.changes] == [
        ("skip", "boss@x.com", "gone_protected"),
        ("revoke", "left@x.com", "gone"),
    ]
    # Only emails are remembered: the email is the entry's externalId.
    assert plan.send_deleted == [("left@x.com", "left@x.com")]
    assert plan.memory is not None
    assert plan.memory.members == {"kept@x.com", "boss@x.com"}
    assert plan.memory.revoked == {"left@x.com"}


def test_unlisted_overwrite_counts_deletions_and_keeps_the_revoked_revoked() -> None:
    memory = _mem({"a@x.com", "b@x.com", "c@x.com"}, {"r@x.com"})
    sync = {"overwrite_existing": True, "max_removal_percent": 100}
    plan = _vw(_d(_u("a")), memory, **sync)
    assert _actions(plan) == [("remove", "b@x.com"), ("remove", "c@x.com")]
    assert plan.removals == 2
    assert plan.send_deleted == [("r@x.com", "r@x.com")]  # else overwrite deletes it
    assert any("every member whose externalId bwsync did not send" in n for n in plan.notes)
    assert plan.memory is not None
    assert (plan.memory.members, plan.memory.revoked) == ({"a@x.com"}, {"r@x.com"})
    # an empty directory: every remembered member, and the brake
    empty = _vw(_d(), memory, **sync)
    assert empty.removals == 3
    assert "no users" in check_safety(empty, _d(), SyncSettings(**sync))[0]  # type: ignore[arg-type]


def test_unlisted_protected_members_are_never_sent_deleted() -> None:
    memory = _mem({"adm@x.com", "a@x.com"})
    d = _d(_u("a"), _u("adm", deleted=True))
    plan = _vw(d, memory, protected_members="adm@x.com")
    assert [(c.action, c.subject, c.reason) for c in plan.changes] == [
        ("skip", "adm@x.com", "deleted_protected")
    ]
    assert plan.protected_external_ids == {"cn=adm"}
    assert plan.hazards == []
    # under overwrite the server would delete it: a hazard, whatever --allow-removals says
    plan = _vw(d, memory, protected_members="adm@x.com", overwrite_existing=True)
    assert plan.hazards and "adm@x.com is in BWSYNC_SYNC__PROTECTED_MEMBERS" in plan.hazards[0]
    reasons = check_safety(plan, d, SyncSettings(), allow_removals=100)
    assert reasons == plan.hazards


def test_unlisted_without_user_sync_keeps_the_memory() -> None:
    memory = _mem({"a@x.com"})
    plan = _vw(Directory(users=None, groups=[]), memory, remove_missing=True)
    assert plan.changes == [] and plan.memory is memory


# -- protected members where the organization can be read ------------------------------------


def test_protected_members_on_a_listing_server() -> None:
    org = OrgSnapshot(
        members=[
            _m("1", "bg@x.com", "bg"),
            _m("2", "gone@x.com", "gone"),
            _m("3", "left@x.com", "left"),
        ],
        groups=[],
    )
    d = _d(User("bg", "bg", "bg@x.com", deleted=True), User("gone", "gone", "gone@x.com"))
    sync = SyncSettings(protected_members="bg@x.com, LEFT@x.com", remove_missing=True)
    plan = make_plan(d, org, sync)
    assert [(c.action, c.subject) for c in plan.changes] == [
        ("skip", "bg@x.com"),
        ("skip", "left@x.com"),
    ]
    assert plan.changes[0].reason in PROTECTED_REASONS and plan.protected_external_ids == {"bg"}
    over = make_plan(d, org, sync.model_copy(update={"overwrite_existing": True}))
    assert len(over.hazards) == 2  # the server would remove both
    assert over.removals == 0


def test_protected_members_setting_is_a_list_of_emails() -> None:
    assert SyncSettings(protected_members=" A@x.com ,b@x.com,").protected == {"a@x.com", "b@x.com"}
    assert SyncSettings().protected == frozenset()
    with pytest.raises(ValueError, match="not an email: admin"):
        SyncSettings(protected_members="a@x.com,admin")


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


@pytest.mark.parametrize(
    ("members", "leavers", "grace", "stops"),
    [
        (29, 3, 5, False),  # 10.3 %: three leavers of a small organization are routine
        (30, 5, 5, False),  # 16.7 %, but within the grace
        (30, 6, 5, True),  # 20 %, above the grace: a mistake, most likely
        (30, 25, 5, True),  # a filter that drops most of the organization
        (29, 3, 0, True),  # no grace: the percentage applies to every plan
        (5, 2, 5, False),  # 40 % of a 5-person organization: within the grace
        (5, 3, 5, True),  # more than half of it: the grace never covers that
        (5, 5, 5, True),  # everyone
        (30_000, 26, 5, True),  # the count limit (25) is for large organizations
        (30_000, 25, 5, False),  # 0.08 %
    ],
)
def test_percent_limit_applies_above_a_grace_count(
    members: int, leavers: int, grace: int, stops: bool
) -> None:
    """The defaults fit a 30-member organization as well as a 30,000-member one."""
    org = _org(members)
    keep = [User(f"u{i}", f"u{i}", f"u{i}@x.com") for i in range(members - leavers)]
    sync = SyncSettings(remove_missing=True, max_removal_percent_above=grace)
    plan = make_plan(_d(*keep), org, sync)
    assert plan.removals == leavers
    assert bool(check_safety(plan, _d(*keep), sync)) is stops


def test_empty_directory_with_synced_members_is_a_safety_stop() -> None:
    plan = make_plan(_d(), _org(3), SyncSettings())
    reasons = check_safety(plan, _d(), SyncSettings())
    assert reasons and "no users" in reasons[0]
    # users not synced at all (None) is not "empty"
    nothing = Directory(users=None, groups=[])
    assert check_safety(make_plan(nothing, _org(3), SyncSettings()), nothing, SyncSettings()) == []
    # --allow-removals never lifts it, so the message does not suggest it
    with pytest.raises(SafetyLimitError) as stop:
        enforce_safety(reasons)
    assert "does not lift this stop" in str(stop.value)
    assert "run once with --allow-removals" not in str(stop.value)
    assert check_safety(plan, _d(), SyncSettings(), allow_removals=100) == reasons


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


def test_the_advice_names_what_lifts_each_stop() -> None:
    sync = SyncSettings(remove_missing=True)
    thirty_left = _mem({f"u{i}@x.com" for i in range(30)} | {"a@x.com"})
    plan = _vw(_d(_u("a")), thirty_left, remove_missing=True)
    limits = check_safety(plan, _d(_u("a")), sync)
    assert safety_advice(limits).endswith("run once with `bwsync sync --allow-removals 30`")
    empty = _d()
    brake = check_safety(_vw(empty, _mem({"a@x.com"}), remove_missing=True), empty, sync)
    assert "--allow-removals does not lift this stop" in safety_advice(brake)
    assert "run once with" not in safety_advice(brake)
    hazard = check_safety(
        _vw(_d(_u("a")), _mem({"a@x.com", "b@x.com"}), overwrite_existing=True,
            protected_members="b@x.com"),
        _d(_u("a")),
        sync,
    )  # fmt: skip
    assert "make the change named above" in safety_advice(hazard)
    assert "run once with" not in safety_advice(hazard)
