"""The scenario of the crash-consistency and fault tests, and the ways to stop bwsync in it.

The scenario is the one of issue 19, smaller: a sync of 2,500 LDAP users in 5 groups, sent as
three import requests (two member batches of 2,000 and 500, then the groups:
``large_import``), into an organization that an earlier sync left behind (``seed_org``):

* 1,000 of the users are members already; 3 of them were revoked since and are back in the
  directory (``restore``); 10 synced members left the directory (``revoke``:
  ``remove_missing``);
* group g0 was synced when groups were known by their DN; the directory now names them by
  ``entryUUID`` (``BWSYNC_LDAP__GROUP_ID_ATTRIBUTE``): g0 is relinked before the import
  (``group_relink``), g1-g4 are created;
* two synced groups left the directory: each is emptied (``group_empty``), one request each.

So a run makes every kind of Bitwarden write, each kind more than once where a kill point
sits between two (imports, revocations, group writes). The safety limits are set at the
counts the plan takes access from exactly (``LOSING``, ``EMPTIED``, and the percentage just
above), as an admin sets them: a run that counted anything twice would stop (exit 6).

A private slapd (``directory``) serves it, through a ``HoldingProxy`` so that a test can stop
bwsync between two pages; the Bitwarden stand-in's pauses stop it at any request;
``StateTarget`` puts every state backend behind a proxy (or, for ``file``, behind the state
file's lock) so that a test can stop it while it writes its state. ``reference`` is what an
uninterrupted run leaves; every case must end there.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from bwsync.config import StateSettings
from bwsync.model import STATUS_CONFIRMED, STATUS_REVOKED
from bwsync.state import StateDocument, StateStore, open_store
from tests.e2e.bwsync_process import PATIENCE, run_bwsync
from tests.fixtures.ldap import Slapd, ldif_entry
from tests.fixtures.proxy import Hold, HoldingProxy
from tests.standins.bitwarden import FakeBitwarden

BASE_DN = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE_DN}"
GROUPS = f"ou=groups,{BASE_DN}"
USERS = 2500
GROUP_COUNT = 5
#: users the organization has already (u0000-u0999), of which ``RESTORED`` are revoked
SYNCED = 1000
RESTORED = 3
#: synced members gone from the directory: revoked
LEAVERS = 10
#: synced groups gone from the directory (old0, old1): emptied
STALE = 2
#: members losing access: the leavers, and the directory users in the stale groups
LOSING = LEAVERS + 10
#: groups emptied
EMPTIED = STALE
PAGE_SIZE = 500
#: what an uninterrupted run plans
PLANNED = {
    "invite": USERS - SYNCED,
    "restore": RESTORED,
    "revoke": LEAVERS,
    "group_relink": 1,
    "group_create": GROUP_COUNT - 1,
    "group_empty": STALE,
}
#: The profile name: the lease holder's prefix.
PROFILE = "crash"


def user_dn(i: int) -> str:
    return f"uid=u{i:04d},{PEOPLE}"


def directory_ldif() -> str:
    """2,500 people; group g<k> holds every user whose number is k modulo 5."""
    top = {"objectClass": ["dcObject", "organization"], "dc": "example", "o": "bwsync tests"}
    parts = [
        ldif_entry(BASE_DN, top),
        ldif_entry(PEOPLE, {"objectClass": "organizationalUnit", "ou": "people"}),
        ldif_entry(GROUPS, {"objectClass": "organizationalUnit", "ou": "groups"}),
    ]
    for i in range(USERS):
        uid = f"u{i:04d}"
        person = {"objectClass": "inetOrgPerson", "uid": uid, "cn": uid, "sn": uid,
                  "mail": f"{uid}@example.com"}  # fmt: skip
        parts.append(ldif_entry(user_dn(i), person))
    for k in range(GROUP_COUNT):
        members = [user_dn(i) for i in range(k, USERS, GROUP_COUNT)]
        group = {"objectClass": "groupOfNames", "cn": f"g{k}", "member": members}
        parts.append(ldif_entry(f"cn=g{k},{GROUPS}", group))
    return "".join(parts)


def start_directory(workdir: Path) -> Slapd:
    workdir.mkdir(parents=True, exist_ok=True)
    ldif = workdir / "directory.ldif"
    ldif.write_text(directory_ldif())
    return Slapd.create(workdir / "slapd", ldif=ldif, base_dn=BASE_DN)


def seed_org(fake: FakeBitwarden) -> None:
    """The organization an earlier sync left (see the module docstring)."""
    synced = [
        fake.add_member(f"u{i:04d}@example.com", external_id=user_dn(i),
                        status=STATUS_REVOKED if i < RESTORED else STATUS_CONFIRMED)
        for i in range(SYNCED)
    ]  # fmt: skip
    leavers = [
        fake.add_member(f"left{i}@example.com", external_id=f"uid=left{i},{PEOPLE}")
        for i in range(LEAVERS)
    ]
    fake.add_group("g0", external_id=f"cn=g0,{GROUPS}", members=synced[::GROUP_COUNT],
                   collections=["c-g0"])  # fmt: skip
    # Ten directory users lose access through the stale groups; old0 has five leavers too.
    fake.add_group("old0", external_id=f"cn=old0,{GROUPS}", members=leavers[:5] + synced[10:15])
    fake.add_group("old1", external_id=f"cn=old1,{GROUPS}", members=synced[15:20])


def base_env(
    slapd: Slapd, ldap_port: int, fake: FakeBitwarden, secrets: Path, metrics: Path
) -> dict[str, str]:
    """Settings of the scenario's bwsync processes, state backend aside."""
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "bwsync_ldap__bind_password").write_text(slapd.bind_password)
    (secrets / "bwsync_bitwarden__client_secret").write_text(fake.client_secret)
    return {
        "BWSYNC_PROFILE": PROFILE,
        "BWSYNC_SECRETS_DIR": str(secrets),
        "BWSYNC_SOURCE": "ldap",
        "BWSYNC_LDAP__URL": f"ldap://127.0.0.1:{ldap_port}",
        "BWSYNC_LDAP__BIND_DN": slapd.bind_dn,
        "BWSYNC_LDAP__BASE_DN": BASE_DN,
        "BWSYNC_LDAP__USER_PATH": "ou=people",
        "BWSYNC_LDAP__GROUP_PATH": "ou=groups",
        "BWSYNC_LDAP__PAGE_SIZE": str(PAGE_SIZE),
        "BWSYNC_LDAP__GROUP_ID_ATTRIBUTE": "entryUUID",
        "BWSYNC_BITWARDEN__SERVER": fake.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake.client_id,
        "BWSYNC_SYNC__LARGE_IMPORT": "true",
        "BWSYNC_SYNC__REMOVE_MISSING": "true",
        # Exactly what the plan takes away (20 of 1,010 synced members: 1.98 %).
        "BWSYNC_SYNC__MAX_REMOVALS": str(LOSING),
        "BWSYNC_SYNC__MAX_REMOVAL_PERCENT": "2",
        "BWSYNC_SYNC__MAX_EMPTIED_GROUPS": str(EMPTIED),
        "BWSYNC_METRICS__TEXTFILE_PATH": str(metrics),
    }


# --------------------------------------------------------------------------------------------
# What the organization holds, and what an uninterrupted run leaves


Org = tuple[tuple[tuple[Any, ...], ...], tuple[tuple[Any, ...], ...]]


def org_of(fake: FakeBitwarden) -> Org:
    """Members (email, externalId, status, type) and groups (name, externalId, members)."""
    members = tuple(sorted((m.email, m.external_id, m.status, m.type) for m in fake.members))
    groups = tuple(
        sorted(
            (g.name, g.external_id, tuple(sorted(fake.group_member_external_ids(g))))
            for g in fake.groups
        )
    )
    return members, groups


@dataclass(frozen=True)
class Reference:
    org: Org
    bodies: tuple[bytes, ...]
    """The import requests, in order: the same bytes for every organization."""

    def hash_for(self, fake: FakeBitwarden) -> str:
        """The hash a complete run remembers with this stand-in (bwdc's: SHA-256 of the API
        URL, the organization id and the bodies, as a JSON array when there are several)."""
        h = hashlib.sha256((fake.base_url + "/api").encode() + fake.org_id.encode())
        h.update(b"[" + b",".join(self.bodies) + b"]")
        return base64.b64encode(h.digest()).decode()


def reference_run(slapd: Slapd, workdir: Path) -> Reference:
    """One uninterrupted run of the scenario, straight to slapd, into a fresh organization."""
    fake = FakeBitwarden()
    fake.start()
    try:
        seed_org(fake)
        env = base_env(slapd, slapd.port, fake, workdir / "secrets", workdir / "bwsync.prom")
        env["BWSYNC_STATE__PATH"] = str(workdir / "state.json")
        code, run = run_bwsync(env)
        assert code == 0, run.log()
        summary = run.summary()
        assert summary["planned"] == PLANNED, summary
        assert summary["applied"] == PLANNED, summary
        bodies = tuple(r.raw for r in fake.requests_to("import"))
        assert len(bodies) == 3
        org = org_of(fake)
        assert len(org[0]) == USERS + LEAVERS and len(org[1]) == GROUP_COUNT + STALE
        assert not [m for m in org[0] if m[2] == STATUS_REVOKED and m[0].startswith("u")]
        (g0,) = [g for g in fake.groups if g.name == "g0"]
        assert g0.external_id != f"cn=g0,{GROUPS}" and len(g0.collections) == 1  # relinked
        reference = Reference(org, bodies)
        doc = StateDocument.from_bytes((workdir / "state.json").read_bytes(), "reference")
        assert doc.hash == reference.hash_for(fake)
    finally:
        fake.stop()
    return reference


# --------------------------------------------------------------------------------------------
# State backends, each with a way to hold bwsync in its state write


class WriteHold(Protocol):
    def wait(self, pid: int) -> None:
        """Until process ``pid`` is in the middle of its state write."""

    def release(self) -> None:
        """Let the write go on (and get to the store)."""

    def drop(self) -> None:
        """Let it fail, as a write cut off does (or, for a killed process, never arrived)."""


@dataclass
class _ProxyHold:
    hold: Hold

    def wait(self, pid: int) -> None:
        self.hold.wait(PATIENCE)

    def release(self) -> None:
        self.hold.release()

    def drop(self) -> None:
        self.hold.drop()


@dataclass
class _LockHold:
    """The file backend writes under an exclusive ``flock`` of ``<state>.lock``: holding it
    keeps bwsync just before its atomic rename; /proc/locks shows it waiting."""

    lock_file: Path
    fd: int = -1

    def __post_init__(self) -> None:
        self.fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def wait(self, pid: int) -> None:
        inode = os.fstat(self.fd).st_ino
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            for line in Path("/proc/locks").read_text().splitlines():
                fields = line.split()
                # "7: -> FLOCK  ADVISORY  WRITE <pid> <major:minor:inode> 0 EOF": a waiter
                if "->" in fields and str(pid) in fields and fields[-3].endswith(f":{inode}"):
                    return
            time.sleep(0.01)  # polling the kernel's lock table, not waiting for luck
        raise AssertionError(f"process {pid} never waited for {self.lock_file}")

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # unlocks
            self.fd = -1

    drop = release


@dataclass
class StateTarget:
    """One state backend as a bwsync process reaches it (``env``), as the test reads it
    (``store``), and how the test holds bwsync in the middle of writing to it."""

    name: str
    env: dict[str, str]
    settings: StateSettings | None
    proxy: HoldingProxy | None = None
    lock_file: Path | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def store(self) -> StateStore | None:
        return open_store(self.settings) if self.settings is not None else None

    def document(self) -> StateDocument | None:
        """The stored document, read as the next run would (it must stay readable)."""
        store = self.store()
        return store.load() if store is not None else None

    def hold_write(self) -> WriteHold:
        if self.proxy is not None:
            return _ProxyHold(self.proxy.hold("up"))
        assert self.lock_file is not None, f"{self.name} has no state write to hold"
        return _LockHold(self.lock_file)


#: Every state backend of the crash tests; ``none`` has no state write to stop in.
BACKENDS = ["file", "configmap", "s3", "gcs", "azure", "none"]
_FIXTURES = {
    "configmap": "kube_in_cluster",
    "s3": "s3_state",
    "gcs": "gcs_state",
    "azure": "azure_state",
}


def _port_of(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    assert port is not None, url
    return port


def state_target(
    name: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    make_proxy: Callable[[int], HoldingProxy],
) -> StateTarget:
    """The backend ``name``, its server (if any) behind a fresh proxy."""
    if name == "none":
        return StateTarget(name, {"BWSYNC_STATE__BACKEND": "none"}, None)
    if name == "file":
        path = tmp_path / "state" / "state.json"
        path.parent.mkdir()
        settings = StateSettings(backend="file", path=path)
        env = {"BWSYNC_STATE__BACKEND": "file", "BWSYNC_STATE__PATH": str(path)}
        return StateTarget(name, env, settings, lock_file=path.with_name("state.json.lock"))
    backend: Any = request.getfixturevalue(_FIXTURES[name])
    env = dict(backend.env())
    settings = backend.settings()
    if name == "configmap":
        upstream = backend.server.port
    elif name == "gcs":
        upstream = _port_of(backend.server.base_url)
    else:
        upstream = _port_of(backend.endpoint)
    proxy = make_proxy(upstream)
    here, there = f"127.0.0.1:{upstream}", f"127.0.0.1:{proxy.port}"
    env = {k: v.replace(here, there) for k, v in env.items()}
    if name == "configmap":
        env["KUBERNETES_SERVICE_PORT"] = str(proxy.port)
    if name == "gcs":
        key = json.loads(Path(env["GOOGLE_SERVICE_ACCOUNT"]).read_text())
        key["gcs_base_url"] = key["gcs_base_url"].replace(here, there)
        proxied = tmp_path / "gcs-key-proxied.json"
        proxied.write_text(json.dumps(key))
        env["GOOGLE_SERVICE_ACCOUNT"] = str(proxied)
    return StateTarget(name, env, settings, proxy=proxy)
