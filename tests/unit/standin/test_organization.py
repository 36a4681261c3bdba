"""``bwsync.standin.organization``: the indexes (externalId, email, group membership) behave
like the scans they replace, whether members came by seeding or by import; ids are GUIDs."""

from __future__ import annotations

import random
import uuid

from bwsync.model import STATUS_INVITED
from bwsync.standin.organization import new_ids
from tests.fixtures.bitwarden import FakeFactory
from tests.standins.bitwarden import FakeBitwarden
from tests.unit.standin.client import Api, body, g, m, outcome, random_import


def test_removed_member_frees_email_and_external_id_within_one_import(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    old = fake_bitwarden.add_member("ann@example.com", external_id="old-ann")
    fake_bitwarden.add_group("G", external_id="g", members=[old])
    members = [m("old-ann", "ann@example.com", deleted=True), m("new-ann", "ann@example.com")]
    r = api.imp(body(members, [g("g", members=["old-ann", "new-ann"])]))
    assert r.status_code == 200
    (ann,) = fake_bitwarden.members
    assert (ann.external_id, ann.status) == ("new-ann", STATUS_INVITED)
    assert ann.id != old.id
    assert fake_bitwarden.group_member_external_ids("g") == {"new-ann"}
    assert fake_bitwarden.events[:2] == [
        ("OrganizationUser_Removed", old.id), ("OrganizationUser_Invited", ann.id)]  # fmt: skip
    # and the removed member's externalId is free again
    assert api.imp(body([m("old-ann", "other@example.com")])).status_code == 200
    assert fake_bitwarden.find_member(external_id="old-ann") is not None


def test_seeded_duplicate_external_ids_break_imports_until_one_goes(
    fake_bitwarden: FakeBitwarden, api: Api
) -> None:
    one = fake_bitwarden.add_member("one@example.com", external_id="dup")
    fake_bitwarden.add_member("two@example.com", external_id="dup")
    fake_bitwarden.add_member("blank1@example.com", external_id=" ")  # blank: not "external"
    fake_bitwarden.add_member("blank2@example.com", external_id=" ")
    assert api.imp(body([m("a")])).status_code == 500
    assert api.imp(body([])).status_code == 500
    # replacing the seeded membership (same id) re-indexes it: the duplicate is gone
    fake_bitwarden.add_member("one@example.com", external_id="one", member_id=one.id)
    assert api.imp(body([m("a")], [g("g", members=["dup", "one", " "])])).status_code == 200
    assert fake_bitwarden.members[0].email == "one@example.com"  # kept its place
    assert fake_bitwarden.group_member_emails("g") == {"one@example.com", "two@example.com"}


def test_blank_external_ids_are_linked_by_email(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    blank = fake_bitwarden.add_member("ann@example.com", external_id="  ")
    assert api.imp(body([m("ann")], [g("g", members=["ann", "  "])])).status_code == 200
    assert fake_bitwarden.member(blank.id).external_id == "ann"  # type: ignore[union-attr]
    assert fake_bitwarden.group_member_emails("g") == {"ann@example.com"}
    assert len(fake_bitwarden.members) == 1


def test_shared_external_id_in_one_request_goes_to_the_later_member(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    """Two unlinked members adopt the same externalId (two entries, two emails): the group
    gets the one a scan of the organization meets last, whatever the request order."""
    first = fake_bitwarden.add_member("a@example.com")
    later = fake_bitwarden.add_member("b@example.com")
    r = api.imp(body([m("x", "b@example.com"), m("x", "a@example.com")], [g("g", members=["x"])]))
    assert r.status_code == 200
    assert fake_bitwarden.group_member_emails("g") == {"b@example.com"}
    assert {x.id: x.external_id for x in fake_bitwarden.members} == {first.id: "x", later.id: "x"}
    assert api.imp(body([m("y")])).status_code == 500  # the org now holds a duplicate


def test_members_seeded_after_an_import_are_seen_by_the_next(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    assert api.imp(body([m("a")])).status_code == 200
    b = fake_bitwarden.add_member("b@example.com", external_id="b")
    fake_bitwarden.add_member("c@example.com")
    r = api.imp(body([m("b"), m("other-c", "C@example.com")], [g("g", members=["a", "b"])]))
    assert r.status_code == 200
    assert fake_bitwarden.group_member_external_ids("g") == {"a", "b"}
    assert api.get(f"/members/{b.id}/group-ids").json() == [fake_bitwarden.groups[0].id]
    assert fake_bitwarden.find_member(email="c@example.com").external_id == "other-c"  # type: ignore[union-attr]
    fake_bitwarden.reset()
    api.login()
    assert api.imp(body([m("a")], [g("g", members=["a"])])).status_code == 200
    assert [x.external_id for x in fake_bitwarden.members] == ["a"]
    assert fake_bitwarden.group_member_external_ids("g") == {"a"}


def test_removal_drops_one_mention_per_group(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    a = fake_bitwarden.add_member("a@example.com", external_id="a")
    b = fake_bitwarden.add_member("b@example.com", external_id="b")
    one = fake_bitwarden.add_group("One", members=[a, b, a])  # a seeded group may list twice
    two = fake_bitwarden.add_group("Two", members=[b, a])
    fake_bitwarden.add_group("Three", members=[b])
    assert api.get(f"/members/{a.id}/group-ids").json() == [one.id, two.id]
    assert api.imp(body([m("a", deleted=True)])).status_code == 200
    assert [x.member_ids for x in fake_bitwarden.groups] == [[b.id, a.id], [b.id], [b.id]]
    assert api.get(f"/groups/{one.id}/member-ids").json() == [b.id]  # a is gone from the org


def test_imported_members_are_indexed_like_seeded_ones(fake_bitwarden_factory: FakeFactory) -> None:
    # An import adds its new members in bulk; a stand-in seeded with the same members one by
    # one must answer the next import alike (same lookups by externalId and email).
    imported, seeded = fake_bitwarden_factory(), fake_bitwarden_factory()
    apis = Api(imported), Api(seeded)
    try:
        apis[0].login()
        rng = random.Random(11)  # noqa: S311 - reproducible requests, not secrets
        for _ in range(60):
            apis[0].imp(random_import(rng, bad=0.02))
            seeded.reset()
            for x in imported.members:
                seeded.add_member(x.email, external_id=x.external_id, status=x.status,
                                  type=x.type, member_id=x.id)  # fmt: skip
            for x in imported.groups:
                seeded.add_group(x.name, external_id=x.external_id, members=x.member_ids,
                                 group_id=x.id)  # fmt: skip
            apis[1].login()
            doc, before = random_import(rng, bad=0.02), len(imported.events)
            r0, r1 = apis[0].imp(doc), apis[1].imp(doc)
            outcomes = outcome(imported, r0), outcome(seeded, r1)
            assert outcomes[0][:4] == outcomes[1][:4], doc
            assert outcomes[0][4][before:] == outcomes[1][4], doc
    finally:
        for a in apis:
            a.http.close()


def test_new_ids_are_consecutive_guids_across_blocks() -> None:
    # ids are built 4,096 at a time from a table of tails: same strings as formatting each.
    for n in (0, 1, 4095, 4097, 10_000):
        ids = new_ids(n)
        assert len(ids) == n
        if ids:
            first = int(ids[0][-12:], 16)
            assert [int(x[-12:], 16) for x in ids] == list(range(first, first + n))
            assert {x[:-12] for x in ids} == {ids[0][:-12]}
            assert all(str(uuid.UUID(x)) == x and uuid.UUID(x).version == 4 for x in ids)
