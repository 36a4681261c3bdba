"""normalize: bwdc's drop, flatten and duplicate rules (reference §2, §3.1, §3.2)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bwsync.errors import DuplicateEmailError
from bwsync.model import Directory, Group, Rejected, User
from bwsync.normalize import flatten_groups, normalize, remove_duplicate_users, usable_users


def _g(ref: str, users: list[str], groups: list[str] = ()) -> Group:  # type: ignore[assignment]
    g = Group(ref, ref, ref.upper())
    for u in users:
        g.add_user(u)
    for c in groups:
        g.add_group(c)
    return g


def _members(groups: list[Group]) -> dict[str, set[str]]:
    return {str(g.reference_id): {str(x) for x in g.user_member_external_ids} for g in groups}


# The cases bwdc's own tests assert (reference §3.1 table).
def test_two_cycle() -> None:
    gs = [_g("A", ["uA"], ["B"]), _g("B", ["uB"], ["A"])]
    flatten_groups(gs)
    assert _members(gs) == {"A": {"uA", "uB"}, "B": {"uA", "uB"}}


def test_three_cycle() -> None:
    gs = [_g("A", ["uA"], ["B"]), _g("B", ["uB"], ["C"]), _g("C", ["uC"], ["A"])]
    flatten_groups(gs)
    assert all(m == {"uA", "uB", "uC"} for m in _members(gs).values())


def test_diamond() -> None:
    gs = [
        _g("A", ["uA"], ["B", "C"]),
        _g("B", ["uB"], ["D"]),
        _g("C", ["uC"], ["D"]),
        _g("D", ["uD"]),
    ]
    flatten_groups(gs)
    assert _members(gs) == {
        "A": {"uA", "uB", "uC", "uD"},
        "B": {"uB", "uD"},
        "C": {"uC", "uD"},
        "D": {"uD"},
    }


def test_deep_cycle() -> None:
    gs = [
        _g("A", ["uA"], ["B"]),
        _g("B", ["uB"], ["C"]),
        _g("C", ["uC"], ["D"]),
        _g("D", ["uD"], ["B"]),
    ]
    flatten_groups(gs)
    m = _members(gs)
    assert m["A"] == {"uA", "uB", "uC", "uD"}
    assert m["B"] == m["C"] == m["D"] == {"uB", "uC", "uD"}


def test_multiple_cycles() -> None:
    gs = [
        _g("A", ["uA"], ["B", "C"]),
        _g("B", ["uB"], ["D", "E"]),
        _g("C", ["uC"], ["E", "F"]),
        _g("D", ["uD"], ["A"]),
        _g("E", ["uE"], ["C"]),
        _g("F", ["uF"]),
    ]
    flatten_groups(gs)
    m = _members(gs)
    everyone = {"uA", "uB", "uC", "uD", "uE", "uF"}
    assert m["A"] == m["B"] == m["D"] == everyone
    assert m["C"] == m["E"] == {"uC", "uE", "uF"}
    assert m["F"] == {"uF"}


def test_merge_order_follows_group_list_not_reference_order() -> None:
    # A references C before B, but B comes first in the group list: bwdc merges B first.
    gs = [_g("A", ["a"], ["C", "B"]), _g("B", ["b"]), _g("C", ["c"])]
    flatten_groups(gs)
    assert list(gs[0].user_member_external_ids) == ["a", "b", "c"]


def test_unknown_nested_reference_contributes_nothing() -> None:
    gs = [_g("A", ["a"], ["cn=filtered-out,dc=x"])]
    flatten_groups(gs)
    assert list(gs[0].user_member_external_ids) == ["a"]


def _closure(edges: dict[str, list[str]], own: dict[str, set[str]]) -> dict[str, set[str]]:
    out = {}
    for start in edges:
        seen, todo, acc = {start}, [start], set()
        while todo:
            g = todo.pop()
            acc |= own[g]
            for c in edges[g]:
                if c not in seen:
                    seen.add(c)
                    todo.append(c)
        out[start] = acc
    return out


# No deadline: what is checked is the result; a loaded machine's pause is not a failure.
@settings(deadline=None)
@given(
    st.integers(1, 8).flatmap(
        lambda n: st.lists(st.lists(st.integers(0, n - 1), max_size=4), min_size=n, max_size=n)
    )
)
def test_flatten_equals_transitive_closure(adj: list[list[int]]) -> None:
    names = [f"g{i}" for i in range(len(adj))]
    gs = [_g(names[i], [f"u{i}"], [names[j] for j in kids]) for i, kids in enumerate(adj)]
    flatten_groups(gs)
    expected = _closure(
        {names[i]: [names[j] for j in k] for i, k in enumerate(adj)},
        {names[i]: {f"u{i}"} for i in range(len(adj))},
    )
    assert _members(gs) == expected


def test_usable_users_counts_reasons_and_cleans_emails() -> None:
    skipped: Counter[str] = Counter()
    rejected: list[Rejected] = []
    long_ok = "é" * 32 + "@" + ".".join(["d" * 63] * 3 + ["c" * 31])  # 256 UTF-16 units
    assert len(long_ok) == 256
    users = [
        User("1", "1", None),
        User("2", "2", "  "),
        User("3", "3", " Ada@Example.COM "),
        User("4", "4", "x" * 251 + "@e.com"),
        User("5", "5", long_ok),
        User("cn=6", "6", "Not-An-Email"),
        User("7", "7", "x" * 65 + "@e.com"),
        User("8", "8", "john smith@example.com"),
    ]
    kept = usable_users(users, skipped, rejected)
    assert [u.email for u in kept] == ["ada@example.com", long_ok]
    assert skipped == {
        "no_email": 2,
        "email_too_long": 1,
        "invalid_email": 2,
        "email_local_part_too_long": 1,
    }
    # Named with their source entry; those without an email are only counted, as bwdc does.
    assert rejected == [
        Rejected("email_too_long", "4", "x" * 251 + "@e.com", "4"),
        Rejected("invalid_email", "cn=6", "not-an-email", "6"),
        Rejected("email_local_part_too_long", "7", "x" * 65 + "@e.com", "7"),
        Rejected("invalid_email", "8", "john smith@example.com", "8"),
    ]


def test_normalize_carries_the_rejected_entries() -> None:
    d = normalize(Directory(users=[User("a", "a", "a@x.com"), User("b", "b", "b")], groups=None))
    assert [u.external_id for u in d.users or []] == ["a"]
    assert d.rejected == [Rejected("invalid_email", "b", "b", "b")]
    assert d.skipped == {"invalid_email": 1}


def test_astral_characters_count_twice_like_javascript() -> None:
    skipped: Counter[str] = Counter()
    email = "\U0001f600" * 126 + "@e.com"  # 126*2 + 6 = 258 UTF-16 units > 256
    assert usable_users([User("1", "1", email)], skipped) == []
    assert skipped == {"email_too_long": 1}


def test_duplicates_identical_dropped_different_rejected() -> None:
    skipped: Counter[str] = Counter()
    a = User("cn=a", "cn=a", "a@x.com")
    assert remove_duplicate_users([a, User("cn=a", "cn=a", "a@x.com")], skipped) == [a]
    assert skipped["duplicate"] == 1
    with pytest.raises(DuplicateEmailError, match=r"a@x\.com"):
        remove_duplicate_users([a, User("cn=b", "cn=b", "a@x.com")], Counter())


def test_active_then_deleted_is_fine_deleted_then_active_is_not() -> None:
    active = User("cn=a", "guid-1", "a@x.com")
    tomb = User("cn=a\\0ADEL:guid-1,cn=deleted objects", "guid-1", "a@x.com", deleted=True)
    assert remove_duplicate_users([active, tomb], Counter()) == [active]
    with pytest.raises(DuplicateEmailError):
        remove_duplicate_users([tomb, active], Counter())
    # several deleted entries with one email are all kept
    t2 = User("cn=b", "guid-2", "a@x.com", deleted=True)
    assert remove_duplicate_users([tomb, t2], Counter()) == [tomb, t2]


def test_duplicate_message_lists_three_and_more() -> None:
    users = []
    for i in range(5):
        users += [User(f"a{i}", f"a{i}", f"e{i}@x.com"), User(f"b{i}", f"b{i}", f"e{i}@x.com")]
    with pytest.raises(DuplicateEmailError) as info:
        remove_duplicate_users(users, Counter())
    assert str(info.value) == (
        "Emails must be unique. Multiple entries pulled with the following emails:\n"
        "e0@x.com\ne1@x.com\ne2@x.com\nand 2 more..."
    )


def test_normalize_keeps_none_lists_and_counts() -> None:
    d = normalize(Directory(users=None, groups=None, skipped=Counter({"x": 1})))
    assert d.users is None and d.groups is None and d.skipped == {"x": 1}
