"""Each source's side of the contract: ``PEOPLE``/``TEAMS`` written into its real server or
stand-in in that server's terms, the source built on it, and its declared ``Capabilities``.

An ``Adapter`` is what the contract cases talk to, never a server directly:

* ``source(sync, **settings)`` — the source on the fixture directory (settings overrides go to
  its settings section);
* ``user_filter`` / ``group_filter`` — the filter, in the source's own syntax, that leaves out
  ``FILTERED_OUT`` / keeps ``FILTERED_TEAMS``;
* ``small_pages()`` — make every listing come in pages of one entry; returns settings overrides
  and, where the server can count them, a count of requests made so far;
* ``refused()`` — the same directory with credentials the server refuses (a file gone by
  the time it is read, for the file source); ``fails_mid_read()`` — a directory that fails
  after part of it was read;
* ``secrets`` — what must never appear in a message.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bwsync.config import SyncSettings
from bwsync.settings import load_settings
from bwsync.sources import build_source
from bwsync.sources.base import Source
from tests.contract.directory import (
    FILTERED_OUT,
    FILTERED_TEAMS,
    PEOPLE,
    TEAMS,
    YES,
    Capabilities,
    Lacks,
    Team,
)
from tests.fixtures.cloud import service_account_info
from tests.fixtures.ldap import SambaAD, Slapd, ad_user, person
from tests.fixtures.okta_onelogin import OKTA_CLIENT_ID, KeyPair
from tests.standins.google_workspace import API as GOOGLE_API
from tests.standins.google_workspace import FakeGoogle
from tests.standins.graph import FakeGraph
from tests.standins.http_server import Reply
from tests.standins.okta import FakeOkta, OktaDirectory
from tests.standins.onelogin import FakeOneLogin, OneLoginDirectory
from tests.standins.tls import TlsFiles

Counter = Callable[[], int]


def nested_first(teams: tuple[Team, ...] = TEAMS) -> list[Team]:
    """Teams ordered so that a nested team comes before the team holding it (AD and Graph
    refuse a member that does not exist yet)."""
    done: list[Team] = []
    while len(done) < len(teams):
        for t in teams:
            if t not in done and all(c in {d.name for d in done} for c in t.teams):
                done.append(t)
    return done


class Adapter:
    name: str
    kind: str
    """The ``BWSYNC_SOURCE`` value, also the name of its settings section."""
    caps: Capabilities
    user_filter: str | None = None
    group_filter: str | None = None
    secrets: tuple[str, ...] = ()

    def source(self, sync: SyncSettings | None = None, **settings: Any) -> Source:
        raise NotImplementedError

    def built(self, section: dict[str, Any], sync: SyncSettings | None) -> Source:
        """The source as a run builds it: settings validated, then ``build_source``."""
        settings = load_settings(
            source=self.kind, **{self.kind: section}, sync=sync or SyncSettings()
        )
        return build_source(settings)

    def small_pages(self) -> tuple[dict[str, Any], Counter | None]:
        raise NotImplementedError

    def refused(self) -> Source:
        raise NotImplementedError

    def fails_mid_read(self) -> Source:
        raise NotImplementedError


# -- file ------------------------------------------------------------------------------------

FILE_HAS_NO_FILTER = Lacks("the file source has no filter: the export itself decides who is synced")


class JsonFile(Adapter):
    name, kind = "file-json", "file"
    caps = Capabilities(
        paging=Lacks("a file is read whole, in one read"),
        user_filter=FILE_HAS_NO_FILTER,
        group_filter=FILE_HAS_NO_FILTER,
    )

    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "directory.json"
        self.path.write_text(json.dumps(self.document()))
        self.tmp = tmp

    @staticmethod
    def document() -> dict[str, Any]:
        return {
            "users": [
                {"id": p.key, "email": p.email, "disabled": p.disabled, "deleted": p.deleted}
                for p in PEOPLE
            ],
            "groups": [
                {
                    "id": t.name.lower(),
                    "name": t.name,
                    "members": list(t.members),
                    "groups": [c.lower() for c in t.teams],
                }
                for t in TEAMS
            ],
        }

    def source(self, sync: SyncSettings | None = None, **settings: Any) -> Source:
        return self.built({"path": settings.get("path", self.path)}, sync)

    def refused(self) -> Source:
        """The export is gone by the time it is read (settings refuse a file missing at the
        start, exit 2): a mounted ConfigMap replaced, a share unmounted."""
        gone = self.tmp / f"gone{self.path.suffix}"
        gone.write_bytes(self.path.read_bytes())
        source = self.source(path=gone)
        gone.unlink()
        return source

    def fails_mid_read(self) -> Source:
        doc = self.document()
        doc["groups"][-1]["name"] = ""  # the last group is broken, every user was fine
        broken = self.tmp / "broken.json"
        broken.write_text(json.dumps(doc))
        return self.source(path=broken)


class CsvFile(JsonFile):
    name, kind = "file-csv", "file"
    caps = Capabilities(
        paging=JsonFile.caps.paging,
        user_filter=FILE_HAS_NO_FILTER,
        group_filter=FILE_HAS_NO_FILTER,
        nested_groups=Lacks("a CSV row lists its user's groups by name: no group in a group"),
        empty_groups=Lacks("a CSV group exists only through the rows of its members"),
    )

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.path = tmp / "directory.csv"
        self.path.write_text(self.text())

    @staticmethod
    def text(broken_row: int | None = None) -> str:
        rows = ["id,email,disabled,deleted,groups"]
        for i, p in enumerate(PEOPLE):
            teams = ";".join(t.name for t in TEAMS if p.key in t.members)
            disabled = "maybe" if i == broken_row else str(p.disabled).lower()
            rows.append(f'{p.key},"{p.email}",{disabled},{str(p.deleted).lower()},{teams}')
        return "\n".join(rows) + "\n"

    def fails_mid_read(self) -> Source:
        broken = self.tmp / "broken.csv"
        broken.write_text(self.text(broken_row=len(PEOPLE) - 1))
        return self.source(path=broken)


# -- LDAP ------------------------------------------------------------------------------------


def load_slapd(slapd: Slapd) -> str:
    """The directory in its own subtree of the shared slapd; returns its base DN."""
    base = slapd.new_tree("contract")
    people, groups = f"ou=people,{base}", f"ou=groups,{base}"
    entries: list[tuple[str, Any]] = [
        (f"uid={p.key},{people}", person(p.key, mail=p.email))
        for p in PEOPLE
        if not p.deleted  # OpenLDAP keeps no tombstone of a deleted entry
    ]
    for t in nested_first():
        if t.members or t.teams:  # groupOfNames needs a member
            members = [f"uid={k},{people}" for k in t.members]
            members += [f"cn={c},{groups}" for c in t.teams]
            entries.append(
                (
                    f"cn={t.name},{groups}",
                    {"objectClass": "groupOfNames", "cn": t.name, "member": members},
                )
            )
    slapd.add(entries)
    return base


class OpenLdap(Adapter):
    kind = "ldap"
    caps = Capabilities(
        disabled=Lacks("OpenLDAP has no account-disabled flag (bwdc reads AD's only)"),
        deleted=Lacks("OpenLDAP keeps no tombstone: a deleted entry is simply gone"),
        empty_groups=Lacks("a groupOfNames must have a member (RFC 4519)"),
    )
    user_filter = f"(!(uid={FILTERED_OUT}))"
    group_filter = "(|" + "".join(f"(cn={t})" for t in FILTERED_TEAMS) + ")"

    def __init__(self, slapd: Slapd, base: str, engine: str) -> None:
        self.name = f"ldap-slapd-{engine}"
        self.slapd, self.base, self.engine = slapd, base, engine
        self.secrets = (slapd.bind_password,)

    def source(self, sync: SyncSettings | None = None, **settings: Any) -> Source:
        values: dict[str, Any] = {
            "url": self.slapd.url,
            "bind_dn": self.slapd.bind_dn,
            "bind_password": self.slapd.bind_password,
            "base_dn": self.base,
            "engine": self.engine,
            "ca_file": self.slapd.ca_file,
        }
        return self.built(values | settings, sync)

    def small_pages(self) -> tuple[dict[str, Any], Counter | None]:
        return {"page_size": 1}, None

    def refused(self) -> Source:
        return self.source(bind_password="not-the-password-4711")

    def fails_mid_read(self) -> Source:
        return self.source(group_path="ou=missing")  # users read, then the group search fails


AD_OU = "OU=contract"


def load_samba(ad: SambaAD) -> None:
    """The directory under ``OU=contract`` of the shared Samba DC; the deleted person is
    created and deleted, leaving a tombstone."""
    ou = f"{AD_OU},{ad.base_dn}"
    entries: list[tuple[str, Any]] = [(ou, {"objectClass": "organizationalUnit"})]
    entries += [
        (f"CN={p.key},{ou}", ad_user(p.key, mail=p.email, uac=514 if p.disabled else 512))
        for p in PEOPLE
    ]
    for t in nested_first():
        attrs: dict[str, Any] = {"objectClass": "group"}
        members = [f"CN={k},{ou}" for k in t.members] + [f"CN={c},{ou}" for c in t.teams]
        if members:
            attrs["member"] = members
        entries.append((f"CN={t.name},{ou}", attrs))
    ad.add(entries)
    ad.delete(*(f"CN={p.key},{ou}" for p in PEOPLE if p.deleted))


class ActiveDirectory(OpenLdap):
    caps = Capabilities(deleted="flagged_when_forced")
    user_filter = f"(!(sAMAccountName={FILTERED_OUT}))"

    def __init__(self, ad: SambaAD, engine: str) -> None:
        self.name = f"ldap-ad-{engine}"
        self.ad, self.engine = ad, engine
        self.secrets = (ad.bind_password,)

    def source(self, sync: SyncSettings | None = None, **settings: Any) -> Source:
        values: dict[str, Any] = {
            "url": self.ad.ldaps_url,
            "ca_file": self.ad.ca_file,
            "bind_dn": self.ad.bind_dn,
            "bind_password": self.ad.bind_password,
            "base_dn": self.ad.base_dn,
            "user_path": AD_OU,
            "group_path": AD_OU,
            "engine": self.engine,
            # a tombstone keeps sAMAccountName but not mail: its email is <name><suffix>
            "email_suffix": "@example.com",
        }
        return self.built(values | settings, sync)

    def fails_mid_read(self) -> Source:
        return self.source(group_path="OU=missing")


# -- cloud stand-ins -------------------------------------------------------------------------

CLOUD_USER_FILTER = f"exclude:{FILTERED_OUT}@example.com"
CLOUD_GROUP_FILTER = "include:" + ",".join(t.lower() for t in FILTERED_TEAMS)


def _counting(fake: Any) -> Counter:
    return lambda: len(fake.requests)


class Entra(Adapter):
    name = kind = "entra"
    caps = Capabilities(
        deleted="dropped",  # Graph reports a deleted user by id only, in a delta round
        scopes_users_to_groups=True,
    )
    user_filter = CLOUD_USER_FILTER
    group_filter = CLOUD_GROUP_FILTER

    def __init__(self, tls: TlsFiles) -> None:
        fake = FakeGraph(tls=tls.server_pair)
        self.secret = "contract~secret.value-Q8"
        self.app_id = fake.add_app(secret=self.secret).client_id
        self.fake, self.ca_file = fake, tls.ca_file
        self.secrets = (self.secret,)
        ids: dict[str, str] = {}
        for p in PEOPLE:
            ids[p.key] = fake.add_user(p.address, mail=p.email, enabled=not p.disabled)
        for t in nested_first():
            ids[t.name] = fake.add_group(t.name, [ids[k] for k in t.members + t.teams])
        for p in PEOPLE:
            if p.deleted:
                fake.delete_user(ids[p.key])
        self.ids = ids
        fake.start()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "tenant_id": self.fake.tenant_id,
            "client_id": self.app_id,
            "client_secret": self.secret,
            "authority_url": self.fake.base_url,
            "graph_url": self.fake.base_url,
            "ca_file": self.ca_file,
            "timeout": 10.0,
        }
        return values | overrides

    def source(self, sync: SyncSettings | None = None, **settings: Any) -> Source:
        return self.built(self.settings(**settings), sync)

    def small_pages(self) -> tuple[dict[str, Any], Counter | None]:
        self.fake.max_page = 1
        return {}, _counting(self.fake)

    def refused(self) -> Source:
        self.secrets += ("wrong~secret.value-Z3",)
        return self.source(client_secret="wrong~secret.value-Z3")

    def fails_mid_read(self) -> Source:
        body = {
            "error": {
                "code": "Authorization_RequestDenied",
                "message": "Insufficient privileges to complete the operation.",
            }
        }
        self.fake.fail(f"/v1.0/groups/{self.ids['Infra']}/members", Reply(403, body))
        return self.source()

    def stop(self) -> None:
        self.fake.stop()


class Google(Adapter):
    name = kind = "google"
    caps = Capabilities(scopes_users_to_groups=True)
    user_filter = CLOUD_USER_FILTER
    group_filter = CLOUD_GROUP_FILTER

    def __init__(self, tls: TlsFiles, tmp: Path) -> None:
        admin = PEOPLE[0]  # the service account acts as this person (domain-wide delegation)
        fake = FakeGoogle(tls=tls.server_pair, admin_email=admin.email)
        fake.start()
        self.fake, self.ca_file, self.tmp = fake, tls.ca_file, tmp
        info = service_account_info(fake.token_uri)
        fake.add_service_account(info)
        self.key_file = self._key_file(info, "service-account.json")
        self.secrets = (self._key_body(info),)
        ids = {admin.key: fake.admin_id}
        for p in PEOPLE[1:]:
            ids[p.key] = fake.add_user(p.email, suspended=p.disabled)
        for t in TEAMS:
            ids[t.name] = fake.add_group(t.name)
        for t in TEAMS:
            for member in t.members + t.teams:
                fake.add_member(ids[t.name], ids[member])
        for p in PEOPLE:
            if p.deleted:
                fake.delete_user(ids[p.key])
        self.ids = ids

    @staticmethod
    def _key_body(info: dict[str, Any]) -> str:
        return str(info["private_key"]).splitlines()[1]

    def _key_file(self, info: dict[str, Any], name: str) -> Path:
        path = self.tmp / name
        path.write_text(json.dumps(info))
        return path

    def source(self, sync: SyncSettings | None = None, **settings: Any) -> Source:
        values: dict[str, Any] = {
            "credentials_file": self.key_file,
            "admin_email": PEOPLE[0].email,
            "api_url": self.fake.base_url,
            "ca_file": self.ca_file,
            "timeout": 10.0,
        }
        return self.built(values | settings, sync)

    def small_pages(self) -> tuple[dict[str, Any], Counter | None]:
        self.fake.max_page = 1
        return {}, _counting(self.fake)

    def refused(self) -> Source:
        stranger = service_account_info(
            self.fake.token_uri, client_email="stranger@bwsync-test.iam.gserviceaccount.com"
        )  # a key the customer never delegated to
        self.secrets += (self._key_body(stranger),)
        return self.source(credentials_file=self._key_file(stranger, "stranger.json"))

    def fails_mid_read(self) -> Source:
        body = {
            "error": {
                "code": 403,
                "message": "Not Authorized to access this resource/api",
                "errors": [
                    {
                        "reason": "forbidden",
                        "domain": "global",
                        "message": "Not Authorized to access this resource/api",
                    }
                ],
            }
        }
        self.fake.fail(f"{GOOGLE_API}/groups/{self.ids['Infra']}/members", Reply(403, body))
        return self.source()

    def stop(self) -> None:
        self.fake.stop()


OKTA_STATUS = {(False, False): "ACTIVE", (True, False): "SUSPENDED", (False, True): "DEPROVISIONED"}


class Okta(Adapter):
    name = kind = "okta"
    caps = Capabilities(
        nested_groups=Lacks("Okta groups do not nest"),
        scopes_users_to_groups=True,
    )
    user_filter = CLOUD_USER_FILTER
    group_filter = CLOUD_GROUP_FILTER

    def __init__(self, tls: TlsFiles, key: KeyPair) -> None:
        directory = OktaDirectory()
        for p in PEOPLE:
            directory.add_user(f"00u{p.key}", p.email, OKTA_STATUS[p.disabled, p.deleted])
        for t in TEAMS:
            directory.add_group(f"00g{t.name.lower()}", t.name, [f"00u{k}" for k in t.members])
        self.fake = FakeOkta(tls, directory)
        self.fake.register_client(OKTA_CLIENT_ID, key.public_pem)
        self.fake.start()
        self.tls, self.key = tls, key

    def source(self, sync: SyncSettings | None = None, **settings: Any) -> Source:
        values: dict[str, Any] = {
            "org_url": self.fake.url,
            "ca_file": self.tls.ca_file,
            "client_id": OKTA_CLIENT_ID,
            "private_key_file": self.key.private_file,
        }
        return self.built(values | settings, sync)

    def small_pages(self) -> tuple[dict[str, Any], Counter | None]:
        self.fake.page_sizes = dict.fromkeys(self.fake.page_sizes, (1, 1))
        return {}, _counting(self.fake)

    def refused(self) -> Source:
        self.secrets += ("00NotTheToken-for-this-org",)
        return self.source(client_id=None, private_key_file=None, token=self.secrets[-1])

    def fails_mid_read(self) -> Source:
        body = {
            "errorCode": "E0000006",
            "errorSummary": "You do not have permission to perform the requested action",
            "errorLink": "E0000006",
            "errorId": "oae1",
            "errorCauses": [],
        }
        self.fake.fail("/api/v1/groups/00ginfra/users", status=403, body=body)
        return self.source()

    def stop(self) -> None:
        self.fake.stop()


class OneLogin(Adapter):
    name = kind = "onelogin"
    caps = Capabilities(
        deleted=Lacks("OneLogin has no deleted users (bwdc: deleted is always false)"),
        nested_groups=Lacks("OneLogin roles do not nest"),
        scopes_users_to_groups=True,
    )
    user_filter = CLOUD_USER_FILTER
    group_filter = CLOUD_GROUP_FILTER

    def __init__(self, tls: TlsFiles) -> None:
        directory = OneLoginDirectory()
        role = {t.name: 501 + i for i, t in enumerate(TEAMS)}
        for i, p in enumerate(PEOPLE):
            if p.deleted:
                continue
            roles = [role[t.name] for t in TEAMS if p.key in t.members]
            directory.add_user(101 + i, p.email, p.key, 2 if p.disabled else 1, roles)
        for t in TEAMS:
            directory.add_role(role[t.name], t.name)
        self.fake = FakeOneLogin(tls, directory)
        self.fake.start()
        self.tls = tls
        self.secrets = (self.fake.client_secret,)

    def source(self, sync: SyncSettings | None = None, **settings: Any) -> Source:
        values: dict[str, Any] = {
            "client_id": self.fake.client_id,
            "client_secret": self.fake.client_secret,
            "api_url": self.fake.url,
            "ca_file": self.tls.ca_file,
        }
        return self.built(values | settings, sync)

    def small_pages(self) -> tuple[dict[str, Any], Counter | None]:
        self.fake.page_size = 1
        return {}, _counting(self.fake)

    def refused(self) -> Source:
        self.secrets += ("0" * 40,)
        return self.source(client_secret=self.secrets[-1])

    def fails_mid_read(self) -> Source:
        body = {
            "status": {
                "error": True,
                "code": 403,
                "type": "forbidden",
                "message": "Insufficient permission",
            }
        }
        self.fake.fail("/api/1/roles", status=403, body=body)
        return self.source()

    def stop(self) -> None:
        self.fake.stop()


# -- the table of sources --------------------------------------------------------------------

LDAP_ENGINES = ("python-ldap", "ldap3")
SOURCES = [
    *(pytest.param(f"ldap-slapd-{e}", marks=pytest.mark.slapd) for e in LDAP_ENGINES),
    *(
        pytest.param(f"ldap-ad-{e}", marks=[pytest.mark.samba, pytest.mark.slow])
        for e in LDAP_ENGINES
    ),
    "entra",
    "google",
    "okta",
    "onelogin",
    "file-json",
    "file-csv",
]


def _engine(name: str) -> str:
    engine = name.rsplit("-", 1)[1] if name.endswith("ldap3") else "python-ldap"
    if engine == "python-ldap":
        pytest.importorskip("ldap", reason="python-ldap not installed (bwsync[fast-ldap])")
    return engine


def build(name: str, request: pytest.FixtureRequest, tmp: Path) -> Iterator[Adapter]:
    """The adapter for ``name``, its servers started through the project's fixtures."""
    fixture = request.getfixturevalue
    adapter: Adapter
    if name.startswith("ldap-slapd"):
        adapter = OpenLdap(fixture("slapd"), fixture("contract_slapd_base"), _engine(name))
    elif name.startswith("ldap-ad"):
        adapter = ActiveDirectory(fixture("contract_samba"), _engine(name))
    elif name == "entra":
        fixture("_no_proxies")
        adapter = Entra(fixture("loopback_tls"))
    elif name == "google":
        fixture("_no_proxies")
        adapter = Google(fixture("loopback_tls"), tmp)
    elif name == "okta":
        adapter = Okta(fixture("standin_tls"), fixture("okta_key"))
    elif name == "onelogin":
        adapter = OneLogin(fixture("standin_tls"))
    elif name == "file-json":
        adapter = JsonFile(tmp)
    elif name == "file-csv":
        adapter = CsvFile(tmp)
    else:
        raise ValueError(name)
    try:
        yield adapter
    finally:
        stop = getattr(adapter, "stop", None)
        if stop is not None:
            stop()


__all__ = ["SOURCES", "YES", "Adapter", "Capabilities", "build"]
