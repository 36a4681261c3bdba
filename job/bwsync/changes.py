"""What a plan is made of: the actions, the reasons, and ``Change``, defined once.

Every other part reads these definitions instead of writing its own list: the plan's safety
count (``REMOVALS``, ``STALE_GROUP_ACTIONS``), the log (``TAKES_ACCESS``: logged one by one
however long the plan), the batches worth sending (``IN_MEMBER_BATCH``), the re-read after
applying (``ActionSpec.check``), the metrics (one series per action, ``ACTIONS``), the plan's
text and JSON (``ActionSpec.verb``, ``REASONS``), and the docs' table of actions
(``markdown_table``, checked against docs/operations.md by its test).

A change carries data, not display text: the member's ``email``, the ``external_id``, the
group's name (``group``), the ids the endpoints take, and a reason *code* (``Reason``); the
English sentence an admin reads (``Change.why``, ``Change.sentence``) is rendered from those,
only when shown. Logic branches on codes and fields, never on the words.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from bwsync.config import env_name
from bwsync.model import CollectionGrant

Action = Literal[
    "invite",
    "link",
    "remove",
    "revoke",
    "restore",
    "skip",
    "group_create",
    "group_rename",
    "group_relink",
    "group_empty",
    "group_delete",
    "member_add",
    "member_remove",
]

#: How the re-read after applying confirms an action (``bwsync.verify``): the member is listed
#: (``present``) or not (``absent``); its status is revoked or not (``status``); a synced group
#: has the externalId (``group``), the externalId on this group id (``group_id``), the name
#: (``group_name``); the group has no member left (``group_members``) or is gone
#: (``group_gone``). ``None``: not re-read (memberships, and a skip changes nothing).
Check = Literal[
    "present", "absent", "status", "group", "group_id", "group_name", "group_members", "group_gone"
]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """One action and what every part of bwsync needs to know of it."""

    name: Action
    verb: str
    """The action in a sentence: "invite x@y", "would link existing member x@y"."""
    does: str
    """What it does, for the docs' table."""
    removal: bool = False
    """Takes a member's access away by itself: counted against the member limits."""
    stale_group: bool = False
    """Empties or deletes a synced group the directory no longer has (``stale_groups``): its
    members are counted against the member limits, the group against the group limit."""
    in_member_batch: bool = False
    """Carried by a member batch of the import, which must then be sent (``skip`` too: the
    server, not the plan, has the last word on an entry it would ignore)."""
    applies: bool = True
    """Changes something: counted in ``applied`` once confirmed (``skip`` does not)."""
    check: Check | None = None

    @property
    def takes_access(self) -> bool:
        """Access ends: logged one by one however long the plan, and a run whose re-read does
        not show it fails (exit 4)."""
        return self.removal or self.stale_group


SPECS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "invite",
        "invite",
        "the import invites a directory user the organization does not have",
        in_member_batch=True,
        check="present",
    ),
    ActionSpec(
        "link",
        "link existing member",
        "the import gives a member added by hand (same email, no externalId) the entry's "
        "externalId",
        in_member_batch=True,
        check="present",
    ),
    ActionSpec(
        "remove",
        "remove",
        "the import removes the member (an entry sent as deleted, or overwrite_existing)",
        removal=True,
        in_member_batch=True,
        check="absent",
    ),
    ActionSpec(
        "revoke",
        "revoke",
        "bwsync revokes the member through the member endpoint (Vaultwarden: the import, by email)",
        removal=True,
        check="status",
    ),
    ActionSpec(
        "restore",
        "restore",
        "bwsync restores a revoked member back in the directory (Vaultwarden: the import)",
        check="status",
    ),
    ActionSpec(
        "skip",
        "skip",
        "the entry is sent, and the server is expected to leave it alone (or bwsync leaves "
        "it out: a protected member)",
        in_member_batch=True,
        applies=False,
    ),
    ActionSpec("group_create", "create group", "the import creates the group", check="group"),
    ActionSpec("group_rename", "rename group", "the import renames the group", check="group_name"),
    ActionSpec(
        "group_relink",
        "relink group",
        "bwsync gives a synced group the new externalId the directory now identifies it by, "
        "before the import, keeping its members and collection grants",
        check="group_id",
    ),
    ActionSpec(
        "group_empty",
        "empty group",
        "bwsync takes every member out of a synced group the directory no longer has; the "
        "group and its collection grants stay",
        stale_group=True,
        check="group_members",
    ),
    ActionSpec(
        "group_delete",
        "delete group",
        "bwsync deletes a synced group the directory no longer has, with its collection "
        "grants (stale_groups=delete)",
        stale_group=True,
        check="group_gone",
    ),
    ActionSpec("member_add", "add", "the import puts the member in the group (plan --detail)"),
    ActionSpec(
        "member_remove",
        "take",
        "the member leaves the group (plan --detail; always for a group the import clears)",
    ),
)
SPEC: dict[str, ActionSpec] = {s.name: s for s in SPECS}
#: Every action, in the plan's order of presentation (the metrics' series too).
ACTIONS: tuple[Action, ...] = typing.get_args(Action)
assert tuple(s.name for s in SPECS) == ACTIONS, "SPECS must define each action, in order"

#: Actions that take access away by themselves, counted against the member limits.
REMOVALS: frozenset[str] = frozenset(s.name for s in SPECS if s.removal)
#: What bwsync does to a synced group the directory no longer has (``stale_groups``).
STALE_GROUP_ACTIONS: frozenset[str] = frozenset(s.name for s in SPECS if s.stale_group)
#: Actions that end access: logged one by one always, and verified or the run fails.
TAKES_ACCESS: frozenset[str] = frozenset(s.name for s in SPECS if s.takes_access)
#: Actions whose entry makes its member batch worth sending.
IN_MEMBER_BATCH: frozenset[str] = frozenset(s.name for s in SPECS if s.in_member_batch)
#: Actions that change something once applied (``applied`` counts them).
APPLYING: tuple[Action, ...] = tuple(s.name for s in SPECS if s.applies)
#: Actions the re-read after applying confirms.
REREAD: frozenset[str] = frozenset(s.name for s in SPECS if s.check is not None)


#: What the re-read after applying looks for, in the docs' words.
CHECK_TEXT: dict[Check | None, str] = {
    "present": "the member is listed",
    "absent": "the member is not listed",
    "status": "the member's status",
    "group": "a synced group with the externalId",
    "group_id": "the group carries the new externalId",
    "group_name": "the group's name",
    "group_members": "the group has no member",
    "group_gone": "the group is gone",
    None: "—",
}


def markdown_table() -> str:
    """The docs' table of actions (docs/operations.md, "Plan actions")."""
    rows = [
        "| Action | What it does | Counts against the safety limits | Re-read after applying |",
        "|---|---|---|---|",
    ]
    for a in SPECS:
        counted = (
            "each member once"
            if a.removal
            else "each member once, and the group"
            if a.stale_group
            else "each member once, and the group, where the import clears the group"
            if a.name == "member_remove"
            else "—"
        )
        rows.append(f"| `{a.name}` | {a.does} | {counted} | {CHECK_TEXT[a.check]} |")
    return "\n".join(rows) + "\n"


_PROTECTED = f"protected by {env_name('sync', 'protected_members')}"
_STAY = "the group and its collection grants stay for review ({grants})"
_NOT_DELETED = (
    "not deleted: the directory has a group of this name or entry under another id, most "
    "likely this one, which needs what it grants ({grants}); grant those to the new group, "
    "then delete this one by hand"
)
_LOSE = "{lose}"

Reason = Literal[
    "new",
    "new_staged",
    "new_email_freed",
    "new_since_last_sync",
    "back",
    "same_email",
    "second_holder",
    "email_taken",
    "deleted",
    "disabled",
    "deleted_protected",
    "disabled_protected",
    "deleted_admin_overwritten",
    "disabled_admin_overwritten",
    "deleted_owner_or_admin",
    "disabled_owner_or_admin",
    "deleted_maybe_member",
    "disabled_maybe_member",
    "left_out_overwritten",
    "gone",
    "gone_protected",
    "gone_overwritten",
    "absent_overwritten",
    "absent_admin_overwritten",
    "absent_deleted_by_server",
    "held",
    "group_new",
    "group_renamed",
    "group_relinked",
    "group_gone_deleted",
    "group_gone_kept",
    "group_new_id_kept",
    "group_new_id_not_deleted",
    "group_name_taken_kept",
    "group_name_taken_not_deleted",
    "in_group_once_invited",
    "in_group",
    "not_in_group",
    "not_in_group_by_hand",
    "group_cleared",
    "group_left_directory",
]
#: Why a change is planned: the code a change carries (a string constant, free to pass on the
#: hot path of a first sync's 100,000 invitations), and its English. ``{0}``, ``{1}`` …
#: are the change's ``about``; ``{lose}`` and ``{grants}`` are made from its
#: ``members_losing_access`` and ``collections``.
REASONS: dict[Reason, str] = {
    # a directory entry the organization does not have, or has otherwise
    "new": "new in the directory",
    "new_staged": "new in the directory; staged without an invitation",
    "new_email_freed": "new in the directory; the email's current member is removed first",
    "new_since_last_sync": "new since the last sync (a member with this email is linked instead)",
    "back": "revoked, and back in the directory",
    "same_email": "member added by hand with the same email",
    "second_holder": "externalId given to a second member",
    "email_taken": "the email belongs to member with externalId {0}; the server ignores this entry",
    # an entry going out as deleted
    "deleted": "deleted in the directory",
    "disabled": "disabled in the directory",
    "deleted_protected": f"deleted in the directory; {_PROTECTED}",
    "disabled_protected": f"disabled in the directory; {_PROTECTED}",
    "deleted_admin_overwritten": "deleted in the directory; overwrite_existing removes admins too",
    "disabled_admin_overwritten": (
        "disabled in the directory; overwrite_existing removes admins too"
    ),
    "deleted_owner_or_admin": "deleted in the directory; owners and admins are never removed",
    "disabled_owner_or_admin": "disabled in the directory; owners and admins are never removed",
    "deleted_maybe_member": (
        "deleted in the directory; the server revokes a member with this email if it has one"
    ),
    "disabled_maybe_member": (
        "disabled in the directory; the server revokes a member with this email if it has one"
    ),
    "left_out_overwritten": (
        "deleted or disabled in the directory; its entry is left out for its email, so "
        "overwrite_existing removes it"
    ),
    # a synced member without an entry
    "gone": "gone from the directory",
    "gone_protected": f"gone from the directory; {_PROTECTED}",
    "gone_overwritten": "gone from the directory; left out, so overwrite_existing deletes it",
    "absent_overwritten": "not in the directory and overwrite_existing is on",
    "absent_admin_overwritten": (
        "not in the directory and overwrite_existing is on; the server removes admins too"
    ),
    "absent_deleted_by_server": (
        "not in the directory and overwrite_existing is on: the server deletes it"
    ),
    "held": "not revoked: {0}",
    # groups
    "group_new": "new in the directory",
    "group_renamed": "renamed from {0!r}",
    "group_relinked": (
        "the directory now identifies group {0!r} as {1!r} (was {2!r}): its externalId changes "
        "in place before the import, keeping its members and collection grants"
    ),
    "group_gone_deleted": (
        "gone from the directory's groups: deleted, filtered out, or given a new id; "
        + _LOSE
        + ", and its collection grants are deleted with it ({grants})"
    ),
    "group_gone_kept": (
        "gone from the directory's groups: deleted, filtered out, or given a new id; "
        + _LOSE
        + "; "
        + _STAY
    ),
    "group_new_id_kept": (
        "the directory now identifies this group as {0!r}; " + _LOSE + "; " + _STAY
    ),
    "group_new_id_not_deleted": (
        "the directory now identifies this group as {0!r}; " + _LOSE + "; " + _NOT_DELETED
    ),
    "group_name_taken_kept": (
        "the directory has a group of this name under another id ({0!r}); " + _LOSE + "; " + _STAY
    ),
    "group_name_taken_not_deleted": (
        "the directory has a group of this name under another id ({0!r}); "
        + _LOSE
        + "; "
        + _NOT_DELETED
    ),
    # memberships
    "in_group_once_invited": "member of the directory group, once invited",
    "in_group": "member of the directory group",
    "not_in_group": "not a member of the directory group",
    "not_in_group_by_hand": (
        "not a member of the directory group (added by hand; the import replaces a synced "
        "group's membership)"
    ),
    "group_cleared": (
        "the directory group has none of the organization's members: the import takes every "
        "member out of it"
    ),
    "group_left_directory": "the group is gone from the directory",
}
assert set(typing.get_args(Reason)) == REASONS.keys(), "every reason has its English"
#: Reasons of a change that leaves a protected member alone.
PROTECTED_REASONS = frozenset({"deleted_protected", "disabled_protected", "gone_protected"})

#: Changes about a group as a whole, whose subject is the group's name.
_GROUP_CHANGES = frozenset(a for a in ACTIONS if a.startswith("group_"))

#: Collection grants named one by one in a reason; the JSON plan lists them all.
GRANTS_SHOWN = 10


def grants_text(grants: tuple[CollectionGrant, ...]) -> str:
    if not grants:
        return "it grants no collection"
    n = len(grants)
    shown = ", ".join(str(c) for c in grants[:GRANTS_SHOWN])
    more = (
        f" and {n - GRANTS_SHOWN} more (the JSON plan lists them all)" if n > GRANTS_SHOWN else ""
    )
    return f"grants {n} collection{'s' if n != 1 else ''}: {shown}{more}"


class Change(msgspec.Struct, frozen=True):
    """One planned change. A msgspec struct, not a frozen dataclass: a first sync plans one
    per user, and 100,000 frozen dataclasses take 0.16 s to build where these take 0.05 s."""

    action: Action
    email: str | None
    """The member's email, where the change is about a member and it is known."""
    external_id: str | None
    reason: Reason
    """Why, as a code (``REASONS``); ``why`` is its English."""
    member_id: str | None = None
    """The organization member id, for changes bwsync makes through the member endpoints."""
    group: str | None = None
    """The group's name: the group a ``group_*`` change is about, or the group of a
    member_add/member_remove."""
    group_id: str | None = None
    """For group_relink/group_empty/group_delete: the organization group id the group
    endpoints take."""
    members_losing_access: int | None = None
    """For group_empty/group_delete: how many members lose the access the group grants."""
    collections: tuple[CollectionGrant, ...] = ()
    """For group_empty/group_delete: what the group grants, which emptying keeps and deleting
    loses (in the JSON plan in full; the reason names the first ones)."""
    about: tuple[str, ...] = ()
    """The values the reason's English names (``REASONS``: ``{0}``, ``{1}`` …)."""

    @property
    def subject(self) -> str:
        """What an admin recognises: the group's name for a group change, else the member's
        email (its externalId, or its member id, where it has none)."""
        if self.action in _GROUP_CHANGES:
            return self.group or self.external_id or ""
        return self.email or self.external_id or self.member_id or ""

    @property
    def why(self) -> str:
        """The reason in English."""
        text = REASONS[self.reason]
        if "{" not in text:
            return text
        n = self.members_losing_access or 0
        return text.format(
            *self.about,
            lose=f"{n} member{'s lose' if n != 1 else ' loses'} the access it grants",
            grants=grants_text(self.collections),
        )

    def sentence(self, dry_run: bool) -> str:
        target = self.subject
        if self.action == "member_add":
            target = f"{target} to group {self.group}"
        elif self.action == "member_remove":
            target = f"{target} out of group {self.group}"
        prefix = "would " if dry_run else ""
        return f"{prefix}{SPEC[self.action].verb} {target} ({self.why})"

    def as_dict(self) -> dict[str, Any]:
        text = REASONS[self.reason]  # ``why`` without its call, for the 100,000 of a first sync
        out: dict[str, Any] = {
            "action": self.action,
            "subject": self.subject,
            "externalId": self.external_id,
            "reason": text if "{" not in text else self.why,
            "reasonCode": self.reason,
        }
        if self.member_id:
            out["memberId"] = self.member_id
        if self.group and self.action in ("member_add", "member_remove"):
            out["group"] = self.group
        if self.group_id:
            out["groupId"] = self.group_id
        if self.members_losing_access is not None:
            out["membersLosingAccess"] = self.members_losing_access
        if self.action in STALE_GROUP_ACTIONS:
            out["collections"] = [c.as_dict() for c in self.collections]
        return out
