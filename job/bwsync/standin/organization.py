"""What the Bitwarden stand-in stores: the organization's members and groups, their indexes,
the event log, and how seeding and inspection reach them.

Nothing here speaks HTTP or knows an import request: ``import_command`` changes an
organization the way the server's import does, ``server`` serves it. Ids are version-4-shaped
GUID strings (``new_ids``), unique in the process.

Like a real server's database indexes, the organization keeps members indexed by externalId
and email, and groups by member, so an import request costs in proportion to its own size, not
to the organization's (a 100,000-member directory arrives as 51 batches). Members' ``email``
and ``external_id`` and groups' ``member_ids`` must therefore change only through the
organization (its seeding methods and the stand-in's endpoints), never by assigning the
attributes of its internal objects; ``status``, ``type``, ``user_id`` and the other attributes
are not indexed. (The seeding methods and the inspection properties hand out copies anyway.)
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bwsync.model import (
    STATUS_CONFIRMED,
    STATUS_INVITED,
    STATUS_REVOKED,
    STATUS_STAGED,
    TYPE_ADMIN,
    TYPE_OWNER,
    TYPE_USER,
)

__all__ = ["Group", "Member", "Organization", "members_json", "new_id", "new_ids"]


@dataclass(slots=True)
class Member:
    """One organization membership, as the server stores it.

    ``user_id`` is set when the membership is linked to an account (Accepted, Confirmed, or
    revoked after that); ``has_master_password`` matters for the overwrite guard (§3.4 step 4).
    """

    id: str
    email: str | None
    external_id: str | None = None
    type: int = TYPE_USER
    status: int = STATUS_CONFIRMED
    user_id: str | None = None
    name: str | None = None
    has_master_password: bool = True
    two_factor_enabled: bool = False
    reset_password_enrolled: bool = False
    prior_status: int | None = None
    """Status before a revocation, for restore."""

    def as_json(self, *, collections: list[Any] | None) -> dict[str, Any]:
        """The public API's MemberResponseModel (§5): camelCase, integer enums, nulls kept."""
        return members_json([self], collections)[0]

    @property
    def no_master_password(self) -> bool:
        """True for members the overwrite guard protects: no account yet, or no master password."""
        return self.user_id is None or not self.has_master_password


def members_json(members: Iterable[Member], collections: list[Any] | None) -> list[dict[str, Any]]:
    """``as_json`` of each member, in one comprehension: listing 100,000 members need not
    make 100,000 method calls (and the shape stays defined once)."""
    return [
        {
            "object": "member",
            "id": m.id,
            "userId": m.user_id,
            "name": m.name,
            "email": m.email,
            "twoFactorEnabled": m.two_factor_enabled,
            "status": m.status,
            "type": m.type,
            "externalId": m.external_id,
            "permissions": None,
            "collections": collections,
            "resetPasswordEnrolled": m.reset_password_enrolled,
            "ssoExternalId": None,
        }
        for m in members
    ]


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
"""The integers orjson encodes (it refuses the others)."""


def _plain(m: Member) -> bool:
    """Whether the member's listed values are of the plain types (str, None, bool, an int
    orjson accepts) on which msgspec's encoding is byte for byte orjson's. The stand-in
    stores nothing else; seeding may (``add_member(type=SomeEnum.X)``, a float status ...)."""
    return (
        type(m.id) is str
        and (m.user_id is None or type(m.user_id) is str)
        and (m.name is None or type(m.name) is str)
        and (m.email is None or type(m.email) is str)
        and (m.external_id is None or type(m.external_id) is str)
        and type(m.two_factor_enabled) is bool
        and type(m.reset_password_enrolled) is bool
        and type(m.status) is int
        and type(m.type) is int
        and _INT64_MIN <= m.status <= _UINT64_MAX
        and _INT64_MIN <= m.type <= _UINT64_MAX
    )


@dataclass(slots=True)
class Group:
    """One group; ``member_ids`` are membership ids (not user ids), in insertion order.
    ``collections`` are its collection grants as the API shows them (``{"id", "readOnly",
    "hidePasswords", "manage"}``): only seeding sets them, the import never touches them
    (§3.4), and deleting the group deletes them with it."""

    id: str
    name: str
    external_id: str | None = None
    member_ids: list[str] = field(default_factory=list)
    collections: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The public API's GroupResponseModel (§5); members are not inline."""
        return {
            "object": "group",
            "id": self.id,
            "name": self.name,
            "externalId": self.external_id,
            "collections": [dict(c) for c in self.collections],
        }


class Organization:
    """An organization's state, indexed (see the module docstring), behind one lock: the
    stand-in serves each request in a thread of its own."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._members: dict[str, Member] = {}
        self._groups: dict[str, Group] = {}
        self._collections: set[str] = set()
        """Ids of the organization's collections: those seeded, or granted to a group. Only
        their ids, which is all a group's grants name (the stand-in keeps no items)."""
        self._clear_indexes()
        self._event_types: list[str] = []
        self._event_ids: list[str] = []
        """The event log as two columns (type, member or group id): an import into an empty
        organization logs 100,000 events, and two list extensions cost 8 ms less than as many
        tuples (``events`` pairs them up when asked)."""

    # ---- seeding ---------------------------------------------------------------------------

    def add_member(
        self,
        email: str | None,
        *,
        external_id: str | None = None,
        type: int = TYPE_USER,
        status: int = STATUS_CONFIRMED,
        linked: bool | None = None,
        master_password: bool = True,
        name: str | None = None,
        two_factor: bool = False,
        member_id: str | None = None,
    ) -> Member:
        """Seed a membership. ``linked`` (has an account) defaults to False for Invited and
        Staged, True otherwise; ``master_password=False`` models TDE/Key Connector users.
        A Revoked member restores to Confirmed when linked, Invited otherwise."""
        if linked is None:
            linked = status not in (STATUS_INVITED, STATUS_STAGED)
        prior = None
        if status == STATUS_REVOKED:
            prior = STATUS_CONFIRMED if linked else STATUS_INVITED
        member = Member(
            id=member_id or str(uuid.uuid4()),
            email=email.lower() if email else email,
            external_id=external_id,
            type=type,
            status=status,
            user_id=str(uuid.uuid4()) if linked else None,
            name=name if linked else None,
            has_master_password=master_password if linked else False,
            two_factor_enabled=two_factor,
            prior_status=prior,
        )
        with self._lock:
            self._put_member(member)
        return dataclasses.replace(member)

    def add_owner(self, email: str, **kw: Any) -> Member:
        """Seed a confirmed Owner (import never removes owners)."""
        return self.add_member(email, type=TYPE_OWNER, **kw)

    def add_admin(self, email: str, **kw: Any) -> Member:
        return self.add_member(email, type=TYPE_ADMIN, **kw)

    def remove_member(self, member: Member | str) -> None:
        """Remove a membership (a Member, as ``members`` copies it, or its id) as an admin
        does by hand in the Admin Console."""
        with self._lock:
            stored = self._members[member if isinstance(member, str) else member.id]
            self._delete_member(stored, "OrganizationUser_Removed")

    def remove_group(self, group: Group | str) -> None:
        """Delete a group (by Group, id or external id) as an admin does by hand."""
        with self._lock:
            self._delete_group(self._resolve_group(group))

    def add_group(
        self,
        name: str,
        *,
        external_id: str | None = None,
        members: Iterable[Member | str] = (),
        group_id: str | None = None,
        collections: Iterable[str] = (),
    ) -> Group:
        """Seed a group; ``members`` are Members or membership ids; ``collections`` are ids
        of collections it grants (read, write, no manage: the Admin Console's default)."""
        ids = [m.id if isinstance(m, Member) else m for m in members]
        group = Group(
            id=group_id or str(uuid.uuid4()),
            name=name,
            external_id=external_id,
            member_ids=ids,
            collections=[_grant(c) for c in collections],
        )
        with self._lock:
            self._collections.update(c["id"] for c in group.collections)
            self._note_id(group.id)
            old = self._groups.get(group.id)
            if old is not None:
                self._set_group_members(old, [])
            self._groups[group.id] = group
            if self._groups_of is not None:
                for i in ids:
                    self._groups_of.setdefault(i, {})[group.id] = None
        return self._copy(group)

    def grant_collection(self, group: Group | str, collection_id: str) -> None:
        """Give a group (by Group, id or external id) access to a collection, as an admin does
        in the Admin Console: the grant a stale group keeps when emptied, loses when deleted."""
        with self._lock:
            self._collections.add(collection_id)
            self._resolve_group(group).collections.append(_grant(collection_id))

    def add_collection(self, collection_id: str) -> None:
        """Seed a collection no group is granted (``PUT /public/groups/{id}`` may grant it)."""
        with self._lock:
            self._collections.add(collection_id)

    @staticmethod
    def _copy(group: Group) -> Group:
        return dataclasses.replace(
            group,
            member_ids=list(group.member_ids),
            collections=[dict(c) for c in group.collections],
        )

    def reset(self) -> None:
        """Forget members, groups and events (the server's ``reset`` forgets its tokens and
        requests too)."""
        with self._lock:
            self._members.clear()
            self._groups.clear()
            self._collections.clear()
            self._clear_indexes()
            self._event_types.clear()
            self._event_ids.clear()

    # ---- indexes ---------------------------------------------------------------------------

    def _clear_indexes(self) -> None:
        """Empty indexes over ``_members`` and ``_groups``, which only ``_put_member``,
        ``_put_new_members``, ``_delete_member``, ``_set_external_id``, ``_set_group_members``
        and ``add_group`` change (the class docstring says why they exist)."""
        self._order = itertools.count()
        self._seq: dict[str, int] | None = None
        """Member id -> its rank in ``_members`` (dict order), to break ties like a scan; built
        when first needed (``_ranks``), as an organization whose members' emails and
        externalIds are all distinct never has a tie to break."""
        self._by_ext: dict[str, list[Member]] = {}
        """Non-empty external_id -> members having it (more than one: a broken org)."""
        self._ext_epoch = next(_epochs)
        """Changes whenever ``_by_ext`` does (``_index_ext``, ``_unindex_ext``,
        ``_put_new_members``), so that ``_resolved`` knows when it still holds."""
        self._resolved: dict[str, tuple[int, list[str | None], list[str]]] = {}
        """Group id -> (``_ext_epoch``, the ``memberExternalIds`` an import sent for it, the
        member ids they resolved to then). Resolving is the group step's cost (a lookup in
        ``_by_ext`` and a member per id: 14 ms for 200 groups of 50 in an organization of
        100,000); unless ``_by_ext`` changed since, the same ids resolve alike, so a sync in
        step resolves each group once, not on every import (2 ms)."""
        self._ext_dups: set[str] = set()
        """Keys of ``_by_ext`` held by more than one member."""
        self._unlinked: dict[str | None, list[Member]] = {}
        """Stored email -> members whose external_id is blank (None or whitespace)."""
        self._by_email: dict[str, list[Member]] = {}
        """Lower-cased email ("" for None) -> members having it."""
        self._groups_of: dict[str, dict[str, None]] | None = None
        """Member id -> ids of the groups whose ``member_ids`` list it; built when first
        needed (``_member_groups``), as most organizations never lose a member."""
        self._canonical_ids = True
        """Every member and group id is a canonical GUID string (``_find``'s fast path)."""
        self._plain_members = True
        """Every member's listed values are ``_plain`` (the list endpoint's fast path). Only
        seeding can store other values (``_put_member`` notes it), and the public API hands
        out copies of members, never the stored objects, so nothing else can."""

    def _note_id(self, key: str) -> None:
        if self._canonical_ids:
            try:
                self._canonical_ids = str(uuid.UUID(key)) == key
            except ValueError:
                self._canonical_ids = False

    def _put_member(self, member: Member, *, canonical: bool = False) -> None:
        """Add (or replace, keeping its place, as a dict does) a member, indexed;
        ``canonical``: its id comes from ``_new_id``."""
        old = self._members.get(member.id)
        if old is None:
            if self._seq is not None:
                self._seq[member.id] = next(self._order)
            if not canonical:
                self._note_id(member.id)
        else:
            self._unindex(old)
        self._members[member.id] = member
        if self._plain_members and not _plain(member):
            self._plain_members = False
        self._index_ext(member)
        key = (member.email or "").lower()
        same = self._by_email.get(key)
        if same is None:
            self._by_email[key] = [member]
        else:
            same.append(member)

    def _put_new_members(self, members: list[Member]) -> None:
        """Add members created with ``new_ids`` whose lower-cased emails are new to the
        organization and to one another, as ``_put_member(member, canonical=True)`` would one by
        one, but with dict updates: those calls were a third of an import into an empty
        organization. The same indexes result, as each id and email is a new key."""
        if not members:  # (not a change of _by_ext: see _ext_epoch)
            return
        ids = [m.id for m in members]
        self._members.update(zip(ids, members, strict=True))
        if self._seq is not None:  # ids first: zip takes no rank it would lose
            self._seq.update(zip(ids, self._order, strict=False))
        self._by_email.update([(m.email or "", [m]) for m in members])
        self._index_ext(*members)

    def _unindex(self, member: Member) -> None:
        self._unindex_ext(member)
        key = (member.email or "").lower()
        same = self._by_email[key]
        _remove_identical(same, member)
        if not same:
            del self._by_email[key]

    def _index_ext(self, *members: Member) -> None:
        """Index members by externalId (without one: as unlinked, by email)."""
        self._ext_epoch = next(_epochs)
        by_ext, unlinked = self._by_ext, self._unlinked
        for member in members:
            x = member.external_id
            if x:
                same = by_ext.get(x)
                if same is None:
                    by_ext[x] = [member]
                else:
                    same.append(member)
                    self._ext_dups.add(x)
            if x is None or not x.strip():
                unlinked.setdefault(member.email, []).append(member)

    def _unindex_ext(self, member: Member) -> None:
        self._ext_epoch = next(_epochs)
        x = member.external_id
        if x:
            same = self._by_ext[x]
            _remove_identical(same, member)
            if not same:
                del self._by_ext[x]
            if len(same) <= 1:
                self._ext_dups.discard(x)
        if x is None or not x.strip():
            unlinked = self._unlinked[member.email]
            _remove_identical(unlinked, member)
            if not unlinked:
                del self._unlinked[member.email]

    def _set_external_id(self, member: Member, external_id: str | None) -> None:
        if member.external_id == external_id:  # re-indexing would only move it last in lists
            return
        self._unindex_ext(member)
        member.external_id = external_id
        self._index_ext(member)

    def _first(self, members: list[Member]) -> Member:
        """The one of these members a scan of ``_members`` meets first."""
        if len(members) == 1:
            return members[0]
        seq = self._ranks()
        return min(members, key=lambda m: seq[m.id])

    def _ranks(self) -> dict[str, int]:
        """``_seq``, built now if it was not."""
        if self._seq is None:
            self._seq = dict(zip(self._members, self._order, strict=False))  # members first
        return self._seq

    def _linked(self, external_id: str | None) -> Member | None:
        """The official import's externalId -> member map (§3.4 step 2, updated by steps
        3-6): non-blank externalIds only; the member given it last when several share it."""
        if external_id is None:
            return None
        same = self._by_ext.get(external_id)
        if same is None or not external_id.strip():
            return None
        return same[-1]

    def _member_groups(self) -> dict[str, dict[str, None]]:
        if self._groups_of is None:
            self._groups_of = {}
            for g in self._groups.values():
                for i in g.member_ids:
                    self._groups_of.setdefault(i, {})[g.id] = None
        return self._groups_of

    def _set_group_members(self, group: Group, ids: list[str]) -> None:
        index = self._groups_of
        if index is not None:
            old, new = set(group.member_ids), set(ids)
            for i in old - new:
                groups = index[i]
                del groups[group.id]
                if not groups:
                    del index[i]
            for i in new - old:
                index.setdefault(i, {})[group.id] = None
        group.member_ids = ids

    # ---- inspection ------------------------------------------------------------------------

    @property
    def members(self) -> list[Member]:
        """Copies of every membership, in creation order."""
        with self._lock:
            return [dataclasses.replace(m) for m in self._members.values()]

    @property
    def groups(self) -> list[Group]:
        with self._lock:
            return [self._copy(g) for g in self._groups.values()]

    def member(self, member_id: str) -> Member | None:
        with self._lock:
            m = self._members.get(member_id)
            return dataclasses.replace(m) if m else None

    def find_member(
        self, *, email: str | None = None, external_id: str | None = None
    ) -> Member | None:
        """The first member with this (case-insensitive) email and/or this external id."""
        for m in self.members:
            if email is not None and (m.email or "").lower() != email.lower():
                continue
            if external_id is not None and m.external_id != external_id:
                continue
            return m
        return None

    def find_group(
        self, *, external_id: str | None = None, name: str | None = None
    ) -> Group | None:
        for g in self.groups:
            if external_id is not None and g.external_id != external_id:
                continue
            if name is not None and g.name != name:
                continue
            return g
        return None

    def group_member_emails(self, group: Group | str) -> set[str]:
        """Emails of a group's members (by Group, id or external id): handy in assertions."""
        with self._lock:
            g = self._resolve_group(group)
            return {self._members[i].email or "" for i in g.member_ids if i in self._members}

    def group_member_external_ids(self, group: Group | str) -> set[str]:
        with self._lock:
            g = self._resolve_group(group)
            return {self._members[i].external_id or "" for i in g.member_ids if i in self._members}

    def _resolve_group(self, group: Group | str) -> Group:
        gid = group.id if isinstance(group, Group) else group
        if gid in self._groups:
            return self._groups[gid]
        for g in self._groups.values():
            if g.external_id == gid:
                return g
        raise KeyError(gid)

    @property
    def events(self) -> list[tuple[str, str]]:
        """Event log entries ``(event type, member or group id)``, as the server would log them
        (``OrganizationUser_Invited``, ``_Removed``, ``_Revoked``, ``Group_Created`` …)."""
        with self._lock:
            return list(zip(self._event_types, self._event_ids, strict=True))

    def _log(self, event: str, subject_id: str) -> None:
        """Log one event (see ``events``)."""
        self._event_types.append(event)
        self._event_ids.append(subject_id)

    def _confirmed_owners_except(self, member_id: str) -> int:
        return sum(
            1
            for m in self._members.values()
            if m.id != member_id and m.type == TYPE_OWNER and m.status == STATUS_CONFIRMED
        )

    @staticmethod
    def _restore(member: Member) -> None:
        if member.prior_status is not None and member.prior_status != STATUS_REVOKED:
            member.status = member.prior_status
        else:
            member.status = STATUS_CONFIRMED if member.user_id else STATUS_INVITED
        member.prior_status = None

    def _replace_group_members(self, group: Group, ids: list[str]) -> None:
        """``GroupUser_UpdateUsers``: the group lists exactly ``ids`` afterwards (members
        already in it keep their place, new ones follow in request order)."""
        wanted = dict.fromkeys(ids)
        kept = [i for i in group.member_ids if i in wanted]
        held = set(kept)
        self._set_group_members(group, kept + [i for i in wanted if i not in held])

    def _update_group(
        self,
        group: Group,
        name: str,
        external_id: str | None,
        collections: list[dict[str, Any]] | None,
    ) -> None:
        """``Group_Update`` (the row only: name, externalId), or with ``collections``
        ``Group_UpdateWithCollections`` (the row, and the grants replaced by these)."""
        group.name = name
        group.external_id = external_id
        if collections is not None:
            group.collections = [dict(c) for c in collections]
        self._log("Group_Updated", group.id)

    def _delete_group(self, group: Group) -> None:
        """``Group_DeleteById``: the group goes, and with it (ON DELETE CASCADE) its
        memberships and collection grants."""
        self._set_group_members(group, [])
        del self._groups[group.id]
        self._resolved.pop(group.id, None)

    def _delete_member(self, member: Member, event: str) -> None:
        if self._members.get(member.id) is member:
            del self._members[member.id]
            if self._seq is not None:
                del self._seq[member.id]
            self._unindex(member)
        index = self._member_groups()
        groups = index.get(member.id)
        if groups:  # each group listing it loses one mention (a group may list it twice)
            for gid in list(groups):
                ids = self._groups[gid].member_ids
                i = ids.index(member.id)
                del ids[i]
                if member.id not in itertools.islice(ids, i, None):
                    del groups[gid]
            if not groups:
                del index[member.id]
        self._log(event, member.id)


def _grant(collection_id: str) -> dict[str, Any]:
    """One AssociationWithPermissionsResponseModel (§5)."""
    return {"id": collection_id, "readOnly": False, "hidePasswords": False, "manage": False}


def _remove_identical(items: list[Member], member: Member) -> None:
    """Remove this very object (``list.remove`` compares fields: copies are equal)."""
    for i, m in enumerate(items):
        if m is member:
            del items[i]
            return
    raise ValueError(member.id)


def _random_id_head() -> str:
    """``xxxxxxxx-xxxx-4xxx-yxxx-``: the first four groups of a version-4 UUID, random."""
    h = f"{random.getrandbits(76):019x}"
    return f"{h[:8]}-{h[8:12]}-4{h[12:15]}-{'89ab'[int(h[15], 16) & 3]}{h[16:19]}-"


_ID_HEAD = _random_id_head()
_epochs = itertools.count()
"""Values of ``FakeBitwarden._ext_epoch``, never twice the same."""
_id_counter = itertools.count(random.getrandbits(40))
_ID_TAILS = [f"{i:03x}" for i in range(4096)]
"""The last 3 hex digits of every 12-digit last group, to build ids by concatenation."""


def new_ids(n: int) -> list[str]:
    """``n`` version-4-shaped UUID strings, unique in this process: a random head drawn once
    and a counter as the last group. Drawing 128 random bits per id was a fifth of the
    stand-in's time when an import creates 100,000 members (ids need be unique, not
    unpredictable), and formatting each number a tenth: the last group is 9 digits formatted
    once per 4,096 ids and 3 from a table."""
    numbers = list(itertools.islice(_id_counter, n))  # consecutive: taken in one C call
    ids: list[str] = []
    if numbers:
        start, stop = numbers[0], numbers[-1] + 1
        for block in range(start >> 12, ((stop - 1) >> 12) + 1):
            base = block << 12
            tails = _ID_TAILS[max(start - base, 0) : min(stop - base, 4096)]
            ids += map(f"{_ID_HEAD}{block & 0xFFFFFFFFF:09x}".__add__, tails)
    return ids


def new_id() -> str:
    """One of ``new_ids``."""
    return new_ids(1)[0]
