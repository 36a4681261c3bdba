"""Pure logic of the LDAP source: filters, bases, AD defaults, entry → record, member
classification, ranged values, check() — with an in-memory wire, no server."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bwsync.config import LdapSettings, SyncSettings
from bwsync.errors import LdapError
from bwsync.model import Group, User
from bwsync.sources.base import FetchRequest
from bwsync.sources.ldap import (
    LdapSource,
    SearchPlan,
    UserIndex,
    build_filter,
    collect_users,
    deleted_objects_base,
    guid_string,
    is_active_directory,
    search_base,
)
from bwsync.sources.ldap_wire import Attrs, EngineName, Entry, WireOptions

# objectGUID of a Samba tombstone seen in the AD tests, with Samba's own rendering
GUID_BYTES = bytes.fromhex("780635b2907c4649a59ac803555a6912")
GUID_TEXT = "b2350678-7c90-4946-a59a-c803555a6912"
AD_DSE: dict[str, list[bytes]] = {
    "supportedCapabilities": [b"1.2.840.113556.1.4.800", b"1.2.840.113556.1.4.1670"],
    "defaultNamingContext": [b"DC=example,DC=test"],
}


class FakeWire:
    """A directory in memory: searches answer from ``pages[base]``, reads from ``entries``."""

    engine: EngineName = "ldap3"
    url = "ldap://fake:389"

    def __init__(
        self,
        *,
        dse: Attrs | None = None,
        pages: Mapping[str, Sequence[Sequence[Entry]]] | None = None,
        entries: Mapping[tuple[str, str], Attrs] | None = None,
        open_error: LdapError | None = None,
        search_errors: Mapping[str, LdapError] | None = None,
    ) -> None:
        self.dse = dse or {}
        self.pages = pages or {}
        self.entries = entries or {}
        self.open_error = open_error
        self.search_errors = search_errors or {}
        self.searches: list[tuple[str, str, list[str], bool]] = []
        self.reads: list[tuple[str, list[str]]] = []
        self.opened = self.closed = False

    def __call__(self, options: WireOptions) -> FakeWire:
        self.options = options
        return self

    def open(self) -> None:
        self.opened = True
        if self.open_error:
            raise self.open_error

    def root_dse(self, attributes: Sequence[str]) -> Attrs:
        return self.dse

    def search(
        self,
        base: str,
        filterstr: str,
        attributes: Sequence[str],
        *,
        show_deleted: bool = False,
        filter_setting: str | None = None,
    ) -> Iterator[Sequence[Entry]]:
        self.searches.append((base, filterstr, list(attributes), show_deleted))
        if base in self.search_errors:
            raise self.search_errors[base]
        # Only what was asked for, as a server answers (options such as ;range= aside), so
        # a test notices an attribute the source forgot to request.
        wanted = {name.lower().partition(";")[0] for name in attributes}
        for page in self.pages.get(base, []):
            yield [
                (dn, {k: v for k, v in a.items() if k.lower().partition(";")[0] in wanted})
                if dn is not None
                else (dn, a)
                for dn, a in page
            ]

    def read(self, dn: str, attributes: Sequence[str]) -> Attrs | None:
        self.reads.append((dn, list(attributes)))
        return self.entries.get((dn, attributes[0]), None if "ou=gone" in dn else {})

    def close(self) -> None:
        self.closed = True


def ldap_settings(**kw: Any) -> LdapSettings:
    values: dict[str, Any] = {"url": "ldap://fake:389", "base_dn": "dc=example,dc=com"}
    values.update(kw)
    return LdapSettings(**values)


def plan(ad: bool = False, sync: SyncSettings | None = None, **kw: Any) -> SearchPlan:
    return SearchPlan.resolve(ldap_settings(**kw), sync or SyncSettings(), ad)


# -- filters, bases, detection ------------------------------------------------------------------


def test_filters_are_built_exactly_as_bwdc() -> None:
    assert build_filter("person", None) == "(&(objectClass=person))"
    assert build_filter("person", "  ") == "(&(objectClass=person))"
    assert build_filter("group", "(cn=IT*)") == "(&(&(objectClass=group))(cn=IT*))"
    assert build_filter("person", " (|(a=1)(b=2)) ") == "(&(&(objectClass=person))(|(a=1)(b=2)))"


def test_search_bases() -> None:
    assert search_base(" ou=Human Resources ", "dc=bitwarden,dc=com") == (
        "ou=Human Resources,dc=bitwarden,dc=com"
    )
    assert search_base(None, "dc=x") == "dc=x"
    assert search_base("  ", "dc=x") == "dc=x"
    assert deleted_objects_base("OU=Staff,DC=corp,DC=example", None) == (
        "CN=Deleted Objects,DC=corp,DC=example"
    )
    assert deleted_objects_base("o=corp", "DC=corp,DC=example") == (
        "CN=Deleted Objects,DC=corp,DC=example"
    )


def test_guid_is_microsoft_little_endian() -> None:
    assert guid_string(GUID_BYTES) == GUID_TEXT
    with pytest.raises(ValueError, match="16 bytes"):
        guid_string(b"short")


@given(st.binary(min_size=16, max_size=16))
def test_guid_matches_uuid_bytes_le(raw: bytes) -> None:
    assert guid_string(raw) == str(uuid.UUID(bytes_le=raw))


def test_active_directory_detection() -> None:
    assert is_active_directory(AD_DSE)
    assert is_active_directory({"FORESTFUNCTIONALITY": [b"7"]})
    assert not is_active_directory({"supportedCapabilities": [b"1.3.6.1.4.1.4203.1.9.1.1"]})
    assert not is_active_directory({})


def test_defaults_for_ldap_and_active_directory() -> None:
    p = plan(False)
    assert (p.user_base, p.group_base) == ("dc=example,dc=com", "dc=example,dc=com")
    assert p.user_filter == "(&(objectClass=person))"
    assert p.group_filter == "(&(objectClass=groupOfNames))"
    assert (p.email_attribute, p.group_name_attribute, p.member_attribute) == (
        "mail",
        "cn",
        "member",
    )
    assert p.email_prefix_attribute is None
    a = plan(True, email_suffix="@corp.example")
    assert (a.user_base, a.group_base) == ("CN=Users,dc=example,dc=com",) * 2
    assert a.group_filter == "(&(objectClass=group))"
    assert (a.group_name_attribute, a.email_prefix_attribute, a.email_suffix) == (
        "name",
        "sAMAccountName",
        "@corp.example",
    )
    # the prefix needs the suffix, as in bwdc
    assert plan(True).email_prefix_attribute is None
    # an empty path is the whole base (None takes the default)
    assert plan(True, user_path="", group_path="").user_base == "dc=example,dc=com"
    # explicit settings win over AD defaults
    o = plan(True, user_path="OU=Staff", group_object_class="groupOfNames")
    assert o.user_base == "OU=Staff,dc=example,dc=com"
    assert o.group_filter == "(&(objectClass=groupOfNames))"


def test_ldap_filters_override_sync_filters() -> None:
    sync = SyncSettings(user_filter="(a=1)", group_filter="(b=2)")
    p = plan(False, sync)
    assert (p.user_filter, p.user_filter_setting) == (
        "(&(&(objectClass=person))(a=1))",
        "BWSYNC_SYNC__USER_FILTER",
    )
    p = plan(False, sync, user_filter="(c=3)")
    assert (p.user_filter, p.user_filter_setting) == (
        "(&(&(objectClass=person))(c=3))",
        "BWSYNC_LDAP__USER_FILTER",
    )
    assert p.group_filter_setting == "BWSYNC_SYNC__GROUP_FILTER"


def test_requested_attributes_are_only_the_used_ones() -> None:
    assert plan(False).user_attributes() == ["mail", "objectGUID", "userAccountControl", "uid"]
    assert plan(True, email_suffix="@x").user_attributes() == [
        "mail",
        "objectGUID",
        "userAccountControl",
        "uid",
        "sAMAccountName",
    ]
    # a name used twice is asked for once
    assert plan(False, email_prefix_attribute="UID", email_suffix="@x").user_attributes() == [
        "mail",
        "objectGUID",
        "userAccountControl",
        "uid",
    ]
    assert plan(False).group_attributes("member") == ["cn", "member", "objectGUID"]


# -- entries → users ----------------------------------------------------------------------------


def collect(
    entries: Sequence[Entry], p: SearchPlan | None = None, *, deleted: bool = False
) -> tuple[list[User], UserIndex, Counter[str]]:
    users: list[User] = []
    index = UserIndex({}, {})
    skipped: Counter[str] = Counter()
    collect_users(
        [entries], p or plan(), deleted=deleted, users=users, index=index, skipped=skipped
    )
    return users, index, skipped


def test_user_records() -> None:
    users, index, skipped = collect(
        [
            ("uid=a,dc=x", {"mail": [b" A@Example.COM "], "uid": [b"A"]}),
            ("uid=b,dc=x", {"mail": [b"b@x"], "userAccountControl": [b"514"]}),
            ("uid=c,dc=x", {"mail": [b"c@x"], "userAccountControl": [b"66048"]}),
            ("uid=d,dc=x", {"mail": [b"d@x"], "objectGUID": [GUID_BYTES]}),
            ("uid=e,dc=x", {"uid": [b"e"]}),  # no mail
            ("uid=f,dc=x", {"mail": [b"   "]}),  # blank mail
            (None, ["ldap://other/dc=x"]),  # type: ignore[list-item]  # a search reference
            ("uid=g,dc=x", {"mail": [b"g@x"], "objectGUID": [b"short"]}),  # not a GUID
        ]
    )
    assert users == [
        User("uid=a,dc=x", "uid=a,dc=x", "a@example.com"),
        User("uid=b,dc=x", "uid=b,dc=x", "b@x", disabled=True),
        User("uid=c,dc=x", "uid=c,dc=x", "c@x", disabled=False),
        User("uid=d,dc=x", GUID_TEXT, "d@x"),
        User("uid=g,dc=x", "uid=g,dc=x", "g@x"),
    ]
    assert skipped == {"no_email": 2}
    # users without email still resolve members
    assert index.by_dn == {
        "uid=a,dc=x": "uid=a,dc=x",
        "uid=b,dc=x": "uid=b,dc=x",
        "uid=c,dc=x": "uid=c,dc=x",
        "uid=d,dc=x": GUID_TEXT,
        "uid=e,dc=x": "uid=e,dc=x",
        "uid=f,dc=x": "uid=f,dc=x",
        "uid=g,dc=x": "uid=g,dc=x",
    }
    assert index.by_uid == {"a": "uid=a,dc=x", "e": "uid=e,dc=x"}


def test_attribute_names_in_any_spelling() -> None:
    users, index, _ = collect(
        [
            ("cn=1", {"MAIL": [b"one@x"], "UID": [b"One"], "UserAccountControl": [b"2"]}),
            ("cn=2", {"mail": [b"two@x"], "uid": [b"two"]}),  # spelling changes back
            ("cn=3", {"Mail": [b"three@x"], "OBJECTGUID": [GUID_BYTES]}),
        ],
        plan(False, email_attribute="mAiL"),
    )
    assert users == [
        User("cn=1", "cn=1", "one@x", disabled=True),
        User("cn=2", "cn=2", "two@x"),
        User("cn=3", GUID_TEXT, "three@x"),
    ]
    assert index.by_uid == {"one": "cn=1", "two": "cn=2"}


@pytest.mark.parametrize("prefix", ["uid", "UID", "sn"])
def test_email_from_prefix_and_suffix(prefix: str) -> None:
    p = plan(False, email_prefix_attribute=prefix, email_suffix="@Corp.Example")
    users, index, skipped = collect(
        [
            ("cn=1", {"uid": [b"Jo"], "sn": [b"Jo"]}),
            ("cn=2", {"mail": [b"own@x"], "uid": [b"two"], "sn": [b"two"]}),
            ("cn=3", {"mail": [b"three@x"]}),
        ],
        p,
    )
    assert [u.email for u in users] == ["jo@corp.example", "own@x", "three@x"]
    assert index.by_uid == {"jo": "cn=1", "two": "cn=2"}
    assert skipped == {}


def test_email_attribute_shared_with_uid() -> None:
    users, index, _ = collect([("cn=1", {"uid": [b"x@Y"]})], plan(False, email_attribute="uid"))
    assert users == [User("cn=1", "cn=1", "x@y")]
    assert index.by_uid == {"x@y": "cn=1"}


def test_deleted_users_keep_no_email() -> None:
    users, _, skipped = collect(
        [("CN=t\\0ADEL:x,CN=Deleted Objects,DC=x", {"objectGUID": [GUID_BYTES]})], deleted=True
    )
    assert users == [User("CN=t\\0ADEL:x,CN=Deleted Objects,DC=x", GUID_TEXT, None, deleted=True)]
    assert skipped == {}


# -- the source with an in-memory wire -------------------------------------------------------


BASE = "dc=example,dc=com"


def ldap_world(**extra_pages: Sequence[Sequence[Entry]]) -> FakeWire:
    users = [
        [
            ("uid=a,ou=p," + BASE, {"mail": [b"a@x"], "uid": [b"a"]}),
            ("uid=b,ou=p," + BASE, {"uid": [b"B"]}),
        ],
        [("uid=c,ou=p," + BASE, {"mail": [b"c@x"], "uid": [b"c"]})],
    ]
    groups = [
        [
            (
                "cn=g1," + BASE,
                {
                    "cn": [b"g1"],
                    "member": [
                        b"uid=c,ou=p," + BASE.encode(),
                        b"cn=g2," + BASE.encode(),
                        b"b",
                        b"nobody",
                        b"uid=a,ou=p," + BASE.encode(),
                        b"uid=c,ou=p," + BASE.encode(),  # duplicate: kept once
                    ],
                },
            ),
            ("cn=unnamed," + BASE, {"member": [b"a"]}),
        ],
        [("cn=g2," + BASE, {"CN": [b"g2"], "description": [b"Second"]})],
    ]
    pages: dict[str, Sequence[Sequence[Entry]]] = {"ou=p," + BASE: users, "ou=g," + BASE: groups}
    pages.update(extra_pages)
    return FakeWire(pages=pages)


def test_fetch_with_memory_wire() -> None:
    wire = ldap_world()
    src = LdapSource(
        ldap_settings(user_path="ou=p", group_path="ou=g"), SyncSettings(), wire_factory=wire
    )
    d = src.fetch(FetchRequest(force=True))  # force alone never searches tombstones on LDAP
    a, b, c = ("uid=a,ou=p," + BASE, "uid=b,ou=p," + BASE, "uid=c,ou=p," + BASE)
    assert d.users == [User(a, a, "a@x"), User(c, c, "c@x")]
    assert d.skipped == {"no_email": 1, "group_without_name": 1}
    assert d.groups == [
        Group(
            "cn=g1," + BASE,
            "cn=g1," + BASE,
            "g1",
            {c: None, b: None, a: None},
            {"cn=g2," + BASE: None},
        ),
        Group("cn=g2," + BASE, "cn=g2," + BASE, "g2"),
    ]
    assert [(s[0], s[1], s[3]) for s in wire.searches] == [
        ("ou=g," + BASE, "(&(objectClass=groupOfNames))", False),  # first: are uids needed?
        ("ou=p," + BASE, "(&(objectClass=person))", False),
    ]
    assert "uid" in wire.searches[1][2]  # g1 lists "b" by uid
    assert wire.opened and wire.closed


def test_group_id_attribute_gives_the_group_its_externalid() -> None:
    """BWSYNC_LDAP__GROUP_ID_ATTRIBUTE: the value (entryUUID …) is the externalId, the DN stays
    the reference nested groups point at; an entry without it (or with a blank one) stops the
    fetch, naming it: no group falls back to its DN. objectGUID is already the AD default."""
    people, groups = "ou=p," + BASE, "ou=g," + BASE
    parent, child, bare = f"cn=parent,{groups}", f"cn=child,{groups}", f"cn=bare,{groups}"
    wire = FakeWire(
        pages={
            people: [[(f"uid=a,{people}", {"mail": [b"a@x"]})]],
            groups: [
                [
                    (
                        parent,
                        {"cn": [b"parent"], "entryUUID": [b"u-1"], "member": [child.encode()]},
                    ),
                    (
                        child,
                        {
                            "cn": [b"child"],
                            "entryuuid": [b"u-2"],
                            "member": [f"uid=a,{people}".encode()],
                        },
                    ),
                ]
            ],
        }
    )
    src = LdapSource(
        ldap_settings(user_path="ou=p", group_path="ou=g", group_id_attribute="entryUUID"),
        SyncSettings(),
        wire_factory=wire,
    )
    d = src.fetch(FetchRequest())
    assert [(g.reference_id, g.external_id, g.name) for g in d.groups or []] == [
        (parent, "u-1", "parent"),
        (child, "u-2", "child"),
    ]
    assert d.groups is not None and d.groups[0].group_member_reference_ids == {child: None}
    assert "entryUUID" in wire.searches[0][2]
    spaces = f"cn=sp,{groups}"
    wire.pages[groups] = [
        [
            *wire.pages[groups][0],
            (bare, {"cn": [b"bare"]}),
            (spaces, {"cn": [b"sp"], "entryUUID": [b" "]}),
        ]
    ]
    with pytest.raises(LdapError, match=f"2 groups have no entryUUID .*: {bare}; {spaces}"):
        src.fetch(FetchRequest())
    assert plan(False, group_id_attribute="entryUUID").group_attributes("member") == [
        "cn",
        "member",
        "objectGUID",
        "entryUUID",
    ]
    assert plan(True, group_id_attribute="objectguid").group_id_attribute is None
    assert plan(False).group_id_attribute is None


def test_the_user_search_asks_for_uids_only_when_a_member_value_is_one() -> None:
    """Member values with both "=" and "," are DNs (§7.1); with no other value, no user's uid
    is ever looked up, so the user search leaves the attribute out. A value that is not a DN
    (an unnamed group's, which is skipped, does not count) brings it back."""
    people = "ou=p," + BASE

    def fetch(*member_values: bytes) -> tuple[list[str], list[Group]]:
        wire = FakeWire(
            pages={
                people: [[(f"uid=a,{people}", {"mail": [b"a@x"], "uid": [b"a"]})]],
                "ou=g," + BASE: [
                    [
                        ("cn=g," + BASE, {"cn": [b"g"], "member": list(member_values)}),
                        ("cn=unnamed," + BASE, {"member": [b"a"]}),
                    ]
                ],
            }
        )
        src = LdapSource(
            ldap_settings(user_path="ou=p", group_path="ou=g"), SyncSettings(), wire_factory=wire
        )
        d = src.fetch(FetchRequest())
        (user_search,) = [s for s in wire.searches if s[0] == people]
        return user_search[2], d.groups or []

    attributes, groups = fetch(f"uid=a,{people}".encode())
    assert attributes == ["mail", "objectGUID", "userAccountControl"]
    assert list(groups[0].user_member_external_ids) == [f"uid=a,{people}"]
    for uid_like in (b"A", b"cn=a", b"a,b"):  # no "=", no ",", or one of them only
        attributes, groups = fetch(f"uid=a,{people}".encode(), uid_like)
        assert "uid" in attributes
        assert list(groups[0].user_member_external_ids) == [f"uid=a,{people}"]
    attributes, groups = fetch(b"A")
    assert list(groups[0].user_member_external_ids) == [f"uid=a,{people}"]  # found by uid


def test_nothing_to_sync_contacts_nobody() -> None:
    wire = ldap_world()
    d = LdapSource(
        ldap_settings(), SyncSettings(users=False, groups=False), wire_factory=wire
    ).fetch(FetchRequest())
    assert (d.users, d.groups) == (None, None)
    assert not wire.opened


def test_ranged_members_are_followed_to_the_end() -> None:
    dn = "CN=big,CN=Users," + "DC=x"
    wire = FakeWire(
        dse=AD_DSE,
        pages={
            "CN=Users,DC=x": [
                [
                    (
                        dn,
                        {
                            "name": [b"big"],
                            "member;range=0-1": [b"m0", b"m1"],
                            "objectGUID": [GUID_BYTES],
                        },
                    )
                ]
            ]
        },
        entries={
            (dn, "member;range=2-*"): {"member;range=2-3": [b"m2", b"m3"]},
            (dn, "member;range=4-*"): {"Member;Range=4-*": [b"m4"]},
        },
    )
    index_users = [
        [
            (f"CN=m{n},DC=x", {"sAMAccountName": [f"m{n}".encode()], "uid": [f"m{n}".encode()]})
            for n in range(5)
        ]
    ]
    wire.pages = {**wire.pages, "CN=Users,DC=x": index_users + list(wire.pages["CN=Users,DC=x"])}
    src = LdapSource(
        ldap_settings(base_dn="DC=x", user_object_class="user"), SyncSettings(), wire_factory=wire
    )
    d = src.fetch(FetchRequest())
    assert wire.reads == [(dn, ["member;range=2-*"]), (dn, ["member;range=4-*"])]
    (g,) = d.groups or []
    assert (g.external_id, g.name) == (GUID_TEXT, "big")
    assert list(g.user_member_external_ids) == [f"CN=m{n},DC=x" for n in range(5)]


def test_deleted_objects_only_for_ad_and_force(caplog: pytest.LogCaptureFixture) -> None:
    tomb = "CN=t\\0ADEL:1,CN=Deleted Objects,DC=x"
    pages: dict[str, Sequence[Sequence[Entry]]] = {
        "CN=Users,DC=x": [[("CN=u,CN=Users,DC=x", {"mail": [b"u@x"]})]],
        "CN=Deleted Objects,DC=x": [
            [(tomb, {"sAMAccountName": [b"t"], "objectGUID": [GUID_BYTES]})]
        ],
    }

    def run(force: bool, **kw: Any) -> tuple[list[User], FakeWire]:
        wire = FakeWire(dse=AD_DSE, pages=pages, **kw)
        src = LdapSource(
            ldap_settings(base_dn="DC=x", email_suffix="@x"),
            SyncSettings(groups=False),
            wire_factory=wire,
        )
        return src.fetch(FetchRequest(force=force)).users or [], wire

    users, wire = run(False)
    assert [u.reference_id for u in users] == ["CN=u,CN=Users,DC=x"]
    users, wire = run(True)
    assert users[-1] == User(tomb, GUID_TEXT, "t@x", deleted=True)
    assert wire.searches[-1] == (
        "CN=Deleted Objects,DC=x",
        "(&(&(objectClass=person))(isDeleted=TRUE))",
        ["mail", "objectGUID", "userAccountControl", "uid", "sAMAccountName"],
        True,
    )
    # a failure there is a warning, and the live users still come back (bwdc does the same)
    refused = LdapError("ldap://fake:389", "search under CN=Deleted Objects,DC=x failed: no")
    with caplog.at_level(logging.WARNING, logger="bwsync.sources.ldap"):
        users, _ = run(True, search_errors={"CN=Deleted Objects,DC=x": refused})
    assert [u.reference_id for u in users] == ["CN=u,CN=Users,DC=x"]
    assert "cannot query deleted users" in caplog.text


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("unreachable", [("connect", False)]),
        ("tls", [("connect", True), ("tls", False)]),
        ("credentials", [("connect", True), ("tls", True), ("bind", False)]),
    ],
)
def test_check_names_the_failed_step(reason: Any, expected: list[tuple[str, bool]]) -> None:
    err = LdapError("ldaps://fake:636", "it broke", reason)
    src = LdapSource(
        ldap_settings(url="ldaps://fake:636"),
        SyncSettings(),
        wire_factory=FakeWire(open_error=err),
    )
    checks = src.check()
    assert [(c.name, c.ok) for c in checks] == expected
    assert checks[-1].detail == "LDAP ldaps://fake:636: it broke"


def test_check_success_and_missing_base() -> None:
    wire = FakeWire(dse=AD_DSE)
    checks = LdapSource(
        ldap_settings(base_dn="ou=gone,DC=x", bind_dn="EXAMPLE\\svc", bind_password="pw"),
        SyncSettings(groups=False),
        wire_factory=wire,
    ).check()
    assert [(c.name, c.ok, c.detail) for c in checks] == [
        ("connect", True, "ldap://fake:389"),
        ("bind", True, "EXAMPLE\\svc"),
        ("active_directory", True, "Active Directory (detected)"),
        ("user_base", False, "base DN CN=Users,ou=gone,DC=x does not exist"),
    ]
    assert wire.closed


def test_password_is_not_in_options_repr() -> None:
    options = WireOptions(url="ldap://x", bind_dn="cn=a", bind_password="hunter2")
    assert "hunter2" not in repr(options)


def _reference_users(entries: Sequence[Entry], p: SearchPlan) -> list[User]:
    """The obvious, slow reading of bwdc's rules: one lower-cased dict per entry."""
    out = []
    for dn, attrs in entries:
        assert dn is not None
        low = {k.lower(): v for k, v in attrs.items()}
        mail = low.get(p.email_attribute.lower())
        prefix = low.get(p.email_prefix_attribute.lower()) if p.email_prefix_attribute else None
        guid = low.get("objectguid")
        uac = low.get("useraccountcontrol")
        if mail is not None:
            email = mail[0].decode().strip().lower()
        elif prefix is not None:
            email = (prefix[0].decode() + (p.email_suffix or "")).strip().lower()
        else:
            email = ""
        if not email:
            continue
        ext = str(uuid.UUID(bytes_le=guid[0])) if guid else dn
        out.append(User(dn, ext, email, bool(uac and int(uac[0]) & 2)))
    return out


def _spellings(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), name.upper(), name.title()])


@st.composite
def _entries(draw: st.DrawFn) -> list[Entry]:
    entries: list[Entry] = []
    for n in range(draw(st.integers(0, 12))):
        attrs: dict[str, list[bytes]] = {}
        if draw(st.booleans()):
            attrs[draw(_spellings("mail"))] = [draw(st.sampled_from([b"A@x", b" b@Y ", b" "]))]
        if draw(st.booleans()):
            attrs[draw(_spellings("uid"))] = [draw(st.sampled_from([b"Jo", b"k"]))]
        if draw(st.booleans()):
            attrs[draw(_spellings("objectGUID"))] = [draw(st.binary(min_size=16, max_size=16))]
        if draw(st.booleans()):
            attrs[draw(_spellings("userAccountControl"))] = [
                draw(st.sampled_from([b"512", b"514", b"66050"]))
            ]
        entries.append((f"cn={n}", attrs))
    return entries


@given(_entries(), st.sampled_from([None, "uid", "UID", "mail"]))
def test_fast_path_agrees_with_the_obvious_reading(
    entries: list[Entry], prefix: str | None
) -> None:
    p = plan(False, email_prefix_attribute=prefix, email_suffix="@s" if prefix else None)
    users, _, skipped = collect(entries, p)
    assert users == _reference_users(entries, p)
    assert skipped["no_email"] == len(entries) - len(users)


def test_an_email_prefix_attribute_named_uid_is_read_even_without_uid_members() -> None:
    people = "ou=p," + BASE
    wire = FakeWire(
        pages={
            people: [[(f"uid=a,{people}", {"uid": [b"a"]})]],  # no mail: uid + suffix
            "ou=g," + BASE: [
                [("cn=g," + BASE, {"cn": [b"g"], "member": [f"uid=a,{people}".encode()]})]
            ],
        }
    )
    src = LdapSource(
        ldap_settings(
            user_path="ou=p", group_path="ou=g", email_prefix_attribute="uid", email_suffix="@x"
        ),
        SyncSettings(),
        wire_factory=wire,
    )
    d = src.fetch(FetchRequest())
    assert d.users == [User(f"uid=a,{people}", f"uid=a,{people}", "a@x")]
    assert list((d.groups or [])[0].user_member_external_ids) == [f"uid=a,{people}"]
