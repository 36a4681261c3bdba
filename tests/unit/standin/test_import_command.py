"""``bwsync.standin.import_command``: the controller's checks (§3.2 size limits) and the import
algorithm of §3.3-3.4, step by step, as a client sees them through the API."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bwsync.model import STATUS_CONFIRMED, STATUS_INVITED, STATUS_REVOKED, STATUS_STAGED, TYPE_USER
from bwsync.standin.http import UNHANDLED
from bwsync.standin.import_command import OVERWRITE_NO_MP, TOO_MUCH_DATA
from tests.fixtures.bitwarden import FakeFactory
from tests.standins.bitwarden import FakeBitwarden
from tests.unit.standin.client import Api, body, g, m


def test_cloud_cap_counts_active_members(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    many = [m(f"u{i}") for i in range(2001)]
    r = api.imp(body(many))
    assert r.status_code == 400
    assert r.json() == {"object": "error", "message": TOO_MUCH_DATA, "errors": None}
    assert fake_bitwarden.members == []
    # exactly 2000 active is allowed; deleted entries do not count
    assert api.imp(body([*many[:2000], m("gone", deleted=True)])).status_code == 200
    assert len(fake_bitwarden.members) == 2000


def test_cloud_cap_counts_groups_and_large_import_lifts_it(api: Api) -> None:
    groups = [g(f"g{i}") for i in range(2001)]
    assert api.imp(body([], groups)).json()["message"] == TOO_MUCH_DATA
    assert api.imp(body([], groups, largeImport=True)).status_code == 200


def test_self_hosted_has_no_cap(fake_bitwarden_self_hosted: FakeBitwarden) -> None:
    api = Api(fake_bitwarden_self_hosted)
    try:
        api.login()
        assert api.imp(body([m(f"u{i}") for i in range(2001)])).status_code == 200
    finally:
        api.http.close()


def test_new_members_are_invited_users_with_lower_cased_email(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    r = api.imp(body([m("ann", "Ann@Example.COM")]))
    assert (r.status_code, r.content) == (200, b"")
    (ann,) = fake_bitwarden.members
    assert (ann.email, ann.external_id, ann.status, ann.type) == (
        "ann@example.com", "ann", STATUS_INVITED, TYPE_USER)  # fmt: skip
    assert ann.user_id is None
    assert fake_bitwarden.events == [("OrganizationUser_Invited", ann.id)]


def test_staged_only_with_the_server_flag(fake_bitwarden_factory: FakeFactory) -> None:
    for flag, expected in ((True, STATUS_STAGED), (False, STATUS_INVITED)):
        fake = fake_bitwarden_factory(staged_status=flag)
        api = Api(fake)
        try:
            api.login()
            assert api.imp(body([m("a")], inviteUsersAfterProvisioning=False)).status_code == 200
            assert fake.members[0].status == expected
        finally:
            api.http.close()


def test_existing_email_under_another_external_id_is_skipped(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_member("ann@example.com", external_id="old-ann")
    assert (
        api.imp(body([m("new-ann", "ann@example.com")], [g("g", members=["new-ann"])])).status_code
        == 200
    )
    (ann,) = fake_bitwarden.members
    assert ann.external_id == "old-ann"
    assert fake_bitwarden.group_member_emails("g") == set()


def test_member_without_external_id_is_linked_by_email(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    manual = fake_bitwarden.add_member("ann@example.com")
    assert api.imp(body([m("ann")], [g("g", members=["ann"])])).status_code == 200
    linked = fake_bitwarden.member(manual.id)
    assert linked is not None
    assert linked.external_id == "ann"
    assert linked.status == STATUS_CONFIRMED
    assert len(fake_bitwarden.members) == 1
    assert fake_bitwarden.group_member_emails("g") == {"ann@example.com"}


def test_revoked_members_are_not_restored_and_nothing_else_changes(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_member("old@example.com", external_id="ann", status=STATUS_REVOKED)
    assert api.imp(body([m("ann", "new@example.com")])).status_code == 200
    (ann,) = fake_bitwarden.members
    assert (ann.status, ann.email) == (STATUS_REVOKED, "old@example.com")


def test_deleted_entries_remove_non_owners_only(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.add_owner("boss@example.com", external_id="boss")
    gone = fake_bitwarden.add_member("gone@example.com", external_id="gone", status=STATUS_INVITED)
    fake_bitwarden.add_member("kept@example.com", external_id="kept")
    fake_bitwarden.add_group("G", external_id="g", members=[gone])
    r = api.imp(body([m("boss", deleted=True), m("gone", deleted=True), m("unknown", deleted=True),
                      m("kept", deleted=True), m("kept")]))  # fmt: skip
    assert r.status_code == 200
    assert {x.external_id for x in fake_bitwarden.members} == {"boss", "kept"}
    assert fake_bitwarden.group_member_emails("g") == set()
    assert ("OrganizationUser_Removed", gone.id) in fake_bitwarden.events


def test_overwrite_removes_unlisted_synced_members(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.add_owner("boss@example.com", external_id="boss")
    fake_bitwarden.add_member("manual@example.com")
    fake_bitwarden.add_member("a@example.com", external_id="a")
    fake_bitwarden.add_member("b@example.com", external_id="b")
    assert api.imp(body([m("a")], overwrite=True)).status_code == 200
    assert {x.email for x in fake_bitwarden.members} == {
        "boss@example.com", "manual@example.com", "a@example.com"}  # fmt: skip
    assert api.imp(body([], overwrite=True)).status_code == 200
    assert {x.email for x in fake_bitwarden.members} == {"boss@example.com", "manual@example.com"}


@pytest.mark.parametrize(
    "seed",
    [
        {"status": STATUS_INVITED},
        {"status": STATUS_STAGED},
        {"master_password": False},
        {"status": STATUS_REVOKED, "linked": False},
    ],
)
def test_overwrite_guard_refuses_when_a_candidate_has_no_master_password(
    api: Api, fake_bitwarden: FakeBitwarden, seed: dict[str, Any]
) -> None:
    fake_bitwarden.add_member("nomp@example.com", external_id="nomp", **seed)
    fake_bitwarden.add_member("x@example.com", external_id="x")
    fake_bitwarden.add_member("y@example.com", external_id="y")
    r = api.imp(body([m("x", deleted=True)], overwrite=True))
    assert r.status_code == 400
    assert r.json() == {"object": "error", "message": OVERWRITE_NO_MP, "errors": None}
    # not transactional: the explicit removal (step 3) already happened, step 4 did nothing
    assert {x.external_id for x in fake_bitwarden.members} == {"nomp", "y"}


def test_duplicate_active_emails_crash_after_removals(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_member("gone@example.com", external_id="gone")
    r = api.imp(body([m("gone", deleted=True), m("a", "same@x.com"), m("b", "SAME@x.com")]))
    assert r.status_code == 500
    assert r.json()["message"] == UNHANDLED
    assert fake_bitwarden.members == []


def test_duplicated_external_id_in_the_org_breaks_every_import(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    assert api.imp(body([m("dup", "one@x.com"), m("dup", "two@x.com")])).status_code == 200
    assert len(fake_bitwarden.members) == 2  # both invited with the same externalId
    r = api.imp(body([m("other")]))
    assert r.status_code == 500
    assert len(fake_bitwarden.members) == 2


def test_groups_created_renamed_and_membership_replaced(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    manual_member = fake_bitwarden.add_member("manual@example.com")
    a = fake_bitwarden.add_member("a@example.com", external_id="a")
    fake_bitwarden.add_group("Old name", external_id="eng", members=[manual_member, a])
    fake_bitwarden.add_group("Sales", external_id=None)  # manual group, same name as below
    fake_bitwarden.add_group("Untouched", external_id="other", members=[a])
    r = api.imp(
        body(
            [m("a"), m("b")], [g("eng", "Engineering", ["b", "nobody"]), g("sales", "Sales", ["a"])]
        )
    )
    assert r.status_code == 200
    eng = fake_bitwarden.find_group(external_id="eng")
    assert eng is not None
    assert eng.name == "Engineering"
    assert fake_bitwarden.group_member_external_ids("eng") == {"b"}
    assert fake_bitwarden.group_member_external_ids("sales") == {"a"}
    assert len([x for x in fake_bitwarden.groups if x.name == "Sales"]) == 2
    assert fake_bitwarden.group_member_external_ids("other") == {"a"}
    # groups are never deleted, not even with overwrite
    assert api.imp(body([m("a"), m("b")], [], overwrite=True)).status_code == 200
    assert len(fake_bitwarden.groups) == 4


def test_membership_uses_members_linked_before_this_request(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    """bwdc's batches rely on this: users first, groups in a later request (§3.2)."""
    assert api.imp(body([m("a"), m("b")])).status_code == 200
    assert api.imp(body([], [g("g", members=["a", "b"])])).status_code == 200
    assert fake_bitwarden.group_member_external_ids("g") == {"a", "b"}


def test_duplicate_group_external_ids_crash_after_members(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    r = api.imp(body([m("a")], [g("g"), g("g", "Other")]))
    assert r.status_code == 500
    assert len(fake_bitwarden.members) == 1
    assert fake_bitwarden.groups == []


def test_plan_without_groups_refuses_groups_after_members(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.use_groups = False
    r = api.imp(body([m("a")], [g("g")]))
    assert r.json() == {
        "object": "error",
        "message": "Organization cannot use groups.",
        "errors": None,
    }
    assert len(fake_bitwarden.members) == 1
    assert api.imp(body([m("b")])).status_code == 200


def test_plan_without_directory_sync(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.use_directory = False
    r = api.imp(body([m("a")]))
    assert r.json()["message"] == "Organization cannot use directory syncing."
    assert fake_bitwarden.members == []


def test_seat_limit(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.seats = 2
    fake_bitwarden.add_owner("boss@example.com")
    assert api.imp(body([m("a"), m("b")])).json()["message"] == "Seat limit has been reached."
    assert api.imp(body([m("a")])).status_code == 200


def test_confirmed_owner_rule_when_enabled(fake_bitwarden_factory: FakeFactory) -> None:
    fake = fake_bitwarden_factory(require_confirmed_owner=True)
    api = Api(fake)
    try:
        api.login()
        r = api.imp(body([m("a")]))
        assert r.json()["message"] == "Organization must have at least one confirmed owner."
        fake.add_owner("boss@example.com")
        assert api.imp(body([m("a")])).status_code == 200
    finally:
        api.http.close()


def test_duplicated_group_external_id_in_the_org_crashes_group_step(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_group("One", external_id="dup")
    fake_bitwarden.add_group("Two", external_id="dup")
    r = api.imp(body([m("a")], [g("new")]))
    assert r.status_code == 500
    assert len(fake_bitwarden.members) == 1  # members were processed first
    assert fake_bitwarden.find_group(external_id="new") is None
    assert api.imp(body([m("b")])).status_code == 200  # no groups in the request: fine


def test_large_imports_stay_fast(fake_bitwarden_self_hosted: FakeBitwarden) -> None:
    """A gross regression guard (a lookup turned into a scan makes this minutes): measured
    in this process's CPU seconds (~0.1 s here, both sides of the HTTP exchange), which a
    loaded machine does not stretch as it stretches the wall clock."""
    api = Api(fake_bitwarden_self_hosted)
    try:
        api.login()
        members = [m(f"u{i}") for i in range(20_000)]
        groups = [g(f"g{j}", members=[f"u{i}" for i in range(j, 20_000, 50)]) for j in range(50)]
        started = time.process_time()
        assert api.imp(body(members, groups)).status_code == 200
        assert api.imp(body(members, groups)).status_code == 200
        assert time.process_time() - started < 10
        assert len(fake_bitwarden_self_hosted.group_member_external_ids("g0")) == 400
        assert len(api.get("/members").json()["data"]) == 20_000
    finally:
        api.http.close()


def test_group_membership_is_resolved_again_when_members_change(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    # The same groups sent again resolve alike unless a member came or went: then anew.
    assert api.imp(body([m("a"), m("b")], [g("eng", members=["a", "b", "c"])])).status_code == 200
    groups_only = body([], [g("eng", members=["a", "b", "c"])])
    eng = fake_bitwarden.find_group(external_id="eng")
    assert eng is not None
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "b"}
    fake_bitwarden.remove_member(fake_bitwarden.find_member(external_id="b"))  # type: ignore[arg-type]
    fake_bitwarden.add_member("c@example.com", external_id="c")
    assert api.imp(groups_only).status_code == 200
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "c"}
    assert api.imp(groups_only).status_code == 200  # nothing changed: nothing to do
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "c"}
    assert fake_bitwarden.events[-1] == ("Group_Updated", eng.id)
    fake_bitwarden.add_group("ENG", external_id="eng", members=[], group_id=eng.id)  # by hand
    assert api.imp(groups_only).status_code == 200
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "c"}
    assert api.imp(body([m("d")], [g("eng", members=["a", "d"])])).status_code == 200
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "d"}
