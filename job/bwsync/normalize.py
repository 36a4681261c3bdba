"""Source-independent clean-up, by bwdc's rules (reference §2 steps 4–6, §3.1, §3.2).

Order matters and is bwdc's: drop unusable users, flatten nested groups, then de-duplicate
users. Each dropped entry is counted by reason so an admin can see *why* someone is missing
(bwdc drops them silently).

One rule is ours: an entry whose email a Bitwarden server would refuse (``email_rules``) is
dropped and named, where bwdc sends it and the whole import fails (official server) or stops
half-way (Vaultwarden). bwdc drops only the emails over 256 characters.
"""

from __future__ import annotations

import sys
from collections import Counter

from bwsync.email_rules import email_problem
from bwsync.errors import DuplicateEmailError
from bwsync.model import Directory, ExternalId, Group, Rejected, User


def normalize(directory: Directory) -> Directory:
    """Return the directory as bwdc would send it; raise ``DuplicateEmailError`` like bwdc."""
    skipped: Counter[str] = Counter(directory.skipped)
    rejected = list(directory.rejected)
    users = None if directory.users is None else usable_users(directory.users, skipped, rejected)
    groups = directory.groups
    if groups:
        flatten_groups(groups)
    if users is not None:
        users = remove_duplicate_users(users, skipped)
    return Directory(
        users=users, groups=groups, skipped=skipped, delta=dict(directory.delta), rejected=rejected
    )


def usable_users(
    users: list[User], skipped: Counter[str], rejected: list[Rejected] | None = None
) -> list[User]:
    """Keep users whose email is present and one the servers accept (bwdc step 4, and
    ``email_rules``); ``rejected`` receives the entries dropped for their email.

    Emails are trimmed and lower-cased here too, so every source is held to the same rule even
    if it forgot to.
    """
    kept: list[User] = []
    for user in users:
        email = user.email
        if email is None:
            skipped["no_email"] += 1
            continue
        clean = email.strip().lower()
        if not clean:
            skipped["no_email"] += 1
            continue
        problem = email_problem(clean)
        if problem is not None:
            skipped[problem] += 1
            if rejected is not None:
                rejected.append(
                    Rejected(
                        problem,
                        user.reference_id,
                        clean,
                        user.external_id,
                        deleted=user.deleted,
                        disabled=user.disabled,
                    )
                )
            continue
        if clean != email:
            user.email = clean
        kept.append(user)
    return kept


def _canonical(user: User) -> tuple[object, ...]:
    """What bwdc compares (``JSON.stringify`` of the entry: referenceId, externalId, email,
    disabled, deleted), as a tuple: equal exactly when those JSON texts are equal, without a
    100,000-string detour (it tripled the run's peak memory)."""
    return (
        type(user.reference_id),
        user.reference_id,
        type(user.external_id),
        user.external_id,
        user.email,
        user.disabled,
        user.deleted,
    )


def remove_duplicate_users(users: list[User], skipped: Counter[str]) -> list[User]:
    """bwdc's duplicate rule (§3.2), order dependence included.

    An identical repeat is dropped; a deleted user whose email an active user already has is a
    tombstone and dropped; two different active users, or an active user after a deleted one,
    with one email is an error listing the emails — the import would be ambiguous.
    """
    active: dict[str, User] = {}  # compared canonically only when an email repeats
    deleted: set[str] = set()
    unique: list[User] = []
    conflicts: list[str] = []
    for user in users:
        email = user.email
        assert email is not None  # usable_users ran first
        seen = active.get(email)
        if seen is not None:
            if user.deleted:
                skipped["deleted_duplicate"] += 1  # a tombstone of the active user
            elif _canonical(seen) != _canonical(user):
                conflicts.append(email)
            else:
                skipped["duplicate"] += 1
            continue
        if not user.deleted:
            if email in deleted:
                conflicts.append(email)
            else:
                active[email] = user
                unique.append(user)
        else:
            deleted.add(email)
            unique.append(user)
    if conflicts:
        raise DuplicateEmailError(conflicts)
    return unique


def flatten_groups(groups: list[Group]) -> None:
    """Give every group the users of the groups nested in it, transitively, in place.

    This is bwdc's cycle-safe depth-first walk reproduced step for step, because the order in
    which member ids are added reaches the request body and the hash: for each top-level group
    a fresh visited set; children taken in the order of the *group list*; a child's members are
    merged after the child itself was flattened; a group already visited in this walk adds
    nothing. Children are found through an index instead of bwdc's scan of the whole list, so
    this is linear in the nesting rather than quadratic in the number of groups.
    """
    positions: dict[ExternalId, list[int]] = {}
    for i, group in enumerate(groups):
        positions.setdefault(group.reference_id, []).append(i)
    children: list[list[Group] | None] = [None] * len(groups)

    def children_of(i: int) -> list[Group]:
        found = children[i]
        if found is None:
            refs = groups[i].group_member_reference_ids
            idx = sorted(p for ref in refs for p in positions.get(ref, ()))
            found = children[i] = [groups[p] for p in idx]
        return found

    index_of = {id(g): i for i, g in enumerate(groups)}

    def walk(level: list[Group], visited: set[ExternalId]) -> dict[ExternalId, None]:
        everyone: dict[ExternalId, None] = {}
        for group in level:
            if group.reference_id in visited:
                continue
            visited.add(group.reference_id)
            kids = children_of(index_of[id(group)])
            if kids:
                group.user_member_external_ids.update(walk(kids, visited))
            everyone.update(group.user_member_external_ids)
        return everyone

    if not any(g.group_member_reference_ids for g in groups):
        return
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(groups) + 1000))
    try:
        for group in groups:
            walk([group], set())
    finally:
        sys.setrecursionlimit(limit)
