"""How a run's outcome is shown: the plan as a table for a person (``bwsync plan`` on a
terminal, ``bwsync demo``), the plan as a JSON document for a program (``bwsync plan`` piped),
and the one-line summary the demo prints after a sync.

Its own module so that the CLI and the demo both use it without importing each other.

The plan's notes and safety reasons are messages and go through the masking boundary
(``bwsync.redact``); its rows and entries are directory and organization data, shown as they
are (masking every one of 100,000 rows would cost more than the rest of the output).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from bwsync.logs import counts_text
from bwsync.plan import safety_advice
from bwsync.redact import redact, redact_data

if TYPE_CHECKING:
    from bwsync.model import RunReport
    from bwsync.run import Outcome

__all__ = ["plan_document", "plan_verdict", "print_plan_text", "sent_entries", "summary_line"]


def plan_document(outcome: Outcome) -> dict[str, Any]:
    """The plan as JSON: counts, every change, the requests that would be sent, the verdict."""
    report = outcome.report
    plan = outcome.plan
    payload = outcome.payload
    return {
        "result": plan_verdict(outcome),
        "organizationKnown": plan.org_known if plan else None,
        "directory": report.directory_objects,
        "skipped": report.skipped,
        "skippedEntries": [
            {"reason": r.reason, "entry": r.entry, "email": r.email}
            for r in (outcome.directory.rejected if outcome.directory else [])
        ],
        "counts": plan.counts() if plan else {},
        "changes": [c.as_dict() for c in plan.changes] if plan else [],
        "notes": redact_data(plan.notes) if plan else [],
        "safety": redact_data(outcome.safety),
        "requests": [
            {
                "members": r.members,
                "groups": r.groups,
                "bytes": len(r.body),
                "sent": i not in outcome.unsent,
            }
            for i, r in enumerate(payload.requests if payload else [])
        ],
        "hash": payload.hash if payload else None,
        "send": sent_entries(outcome),
    }


def plan_verdict(outcome: Outcome) -> str:
    """The plan document's ``result``, which never contradicts its ``changes``:

    - ``nothing_to_do``: nothing would change — the directory is unchanged since the last
      successful sync (no Bitwarden request at all), or the organization already matches it;
    - ``changes``: ``changes`` lists what a sync would do;
    - ``safety_stop``: a safety limit would stop the sync; nothing would be applied;
    - ``unknown``: the server cannot list its organization (Vaultwarden) and the plan has no
      change of its own: ``send`` lists what the import would carry, what that changes there
      cannot be known beforehand.
    """
    plan = outcome.plan
    if outcome.report.result == "no_change":
        return "nothing_to_do"
    if outcome.safety:
        return "safety_stop"
    if plan is not None and plan.changes:
        return "changes"
    if plan is None or plan.org_known:
        return "nothing_to_do"
    return "unknown"


def sent_entries(outcome: Outcome) -> dict[str, Any]:
    """What the import would carry, entry by entry (the issue's 'counts and entries')."""
    d = outcome.directory
    if d is None or outcome.payload is None:
        return {"members": [], "groups": []}
    members = []
    for i, r in enumerate(outcome.payload.requests):
        if i not in outcome.unsent:  # a batch left out as unchanged sends nobody
            members.extend(orjson.loads(r.body)["members"])
    groups = [
        {"name": g.name, "externalId": g.external_id, "members": len(g.user_member_external_ids)}
        for g in (d.groups or [])
    ]
    return {"members": members, "groups": groups}


def print_plan_text(outcome: Outcome) -> None:
    """The plan as a person reads it: the directory's counts and what was left out, then the
    changes as a table (or the entries the import would send), then any safety stop."""
    report = outcome.report
    plan = outcome.plan
    d = report.directory_objects
    print(
        f"directory: {d.get('users', 0)} users ({d.get('disabled_users', 0)} disabled, "
        f"{d.get('deleted_users', 0)} deleted), {d.get('groups', 0)} groups"
    )
    if report.skipped:
        print("skipped:   " + counts_text(dict(sorted(report.skipped.items()))))
    left_out = outcome.directory.rejected if outcome.directory else []
    for entry in left_out[:20]:
        print(f"  left out: {entry.entry} <{entry.email}>: {entry.reason}")
    if len(left_out) > 20:
        print(f"  left out: {len(left_out) - 20} more (bwsync plan --output json lists them)")
    if report.result == "no_change":
        print("nothing to do: the directory is unchanged since the last successful sync")
        return
    if plan is None:
        return
    for note in plan.notes:
        print(redact(f"note: {note}"))
    if plan.org_known and not plan.changes:
        print("no changes: the organization already matches the directory")
    rows = [
        (c.action, c.subject, (c.group or "") if c.action.startswith("member_") else "", c.why)
        for c in plan.changes
    ]
    if rows:
        widths = [
            max(len(r[i]) for r in [("ACTION", "SUBJECT", "GROUP", "REASON"), *rows])
            for i in range(3)
        ]
        header = ("ACTION", "SUBJECT", "GROUP", "REASON")
        for r in [header, *rows]:
            print(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}")
    if plan.org_known or plan.changes:
        print("totals:    " + counts_text(dict(sorted(plan.counts().items()))))
    if plan.org_known:
        if outcome.unsent and outcome.payload:
            n = len(outcome.payload.requests)
            print(
                f"requests:  {n - len(outcome.unsent)} of {n} import batches would be sent; "
                f"{len(outcome.unsent)} hold no change and are left out (--force sends all)"
            )
    else:
        sent = sent_entries(outcome)
        print(f"would send {len(sent['members'])} members and {len(sent['groups'])} groups:")
        for m in sent["members"]:
            print(
                f"  member {m['email']}  externalId={m['externalId']}"
                + ("  deleted" if m["deleted"] else "")
            )
        for g in sent["groups"]:
            print(f"  group  {g['name']}  externalId={g['externalId']}  members={g['members']}")
    for reason in outcome.safety:
        print(redact(f"SAFETY STOP: {reason}"))
    if outcome.safety:
        print(redact(f"SAFETY STOP: {safety_advice(outcome.safety)}"))


def summary_line(report: RunReport) -> str:
    """One sync in a line: its result and exit code, how long it took, what it applied."""
    return (
        f"result: {report.result} (exit {report.exit_code}) in {report.duration:.2f}s; "
        f"applied: {counts_text(report.applied) if report.applied else 'nothing'}"
    )
