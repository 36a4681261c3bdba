"""Applying a plan: the requests that carry it out, in the order that keeps each safe.

The group relinks first (the import then finds each group under its new externalId), the
import request(s), the revocations and restorations through the member endpoints, and last
the stale groups emptied or deleted: a failure there leaves the directory's own changes
applied, and the next run (the hash is not saved) plans only what is left. Batches of a
batched import in which the plan finds nothing to do are left out (``unchanged_batches``).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from bwsync.changes import IN_MEMBER_BATCH, STALE_GROUP_ACTIONS
from bwsync.errors import BwsyncError
from bwsync.logs import event
from bwsync.payload import ImportRequest, Payload
from bwsync.plan import Plan
from bwsync.summary import Stages

if TYPE_CHECKING:
    from bwsync.bitwarden import BitwardenClient


def unchanged_batches(payload: Payload, plan: Plan) -> set[int]:
    """Indexes of the member-only batches of a batched import in which the plan finds nothing
    for the server to do: every entry's member is already in the organization as the entry
    says, so §3.4 would change nothing. Leaving them out makes one changed user in 100,000
    cost one import request instead of 51 (the cloud allows 60 POSTs a minute).

    Only where the plan knows the organization (list endpoints read this run, after the fetch:
    the run sends everything when it read them beside the fetch); group batches are always
    sent, since memberships are not read without ``--detail``. A run that leaves batches out
    does not count as a full reconcile."""
    if not plan.org_known or len(payload.requests) < 2:
        return set()
    touched = {c.external_id for c in plan.changes if c.action in IN_MEMBER_BATCH and c.external_id}
    return {
        i
        for i, req in enumerate(payload.requests)
        if req.groups == 0 and req.members and touched.isdisjoint(req.member_external_ids)
    }


def apply(
    client: BitwardenClient,
    payload: Payload,
    plan: Plan,
    stage: Stages,
    *,
    unchanged: frozenset[int],
    accepted: list[ImportRequest] | None = None,
) -> None:
    """Relink the groups the directory identifies anew, POST the import request(s) in order
    but the ``unchanged`` ones, then revoke/restore through the member endpoints, then empty
    or delete the stale groups. Each import request the server accepted is appended to
    ``accepted``: what a failed run may remember of it (``memory.after_accepted``)."""
    done: Counter[str] = Counter()
    try:
        _send(client, payload, plan, stage, unchanged=unchanged, done=done, accepted=accepted)
    except BwsyncError:
        # What the member and group endpoints did before the failure is done for good: the
        # summary says so (the import's part is in ``sent``; nothing re-read confirms it).
        stage.report.applied = dict(done)
        raise


def _send(
    client: BitwardenClient,
    payload: Payload,
    plan: Plan,
    stage: Stages,
    *,
    unchanged: frozenset[int],
    done: Counter[str],
    accepted: list[ImportRequest] | None,
) -> None:
    sent = stage.report.sent
    n = len(payload.requests)
    if unchanged:
        stage.report.unsent_batches = len(unchanged)
        event(
            "batches_unchanged",
            count=len(unchanged),
            of=n,
            note="these member batches hold only members the organization already has as the "
            "directory says; not sent (--force sends every batch)",
        )
    for change in plan.of("group_relink"):
        # Before the import, which then finds the group under its new externalId: its
        # members are synced as usual and its collection grants stay.
        assert change.group_id is not None
        assert change.external_id is not None
        assert change.group is not None
        with stage("apply", step=change.action, subject=change.subject) as info:
            if not client.update_group(change.group_id, change.group, change.external_id):
                info["note"] = "the group was gone already: the import creates it anew"
        done[change.action] += 1
    for i, req in enumerate(payload.requests, start=1):
        if i - 1 in unchanged:
            continue
        step = "import" if n == 1 else f"import {i}/{n}"
        with stage("apply", step=step, members=req.members, groups=req.groups):
            client.import_organization(req.body, step=step)
        if accepted is not None:
            accepted.append(req)
        sent["members"] = sent.get("members", 0) + req.members
        sent["groups"] = sent.get("groups", 0) + req.groups
    if not plan.org_known:
        return  # revoked and restored by the import itself (Vaultwarden, by email)
    for change in plan.of("revoke", "restore"):
        assert change.member_id is not None
        with stage("apply", step=change.action, subject=change.subject) as info:
            act = client.revoke_member if change.action == "revoke" else client.restore_member
            if not act(change.member_id):
                info["note"] = f"{'revoked' if change.action == 'revoke' else 'active'} already"
        done[change.action] += 1
    for change in plan.of(*STALE_GROUP_ACTIONS):
        # After the import: a failure here leaves the directory's own changes applied, and
        # the next run (the hash is not saved) plans only what is left of these.
        assert change.group_id is not None
        with stage("apply", step=change.action, subject=change.subject) as info:
            if change.action == "group_empty":
                found = client.set_group_member_ids(change.group_id, [])
            else:
                found = client.delete_group(change.group_id)
            if not found:
                info["note"] = "the group was gone already (deleted by hand meanwhile?)"
        done[change.action] += 1
