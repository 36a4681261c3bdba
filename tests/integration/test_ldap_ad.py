"""The LDAP source against a real Samba AD DC, on both engines.

The directory is built once per module: a small team under ``OU=bwsync`` (an enabled user, a
disabled one, one without mail, a deleted one, nested and circular groups) and 1,600 users
under ``OU=bulk`` with one group holding all of them, more than Windows AD's 1,500-value
range. Expected GUIDs come from Samba's own tools (``ldbsearch``), not from our decoding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from bwsync.config import LdapSettings, SyncSettings
from bwsync.errors import LdapError
from bwsync.model import Directory, Group, User
from bwsync.sources.base import FetchRequest
from bwsync.sources.ldap import LdapSource
from bwsync.sources.ldap_wire import Attrs, Entry, Wire, WireOptions, make_wire
from tests.fixtures.ldap import SambaAD, ad_user

pytestmark = [pytest.mark.samba, pytest.mark.slow]

BULK = 1600


@pytest.fixture(params=["python-ldap", "ldap3"])
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "python-ldap":
        pytest.importorskip("ldap", reason="python-ldap not installed (bwsync[fast-ldap])")
    return str(request.param)


@dataclass(frozen=True)
class World:
    ad: SambaAD
    team: str
    bulk: str
    guid: dict[str, str]
    """CN → objectGUID string, as Samba prints it."""


@pytest.fixture(scope="module")
def world(samba_ad: SambaAD) -> World:
    base = samba_ad.base_dn
    team, bulk = f"OU=bwsync,{base}", f"OU=bulk,{base}"
    samba_ad.add(
        [
            (team, {"objectClass": "organizationalUnit"}),
            (bulk, {"objectClass": "organizationalUnit"}),
            (f"CN=alice,{team}", ad_user("alice", mail=" Alice@Example.TEST")),
            (f"CN=bob,{team}", ad_user("bob", mail="bob@example.test", uac=514)),
            (f"CN=carol,{team}", ad_user("carol")),
            (f"CN=dave,{team}", ad_user("dave", mail="dave@example.test")),
            (
                f"CN=Team A,{team}",
                {"objectClass": "group", "member": [f"CN=alice,{team}", f"CN=bob,{team}"]},
            ),
            (
                f"CN=Parent,{team}",
                {"objectClass": "group", "member": [f"CN=Team A,{team}", f"CN=carol,{team}"]},
            ),
            (f"CN=Loop1,{team}", {"objectClass": "group", "member": f"CN=alice,{team}"}),
            (
                f"CN=Loop2,{team}",
                {"objectClass": "group", "member": [f"CN=Loop1,{team}", f"CN=bob,{team}"]},
            ),
        ]
    )
    samba_ad.modify(
        f"dn: CN=Loop1,{team}\nchangetype: modify\nadd: member\nmember: CN=Loop2,{team}\n"
    )
    samba_ad.bulk_add(
        (f"CN=u{n:04d},{bulk}", ad_user(f"u{n:04d}", mail=f"u{n:04d}@example.test"))
        for n in range(BULK)
    )
    samba_ad.add(
        [
            (
                f"CN=Everyone,{bulk}",
                {"objectClass": "group", "member": [f"CN=u{n:04d},{bulk}" for n in range(BULK)]},
            ),
            (
                f"CN=Evens,{bulk}",
                {
                    "objectClass": "group",
                    "member": [f"CN=u{n:04d},{bulk}" for n in range(0, BULK, 2)],
                },
            ),
        ]
    )
    names = ["alice", "bob", "carol", "dave", "Team A", "Parent", "Loop1", "Loop2"]
    guid = {n: samba_ad.guid(f"CN={n},{team}") for n in names}
    samba_ad.delete(f"CN=dave,{team}")  # leaves a tombstone under CN=Deleted Objects
    return World(samba_ad, team, bulk, guid)


def source(world: World, engine: str, sync: SyncSettings | None = None, **kw: Any) -> LdapSource:
    ad = world.ad
    values: dict[str, Any] = {
        "url": ad.ldaps_url,
        "ca_file": ad.ca_file,
        "bind_dn": ad.bind_dn,
        "bind_password": ad.bind_password,
        "base_dn": ad.base_dn,
        "user_path": "OU=bwsync",
        "group_path": "OU=bwsync",
        "engine": engine,
    }
    values.update(kw)
    return LdapSource(LdapSettings(**values), sync or SyncSettings())


def fetch(world: World, engine: str, *, force: bool = False, **kw: Any) -> Directory:
    return source(world, engine, **kw).fetch(FetchRequest(force=force))


def group(d: Directory, name: str) -> Group:
    (g,) = [g for g in d.groups or () if g.name == name]
    return g


def test_active_directory_users_groups_and_guids(world: World, engine: str) -> None:
    d = fetch(world, engine)
    team, g = world.team, world.guid
    expected = {
        f"CN=alice,{team}": User(f"CN=alice,{team}", g["alice"], "alice@example.test"),
        f"CN=bob,{team}": User(f"CN=bob,{team}", g["bob"], "bob@example.test", disabled=True),
    }
    order = [dn for dn in world.ad.search_dns(team, "(objectClass=person)") if dn in expected]
    assert d.users == [expected[dn] for dn in order]  # server order, exact values
    assert d.skipped == {"no_email": 1}  # carol
    # AD defaults: objectClass=group, name attribute `name`, GUID external ids
    assert sorted((x.name, x.external_id) for x in d.groups or ()) == sorted(
        (n, g[n]) for n in ("Team A", "Parent", "Loop1", "Loop2")
    )
    assert group(d, "Team A").reference_id == f"CN=Team A,{team}"
    assert set(group(d, "Team A").user_member_external_ids) == {g["alice"], g["bob"]}
    parent = group(d, "Parent")
    assert list(parent.user_member_external_ids) == [g["carol"]]  # members without mail count
    assert list(parent.group_member_reference_ids) == [f"CN=Team A,{team}"]
    loop1, loop2 = group(d, "Loop1"), group(d, "Loop2")
    assert (list(loop1.user_member_external_ids), list(loop1.group_member_reference_ids)) == (
        [g["alice"]],
        [f"CN=Loop2,{team}"],
    )
    assert (list(loop2.user_member_external_ids), list(loop2.group_member_reference_ids)) == (
        [g["bob"]],
        [f"CN=Loop1,{team}"],
    )


def test_deleted_users_only_when_forced(world: World, engine: str) -> None:
    plain = fetch(world, engine, email_suffix="@example.test")
    assert sorted((u.email, u.deleted) for u in plain.users or ()) == [
        ("alice@example.test", False),
        ("bob@example.test", False),
        ("carol@example.test", False),  # the suffix applies to live users too
    ]

    # The deleted-objects container is the domain's: a forced fetch returns every tombstone in
    # it, as bwdc does, those other tests of this shared DC left too (tests/contract deletes
    # one). This module's own are told apart by the GUIDs it recorded.
    ours = set(world.guid.values())
    d = fetch(world, engine, force=True, email_suffix="@example.test")
    tombstones = [u for u in d.users or () if u.deleted and u.external_id in ours]
    assert len(tombstones) == 1
    (dave,) = tombstones
    # the tombstone keeps objectGUID and sAMAccountName (mail is stripped): the external id
    # matches the live object's, the email comes from prefix + suffix
    assert dave.external_id == world.guid["dave"]
    assert dave.email == "dave@example.test"
    assert str(dave.reference_id).startswith("CN=dave\\0ADEL:")
    assert str(dave.reference_id).endswith(f",CN=Deleted Objects,{world.ad.base_dn}")
    deleted = [u.deleted for u in d.users or ()]
    assert deleted == sorted(deleted)  # every tombstone after the live users, as bwdc

    # without a suffix the tombstone has no email; it is still returned (normalize drops it)
    d = fetch(world, engine, force=True)
    assert [
        (u.external_id, u.email) for u in d.users or () if u.deleted and u.external_id in ours
    ] == [(world.guid["dave"], None)]


@pytest.mark.parametrize("step", [None, 500])
def test_group_of_more_than_1500_members_is_read_completely(
    world: World, engine: str, step: int | None
) -> None:
    reads: list[list[str]] = []

    def counting_wire(options: WireOptions) -> Wire:
        wire = make_wire(engine, options)  # type: ignore[arg-type]
        real_read = wire.read

        def read(dn: str, attributes: Sequence[str]) -> Attrs | None:
            if dn != "":  # ldap3 reads the root DSE through read() too
                reads.append(list(attributes))
            return real_read(dn, attributes)

        wire.read = read  # type: ignore[method-assign]
        return wire

    src = source(world, engine, user_path="OU=bulk", group_path="OU=bulk")
    src._wire_factory = counting_wire
    src.member_range_step = step  # 500: ranged retrieval in four slices (0-499 … 1500-*)
    d = src.fetch(FetchRequest())
    if step is None:
        assert reads == []  # Samba hands out all values at once when not asked for a range
    else:  # Everyone (1,600) in three more slices, Evens (800) in one
        assert sorted(reads) == [
            ["member;range=1000-1499"],
            ["member;range=1500-1999"],
            ["member;range=500-999"],
            ["member;range=500-999"],
        ]
    assert d.users is not None and len(d.users) == BULK
    everyone = group(d, "Everyone")
    assert len(everyone.user_member_external_ids) == BULK
    assert set(everyone.user_member_external_ids) == {u.external_id for u in d.users}
    assert everyone.group_member_reference_ids == {}


def test_ranged_and_plain_reads_agree_on_order(world: World, engine: str) -> None:
    plain = source(world, engine, user_path="OU=bulk", group_path="OU=bulk")
    ranged = source(world, engine, user_path="OU=bulk", group_path="OU=bulk")
    ranged.member_range_step = 700
    a = group(plain.fetch(FetchRequest()), "Everyone").user_member_external_ids
    b = group(ranged.fetch(FetchRequest()), "Everyone").user_member_external_ids
    assert list(a) == list(b)


def test_plain_ldap_bind_needs_tls(world: World, engine: str) -> None:
    with pytest.raises(LdapError) as err:
        fetch(world, engine, url=world.ad.url)
    msg = str(err.value)
    assert msg.startswith(f"LDAP {world.ad.url}: bind as {world.ad.bind_dn} refused: ")
    assert msg.endswith("(the server wants TLS: use ldaps:// or BWSYNC_LDAP__START_TLS=true)")
    # StartTLS on the same port works
    d = fetch(world, engine, url=world.ad.url, start_tls=True)
    assert len(d.users or ()) == 2


def test_check_detects_active_directory(world: World, engine: str) -> None:
    checks = source(world, engine).check()
    assert [(c.name, c.ok) for c in checks] == [
        ("connect", True),
        ("tls", True),
        ("bind", True),
        ("active_directory", True),
        ("user_base", True),
        ("group_base", True),
    ]
    assert checks[3].detail == "Active Directory (detected)"
    # forcing "not AD" switches the defaults: groupOfNames finds no group in AD
    d = fetch(world, engine, active_directory="false")
    assert d.groups == []


def test_default_paths_are_cn_users(world: World, engine: str) -> None:
    """With AD defaults (user and group path CN=Users) the built-in accounts are there and
    have no mail; the built-in groups are read by `name`."""
    d = fetch(world, engine, user_path=None, group_path=None)
    assert d.users == []
    assert d.skipped["no_email"] >= 3  # Administrator, Guest, krbtgt
    names = {x.name for x in d.groups or ()}
    assert {"Domain Users", "Domain Admins"} <= names
    admins = group(d, "Domain Admins")
    assert list(admins.user_member_external_ids) == [
        world.ad.guid(f"CN=Administrator,CN=Users,{world.ad.base_dn}")
    ]


def test_whole_domain_search_skips_search_references(world: World, engine: str) -> None:
    """An empty path searches the whole domain (bwdc: "" is not null); Samba then answers
    with search references too, which carry no entry and must be skipped."""
    references = 0

    def counting_wire(options: WireOptions) -> Wire:
        wire = make_wire(engine, options)  # type: ignore[arg-type]
        real_search = wire.search

        def search(*args: Any, **kw: Any) -> Iterator[Sequence[Entry]]:
            nonlocal references
            for page in real_search(*args, **kw):
                references += sum(1 for dn, _ in page if dn is None)
                yield page

        wire.search = search  # type: ignore[method-assign]
        return wire

    src = source(world, engine, user_path="", group_path="", user_filter="(mail=*)")
    src._wire_factory = counting_wire
    d = src.fetch(FetchRequest())
    if engine == "python-ldap":  # ldap3's wire drops them itself
        assert references > 0
    # the whole domain: this module's users, and those other tests of the shared DC added
    ours = [u for u in d.users or () if str(u.reference_id).endswith((world.team, world.bulk))]
    assert len(ours) == 2 + BULK
    assert d.skipped == {}
    names = {x.name for x in d.groups or ()}
    assert {"Team A", "Everyone", "Domain Admins"} <= names


def test_down_level_logon_name_and_small_pages(world: World, engine: str) -> None:
    """``DOMAIN\\user`` binds work as in bwdc, and AD's paged results hold together across many
    small pages (1,600 users in pages of 100)."""
    d = fetch(
        world,
        engine,
        bind_dn="EXAMPLE\\Administrator",
        user_path="OU=bulk",
        group_path="OU=bulk",
        page_size=100,
    )
    # same entries in the same order as one unpaged ldapsearch
    assert [u.reference_id for u in d.users or ()] == world.ad.search_dns(
        world.bulk, "(objectClass=user)"
    )
    assert {u.email for u in d.users or ()} == {f"u{n:04d}@example.test" for n in range(BULK)}
    assert len(group(d, "Everyone").user_member_external_ids) == BULK


def test_both_engines_return_identical_directories(world: World) -> None:
    pytest.importorskip("ldap", reason="python-ldap not installed (bwsync[fast-ldap])")
    kw: dict[str, Any] = {"force": True, "email_suffix": "@example.test"}
    fast = fetch(world, "python-ldap", **kw)
    pure = fetch(world, "ldap3", **kw)
    assert fast == pure
    assert fast.users and any(u.deleted for u in fast.users)  # tombstones included


def test_ranged_reads_while_the_next_page_is_pending(world: World, engine: str) -> None:
    """Pages of one entry, member slices read between pages on the same connection: python-ldap
    has already asked for the next page by then, and on ldap3 each read replaces the
    connection's last result (which once lost the paging cookie: a group went missing)."""
    src = source(world, engine, user_path="OU=bulk", group_path="OU=bulk", page_size=1)
    src.member_range_step = 300
    d = src.fetch(FetchRequest())
    assert d.users is not None and len(d.users) == BULK
    ext = [u.external_id for u in d.users]
    by_dn = {u.reference_id: u.external_id for u in d.users}
    assert set(group(d, "Everyone").user_member_external_ids) == set(ext)
    assert set(group(d, "Evens").user_member_external_ids) == {
        by_dn[f"CN=u{n:04d},{world.bulk}"] for n in range(0, BULK, 2)
    }
