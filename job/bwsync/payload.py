"""The import request(s) exactly as bwdc builds them, and bwdc's change-detection hash.

Compatibility promise (DESIGN.md): for the same directory and options the bytes we POST are the
bytes bwdc POSTs — key order, member order, batching — so the hash bwdc stored in its
``data.json`` (``lastSyncHash``) means the same thing here and a migrated installation does not
re-send an unchanged directory. References: behaviour §3.3 (requests), §4 (hash).

JSON is produced by ``orjson``, whose compact output matches JavaScript's ``JSON.stringify``
for the values we send (strings, booleans, integers, ``null``); a property test holds the two
together, and differences (lone surrogates, which ``JSON.stringify`` escapes and orjson refuses)
are rejected before serialisation with a clear error instead of a crash.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from bwsync.config import SyncSettings, env_name
from bwsync.errors import ConfigError, DirectoryError
from bwsync.model import Group, User

BATCH_SIZE = 2000


@dataclass(frozen=True, slots=True)
class ImportRequest:
    """One POST body, already serialised, with what it holds (for logs and progress)."""

    body: bytes
    members: int
    groups: int
    member_external_ids: tuple[str, ...] = ()
    """The members' externalIds (as text), when the import is split into batches: what the
    run checks against the plan to leave out a batch that changes nothing."""


@dataclass(frozen=True, slots=True)
class Payload:
    requests: list[ImportRequest]
    hash: str
    """bwdc's hash: base64(SHA-256(apiUrl + orgId + json))."""
    api_url: str

    @property
    def legacy_hash(self) -> str:
        """bwdc's older hash without the organization id, accepted when comparing only.
        Computed on demand: only a stored hash that is not ``hash`` is compared with it, and
        hashing 100,000 users' bodies costs 8 ms a time."""
        return _hash(self.api_url.encode(), [r.body for r in self.requests])


def _group(group: Group) -> dict[str, Any]:
    item: dict[str, Any] = {}
    # JavaScript drops undefined properties; a group without a name has none.
    if group.name is not None:
        item["name"] = group.name
    item["externalId"] = group.external_id
    item["memberExternalIds"] = list(group.user_member_external_ids)
    return item


def _request(
    groups: list[dict[str, Any]],
    members: list[dict[str, Any]],
    overwrite: bool,
    large: bool,
    invite: bool,
) -> dict[str, Any]:
    return {
        "groups": groups,
        "members": members,
        "overwriteExisting": overwrite,
        "largeImport": large,
        "inviteUsersAfterProvisioning": invite,
    }


def _chunks(items: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for i in range(0, len(items), BATCH_SIZE):
        yield items[i : i + BATCH_SIZE]


def build_requests(
    users: list[User] | None,
    groups: list[Group] | None,
    sync: SyncSettings,
    *,
    keep: frozenset[str] = frozenset(),
    remove: list[tuple[str | None, str]] | None = None,
) -> list[dict[str, Any]]:
    """bwdc's request builders: one request, or batches of 2,000 when ``large_import``
    is on and users + groups exceed 2,000 (users first, then groups).

    Two additions of ours, both empty by default so the body stays bwdc's: ``keep`` leaves out
    the ``deleted: true`` entry of these externalIds (owners and admins bwsync never removes),
    and ``remove`` appends ``deleted: true`` entries (email, externalId) for members gone from
    the directory when ``remove_missing`` is on in ``remove`` mode.
    """
    users = users or []
    groups = groups or []
    remove_disabled = sync.remove_disabled
    # Written out rather than a helper per user: 100,000 calls cost more than the dicts.
    members = [
        {
            "email": u.email,
            "externalId": u.external_id,
            "deleted": u.deleted or (remove_disabled and u.disabled),
        }
        for u in users
    ]
    if keep:
        members = [m for m in members if not (m["deleted"] and str(m["externalId"]) in keep)]
    for email, ext in remove or ():
        members.append({"email": email, "externalId": ext, "deleted": True})
    group_items = [_group(g) for g in groups]
    if sync.large_import and len(members) + len(groups) > BATCH_SIZE:
        if sync.overwrite_existing:
            raise ConfigError(
                f"{env_name('sync', 'overwrite_existing')}: You cannot use the 'Remove and re-add "
                "organization users during the next sync' option with large imports."
            )
        reqs = [_request([], c, False, True, sync.invite_users) for c in _chunks(members)]
        reqs += [_request(c, [], False, True, sync.invite_users) for c in _chunks(group_items)]
        return reqs
    return [_request(group_items, members, sync.overwrite_existing, False, sync.invite_users)]


def _dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:  # lone surrogates from a badly encoded directory value
        raise DirectoryError(
            f"the directory returned a value that is not valid Unicode ({exc}); fix the entry"
        ) from None


def _hash(prefix: bytes, bodies: list[bytes]) -> str:
    """SHA-256 of ``prefix`` and what bwdc hashes (one request: its body; several: the JSON
    array of them), standard base64 with padding. Fed piece by piece: joining 100,000 users'
    bodies into one string would copy 12 MB for nothing."""
    h = hashlib.sha256(prefix)
    if len(bodies) == 1:
        h.update(bodies[0])
    else:
        h.update(b"[")
        for i, body in enumerate(bodies):
            if i:
                h.update(b",")
            h.update(body)
        h.update(b"]")
    return base64.b64encode(h.digest()).decode()


def build_payload(
    users: list[User] | None,
    groups: list[Group] | None,
    sync: SyncSettings,
    *,
    api_url: str,
    org_id: str,
    keep: frozenset[str] = frozenset(),
    remove: list[tuple[str | None, str]] | None = None,
    member_ids: bool = True,
) -> Payload:
    """Serialise the requests and hash them as bwdc does (one request: that object; several:
    the JSON array of them). ``member_ids=False``: a run that sends every batch anyway does
    not need each batch's externalIds (100,000 strings)."""
    reqs = build_requests(users, groups, sync, keep=keep, remove=remove)
    bodies = [_dumps(r) for r in reqs]
    batched = member_ids and len(reqs) > 1
    return Payload(
        requests=[
            ImportRequest(
                body=b,
                members=len(r["members"]),
                groups=len(r["groups"]),
                member_external_ids=(
                    tuple([str(m["externalId"]) for m in r["members"]]) if batched else ()
                ),
            )
            for b, r in zip(bodies, reqs, strict=True)
        ],
        hash=_hash(api_url.encode() + org_id.encode(), bodies),
        api_url=api_url,
    )


def is_new_hash(payload: Payload, stored: str | None) -> bool:
    """bwdc's rule: new unless the stored hash equals the current or the legacy one."""
    if stored is None or stored == payload.hash:
        return stored is None
    return stored != payload.legacy_hash  # only now worth hashing again
