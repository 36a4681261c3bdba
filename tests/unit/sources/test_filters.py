"""The shared filter mini-syntax (reference §6)."""

from __future__ import annotations

from bwsync.model import Group, User
from bwsync.sources.filters import parse_filter, scope_users_to_groups


def test_examples_from_the_reference() -> None:
    f = parse_filter("exclude:joe@company.com | orgUnitPath=/Engineering")
    assert f.query == "orgUnitPath=/Engineering"
    assert not f.keeps(" Joe@Company.com ") and f.keeps("ann@company.com")
    f = parse_filter("include: Integration Test Group A, Integration Test Group B")
    assert f.keeps("integration test group a") and not f.keeps("Other")
    f = parse_filter("|name:Integration*")
    assert f.set is None and f.query == "name:Integration*" and f.keeps("x")


def test_null_candidate_is_double_dash_and_odd_sets_are_ignored() -> None:
    assert parse_filter("include:--").keeps(None)
    assert parse_filter("include:a:b").set is None
    unknown = parse_filter("includeGroup:ABC, def|exclude:x@y.com")
    assert unknown.set is None and unknown.raw_keyword == "includegroup"
    assert unknown.raw_values == ("abc", "def") and unknown.query == "exclude:x@y.com"
    assert parse_filter(None).keeps("anything") and parse_filter("  ").query is None


def test_scope_users_to_direct_members() -> None:
    g = Group("g", "g", "G")
    g.add_user("in")
    users = [
        User("in", "in", "a@x"),
        User("out", "out", "b@x"),
        User("del", "del", "c@x", deleted=True),
        User("dis", "dis", "d@x", disabled=True),
    ]
    kept = scope_users_to_groups(users, [g], remove_disabled=False)
    assert [u.external_id for u in kept] == ["in", "del"]
    kept = scope_users_to_groups(users, [g], remove_disabled=True)
    assert [u.external_id for u in kept] == ["in", "del", "dis"]
