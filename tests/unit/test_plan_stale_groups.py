"""plan: synced groups that leave the directory (issue 21), pure, with in-memory sets.

A group bwsync synced (it carries an externalId) and the directory no longer has is emptied
(or deleted) under ``remove_missing``; the members losing access through it are counted once
each, together with removed and revoked members, against the safety limits."""

from __future__ import annotations

import pytest

from bwsync.config import SyncSettings
from bwsync.model import (
    STATUS_CONFIRMED,
    TYPE_USER,
    CollectionGrant,
    Directory,
    Group,
    OrgGroup,
    OrgMember,
    User,
)
from bwsync.plan import (
    NO_GROUP_ENDPOINTS,
    OrgSnapshot,
    check_safety,
    groups_to_read,
    make_plan,
    relinks,
    safety_advice,
    stale_groups,
)

ON = SyncSettings(remove_missing=True)


def _m(i: str, *, synced: bool = True) -> OrgMember:
    return OrgMember(
        id=i,
        email=f"{i}@x.com",
        external_id=i if synced else None,
        status=STATUS_CONFIRMED,
        type=TYPE_USER,
    )


def _g(ext: str, name: str, *members: str, ref: str | None = None) -> Group:
    g = Group(ref or ext, ext, name)
    for m in members:
        g.add_user(m)
    return g


def _world(**snapshot: object) -> tuple[Directory, OrgSnapshot]:
    """Directory: ann, bob, cid, dan; group "kept". Organization: the four, plus "hand"
    (no externalId); groups kept, sales (ann, bob), ops (bob, cid), empty (nobody), and a
    group made by hand."""
    users = [User(u, u, f"{u}@x.com") for u in ("ann", "bob", "cid", "dan")]
    directory = Directory(users=users, groups=[_g("kept", "Kept", "ann")])
    org = OrgSnapshot(
        members=[_m("ann"), _m("bob"), _m("cid"), _m("dan"), _m("hand", synced=False)],
        groups=[
            OrgGroup("g-kept", "Kept", "kept"),
            OrgGroup("g-sales", "Sales", "sales"),
            OrgGroup("g-ops", "Ops", "ops"),
            OrgGroup("g-empty", "Empty", "empty"),
            OrgGroup("g-hand", "By hand", None),
        ],
        member_ids_read={
            "g-sales": ["ann", "bob"],
            "g-ops": ["bob", "cid", "hand"],
            "g-empty": [],
        },
        **snapshot,  # type: ignore[arg-type]
    )
    return directory, org


def test_stale_groups_are_the_synced_ones_the_directory_lacks() -> None:
    directory, org = _world()
    assert [g.id for g in stale_groups(directory, org, ON)] == ["g-sales", "g-ops", "g-empty"]
    assert stale_groups(directory, org, SyncSettings()) == []  # remove_missing off
    no_groups = Directory(users=directory.users, groups=None)  # group sync off
    assert stale_groups(no_groups, org, ON) == []


def test_a_blank_or_whitespace_external_id_is_a_hand_made_group() -> None:
    directory, org = _world()
    org.groups += [OrgGroup("g-blank", "Blank", ""), OrgGroup("g-space", "Space", " \t")]
    assert [g.id for g in stale_groups(directory, org, ON)] == ["g-sales", "g-ops", "g-empty"]


def test_stale_groups_are_emptied_with_the_members_losing_access() -> None:
    directory, org = _world()
    plan = make_plan(directory, org, ON)
    empties = plan.of("group_empty", "group_delete")
    assert [(c.action, c.subject, c.group_id, c.members_losing_access) for c in empties] == [
        ("group_empty", "Sales", "g-sales", 2),
        ("group_empty", "Ops", "g-ops", 3),
    ]  # "Empty" has nobody left to take: in step; "By hand" is never touched
    assert "2 members lose the access it grants" in empties[0].why
    assert "gone from the directory's groups" in empties[0].why
    assert "stay for review" in empties[0].why
    assert empties[0].as_dict()["groupId"] == "g-sales"
    assert empties[0].as_dict()["membersLosingAccess"] == 2
    assert empties[0].sentence(dry_run=True).startswith("would empty group Sales (")
    assert plan.counts() == {"group_empty": 2}
    # bob is in both groups, "hand" has no externalId: four people, each counted once
    assert plan.members_losing_access == 4 and plan.removals == 0


def test_delete_mode_deletes_every_stale_group_even_an_empty_one() -> None:
    directory, org = _world()
    plan = make_plan(directory, org, SyncSettings(remove_missing=True, stale_groups="delete"))
    assert [(c.action, c.subject, c.members_losing_access) for c in plan.changes] == [
        ("group_delete", "Sales", 2),
        ("group_delete", "Ops", 3),
        ("group_delete", "Empty", 0),
    ]
    assert "collection grants are deleted with it" in plan.changes[0].why
    assert "0 members lose" in plan.changes[2].why


def test_without_remove_missing_a_stale_group_is_left_alone() -> None:
    directory, org = _world()
    plan = make_plan(directory, org, SyncSettings())
    assert plan.changes == [] and plan.members_losing_access == 0


def test_an_emptied_group_is_in_step_on_the_next_run() -> None:
    directory, org = _world()
    org.member_ids_read = {"g-sales": [], "g-ops": [], "g-empty": []}
    plan = make_plan(directory, org, ON)
    assert plan.changes == []
    assert check_safety(plan, directory, ON) == []
    # but named, for the review that is their reason to be kept
    (note,) = plan.notes
    assert note.startswith(
        "3 synced groups left the directory and are kept empty for review (Sales, Ops, Empty)"
    )


def test_detail_lists_each_member_losing_access() -> None:
    directory, org = _world(
        group_member_ids={
            "g-kept": ["ann"],
            "g-sales": ["ann", "bob"],
            "g-ops": ["bob", "cid", "hand"],
            "g-empty": [],
        }
    )
    org.member_ids_read = {}  # --detail read them all already
    plan = make_plan(directory, org, ON)
    assert [(c.action, c.subject, c.group) for c in plan.changes] == [
        ("group_empty", "Sales", "Sales"),
        ("member_remove", "ann@x.com", "Sales"),
        ("member_remove", "bob@x.com", "Sales"),
        ("group_empty", "Ops", "Ops"),
        ("member_remove", "bob@x.com", "Ops"),
        ("member_remove", "cid@x.com", "Ops"),
        ("member_remove", "hand@x.com", "Ops"),
    ]
    assert plan.changes[1].reason == "group_left_directory"
    assert plan.changes[1].member_id == "ann"


def _switched() -> tuple[Directory, OrgSnapshot]:
    """An OpenLDAP group whose externalId switched from its DN to its entryUUID
    (BWSYNC_LDAP__GROUP_ID_ATTRIBUTE): the source gives the DN as its reference id; and one
    re-created under the same name (a DN move, without the setting)."""
    users = [User("ann", "ann", "ann@x.com")]
    dn = "cn=sales,ou=groups,dc=x"
    directory = Directory(
        users=users,
        groups=[
            _g("4f9c-uuid", "sales", "ann", ref=dn),
            _g("cn=ops,ou=new,dc=x", "ops", "ann"),
        ],
    )
    grant = CollectionGrant("c1", read_only=True)
    org = OrgSnapshot(
        members=[_m("ann")],
        groups=[
            OrgGroup("g1", "sales", dn, (grant,)),
            OrgGroup("g2", "ops", "cn=ops,ou=old,dc=x", (grant,)),
        ],
        member_ids_read={"g1": ["ann"], "g2": ["ann"]},
    )
    return directory, org


@pytest.mark.parametrize("remove_missing", [False, True])
def test_a_group_the_source_identifies_anew_is_relinked_not_recreated(
    remove_missing: bool,
) -> None:
    directory, org = _switched()
    assert relinks(directory, org) == {"4f9c-uuid": org.groups[0]}
    plan = make_plan(directory, org, SyncSettings(remove_missing=remove_missing))
    assert [(c.action, c.subject, c.external_id, c.group_id) for c in plan.changes][:2] == [
        ("group_relink", "sales", "4f9c-uuid", "g1"),
        ("group_create", "ops", "cn=ops,ou=new,dc=x", None),
    ]
    assert "keeping its members and collection grants" in plan.changes[0].why
    assert [g.id for g in stale_groups(directory, org, ON)] == ["g2"]  # g1 is not stale


def test_no_relink_onto_an_external_id_another_group_has() -> None:
    directory, org = _switched()
    org.groups.append(OrgGroup("g3", "sales (new)", "4f9c-uuid"))
    assert relinks(directory, org) == {}
    plan = make_plan(directory, org, ON)
    assert [(c.action, c.subject) for c in plan.changes] == [
        ("group_rename", "sales"),
        ("group_create", "ops"),
        ("group_empty", "sales"),
        ("group_empty", "ops"),
    ]
    assert "now identifies this group as '4f9c-uuid'" in plan.changes[2].why
    assert "a group of this name under another id ('cn=ops,ou=new,dc=x')" in (plan.changes[3].why)
    assert "grants 1 collection: c1 (view only)" in plan.changes[3].why
    assert any("grant it the old group's collections" in n for n in plan.notes)


def test_delete_mode_empties_a_group_that_is_likely_the_same_and_lists_grants() -> None:
    directory, org = _switched()
    org.groups.append(OrgGroup("g3", "sales (new)", "4f9c-uuid"))
    org.groups.append(OrgGroup("g4", "gone", "gone", (CollectionGrant("c2", manage=True),)))
    org.member_ids_read["g4"] = []
    plan = make_plan(directory, org, SyncSettings(remove_missing=True, stale_groups="delete"))
    stale = [(c.action, c.subject) for c in plan.of("group_empty", "group_delete")]
    assert stale == [("group_empty", "sales"), ("group_empty", "ops"), ("group_delete", "gone")]
    assert "not deleted: the directory has a group of this name or entry" in plan.changes[-3].why
    (gone,) = plan.of("group_delete")
    assert gone.collections == (CollectionGrant("c2", manage=True),)
    assert gone.as_dict()["collections"] == [
        {"id": "c2", "readOnly": False, "hidePasswords": False, "manage": True}
    ]
    assert "(grants 1 collection: c2 (can manage))" in gone.why


def test_safety_counts_each_member_losing_access_once() -> None:
    """ann is revoked and in a stale group, bob in two stale groups: 2 members, not 4."""
    users = [User("cid", "cid", "cid@x.com")]
    directory = Directory(users=users, groups=[])
    org = OrgSnapshot(
        members=[_m("ann"), _m("bob"), _m("cid"), *(_m(f"u{i}") for i in range(17))],
        groups=[OrgGroup("g1", "One", "one"), OrgGroup("g2", "Two", "two")],
        member_ids_read={"g1": ["ann", "bob"], "g2": ["bob"]},
    )
    keep = [User(f"u{i}", f"u{i}", f"u{i}@x.com") for i in range(17)]
    directory = Directory(users=[*users, *keep], groups=[_g("other", "Other")])
    plan = make_plan(directory, org, ON)
    assert plan.removals == 2  # ann, bob revoked
    assert plan.members_losing_access == 2
    org.member_ids_read = {"g1": ["ann", "bob", "cid"], "g2": ["bob"]}
    plan = make_plan(directory, org, ON)
    assert plan.members_losing_access == 3  # cid stays, but loses group One
    sync = SyncSettings(remove_missing=True, max_removals=2, max_removal_percent=100)
    (reason,) = check_safety(plan, directory, sync)
    assert reason.startswith(
        "3 members losing access (2 removed/revoked, 3 in groups that are gone from the "
        "directory or come with no members) exceed BWSYNC_SYNC__MAX_REMOVALS=2"
    )
    assert check_safety(plan, directory, sync.model_copy(update={"max_removals": 3})) == []
    # (below the default grace of 5 the percentage would not count at all)
    pct = SyncSettings(remove_missing=True, max_removal_percent=10, max_removal_percent_above=2)
    (reason,) = check_safety(plan, directory, pct)
    assert "15.0% of 20 synced members" in reason
    assert check_safety(plan, directory, sync, allow_removals=3) == []
    assert check_safety(plan, directory, sync, allow_removals=2)


def test_group_losses_alone_trip_the_limits() -> None:
    directory, org = _world()
    sync = SyncSettings(remove_missing=True, max_removals=3, max_removal_percent=100)
    plan = make_plan(directory, org, sync)
    assert plan.removals == 0
    (reason,) = check_safety(plan, directory, sync)
    assert "4 members losing access (0 removed/revoked, 4 in groups" in reason


def test_no_groups_at_all_is_a_safety_stop_when_synced_groups_grant_access() -> None:
    directory, org = _world()
    nothing = Directory(users=directory.users, groups=[])
    generous = SyncSettings(remove_missing=True, max_removals=100, max_removal_percent=100)
    plan = make_plan(nothing, org, generous)
    reasons = check_safety(plan, nothing, generous, allow_removals=100)
    assert len(reasons) == 1 and "returned no groups while 2 synced groups" in reasons[0]
    # already emptied: nothing left to protect, the brake does not hold the run forever
    org.member_ids_read = {"g-sales": [], "g-ops": [], "g-empty": [], "g-kept": []}
    plan = make_plan(nothing, org, generous)
    assert check_safety(plan, nothing, generous) == []


@pytest.mark.parametrize("remove_missing", [True, False])
def test_a_server_without_group_endpoints_is_named_in_the_plan(remove_missing: bool) -> None:
    directory, _ = _world()
    plan = make_plan(directory, None, SyncSettings(remove_missing=remove_missing))
    assert (NO_GROUP_ENDPOINTS in plan.notes) is remove_missing
    assert "by hand in the web vault" in NO_GROUP_ENDPOINTS


# -- a group the directory names with no member the organization has ---------------------------


def _cleared_world() -> tuple[Directory, OrgSnapshot]:
    """Directory: ann, bob, new (not a member yet), hal (a hand-added member's email); groups
    staff (nobody), fresh (only new), linked (only hal), kept (ann). Organization: ann, bob and
    the hand-added hal; staff, fresh, linked and kept hold ann and bob."""
    users = [
        User("ann", "ann", "ann@x.com"),
        User("bob", "bob", "bob@x.com"),
        User("new", "new", "new@x.com"),
        User("hal", "hal", "hal@x.com"),
    ]
    groups = [
        _g("staff", "Staff"),
        _g("fresh", "Fresh", "new"),
        _g("linked", "Linked", "hal"),
        _g("kept", "Kept", "ann"),
    ]
    hal = OrgMember(id="hal", email="hal@x.com", external_id=None, status=2, type=TYPE_USER)
    org = OrgSnapshot(
        members=[_m("ann"), _m("bob"), hal],
        groups=[OrgGroup(f"g-{n}", n.title(), n) for n in ("staff", "fresh", "linked", "kept")],
        member_ids_read={g: ["ann", "bob"] for g in ("g-staff", "g-fresh", "g-linked")},
    )
    return Directory(users=users, groups=groups), org


def test_the_groups_read_without_detail_are_stale_ones_and_those_without_known_members() -> None:
    directory, org = _cleared_world()
    # by externalId only: "linked" is read too, the plan then sees hal linked by email
    assert [g.id for g in groups_to_read(directory, org, SyncSettings())] == [
        "g-staff",
        "g-fresh",
        "g-linked",
    ]
    org.groups.append(OrgGroup("g-gone", "Gone", "gone"))
    assert [g.id for g in groups_to_read(directory, org, ON)] == [
        "g-gone",
        "g-staff",
        "g-fresh",
        "g-linked",
    ]


@pytest.mark.parametrize("remove_missing", [False, True])
def test_a_group_the_import_clears_lists_who_leaves_it_and_counts_them(
    remove_missing: bool,
) -> None:
    directory, org = _cleared_world()
    plan = make_plan(directory, org, SyncSettings(remove_missing=remove_missing))
    removes = [(c.subject, c.group, c.reason) for c in plan.of("member_remove")]
    assert removes == [
        (f"{w}@x.com", g, "group_cleared") for g in ("Staff", "Fresh") for w in ("ann", "bob")
    ]
    assert plan.group_losses == {"g-staff": ["ann", "bob"], "g-fresh": ["ann", "bob"]}
    assert plan.members_losing_access == 2
    (note,) = [n for n in plan.notes if "no members the organization has" in n]
    assert note.startswith("2 synced groups") and "(Staff, Fresh)" in note
    sync = SyncSettings(remove_missing=remove_missing, max_removals=1, max_removal_percent=100)
    (reason,) = check_safety(plan, directory, sync)
    assert reason.startswith("2 members losing access (0 removed/revoked, 2 in groups")


def test_a_cleared_group_already_empty_is_in_step() -> None:
    directory, org = _cleared_world()
    org.member_ids_read = {"g-staff": [], "g-fresh": [], "g-linked": []}
    plan = make_plan(directory, org, SyncSettings())
    assert [c.action for c in plan.changes] == ["invite", "link"]  # new, and hal by email
    assert plan.group_losses == {} and plan.notes == []


def test_detail_plans_the_invited_member_of_a_cleared_group_too() -> None:
    directory, org = _cleared_world()
    org.member_ids_read = {}
    org.group_member_ids = {
        "g-staff": ["ann"],
        "g-fresh": ["ann", "bob"],
        "g-linked": [],
        "g-kept": ["ann"],
    }
    plan = make_plan(directory, org, SyncSettings())
    assert [(c.action, c.subject, c.group) for c in plan.changes if c.group] == [
        ("member_remove", "ann@x.com", "Staff"),
        ("member_remove", "ann@x.com", "Fresh"),
        ("member_remove", "bob@x.com", "Fresh"),
        ("member_add", "new@x.com", "Fresh"),
        ("member_add", "hal@x.com", "Linked"),
    ]
    assert plan.members_losing_access == 2


# -- the group limit --------------------------------------------------------------------------


def test_the_group_limit_counts_groups_emptied_deleted_or_cleared() -> None:
    directory, org = _world()
    # empty mode: sales and ops are emptied, "empty" has nobody left: 2 groups
    plan = make_plan(directory, org, ON)
    assert plan.emptied_groups == {"g-sales": "Sales", "g-ops": "Ops"}
    # delete mode: the empty group is deleted too, grants and all: 3 groups, 0 more members
    delete = SyncSettings(remove_missing=True, stale_groups="delete")
    plan = make_plan(directory, org, delete)
    assert plan.emptied_groups == {"g-sales": "Sales", "g-ops": "Ops", "g-empty": "Empty"}
    # and a group the import clears
    directory.groups = [_g("kept", "Kept")]
    org.member_ids_read["g-kept"] = ["dan"]
    plan = make_plan(directory, org, delete)
    assert list(plan.emptied_groups) == ["g-kept", "g-sales", "g-ops", "g-empty"]


def test_the_group_limit_stops_a_plan_the_member_limits_let_through() -> None:
    directory, org = _world()
    org.member_ids_read = {"g-sales": [], "g-ops": [], "g-empty": []}
    sync = SyncSettings(remove_missing=True, stale_groups="delete", max_emptied_groups=2)
    plan = make_plan(directory, org, sync)
    assert plan.members_losing_access == 0
    (reason,) = check_safety(plan, directory, sync)
    assert reason == (
        "3 synced groups would be emptied or deleted (Sales, Ops, Empty), over "
        "BWSYNC_SYNC__MAX_EMPTIED_GROUPS=2 (counted by group, whatever its size; "
        "--allow-removals does not lift this limit)"
    )
    assert safety_advice([reason]) == (
        "Review the plan (`bwsync plan`); if it is right, run once with "
        "`bwsync sync --allow-emptied-groups 3`"
    )
    assert check_safety(plan, directory, sync, allow_removals=100) == [reason]
    assert check_safety(plan, directory, sync, allow_emptied_groups=3) == []
    (reason,) = check_safety(plan, directory, sync, allow_emptied_groups=1)
    assert "over --allow-emptied-groups 1" in reason
    roomy = sync.model_copy(update={"max_emptied_groups": 3})
    assert check_safety(plan, directory, roomy) == []
