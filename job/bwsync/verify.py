"""The re-read after applying: which planned changes the organization shows, and what a
change taking access away that it does not show means for the run (exit 4).

How each action is confirmed is its definition's (``bwsync.changes.ActionSpec.check``).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING

from bwsync.changes import REREAD, SPEC, TAKES_ACCESS, Change, Check
from bwsync.errors import BitwardenError
from bwsync.logs import event
from bwsync.model import STATUS_REVOKED, OrgGroup, RunReport
from bwsync.plan import Plan

if TYPE_CHECKING:
    from bwsync.bitwarden import BitwardenClient


def verify(
    client: BitwardenClient,
    plan: Plan,
    report: RunReport,
    *,
    planned: dict[str, int] | None = None,
) -> list[Change]:
    """Re-read the organization and check each planned member/group change took effect.

    Nothing to check (an organization already in step) means nothing is re-read: the member
    list of a large organization is the most expensive request a run makes. Of each member only
    its externalId and status are decoded (``MemberState``), and invitations and links, the bulk
    of a first sync, are tested in one comprehension: a first sync checks 100,000 of them.
    ``planned`` is ``plan.counts()`` when the caller has it already. Returns the changes
    that did not take effect, in plan order."""
    changes = plan.changes
    if planned is None:
        planned = plan.counts()
    if not any(c.action in REREAD for c in changes):
        report.applied = {action: n for action, n in planned.items() if SPEC[action].applies}
        return []
    states = client.member_states()
    groups = client.list_groups() if states is not None else None  # both, or neither (§5)
    status_of = {m.external_id: m.status for m in states or () if m.external_id}
    group_by_ext = {g.external_id or "": g for g in groups or () if g.synced}
    group_ids = {g.id for g in groups or ()}
    failed = [c for c in changes if c.action in _ADDED and (c.external_id or "") not in status_of]
    for change in changes:
        check = _CHECK[change.action]
        if check == "group_members":
            if change.group_id in group_ids and client.group_member_ids(
                change.group_id or "", missing_ok=True
            ):
                failed.append(change)
        elif check == "group_gone":
            if change.group_id in group_ids:
                failed.append(change)
        elif (
            check is not None
            and check != "present"
            and not _took_effect(change, check, status_of, group_by_ext)
        ):
            failed.append(change)
    missing: Counter[str] = Counter(c.action for c in failed)
    report.applied = {
        action: count - missing[action]
        for action, count in planned.items()
        if SPEC[action].applies and count > missing[action]
    }
    if not failed:
        return []
    gone = {id(c) for c in failed}
    in_order = [c for c in changes if id(c) in gone]
    report.applied_differs = True
    entries = [c.sentence(dry_run=False) for c in in_order[:20]]
    event("applied_differs", logging.WARNING, count=len(in_order), entries=entries)
    return in_order


def refuse_access_left(failed: list[Change]) -> None:
    """A change taking access away that the re-read shows not done fails the run (exit 4):
    the access it was to end is still there, and a success would save the hash, so no later
    run would plan it again until the directory changes."""
    left = [c for c in failed if c.action in TAKES_ACCESS]
    if not left:
        return
    named = "; ".join(c.sentence(dry_run=False) for c in left[:10])
    more = f" (and {len(left) - 10} more)" if len(left) > 10 else ""
    raise BitwardenError(
        "verify",
        f"{len(left)} changes taking access away were accepted but the organization, read "
        f"again, does not show them: {named}{more}. The previous hash is kept, so the next "
        "run plans them again",
    )


#: How the re-read confirms each action (one lookup per change: a first sync checks 100,000).
_CHECK: dict[str, Check | None] = {a: spec.check for a, spec in SPEC.items()}
#: Changes a re-read confirms by the member's presence (its externalId in the list): tested
#: in one comprehension, the bulk of a first sync.
_ADDED = frozenset(s.name for s in SPEC.values() if s.check == "present")


def _took_effect(
    change: Change, check: Check, status_of: dict[str, int], group_by_ext: dict[str, OrgGroup]
) -> bool:
    ext = change.external_id or ""
    match check:
        case "absent":
            return ext not in status_of
        case "status":
            status = status_of.get(ext)
            return status is not None and (status == STATUS_REVOKED) == (change.action == "revoke")
        case "group":
            return ext in group_by_ext
        case "group_id":
            group = group_by_ext.get(ext)
            return group is not None and group.id == change.group_id
        case _:  # group_name
            group = group_by_ext.get(ext)
            return group is not None and group.name == change.group
