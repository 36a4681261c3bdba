"""The one directory every source's contract test reads, what each source can express of it,
and what a source must return for it.

``PEOPLE`` and ``TEAMS`` describe the directory once; ``tests/contract/sources.py`` writes it
into each server in that server's own terms (LDAP entries, Graph users, Okta statuses, a JSON
file …). ``Capabilities`` is the declared table of what a source cannot express or do, each
with the reason: the contract never skips a case silently, it computes what that source must
return (``expected``) and holds the source to it. ``observed`` turns what a source returned,
after ``bwsync.normalize``, into the same source-neutral shape: emails for users, names for
groups, member emails for memberships (every source has its own ids).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

from bwsync.model import Directory
from bwsync.normalize import normalize


@dataclass(frozen=True)
class Person:
    key: str
    """The login name: ``uid``, ``sAMAccountName``, the file's ``id`` … unique in the project's
    shared test servers (the Samba DC outlives one test module)."""
    email: str
    """As the directory holds it; every source returns it trimmed and lower-cased."""
    disabled: bool = False
    deleted: bool = False

    @property
    def address(self) -> str:
        return self.email.strip().lower()


@dataclass(frozen=True)
class Team:
    name: str
    members: tuple[str, ...] = ()
    """Person keys, direct members."""
    teams: tuple[str, ...] = ()
    """Names of nested teams (their members count as this team's after flattening)."""


PEOPLE = (
    Person("ada", "ada@example.com"),
    Person("ben", "Ben@Example.COM"),  # mixed case: comes back lower-cased
    Person("cyd", "cyd@example.com", disabled=True),
    Person("dot", "dot@example.com", deleted=True),
    Person("eli", "eli@example.com"),
    Person("fox", "fox@example.com"),
    Person("guy", "guy@example.com"),  # in no team: §6.2 scoping drops him
)
TEAMS = (
    Team("Engineering", ("ada",), ("Platform",)),
    Team("Platform", ("ben",), ("Infra",)),  # nested two levels deep
    Team("Infra", ("cyd", "eli")),  # a disabled member still counts
    Team("Sales", ("fox",)),
    Team("Empty"),
)
FILTERED_OUT = "guy"
"""The person the user-filter case leaves out."""
FILTERED_TEAMS = ("Engineering", "Infra")
"""The teams the group-filter case keeps (Platform, between them, is left out)."""


def person(key: str) -> Person:
    (found,) = [p for p in PEOPLE if p.key == key]
    return found


@dataclass(frozen=True)
class Lacks:
    """A capability a source does not have, and why: the reason is the declaration."""

    why: str


Able = Literal["yes"]
YES: Able = "yes"

Deleted = Literal["flagged", "flagged_when_forced", "dropped"]
"""How a deleted user comes back: ``flagged`` with ``deleted=True`` and its email (the import
removes it); ``flagged_when_forced`` the same, but only in a forced fetch (AD tombstones);
``dropped`` reported without an email, so ``normalize`` drops it (Entra: by id only)."""


@dataclass(frozen=True)
class Capabilities:
    """What a source can express or do; ``Lacks`` says why not. The contract derives every
    expectation from this table, so a difference between sources is declared here, once."""

    paging: Able | Lacks = YES
    user_filter: Able | Lacks = YES
    group_filter: Able | Lacks = YES
    disabled: Able | Lacks = YES
    deleted: Deleted | Lacks = "flagged"
    nested_groups: Able | Lacks = YES
    empty_groups: Able | Lacks = YES
    scopes_users_to_groups: bool = False
    """bwdc §6.2 (cloud sources): a group filter with a set part keeps only the users that are
    direct members of a returned group (deleted users always)."""

    def lacking(self) -> dict[str, str]:
        """Capability name → the declared reason, for every capability the source lacks."""
        return {name: value.why for name, value in vars(self).items() if isinstance(value, Lacks)}


UserRow = tuple[str, bool, bool]
"""(email, disabled, deleted)"""


@dataclass(frozen=True)
class Seen:
    """A directory in source-neutral terms; ``None`` where that kind was not fetched."""

    users: frozenset[UserRow] | None
    groups: dict[str, frozenset[str]] | None = field(default=None)


def present(caps: Capabilities, *, force: bool = False) -> list[Person]:
    """The people the source holds and returns (a person it cannot express is not there)."""
    out = []
    for p in PEOPLE:
        if p.deleted:
            if isinstance(caps.deleted, Lacks) or caps.deleted == "dropped":
                continue
            if caps.deleted == "flagged_when_forced" and not force:
                continue
        out.append(p)
    return out


def expected(
    caps: Capabilities,
    *,
    users: bool = True,
    groups: bool = True,
    user_filter: bool = False,
    group_filter: bool = False,
    force: bool = False,
    remove_disabled: bool = False,
) -> Seen:
    """What a source with ``caps`` must return for ``PEOPLE``/``TEAMS`` after normalisation."""
    people = present(caps, force=force)
    if user_filter:
        people = [p for p in people if p.key != FILTERED_OUT]
    disabled = not isinstance(caps.disabled, Lacks)
    teams = [t for t in TEAMS if t.members or t.teams or not isinstance(caps.empty_groups, Lacks)]
    if group_filter:
        teams = [t for t in teams if t.name in FILTERED_TEAMS]
    kept = {t.name for t in teams}
    nested = not isinstance(caps.nested_groups, Lacks)

    def closure(team: Team) -> set[str]:
        seen, todo, members = {team.name}, [team], set(team.members)
        while nested and todo:
            for child in todo.pop().teams:
                if child in kept and child not in seen:
                    seen.add(child)
                    (sub,) = [t for t in teams if t.name == child]
                    members.update(sub.members)
                    todo.append(sub)
        return members

    if groups and group_filter and caps.scopes_users_to_groups:
        direct = {k for t in teams for k in t.members}
        people = [
            p
            for p in people
            if p.deleted or (remove_disabled and p.disabled and disabled) or p.key in direct
        ]
    by_key = {p.key: p for p in present(caps, force=force)}
    return Seen(
        users=frozenset((p.address, p.disabled and disabled, p.deleted) for p in people)
        if users
        else None,
        groups={
            t.name: frozenset(by_key[k].address for k in closure(t) if k in by_key) for t in teams
        }
        if groups
        else None,
    )


def observed(directory: Directory) -> Seen:
    """What a source returned, normalised (``bwsync.normalize``, as a run does), in the
    source-neutral shape. A group member that is no returned user shows as ``?<id>``."""
    email_of = {u.external_id: (u.email or "").strip().lower() for u in directory.users or ()}
    clean = normalize(copy.deepcopy(directory))
    return Seen(
        users=None
        if clean.users is None
        else frozenset((u.email or "", u.disabled, u.deleted) for u in clean.users),
        groups=None
        if clean.groups is None
        else {
            g.name or f"?{g.reference_id}": frozenset(
                email_of.get(m) or f"?{m}" for m in g.user_member_external_ids
            )
            for g in clean.groups
        },
    )
