"""The LDAP source against a real OpenLDAP slapd, on both engines.

Each test builds its own subtree (``slapd.new_tree()``) and uses it as base DN, so the shared
server never leaks one test's entries into another's results.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bwsync.config import LdapSettings, SyncSettings
from bwsync.errors import LdapError
from bwsync.model import Directory, Group, User
from bwsync.sources.base import FetchRequest
from bwsync.sources.ldap import LdapSource
from tests.fixtures.ldap import Slapd, person

pytestmark = pytest.mark.slapd

ENGINES = ["python-ldap", "ldap3"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    if request.param == "python-ldap":
        pytest.importorskip("ldap", reason="python-ldap not installed (bwsync[fast-ldap])")
    return str(request.param)


def settings(slapd: Slapd, base: str, engine: str, **kw: Any) -> LdapSettings:
    values: dict[str, Any] = {
        "url": slapd.url,
        "bind_dn": slapd.bind_dn,
        "bind_password": slapd.bind_password,
        "base_dn": base,
        "engine": engine,
        "ca_file": slapd.ca_file,
    }
    values.update(kw)
    return LdapSettings(**values)


def fetch(
    slapd: Slapd,
    base: str,
    engine: str,
    sync: SyncSettings | None = None,
    *,
    force: bool = False,
    **kw: Any,
) -> Directory:
    source = LdapSource(settings(slapd, base, engine, **kw), sync or SyncSettings())
    return source.fetch(FetchRequest(force=force))


def members(group: Group) -> tuple[list[Any], list[Any]]:
    return list(group.user_member_external_ids), list(group.group_member_reference_ids)


def users_by_email(d: Directory) -> dict[str | None, User]:
    assert d.users is not None
    return {u.email: u for u in d.users}


def group_named(d: Directory, name: str) -> Group:
    assert d.groups is not None
    (g,) = [g for g in d.groups if g.name == name]
    return g


def people(base: str, *uids: str) -> list[str]:
    return [f"uid={u},ou=people,{base}" for u in uids]


@pytest.fixture(scope="module")
def company(slapd: Slapd) -> str:
    """A small company: five people (one without mail), groupOfNames with DNs, nested and
    circular groups, and posixGroups holding memberUid as DNs and as uids."""
    base = slapd.new_tree("company")
    p = f"ou=people,{base}"
    g = f"ou=groups,{base}"
    slapd.add(
        [
            (f"uid=alice,{p}", person("alice", mail="Alice@Example.com ")),
            (f"uid=bob,{p}", person("bob", mail="bob@example.com", departmentNumber="IT")),
            (f"uid=carol,{p}", person("carol")),  # no mail
            (f"uid=dave,{p}", person("dave", mail="DAVE@example.com", departmentNumber="IT")),
            (f"uid=Erin,{p}", person("Erin", mail="erin@example.com")),
            (
                f"cn=engineering,{g}",
                {
                    "objectClass": "groupOfNames",
                    "cn": "engineering",
                    "member": [f"uid=dave,{p}", f"uid=alice,{p}", f"cn=platform,{g}"],
                },
            ),
            (
                f"cn=platform,{g}",
                {
                    "objectClass": "groupOfNames",
                    "cn": "platform",
                    "member": [f"uid=carol,{p}", f"cn=engineering,{g}"],  # a cycle
                },
            ),
            (
                f"cn=outsiders,{g}",
                {
                    "objectClass": "groupOfNames",
                    "cn": "outsiders",
                    "description": "Outsiders (display)",
                    "member": [f"uid=bob,{p}", f"uid=nobody,ou=elsewhere,{base}"],
                },
            ),
            (
                f"cn=posix-dns,{g}",
                {
                    "objectClass": "posixGroup",
                    "cn": "posix-dns",
                    "gidNumber": "5001",
                    "memberUid": [f"uid=bob,{p}", f"uid=alice,{p}"],
                },
            ),
            (
                f"cn=posix-uids,{g}",
                {
                    "objectClass": "posixGroup",
                    "cn": "posix-uids",
                    "gidNumber": "5002",
                    "memberUid": ["BOB", "erin", "carol", "ghost"],
                },
            ),
        ]
    )
    return base


def test_users_and_groups_exactly_as_bwdc(slapd: Slapd, company: str, engine: str) -> None:
    d = fetch(slapd, company, engine)
    alice, bob, carol, dave, erin = people(company, "alice", "bob", "carol", "dave", "Erin")
    assert d.users == [
        User(alice, alice, "alice@example.com"),
        User(bob, bob, "bob@example.com"),
        User(dave, dave, "dave@example.com"),
        User(erin, erin, "erin@example.com"),
    ]
    assert d.skipped == {"no_email": 1}
    assert d.groups is not None
    # groupOfNames is the default class: the posixGroups are not groups here
    assert [g.name for g in d.groups] == ["engineering", "platform", "outsiders"]
    eng = group_named(d, "engineering")
    assert eng.reference_id == eng.external_id == f"cn=engineering,ou=groups,{company}"
    assert members(eng) == ([dave, alice], [f"cn=platform,ou=groups,{company}"])
    # carol has no email but is still a member (bwdc sends her externalId)
    assert members(group_named(d, "platform")) == (
        [carol],
        [f"cn=engineering,ou=groups,{company}"],
    )
    # an unknown DN is kept verbatim as a nested-group reference, as bwdc does
    assert members(group_named(d, "outsiders")) == (
        [bob],
        [f"uid=nobody,ou=elsewhere,{company}"],
    )


def test_posix_groups_member_uid_as_dns_and_uids(slapd: Slapd, company: str, engine: str) -> None:
    d = fetch(
        slapd,
        company,
        engine,
        group_object_class="posixGroup",
        member_attribute="memberUid",
    )
    alice, bob, carol, erin = people(company, "alice", "bob", "carol", "Erin")
    assert d.groups is not None
    assert [g.name for g in d.groups] == ["posix-dns", "posix-uids"]
    assert members(group_named(d, "posix-dns")) == ([bob, alice], [])
    # uids match case-insensitively ("BOB", "erin" for uid "Erin"); unknown "ghost" is dropped
    assert members(group_named(d, "posix-uids")) == ([bob, erin, carol], [])


def test_group_name_attribute_falls_back_to_cn(slapd: Slapd, company: str, engine: str) -> None:
    d = fetch(slapd, company, engine, group_name_attribute="description")
    assert d.groups is not None
    assert [g.name for g in d.groups] == ["engineering", "platform", "Outsiders (display)"]


def test_user_and_group_paths_and_filters(slapd: Slapd, company: str, engine: str) -> None:
    alice, bob, dave = people(company, "alice", "bob", "dave")
    sync = SyncSettings(user_filter="(departmentNumber=IT)", group_filter="(cn=eng*)")
    d = fetch(slapd, company, engine, sync, user_path=" ou=people ", group_path="ou=groups")
    assert [u.reference_id for u in d.users or ()] == [bob, dave]
    assert [g.name for g in d.groups or ()] == ["engineering"]
    # alice is filtered out of the user search, so her DN now reads as a nested reference
    assert members(group_named(d, "engineering")) == (
        [dave],
        [alice, f"cn=platform,ou=groups,{company}"],
    )
    # the LDAP section's own filter wins over the sync one
    d = fetch(slapd, company, engine, sync, user_filter="(uid=alice)", group_filter="(cn=plat*)")
    assert [u.reference_id for u in d.users or ()] == [alice]
    assert [g.name for g in d.groups or ()] == ["platform"]


def test_path_outside_the_tree_is_a_clear_error(slapd: Slapd, company: str, engine: str) -> None:
    with pytest.raises(LdapError) as err:
        fetch(slapd, company, engine, user_path="ou=missing")
    assert str(err.value) == (f"LDAP {slapd.url}: base DN ou=missing,{company} does not exist")


def test_email_prefix_and_suffix(slapd: Slapd, company: str, engine: str) -> None:
    d = fetch(slapd, company, engine, email_prefix_attribute="uid", email_suffix="@Corp.Example")
    carol = people(company, "carol")[0]
    # only carol lacks mail; the others keep their own address
    assert users_by_email(d)["carol@corp.example"] == User(carol, carol, "carol@corp.example")
    assert len(d.users or ()) == 5
    assert d.skipped == {}
    # the prefix alone does nothing (bwdc needs both)
    assert fetch(slapd, company, engine, email_prefix_attribute="uid").skipped == {"no_email": 1}


def test_missing_email_attribute_skips_and_counts(slapd: Slapd, company: str, engine: str) -> None:
    d = fetch(slapd, company, engine, email_attribute="homePhone")
    assert d.users == []
    assert d.skipped == {"no_email": 5}
    # members still resolve to the users that were not sent
    alice, dave = people(company, "alice", "dave")
    assert members(group_named(d, "engineering"))[0] == [dave, alice]


def test_attribute_names_match_case_insensitively(slapd: Slapd, company: str, engine: str) -> None:
    d = fetch(slapd, company, engine, email_attribute="MAIL", member_attribute="Member")
    assert [u.email for u in d.users or ()] == [
        "alice@example.com",
        "bob@example.com",
        "dave@example.com",
        "erin@example.com",
    ]
    assert len(members(group_named(d, "engineering"))[0]) == 2


def test_sync_switches(slapd: Slapd, company: str, engine: str) -> None:
    d = fetch(slapd, company, engine, SyncSettings(users=False))
    assert d.users is None
    # users are still read to resolve members
    assert members(group_named(d, "engineering"))[0] == people(company, "dave", "alice")
    d = fetch(slapd, company, engine, SyncSettings(groups=False))
    assert d.groups is None
    assert len(d.users or ()) == 4


def test_paging_reads_everything_in_server_order(slapd: Slapd, engine: str) -> None:
    base = slapd.new_tree("paging")
    uids = [f"p{n:02d}" for n in (5, 3, 9, 1, 7, 2, 8)]
    slapd.add([(f"uid={u},ou=people,{base}", person(u, mail=f"{u}@example.com")) for u in uids])
    d = fetch(slapd, base, engine, page_size=2)
    assert [u.email for u in d.users or ()] == [f"{u}@example.com" for u in uids]


@pytest.mark.parametrize("how", ["ldaps", "starttls"])
def test_tls_with_verification(slapd: Slapd, company: str, engine: str, how: str) -> None:
    kw: dict[str, Any] = {"url": slapd.ldaps_url} if how == "ldaps" else {"start_tls": True}
    d = fetch(slapd, company, engine, **kw)
    assert len(d.users or ()) == 4


@pytest.mark.parametrize("how", ["ldaps", "starttls"])
def test_wrong_ca_is_refused_with_a_clear_error(
    slapd: Slapd, company: str, engine: str, how: str
) -> None:
    kw: dict[str, Any] = {"url": slapd.ldaps_url} if how == "ldaps" else {"start_tls": True}
    with pytest.raises(LdapError) as err:
        fetch(slapd, company, engine, ca_file=slapd.wrong_ca_file, **kw)
    url = kw.get("url", slapd.url)
    assert str(err.value) == (
        f"LDAP {url}: TLS handshake failed: certificate verify failed: self-signed certificate "
        "in certificate chain (is BWSYNC_LDAP__CA_FILE the CA that signed the server "
        "certificate?)"
    )


def test_host_name_is_verified(slapd_wrong_host: Slapd, engine: str) -> None:
    base = slapd_wrong_host.new_tree()
    slapd_wrong_host.add([(f"uid=a,ou=people,{base}", person("a", mail="a@example.com"))])
    with pytest.raises(LdapError) as err:
        fetch(slapd_wrong_host, base, engine, url=slapd_wrong_host.ldaps_url)
    assert "TLS handshake failed: certificate verify failed: IP address mismatch" in str(err.value)
    assert "does the server certificate name the host in BWSYNC_LDAP__URL?" in str(err.value)
    # with verification off (diagnosis only) the same server is readable
    d = fetch(slapd_wrong_host, base, engine, url=slapd_wrong_host.ldaps_url, tls_verify=False)
    assert [u.email for u in d.users or ()] == ["a@example.com"]


def test_wrong_password(slapd: Slapd, company: str, engine: str) -> None:
    with pytest.raises(LdapError) as err:
        fetch(slapd, company, engine, bind_password="not-the-password")
    assert str(err.value) == (
        f"LDAP {slapd.url}: bind as {slapd.bind_dn} refused: invalid credentials"
    )
    assert "not-the-password" not in repr(err.value.__cause__)  # nor in the chained error
    assert err.value.exit_code == 3


def test_unreachable_server(engine: str, tmp_path: Path) -> None:
    from tests.fixtures.ldap import free_port

    url = f"ldap://127.0.0.1:{free_port()}"
    with pytest.raises(LdapError) as err:
        LdapSource(
            LdapSettings(url=url, base_dn="dc=example,dc=com", engine=engine),
            SyncSettings(),
        ).fetch(FetchRequest())
    assert str(err.value).startswith(f"LDAP {url}: server unreachable: ")
    assert "Connection refused" in str(err.value)


@pytest.mark.parametrize(
    ("where", "setting"),
    [
        ({"user_filter": "(cn=x"}, "BWSYNC_LDAP__USER_FILTER"),
        ({"group_filter": "(cn=x"}, "BWSYNC_LDAP__GROUP_FILTER"),
        ({"sync_user_filter": "(&(cn=x)"}, "BWSYNC_SYNC__USER_FILTER"),
    ],
)
def test_invalid_filter_names_the_setting(
    slapd: Slapd, company: str, engine: str, where: dict[str, Any], setting: str
) -> None:
    where = dict(where)  # the parameter dict is shared by both engines' runs
    sync = SyncSettings(user_filter=where.pop("sync_user_filter", None))
    with pytest.raises(LdapError) as err:
        fetch(slapd, company, engine, sync, **where)
    bad = next(iter(where.values()), sync.user_filter)
    cls = "groupOfNames" if "GROUP" in setting else "person"
    assert str(err.value) == (
        f"LDAP {slapd.url}: invalid filter (&(&(objectClass={cls})){bad}) (check {setting})"
    )


def test_anonymous_bind(slapd: Slapd, company: str, engine: str) -> None:
    d = fetch(slapd, company, engine, bind_dn=None, bind_password=None)
    assert len(d.users or ()) == 4


def results(source: LdapSource) -> list[tuple[str, bool]]:
    return [(r.name, r.ok) for r in source.check()]


def test_check_reports_each_step(slapd: Slapd, company: str, engine: str) -> None:
    ok = LdapSource(settings(slapd, company, engine, start_tls=True), SyncSettings())
    checks = ok.check()
    assert [(r.name, r.ok) for r in checks] == [
        ("connect", True),
        ("tls", True),
        ("bind", True),
        ("active_directory", True),
        ("user_base", True),
        ("group_base", True),
    ]
    assert checks[3].detail == "not Active Directory (detected)"

    def check(**kw: Any) -> list[tuple[str, bool]]:
        return results(LdapSource(settings(slapd, company, engine, **kw), SyncSettings()))

    assert check(bind_password="nope") == [("connect", True), ("bind", False)]
    assert check(url=slapd.ldaps_url, ca_file=slapd.wrong_ca_file) == [
        ("connect", True),
        ("tls", False),
    ]
    from tests.fixtures.ldap import free_port

    assert check(url=f"ldap://127.0.0.1:{free_port()}") == [("connect", False)]
    assert check(group_path="ou=nowhere")[-1] == ("group_base", False)


def test_password_never_in_messages(slapd: Slapd, company: str, engine: str) -> None:
    secret = "Sup3r-Secret-Value"
    failures: Sequence[dict[str, Any]] = [
        {"bind_password": secret},
        {"bind_password": secret, "url": slapd.ldaps_url, "ca_file": slapd.wrong_ca_file},
    ]
    for kw in failures:
        source = LdapSource(settings(slapd, company, engine, **kw), SyncSettings())
        with pytest.raises(LdapError) as err:
            source.fetch(FetchRequest())
        assert secret not in str(err.value)
        assert all(secret not in r.detail for r in source.check())


def test_size_limit_names_the_cause(slapd: Slapd, company: str, engine: str) -> None:
    with pytest.raises(LdapError) as err:
        fetch(slapd, company, engine, bind_dn=slapd.limited_dn)
    msg = str(err.value)
    assert msg.startswith(f"LDAP {slapd.url}: search under {company} failed: ")
    assert "the server caps how many entries this account may read" in msg


def test_a_hung_server_times_out(slapd: Slapd, engine: str, tmp_path: Path) -> None:
    """A server that accepts connections but never answers (stopped with SIGSTOP) fails after
    ``timeout`` seconds instead of hanging the job."""
    hung = Slapd.create(tmp_path / "hung", pki=slapd.pki)
    assert hung.proc is not None
    hung.proc.send_signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(LdapError) as err:
            fetch(hung, hung.base_dn, engine, timeout=1)
        assert time.monotonic() - start < 5
    finally:
        hung.proc.send_signal(signal.SIGCONT)
        hung.stop()
    assert str(err.value) == f"LDAP {hung.url}: bind timed out after 1 s"


def test_both_engines_return_identical_directories(slapd: Slapd, company: str) -> None:
    pytest.importorskip("ldap", reason="python-ldap not installed (bwsync[fast-ldap])")
    for kw in ({}, {"group_object_class": "posixGroup", "member_attribute": "memberUid"}):
        fast = fetch(slapd, company, "python-ldap", **kw)
        pure = fetch(slapd, company, "ldap3", **kw)
        assert fast == pure
        assert fast.groups  # not vacuous


# -- BWSYNC_LDAP__GROUP_ID_ATTRIBUTE: every group has it, as text ------------------------------


def _id_tree(slapd: Slapd, name: str) -> tuple[str, str]:
    base = slapd.new_tree(name)
    people, groups = f"ou=people,{base}", f"ou=groups,{base}"
    slapd.add([(f"uid=ann,{people}", person("ann", mail="ann@example.com"))])
    return base, groups


def test_group_id_attribute_missing_on_a_group_is_a_directory_error(
    slapd: Slapd, engine: str
) -> None:
    """A group the bind account cannot read the attribute of (an ACL, or an entry without it)
    would otherwise be synced under its DN today and under the attribute once the ACL is
    fixed: a new group without grants, the old one emptied. So it stops the run (exit 3),
    naming the groups and the attribute."""
    base, groups = _id_tree(slapd, "gidmissing")
    ann = f"uid=ann,ou=people,{base}"
    has = {"objectClass": "groupOfNames", "cn": "has", "businessCategory": "id-1", "member": ann}
    lacks = {"objectClass": "groupOfNames", "cn": "lacks", "member": ann}
    slapd.add([(f"cn=has,{groups}", has), (f"cn=lacks,{groups}", lacks)])
    with pytest.raises(LdapError) as info:
        fetch(slapd, base, engine, group_id_attribute="businessCategory")
    text = str(info.value)
    assert info.value.exit_code == 3
    assert (
        f"1 groups have no businessCategory (BWSYNC_LDAP__GROUP_ID_ATTRIBUTE): cn=lacks,{groups}"
        in text
    )
    assert "read it" in text
    d = fetch(slapd, base, engine)  # without the setting: DNs, as bwdc
    assert sorted(g.external_id for g in d.groups or []) == [
        f"cn=has,{groups}",
        f"cn=lacks,{groups}",
    ]


def test_group_id_attribute_with_a_value_that_is_not_text_is_a_directory_error(
    slapd: Slapd, engine: str
) -> None:
    """A binary value (``jpegPhoto`` here; an ``objectGUID``-like attribute elsewhere) is no
    externalId: decoding it loosely would give different groups one id, and the import
    fails on duplicate group externalIds (HTTP 500). Refused, naming the group."""
    base, groups = _id_tree(slapd, "gidbinary")
    slapd.add_ldif(
        f"dn: cn=photo,{groups}\n"
        "objectClass: groupOfNames\nobjectClass: extensibleObject\ncn: photo\n"
        f"member: uid=ann,ou=people,{base}\n"
        "jpegPhoto:: /9j/4AAQSkZJRgABAQ==\n\n"
    )
    with pytest.raises(LdapError) as info:
        fetch(slapd, base, engine, group_id_attribute="jpegPhoto")
    assert f"cn=photo,{groups}" in str(info.value)
    assert "not UTF-8 text" in str(info.value)
