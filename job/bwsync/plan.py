"""The plan: what a sync will change in the organization and why, and the safety check.

A pure function (ldap2pg's inspect → diff → apply): the wanted state (the normalised directory)
and the actual state (the organization's members and groups, read through the list endpoints)
go in, a list of ``Change`` comes out, each with a human reason. It predicts what the official
server's import algorithm (contract §3.4) will do with our payload, plus what bwsync does on its
own through the member endpoints (revoke, restore).

Where the server has no list endpoints (Vaultwarden) the organization cannot be read: the plan
is then made against bwsync's memory of the members it synced there (``bwsync.memory``, matched
by email as Vaultwarden matches them), see ``_plan_unlisted``; without such a memory (a first
run) it lists what will be *sent* and says so. bwdc never shows either.

Protection rules, whatever the settings: the members of ``BWSYNC_SYNC__PROTECTED_MEMBERS`` are
never sent as deleted, revoked or removed, on every server; where bwsync can read member types,
owners and admins are never removed or revoked by bwsync either (their ``deleted: true`` entries
are left out of the import), and members without an externalId (added by hand) are never
touched, except by the server itself: it replaces a synced group's membership, and under
``overwrite_existing`` it removes every synced member but the owners that has no active entry,
admins included. The plan shows those removals too, and the safety limits count them; a
protected member the server would remove is a hazard, and the run applies nothing.

Groups: the import never removes one, so under ``remove_missing`` a synced group (with an
externalId) the directory no longer returns is emptied or deleted by bwsync through the group
endpoints (``stale_groups``, ``_plan_stale``); groups without an externalId never are. Its
members lose access, and each member losing access, by any route, counts once against the
safety limits (``Plan.members_losing_access``).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from bwsync.changes import (
    REMOVALS,
    STALE_GROUP_ACTIONS,
    Change,
    Reason,
)
from bwsync.config import SyncSettings, env_name
from bwsync.errors import ConfigError, SafetyLimitError
from bwsync.memory import Memory
from bwsync.model import (
    STATUS_REVOKED,
    TYPE_ADMIN,
    TYPE_OWNER,
    Directory,
    ExternalId,
    OrgGroup,
    OrgMember,
    Rejected,
    User,
)


@dataclass(slots=True)
class OrgSnapshot:
    """The organization as the list endpoints show it."""

    members: list[OrgMember]
    groups: list[OrgGroup]
    group_member_ids: dict[str, list[str]] | None = None
    """Group id → member ids; read only with ``--detail`` (one request per group)."""
    member_ids_read: dict[str, list[str]] = field(default_factory=dict)
    """Group id → member ids of the groups ``groups_to_read`` names (stale groups, and the
    groups the import may clear), read after the fetch without ``--detail`` too: the plan
    counts who loses access through them."""


@dataclass(slots=True)
class Plan:
    changes: list[Change] = field(default_factory=list)
    org_known: bool = True
    """False when the server has no list endpoints: the plan is what will be sent."""
    synced_members: int = 0
    """Members carrying an externalId, the base of the percentage limit."""
    protected_external_ids: set[str] = field(default_factory=set)
    """``deleted: true`` entries left out of the import: the member is an owner/admin or in
    ``BWSYNC_SYNC__PROTECTED_MEMBERS``."""
    send_deleted: list[tuple[str | None, str]] = field(default_factory=list)
    """``deleted: true`` entries (email, externalId) the import carries beyond the directory's:
    members gone from the directory (``remove_missing``), and on a server without list
    endpoints the members revoked earlier that ``overwrite_existing`` must not delete."""
    hazards: list[str] = field(default_factory=list)
    """What the import would break beyond this run: the safety check refuses it (exit 6)."""
    notes: list[str] = field(default_factory=list)
    memory: Memory | None = None
    """Without list endpoints: the memory of synced members once this plan is applied (what
    a successful run stores); ``None`` where the server can be read."""
    emptied_groups: dict[str, str] = field(default_factory=dict)
    """Group id → name of every synced group this plan empties or deletes: stale ones
    (deleted ones with nobody in them included) and those the import clears. What
    ``max_emptied_groups`` counts."""
    group_losses: dict[str, list[str]] = field(default_factory=dict)
    """Group id → ids of the members losing the access it grants: stale groups
    (``_plan_stale``), and synced groups the import clears (``_plan_cleared``)."""

    def counts(self) -> dict[str, int]:
        return dict(Counter(c.action for c in self.changes))

    @property
    def removals(self) -> int:
        return sum(1 for c in self.changes if c.action in REMOVALS)

    @property
    def members_losing_access(self) -> int:
        """Members this plan takes access from, each counted once however many ways: removed
        or revoked, or a member of one or more groups that stop granting it (stale, or
        cleared by the import). What the safety limits count."""
        if not self.group_losses:
            return self.removals
        who = {
            c.member_id or c.external_id or c.email for c in self.changes if c.action in REMOVALS
        }
        for ids in self.group_losses.values():
            who.update(ids)
        return len(who)

    def of(self, *actions: str) -> list[Change]:
        return [c for c in self.changes if c.action in actions]


def _s(value: ExternalId) -> str:
    return str(value)


def make_plan(
    directory: Directory,
    org: OrgSnapshot | None,
    sync: SyncSettings,
    *,
    sent_members: int = 0,
    sent_groups: int = 0,
    memory: Memory | None = None,
    scope: str = "",
) -> Plan:
    """Predict the effect of importing ``directory`` into ``org`` with these settings.

    ``org`` is ``None`` where the server has no list endpoints: the plan is then made against
    ``memory``, the members synced before to the organization ``scope`` names (``None``: no
    memory yet). Raises ``ConfigError`` for settings such a server cannot honour safely, and
    for ``overwrite_existing`` with user sync off on any server."""
    if sync.overwrite_existing and directory.users is None:
        raise ConfigError(
            f"{env_name('sync', 'overwrite_existing')}=true with {env_name('sync', 'users')}"
            "=false: the import then carries no members, and the server removes every member it "
            "carries no entry for, so every synced member would go. Turn OVERWRITE_EXISTING off, "
            "or USERS on"
        )
    if org is None:
        plan = Plan(org_known=False)
        _plan_unlisted(plan, directory, sync, memory, scope)
        plan.notes.insert(
            0,
            "the server has no member list endpoints (Vaultwarden?): "
            + (
                f"the plan is made against bwsync's memory of the {len(memory.members)} "
                "members it synced there"
                if memory is not None
                else "showing what will be sent"
            )
            + f" ({sent_members} members, {sent_groups} groups)",
        )
        if sync.remove_missing and directory.groups is not None:
            plan.notes.append(NO_GROUP_ENDPOINTS)
        return plan
    plan = Plan()
    by_ext, linked, invited = _plan_members(plan, directory, org, sync)
    if directory.groups is not None:
        _plan_groups(
            plan,
            directory,
            org,
            by_ext=by_ext,
            linked=linked,
            invited=invited,
            relinks=relinks(directory, org),
        )
        if sync.remove_missing:
            _plan_stale(plan, directory, org, sync)
    return plan


def _plan_members(  # noqa: PLR0915 - the per-user loop is inlined on purpose
    plan: Plan, directory: Directory, org: OrgSnapshot, sync: SyncSettings
) -> tuple[dict[str, OrgMember], dict[str, OrgMember], set[str]]:
    """Member changes; returns the indexes the group part needs (by externalId, the members
    about to be linked by email, the externalIds about to be invited)."""
    by_ext = {m.external_id: m for m in org.members if m.external_id}

    # Needed only for a directory user the organization does not know by externalId; an
    # organization in step never asks, and 100,000 lower-cased emails are not free.
    @functools.cache
    def by_email() -> dict[str, OrgMember]:
        found: dict[str, OrgMember] = {}
        for m in org.members:
            if m.email:
                found.setdefault(m.email.lower(), m)
        return found

    # Members without an externalId, by email: §3.4 step 5 gives each the externalId of the
    # active entry with its email, even one that another member already holds.
    unlinked = {m.email.lower(): m for m in org.members if not m.external_id and m.email}
    plan.synced_members = len(by_ext)
    changes = plan.changes
    # Entries the plan expects the server to skip for an email another member holds: the
    # server invites them after all when that member is removed by this same import.
    owner_skips: list[tuple[int, str]] = []

    linked: dict[str, OrgMember] = {}
    if directory.users is not None:
        users = directory.users
        revoked, restore_revoked = STATUS_REVOKED, sync.removal_mode == "revoke"
        new: Reason = "new" if sync.invite_users else "new_staged"
        remove_disabled = sync.remove_disabled
        member_of = by_ext.get
        any_gone = False
        for u in users:
            ext = u.external_id
            existing = member_of(ext)
            gone = u.deleted or (remove_disabled and u.disabled)
            if (
                existing is not None
                and not gone
                and (not unlinked or (u.email or "") not in unlinked)
                and (existing.status != revoked or not restore_revoked)
            ):
                continue  # in step: the one test most users of a scheduled run need
            email = u.email or ""
            if gone:
                any_gone = True
                if existing is not None:
                    _plan_gone(plan, email, ext, existing, deleted=u.deleted, sync=sync)
                continue
            if existing is not None:
                twin = unlinked.get(email) if unlinked else None
                if twin is not None:
                    _second_holder(plan, email, ext, existing, twin)
                if existing.status == revoked and restore_revoked:
                    changes.append(Change("restore", email, ext, "back", existing.id))
                continue
            other = by_email().get(email)
            if other is not None and not other.external_id:
                linked[ext] = other
                changes.append(Change("link", email, ext, "same_email", other.id))
            elif other is not None:
                owner_skips.append((len(changes), other.external_id or ""))
                changes.append(
                    Change(
                        "skip",
                        email,
                        ext,
                        "email_taken",
                        other.id,
                        about=(other.external_id or "",),
                    )
                )
            else:
                changes.append(Change("invite", email, ext, new))

        seen_ext, active_ext = _external_ids(
            users, remove_disabled=remove_disabled, any_gone=any_gone
        )
        left_out_gone: set[str] = set()
        if directory.rejected:
            seen_ext, active_ext, left_out_gone = _left_out(
                plan, directory.rejected, by_ext, (seen_ext, active_ext), sync
            )
        changes.extend(
            _missing(by_ext, active_ext, seen_ext, sync, plan.hazards, left_out_gone=left_out_gone)
        )
        plan.send_deleted = [
            (c.email, c.external_id or "")
            for c in changes
            if c.action == "remove" and c.reason == "gone"
        ]
        if owner_skips:
            _invite_freed_emails(changes, owner_skips)

    invited = {c.external_id for c in changes if c.action == "invite" and c.external_id}
    return by_ext, linked, invited


def _external_ids(
    users: list[User], *, remove_disabled: bool, any_gone: bool
) -> tuple[set[str], set[str]]:
    """(every user's externalId, those of the users not going out as deleted): taken in bulk
    after the plan's loop rather than two set.add per user in it."""
    seen = {u.external_id for u in users}
    if not any_gone:
        return seen, seen
    active = {u.external_id for u in users if not (u.deleted or (remove_disabled and u.disabled))}
    return seen, active


def _is_gone(entry: User | Rejected, sync: SyncSettings) -> bool:
    """Whether this entry goes out as ``deleted: true`` (or would, had its email been sent)."""
    return entry.deleted or (sync.remove_disabled and entry.disabled)


def _left_out(
    plan: Plan,
    rejected: list[Rejected],
    by_ext: dict[str, OrgMember],
    seen_active: tuple[set[str], set[str]],
    sync: SyncSettings,
) -> tuple[set[str], set[str], set[str]]:
    """The entries left out of the import for their email are still in the directory: their
    members are neither gone (``remove_missing``) nor deleted from it, so they count as seen,
    and as active unless the entry is deleted or disabled. Returns (seen, active, externalIds
    of the deleted/disabled ones). Under ``overwrite_existing`` the server removes the member
    of an active one all the same (its externalId is missing from the import): a hazard."""
    seen = seen_active[0] | {r.external_id for r in rejected}
    gone = {r.external_id for r in rejected if _is_gone(r, sync)}
    kept = [r for r in rejected if r.external_id not in gone]
    active = seen_active[1] | {r.external_id for r in kept}
    if sync.overwrite_existing:
        for r in kept:
            m = by_ext.get(r.external_id)
            if m is not None and m.type != TYPE_OWNER:
                plan.hazards.append(
                    f"directory entry {r.entry} ({r.email}) is left out of the import for its "
                    f"email, and overwrite_existing makes the server remove member "
                    f"{m.email or m.id}, which carries its externalId: fix the entry's email "
                    f"in the directory, or turn {env_name('sync', 'overwrite_existing')} off"
                )
    return seen, active, gone


def _plan_gone(
    plan: Plan, email: str, ext: str, existing: OrgMember, *, deleted: bool, sync: SyncSettings
) -> None:
    """A member whose entry goes out as ``deleted: true``: the server removes it whatever its
    status, revoked included (§3.4 step 3), except owners, admins and protected members, whose
    entry bwsync leaves out of the import. Under ``overwrite_existing`` an admin is removed all
    the same: not an active entry, it is one of step 4's candidates, which spares only owners
    (for a protected member that is a hazard: the run applies nothing)."""
    if _is_protected(existing.email or email, sync):
        plan.protected_external_ids.add(ext)
        if sync.overwrite_existing and existing.type != TYPE_OWNER:
            plan.hazards.append(_overwrite_hazard(existing.email or email))
        why: Reason = "deleted_protected" if deleted else "disabled_protected"
        plan.changes.append(Change("skip", email, ext, why, existing.id))
        return
    if existing.type in (TYPE_OWNER, TYPE_ADMIN):
        plan.protected_external_ids.add(ext)
        if existing.type == TYPE_ADMIN and sync.overwrite_existing:
            why = "deleted_admin_overwritten" if deleted else "disabled_admin_overwritten"
            plan.changes.append(Change("remove", email, ext, why, existing.id))
            return
        why = "deleted_owner_or_admin" if deleted else "disabled_owner_or_admin"
        plan.changes.append(Change("skip", email, ext, why, existing.id))
    else:
        why = "deleted" if deleted else "disabled"
        plan.changes.append(Change("remove", email, ext, why, existing.id))


def _second_holder(plan: Plan, email: str, ext: str, holder: OrgMember, twin: OrgMember) -> None:
    """§3.4 step 5 links a member added by hand (``twin``) to an entry by email even when the
    entry's externalId already belongs to ``holder``: a hazard, refused by the safety check."""
    plan.changes.append(Change("link", email, ext, "second_holder", twin.id))
    plan.hazards.append(
        f"{email}: the server would give externalId {ext}, which member "
        f"{holder.email or holder.id} already has, to the member added by hand with this email; "
        "two members with one externalId make every later import fail (HTTP 500). Remove the "
        "hand-added member or change the email in the directory"
    )


def _invite_freed_emails(changes: list[Change], owner_skips: list[tuple[int, str]]) -> None:
    """A skip for an email held by a member this import removes becomes an invite: removals
    run before invitations (§3.4 steps 3-4, then 6), so the email is free by then."""
    removed = {c.external_id for c in changes if c.action == "remove"}
    for i, owner in owner_skips:
        if owner in removed:
            c = changes[i]
            changes[i] = Change("invite", c.email, c.external_id, "new_email_freed")


def _missing(
    by_ext: dict[str, OrgMember],
    active: set[str],
    seen: set[str],
    sync: SyncSettings,
    hazards: list[str],
    *,
    left_out_gone: set[str] | None = None,
) -> list[Change]:
    """Synced members without an active entry: removed by the server under overwrite (§3.4
    step 4 spares owners only; members with a deleted entry were planned by ``_plan_gone``),
    or revoked/removed by bwsync under ``remove_missing``, which leaves admins alone too.
    Protected members are left alone; one the server would remove is added to ``hazards``.
    ``left_out_gone``: deleted or disabled entries left out for their email (seen, but not
    planned by ``_plan_gone``): overwrite removes their members, nothing else does."""
    out: list[Change] = []
    absent = by_ext.keys() - active  # an organization in step: empty, and no loop at all
    if not absent:
        return out
    protected = sync.protected
    for ext, m in by_ext.items():  # in the organization's order
        if ext not in absent or m.type == TYPE_OWNER:
            continue
        who = m.email
        if protected and (m.email or "").lower() in protected:
            unplanned = ext not in seen or (left_out_gone is not None and ext in left_out_gone)
            if sync.overwrite_existing and unplanned:
                hazards.append(_overwrite_hazard(who or ext))
            elif sync.remove_missing and ext not in seen:
                out.append(Change("skip", who, ext, "gone_protected", m.id))
            continue
        if sync.overwrite_existing:
            if left_out_gone and ext in left_out_gone:
                out.append(Change("remove", who, ext, "left_out_overwritten", m.id))
                continue
            if ext in seen:
                continue  # a deleted or disabled entry: planned once, by _plan_gone
            why: Reason = (
                "absent_admin_overwritten" if m.type == TYPE_ADMIN else "absent_overwritten"
            )
            out.append(Change("remove", who, ext, why, m.id))
        elif m.type == TYPE_ADMIN:
            continue
        elif sync.remove_missing and ext not in seen:
            if sync.removal_mode == "remove":
                out.append(Change("remove", who, ext, "gone", m.id))
            elif m.status != STATUS_REVOKED:
                out.append(Change("revoke", who, ext, "gone", m.id))
    return out


def _is_protected(email: str, sync: SyncSettings) -> bool:
    protected = sync.protected
    return bool(protected) and email.lower() in protected


def _overwrite_hazard(email: str) -> str:
    return (
        f"{email} is in {env_name('sync', 'protected_members')}, but has no active entry in "
        "this import, so overwrite_existing makes the server remove it: put it in the "
        f"directory, take it off the list, or turn {env_name('sync', 'overwrite_existing')} off"
    )


#: Said in every plan made without list endpoints (``check`` says it too).
OWNERS_UNSEEN = (
    "this server does not let bwsync see member types: owners and admins are protected from "
    f"revocation and removal only through {env_name('sync', 'protected_members')}"
)


def _plan_unlisted(
    plan: Plan,
    directory: Directory,
    sync: SyncSettings,
    memory: Memory | None,
    scope: str,
) -> None:
    """The member plan for a server without list endpoints (Vaultwarden, reference
    ``vaultwarden.md``), made against ``memory``. Vaultwarden matches members by email:
    ``deleted: true`` revokes (admins and all but the last owner included), an active entry
    restores a revoked member, an absent member is left alone, and ``overwrite_existing``
    deletes every member whose externalId the import does not carry (deleted entries count).

    So: directory entries going out as deleted revoke the remembered members they name; with
    ``remove_missing`` the remembered members absent from the directory are sent as deleted
    (their externalId: the email, as only emails are remembered; Vaultwarden writes it onto
    the membership, and takes it back from the entry when the member returns); under
    ``overwrite_existing`` the remembered members without any entry are deleted, and those
    revoked earlier are sent as deleted again so that they stay revoked. Protected members
    are never sent as deleted; one overwrite would delete is a hazard."""
    plan.notes.append(OWNERS_UNSEEN + f" ({len(sync.protected)} listed)")
    _refuse_unlisted(sync, memory)
    plan.synced_members = len(memory.members) if memory is not None else 0
    if directory.users is None:  # user sync off: the members are not this run's business
        plan.memory = memory
        return
    active, deleted = _unlisted_entries(plan, directory.users, sync, memory)
    if sync.overwrite_existing:
        _unlisted_protected(plan, active, sync)
    left_out = {r.external_id: r for r in directory.rejected if not _is_gone(r, sync)}
    held = _held(plan, active | deleted, left_out, memory)
    dropped = _unlisted_absent(plan, active | deleted, sync, memory, held)
    deleted.update(e for e, _ in plan.send_deleted if e)
    if memory is None and sync.remove_missing:
        plan.notes.append(
            "remove_missing: bwsync has no memory of the members it synced here yet (a first "
            "run or a cleared state), so no one can be found gone this run; this run remembers "
            "the members it sends"
        )
    remembered = memory.members if memory is not None else frozenset()
    revoked = memory.revoked if memory is not None else frozenset()
    plan.memory = Memory(
        scope,
        members=frozenset(active | (remembered - deleted - dropped)),
        revoked=frozenset((revoked | deleted) - active),
        rejected=frozenset(left_out),
        held=frozenset((email, r.external_id) for email, rs in held.items() for r in rs),
        other=memory.other if memory is not None else {},
    )


def _unlisted_protected(plan: Plan, active: set[str], sync: SyncSettings) -> None:
    """Under ``overwrite_existing`` Vaultwarden deletes every member whose externalId the
    import does not carry, whoever set it (bwsync, bwdc, an earlier tool), and bwsync cannot
    see which members carry one: every protected account without an active entry in this
    import is a hazard, remembered or not, marked deleted in the directory or absent."""
    for email in sorted(sync.protected - active):
        plan.hazards.append(_overwrite_hazard(email))


def _held(
    plan: Plan, in_directory: set[str], left_out: dict[str, Rejected], memory: Memory | None
) -> dict[str, list[Rejected]]:
    """Remembered members absent from the directory that may be an active entry left out for
    its email (``bwsync.memory``: only emails are remembered): email → the externalIds of
    those entries. Held since an earlier run while the entry is still left out, or absent now
    that an entry is left out for the first time."""
    if memory is None or not left_out:
        return {}
    absent = memory.members - in_directory
    held: dict[str, list[Rejected]] = {}
    for email, x in sorted(memory.held):
        if email in absent and x in left_out:
            held.setdefault(email, []).append(left_out[x])
    new = [left_out[x] for x in sorted(left_out.keys() - memory.rejected)]
    if new:
        for email in absent - held.keys():
            held[email] = new
    if held:
        names = ", ".join(sorted({r.entry for rs in held.values() for r in rs}))
        plan.notes.append(
            f"{len(held)} members absent from the directory are not revoked or deleted: on this "
            "server bwsync remembers emails only, and cannot tell whether one of them is a "
            f"directory entry left out for its email ({names}) under its old email. Fix those "
            "entries (the entry_skipped warnings name them); the members are judged again then"
        )
    return held


def _held_reason(email: str, entries: list[Rejected]) -> str:
    which = " or ".join(f"directory entry {r.entry}" for r in entries)
    return f"{email} may be {which} (left out for its email)"


def _refuse_unlisted(sync: SyncSettings, memory: Memory | None) -> None:
    """Settings a server without list endpoints cannot honour safely: exit 2, saying why."""
    if sync.remove_missing and sync.removal_mode == "remove" and not sync.overwrite_existing:
        raise ConfigError(
            f"{env_name('sync', 'removal_mode')}=remove: this server cannot list members "
            "(Vaultwarden?) and revokes the members an import marks deleted; it deletes members "
            f"only under overwrite_existing. Use {env_name('sync', 'removal_mode')}=revoke (the "
            f"default), or also set {env_name('sync', 'overwrite_existing')}=true to have "
            "members gone from the directory deleted"
        )
    if sync.overwrite_existing and (memory is None or not memory.members):
        raise ConfigError(
            f"{env_name('sync', 'overwrite_existing')}=true: this server cannot list members "
            "(Vaultwarden?) and bwsync has no memory of the members it synced there yet (a "
            "first run, a cleared state, another organization, or a run that synced no "
            "member: an empty memory counts as none). The "
            "server deletes every member whose externalId is missing from the import, and "
            "bwsync could not count them against the safety limits. Run `bwsync sync --force` "
            "once without OVERWRITE_EXISTING (that run remembers the members it sends), then "
            "turn it back on"
        )


#: Said where the state holds the memory of another organization (the run ignores it).
OTHER_ORGANIZATION = "the state holds a memory of synced members of another organization"


def stateless_refusal(sync: SyncSettings) -> str | None:
    """Why these settings cannot work against a server that cannot list members when no
    state is kept (``BWSYNC_STATE__BACKEND=none``), or ``None``: without a memory
    ``remove_missing`` never finds anyone gone and ``overwrite_existing`` is refused every
    run. ``run`` exits 2 with it, ``check`` fails with it."""
    on = [
        name
        for name, value in (
            (env_name("sync", "remove_missing"), sync.remove_missing),
            (env_name("sync", "overwrite_existing"), sync.overwrite_existing),
        )
        if value
    ]
    if not on:
        return None
    return (
        f"{env_name('state', 'backend')}=none with {' and '.join(on)}=true: this server "
        "cannot list members (Vaultwarden?), so bwsync judges removals against its memory of "
        "the members it synced there, kept in the state; with no state it has none, so "
        "remove_missing would never find anyone gone and overwrite_existing could not count "
        "what the server deletes. Use a state backend (file, configmap or objectstore), or "
        "turn those off"
    )


def _unlisted_entries(
    plan: Plan, users: list[User], sync: SyncSettings, memory: Memory | None
) -> tuple[set[str], set[str]]:
    """The directory's entries against the memory: invite, restore, revoke or skip; returns
    the emails sent as active and those sent as deleted."""
    remembered = memory.members if memory is not None else frozenset()
    revoked = memory.revoked if memory is not None else frozenset()
    changes = plan.changes
    active: set[str] = set()
    deleted: set[str] = set()
    unknown_gone = 0
    for u in users:
        email = u.email or ""
        if not (u.deleted or (sync.remove_disabled and u.disabled)):
            active.add(email)
            if memory is None or email in remembered:
                continue
            if email in revoked:
                changes.append(Change("restore", email, u.external_id, "back"))
            else:
                changes.append(Change("invite", email, u.external_id, "new_since_last_sync"))
            continue
        if _is_protected(email, sync):
            plan.protected_external_ids.add(u.external_id)  # overwrite: _unlisted_protected
            why: Reason = "deleted_protected" if u.deleted else "disabled_protected"
            changes.append(Change("skip", email, u.external_id, why))
            continue
        deleted.add(email)
        if email in remembered:
            why = "deleted" if u.deleted else "disabled"
            changes.append(Change("revoke", email, u.external_id, why))
        elif email not in revoked:
            # Vaultwarden revokes by email, whoever the member is: a revocation all the same.
            unknown_gone += 1
            why = "deleted_maybe_member" if u.deleted else "disabled_maybe_member"
            changes.append(Change("revoke", email, u.external_id, why))
    if unknown_gone:
        plan.notes.append(
            f"{unknown_gone} directory entries go out as deleted for emails bwsync has not "
            "synced or revoked here before"
            + (" (it has no memory of this organization yet)" if memory is None else "")
            + ": the server revokes a member with such an email if there is one (added by "
            "hand, or by another tool, admins included), so each counts as a revocation "
            "against the safety limits, once: the next runs remember them as revoked"
        )
    if memory is None:
        # The percentage base: the members the import names, as far as bwsync can tell.
        plan.synced_members = len(active) + unknown_gone
    return active, deleted


def _unlisted_absent(
    plan: Plan,
    in_directory: set[str],
    sync: SyncSettings,
    memory: Memory | None,
    held: dict[str, list[Rejected]],
) -> set[str]:
    """Remembered members without any directory entry: revoked (``remove_missing``), deleted
    by the server (``overwrite_existing``) or left alone; returns those the server deletes.
    Under overwrite the members revoked earlier are sent as deleted again (``send_deleted``)
    so that they stay revoked. A ``held`` member (``_held``) is left alone: under overwrite,
    which would delete it, that is a hazard."""
    if memory is None:
        return set()
    dropped: set[str] = set()
    for email in sorted(memory.members - in_directory):
        if _is_protected(email, sync):
            if sync.remove_missing and not sync.overwrite_existing:  # else _unlisted_protected
                plan.changes.append(Change("skip", email, email, "gone_protected"))
            continue
        if email in held:
            maybe = _held_reason(email, held[email])
            if sync.overwrite_existing:
                plan.hazards.append(
                    f"overwrite_existing would make the server delete {maybe}: fix that entry's "
                    f"email in the directory, or turn {env_name('sync', 'overwrite_existing')} off"
                )
            elif sync.remove_missing:
                plan.changes.append(Change("skip", email, email, "held", about=(maybe,)))
            continue
        if sync.remove_missing and sync.removal_mode == "revoke":
            plan.changes.append(Change("revoke", email, email, "gone"))
            plan.send_deleted.append((email, email))
        elif sync.overwrite_existing:
            dropped.add(email)
            why: Reason = "gone_overwritten" if sync.remove_missing else "absent_deleted_by_server"
            plan.changes.append(Change("remove", email, email, why))
    if sync.overwrite_existing:
        for email in sorted(memory.revoked - in_directory - memory.members):
            if not _is_protected(email, sync):  # a protected one: _unlisted_protected
                plan.send_deleted.append((email, email))  # stays revoked, not deleted
        plan.notes.append(
            "overwrite_existing: the server also deletes every member whose externalId bwsync "
            "did not send, those synced by another tool (bwdc) included; bwsync counts only "
            "the members it remembers"
        )
    return dropped


def _plan_groups(
    plan: Plan,
    directory: Directory,
    org: OrgSnapshot,
    *,
    by_ext: dict[str, OrgMember],
    linked: dict[str, OrgMember],
    invited: set[str],
    relinks: dict[str, OrgGroup],
) -> None:
    org_by_ext = {g.external_id or "": g for g in org.groups if g.synced}
    email_of: dict[str, str] = {}
    member_by_id: dict[str, OrgMember] = {}
    if org.group_member_ids is not None:  # membership detail: only then are these needed
        if directory.users:
            email_of = {_s(u.external_id): u.email or "" for u in directory.users}
        member_by_id = {m.id: m for m in org.members}
    assert directory.groups is not None
    cleared_names: list[str] = []
    for g in directory.groups:
        ext = _s(g.external_id)
        name = g.name or ext
        existing = org_by_ext.get(ext)
        if existing is None and ext in relinks:
            existing = relinks[ext]
            plan.changes.append(
                Change(
                    "group_relink",
                    None,
                    ext,
                    "group_relinked",
                    group=name,
                    group_id=existing.id,
                    about=(existing.name, ext, existing.external_id or ""),
                )
            )
        elif existing is None:
            plan.changes.append(Change("group_create", None, ext, "group_new", group=name))
        elif existing.name != name:
            plan.changes.append(
                Change(
                    "group_rename", None, ext, "group_renamed", group=name, about=(existing.name,)
                )
            )
        wanted = [_s(x) for x in g.user_member_external_ids]
        cleared = existing is not None and not any(x in by_ext or x in linked for x in wanted)
        if cleared:
            assert existing is not None
            if _plan_cleared(plan, existing, name, org, member_by_id or None):
                cleared_names.append(name)
        if org.group_member_ids is None:
            continue
        current_ids = set(org.group_member_ids.get(existing.id, [])) if existing else set()
        wanted_set = set()
        for x in wanted:
            member = by_ext.get(x) or linked.get(x)
            if member is None:
                if x in invited:
                    plan.changes.append(
                        Change(
                            "member_add",
                            email_of.get(x) or None,
                            x,
                            "in_group_once_invited",
                            group=name,
                        )
                    )
                continue  # otherwise not a member: the server drops unknown ids
            wanted_set.add(member.id)
            if member.id not in current_ids:
                plan.changes.append(
                    Change(
                        "member_add",
                        email_of.get(x) or member.email,
                        x,
                        "in_group",
                        member.id,
                        group=name,
                    )
                )
        if cleared:
            continue  # its member_remove lines come from _plan_cleared
        for i in sorted(current_ids - wanted_set):
            m = member_by_id.get(i)
            plan.changes.append(
                Change(
                    "member_remove",
                    m.email if m else None,
                    m.external_id if m else None,
                    "not_in_group" if m and m.external_id else "not_in_group_by_hand",
                    i,
                    group=name,
                )
            )
    if cleared_names:
        shown = ", ".join(cleared_names[:10]) + (" …" if len(cleared_names) > 10 else "")
        plan.notes.append(
            f"{len(cleared_names)} synced groups come from the directory with no members the "
            f"organization has ({shown}): the import takes everyone out of them. If the "
            "directory does not say so, check the source's member attribute, its user path "
            "and filter (members outside them are dropped), and that the account reading it "
            "may read group members"
        )


def groups_to_read(directory: Directory, org: OrgSnapshot, sync: SyncSettings) -> list[OrgGroup]:
    """The groups whose member ids the plan needs without ``--detail``: the stale ones
    (``stale_groups``), and the synced groups the directory names with none of the
    organization's members by externalId, which the import may clear (``_plan_cleared``
    decides, knowing the members linked by email too). One request each; an organization
    whose directory groups all have members asks none of the second kind."""
    out = stale_groups(directory, org, sync)
    if directory.groups is None:
        return out
    members = {m.external_id for m in org.members if m.external_id}
    org_by_ext = {g.external_id: g for g in org.groups if g.synced}
    for new, old in relinks(directory, org).items():
        org_by_ext.setdefault(new, old)
    for g in directory.groups:
        existing = org_by_ext.get(_s(g.external_id))
        if existing is not None and members.isdisjoint(_s(x) for x in g.user_member_external_ids):
            out.append(existing)
    return out


def _plan_cleared(
    plan: Plan,
    group: OrgGroup,
    name: str,
    org: OrgSnapshot,
    member_by_id: dict[str, OrgMember] | None,
) -> bool:
    """A synced group the directory still names, but with no member the organization has
    (none at all, or only people about to be invited): the import replaces its membership, so
    everyone in it now loses the access it grants. An ACL hiding ``member``, member DNs
    outside the user path or filter, a wrong member attribute all look like this, so each
    member gets its ``member_remove`` with or without ``--detail``, and counts against the
    safety limits like a member of a stale group. The member ids come from ``--detail`` or
    from the read of ``groups_to_read``. True when someone is taken out."""
    detail = org.group_member_ids
    ids = detail.get(group.id) if detail is not None else org.member_ids_read.get(group.id)
    if not ids:
        return False
    by_id = member_by_id or {m.id: m for m in org.members}
    members = [i for i in dict.fromkeys(ids) if i in by_id]
    if not members:
        return False
    plan.group_losses[group.id] = members
    plan.emptied_groups[group.id] = name
    for i in members:
        m = by_id[i]
        plan.changes.append(
            Change("member_remove", m.email, m.external_id, "group_cleared", i, group=name)
        )
    return True


#: What ``check`` and ``plan`` say where the server has no group endpoints (Vaultwarden).
NO_GROUP_ENDPOINTS = (
    "groups that leave the directory cannot be emptied on this server: it has no group "
    "endpoints, and its import leaves a group it does not name as it is. Such a group keeps "
    "its members and their collection access; empty or delete it by hand in the web vault "
    "(Admin Console → Groups → the group → Members, or Delete)"
)


def relinks(directory: Directory, org: OrgSnapshot) -> dict[str, OrgGroup]:
    """Synced groups the directory returns under a new id, where the source says so: a
    directory group whose reference id (the LDAP DN) is the externalId of a synced group,
    while its own externalId is another (``BWSYNC_LDAP__GROUP_ID_ATTRIBUTE`` just turned on:
    DN → entryUUID). New externalId → that group. bwsync gives the group its new externalId
    before the import (``group_relink``, ``PUT /public/groups/{id}`` without collections,
    which keeps its grants) rather than have the import create a group without any beside
    it. Never where the new externalId already names a group (two groups with one externalId
    make every import fail), nor by name alone: a name is no identity."""
    if directory.groups is None:
        return {}
    pairs = {
        _s(g.reference_id): _s(g.external_id)
        for g in directory.groups
        if _s(g.reference_id) != _s(g.external_id)
    }
    if not pairs:
        return {}
    taken = {g.external_id for g in org.groups if g.synced}
    out: dict[str, OrgGroup] = {}
    for g in org.groups:
        new = pairs.get(g.external_id or "") if g.synced else None
        if new is not None and new not in taken and new not in out:
            out[new] = g
    return out


def stale_groups(directory: Directory, org: OrgSnapshot, sync: SyncSettings) -> list[OrgGroup]:
    """Synced groups (with an externalId) that the directory no longer has: deleted there,
    filtered out, or given a new id (an OpenLDAP DN after a rename) that ``relinks`` cannot
    pair. Only with ``remove_missing`` and group sync on; groups made by hand (no externalId,
    or a blank one: ``OrgGroup.synced``) never are. The run reads these groups' member ids
    before planning (``OrgSnapshot.member_ids_read``)."""
    if not sync.remove_missing or directory.groups is None:
        return []
    wanted = {_s(g.external_id) for g in directory.groups}
    relinked = {g.id for g in relinks(directory, org).values()}
    return [
        g for g in org.groups if g.synced and g.external_id not in wanted and g.id not in relinked
    ]


def _plan_stale(plan: Plan, directory: Directory, org: OrgSnapshot, sync: SyncSettings) -> None:
    """``group_empty`` (or ``group_delete``, ``stale_groups=delete``) for each stale group,
    with the members it takes access from; an already empty group under ``empty`` is in step.
    With ``--detail`` each of those members gets its ``member_remove`` line too."""
    stale = stale_groups(directory, org, sync)
    if not stale:
        return
    assert directory.groups is not None
    detail = org.group_member_ids
    by_id = {m.id: m for m in org.members}
    # What tells a rename from a deletion, where the directory lets us see it.
    new_id_of = {
        _s(g.reference_id): _s(g.external_id)
        for g in directory.groups
        if _s(g.reference_id) != _s(g.external_id)
    }
    created = {c.group: c.external_id for c in plan.changes if c.action == "group_create"}
    kept_empty: list[str] = []
    for g in stale:
        ext = g.external_id or ""
        known = detail.get(g.id) if detail is not None else None
        ids = known if known is not None else org.member_ids_read.get(g.id, [])
        members = [i for i in ids if i in by_id]
        # A group that is most likely still in the directory under another id is emptied,
        # never deleted: its grants are what the group it became needs.
        likely_same = ext in new_id_of or g.name in created
        delete = sync.stale_groups == "delete" and not likely_same
        if not members and not delete:
            kept_empty.append(g.name)
            continue  # emptied before: nothing left to take
        why: Reason
        about: tuple[str, ...] = ()
        refused = sync.stale_groups == "delete"  # and not deleted: most likely the same group
        if ext in new_id_of:
            why = "group_new_id_not_deleted" if refused else "group_new_id_kept"
            about = (new_id_of[ext],)
        elif g.name in created:
            why = "group_name_taken_not_deleted" if refused else "group_name_taken_kept"
            about = (created[g.name] or "",)
        else:
            why = "group_gone_deleted" if delete else "group_gone_kept"
        plan.changes.append(
            Change(
                "group_delete" if delete else "group_empty",
                None,
                ext,
                why,
                group=g.name,
                group_id=g.id,
                members_losing_access=len(members),
                collections=g.collections,
                about=about,
            )
        )
        plan.group_losses[g.id] = members
        plan.emptied_groups[g.id] = g.name
        if detail is None:
            continue
        for i in members:
            m = by_id[i]
            plan.changes.append(
                Change(
                    "member_remove", m.email, m.external_id, "group_left_directory", i, group=g.name
                )
            )
    if kept_empty:
        shown = ", ".join(kept_empty[:10]) + (" …" if len(kept_empty) > 10 else "")
        plan.notes.append(
            f"{len(kept_empty)} synced groups left the directory and are kept empty for review "
            f"({shown}): they grant nobody anything now, but keep their collection grants; "
            f"delete each by hand once reviewed, or set {env_name('sync', 'stale_groups')}=delete"
        )
    if created and plan.of(*STALE_GROUP_ACTIONS):
        plan.notes.append(
            "groups are created and synced groups are gone in the same plan: where a group "
            "was renamed in a directory whose group ids change on rename (OpenLDAP DNs), the "
            "new group has no collections yet; grant it the old group's collections "
            '(docs/operations.md, "Groups that leave the directory")'
        )


SafetyKind = Literal["limit", "group_limit", "brake", "hazard"]


class SafetyReason(str):
    """One reason to refuse a plan, and what lifts it (``kind``): a count ``limit`` on members
    (``--allow-removals`` for this run, after a review), the ``group_limit``
    (``--allow-emptied-groups``), the empty-directory ``brake`` (nothing but a directory read
    that returns people), or a ``hazard`` (a change the text names). A string, so that it
    reads, prints and compares as its text."""

    kind: SafetyKind
    losing: int
    """For a limit: the members (or groups) losing access, what the allowance must allow."""

    def __new__(cls, text: str, kind: SafetyKind, losing: int = 0) -> SafetyReason:
        reason = super().__new__(cls, text)
        reason.kind = kind
        reason.losing = losing
        return reason


def check_safety(
    plan: Plan,
    directory: Directory,
    sync: SyncSettings,
    *,
    allow_removals: int | None = None,
    allow_emptied_groups: int | None = None,
) -> list[str]:
    """Reasons to refuse this plan (empty = safe). ``allow_removals`` is ``--allow-removals``:
    up to that many removals pass whatever the configured limits say, for this run only;
    ``allow_emptied_groups`` (``--allow-emptied-groups``) does the same for the group limit.
    The percentage counts only above ``max_removal_percent_above`` members (or above half of
    the synced members), so that a small organization's routine leavers pass while a mistake
    taking most of it still stops.

    What the limits count is members losing access, each once (``Plan.members_losing_access``):
    removed, revoked, or in one or more synced groups the directory no longer has. A member in
    two stale groups is one person losing access, and the base of the percentage stays the
    synced members, so the two limits keep meaning what they meant for removals alone."""
    reasons: list[str] = [SafetyReason(h, "hazard") for h in plan.hazards]
    if directory.users is not None and not directory.users and plan.synced_members > 0:
        reasons.append(
            SafetyReason(
                f"the directory returned no users while the organization has "
                f"{plan.synced_members} synced members: refusing to treat that as everyone "
                "leaving (check the source's filters, paths and permissions)",
                "brake",
            )
        )
    losing = sum(1 for ids in plan.group_losses.values() if ids)
    if directory.groups is not None and not directory.groups and losing:
        reasons.append(
            SafetyReason(
                f"the directory returned no groups while {losing} synced groups still grant "
                "access in the organization: refusing to treat that as every group leaving "
                "(check the source's group filter, path and permissions)",
                "brake",
            )
        )
    reasons.extend(_group_limit(plan, sync, allow_emptied_groups))
    n = plan.members_losing_access
    if n == 0:
        return reasons
    what = "removals/revocations"
    if plan.group_losses:
        in_groups = len({i for ids in plan.group_losses.values() for i in ids})
        what = (
            f"members losing access ({plan.removals} removed/revoked, {in_groups} in groups "
            "that are gone from the directory or come with no members)"
        )
    if allow_removals is not None:
        if n > allow_removals:
            reasons.append(
                SafetyReason(f"{n} {what} exceed --allow-removals {allow_removals}", "limit", n)
            )
        return reasons
    if n > sync.max_removals:
        reasons.append(
            SafetyReason(
                f"{n} {what} exceed {env_name('sync', 'max_removals')}={sync.max_removals}",
                "limit",
                n,
            )
        )
    # A few leavers of a small organization pass the percentage, never half of it.
    graced = n <= sync.max_removal_percent_above and 2 * n <= plan.synced_members
    if plan.synced_members and not graced:
        pct = 100.0 * n / plan.synced_members
        if pct > sync.max_removal_percent:
            reasons.append(
                SafetyReason(
                    f"{n} {what} are {pct:.1f}% of {plan.synced_members} synced members, over "
                    f"{env_name('sync', 'max_removal_percent')}={sync.max_removal_percent:g}",
                    "limit",
                    n,
                )
            )
    return reasons


def _group_limit(plan: Plan, sync: SyncSettings, allowed: int | None) -> list[str]:
    """The groups this plan empties or deletes, counted by group: the member limits count
    people, and cannot see a group of three granting 500 collections, nor a deleted group
    with nobody in it, nor a filter now matching one group in fifty."""
    k = len(plan.emptied_groups)
    limit = sync.max_emptied_groups if allowed is None else allowed
    if k <= limit:
        return []
    names = list(plan.emptied_groups.values())
    shown = ", ".join(names[:10]) + (" …" if k > 10 else "")
    over = (
        f"--allow-emptied-groups {allowed}"
        if allowed is not None
        else f"{env_name('sync', 'max_emptied_groups')}={sync.max_emptied_groups}"
    )
    return [
        SafetyReason(
            f"{k} synced groups would be emptied or deleted ({shown}), over {over} "
            "(counted by group, whatever its size; --allow-removals does not lift this limit)",
            "group_limit",
            k,
        )
    ]


def safety_advice(reasons: Iterable[str]) -> str:
    """What to do about these reasons, by what lifts each: ``--allow-removals`` (and
    ``--allow-emptied-groups``) only where count limits are all that stop the run; neither
    lifts the brake or a hazard."""
    by_kind: dict[str, list[int]] = {}
    for r in reasons:
        by_kind.setdefault(getattr(r, "kind", "limit"), []).append(getattr(r, "losing", 0))
    kinds = by_kind.keys()
    advice = []
    if "brake" in kinds:
        advice.append(
            "--allow-removals does not lift this stop: make the source return the directory "
            "again (filters, paths, permissions), then run again"
        )
    if "hazard" in kinds:
        advice.append(
            "--allow-removals does not lift what would break beyond this run: make the change "
            "named above"
        )
    if kinds <= {"limit", "group_limit"}:
        allowances = [
            f"{flag} {max(by_kind[kind]) or 'N'}"
            for kind, flag in (
                ("limit", "--allow-removals"),
                ("group_limit", "--allow-emptied-groups"),
            )
            if kind in by_kind
        ]
        advice.append(
            "Review the plan (`bwsync plan`); if it is right, run once with "
            f"`bwsync sync {' '.join(allowances)}`"
        )
    return "; ".join(advice)


def enforce_safety(reasons: Iterable[str]) -> None:
    reasons = list(reasons)
    if reasons:
        raise SafetyLimitError(reasons, safety_advice(reasons))
