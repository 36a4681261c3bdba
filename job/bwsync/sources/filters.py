"""bwdc's filter mini-syntax for the cloud sources (reference §6), shared by all of them.

A filter string is ``<set part>|<query part>``:

* the set part ``include:a,b`` / ``exclude:a,b`` keeps or drops candidates (emails, or group
  names) compared trimmed and lower-cased; a ``None`` candidate compares as ``--``. Any other
  keyword, or a second ``:`` in the set part, disables it, exactly as in bwdc;
* the query part (after the first ``|``, trimmed) is handed to the source's native API (Google
  ``query``, Okta ``filter``, OneLogin query string); Entra reads secondary clauses from it.

``scope_users_to_groups`` is §6.2: when group sync is on and the group filter has a set part,
only users that are *direct* members of a returned group are kept (deleted users always, and
disabled users when ``remove_disabled`` is on).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from bwsync.model import Group, User


@dataclass(frozen=True, slots=True)
class SetFilter:
    keyword: Literal["include", "exclude"]
    values: frozenset[str]

    def keeps(self, candidate: str | None) -> bool:
        value = "--" if candidate is None else candidate.strip().lower()
        return (value in self.values) == (self.keyword == "include")


@dataclass(frozen=True, slots=True)
class Filter:
    set: SetFilter | None
    query: str | None
    raw_keyword: str | None
    """The set part's keyword as written (lower-cased), even one this helper does not know —
    Entra has its own (``includeGroup`` …)."""
    raw_values: tuple[str, ...]

    def keeps(self, candidate: str | None) -> bool:
        return self.set is None or self.set.keeps(candidate)


def parse_filter(text: str | None) -> Filter:
    """Parse a bwdc filter string; ``None``/blank means "no filter"."""
    if text is None or not text.strip():
        return Filter(None, None, None, ())
    set_part, bar, rest = text.partition("|")
    query = rest.strip() if bar and rest.strip() else None
    pieces = set_part.split(":")
    if len(pieces) != 2:
        return Filter(None, query, None, ())
    keyword = pieces[0].strip().lower()
    values = tuple(v.strip().lower() for v in pieces[1].split(","))
    if keyword in ("include", "exclude"):
        kw: Literal["include", "exclude"] = "include" if keyword == "include" else "exclude"
        return Filter(SetFilter(kw, frozenset(values)), query, keyword, values)
    return Filter(None, query, keyword, values)


def scope_users_to_groups(
    users: list[User], groups: Iterable[Group], *, remove_disabled: bool
) -> list[User]:
    """§6.2: keep users that are direct members of a returned group, plus deleted users, plus
    disabled users when ``remove_disabled`` is on. Call before flattening."""
    members: set[object] = set()
    for g in groups:
        members.update(g.user_member_external_ids)
    return [
        u
        for u in users
        if u.deleted or (remove_disabled and u.disabled) or u.external_id in members
    ]
