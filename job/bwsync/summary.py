"""What a run says about itself: the summary (the log's ``summary`` line, the state's
``last_run`` and history), the record of a success or a failure in the state document, the
timing of its stages, and the log lines of its changes and of the entries it left out.

Everything here reads the ``RunReport`` or the plan; nothing decides what the run does
(``bwsync.run``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bwsync.changes import TAKES_ACCESS
from bwsync.config import env_name
from bwsync.email_rules import REASONS
from bwsync.errors import StateError
from bwsync.logs import LOGGER, event
from bwsync.model import Directory, Rejected, RunReport
from bwsync.plan import Plan
from bwsync.state import StateDocument, StateStore


class Stages:
    """Times each stage into the report (``stage_seconds``) and logs it once it ends, with
    the fields the stage adds to the dict it is given."""

    def __init__(self, report: RunReport) -> None:
        self.report = report

    @contextlib.contextmanager
    def __call__(self, name: str, **fields: Any) -> Iterator[dict[str, Any]]:
        start = time.perf_counter()
        extra: dict[str, Any] = dict(fields)
        yield extra
        seconds = time.perf_counter() - start
        self.report.stage_seconds[name] = self.report.stage_seconds.get(name, 0.0) + seconds
        event(name, seconds=round(seconds, 4), **extra)


#: Entries dropped for their email are named one warning each up to this many; the rest are
#: counted in one more warning (and all of them in the summary's ``skipped``).
REJECTED_LOG_LIMIT = 100


def warn_rejected(rejected: list[Rejected]) -> None:
    """Name each directory entry left out of the import for an email the servers refuse: the
    run goes on without it (one bad entry blocks nobody), and the admin learns which to fix."""
    for r in rejected[:REJECTED_LOG_LIMIT]:
        event(
            "entry_skipped",
            logging.WARNING,
            reason=r.reason,
            entry=r.entry,
            email=r.email,
            note=f"{REASONS.get(r.reason, r.reason)}: left out of the import; fix the entry",
        )
    if len(rejected) > REJECTED_LOG_LIMIT:
        more = Counter(r.reason for r in rejected[REJECTED_LOG_LIMIT:])
        event("entries_skipped", logging.WARNING, more=dict(more), note="not named one by one")


#: Above this many changes, only removals are logged one by one at info level; the rest go to
#: debug, with one info line of counts. A first sync of 100,000 people must not write 100,000
#: info lines (DESIGN.md: no full member lists at info level).
LOG_EACH_LIMIT = 500


def log_changes(plan: Plan, counts: dict[str, int], *, dry: bool) -> None:
    """Each change is logged once: as an action when it is about to be applied, worded
    "would …" when this run only plans or the safety check stops it. ``counts`` are the plan's
    (``plan.counts()``, taken once by the run: 10 ms on a first sync's 100,000 changes)."""
    each = len(plan.changes) <= LOG_EACH_LIMIT
    logged = (
        plan.changes
        if each or LOGGER.isEnabledFor(logging.DEBUG)
        else [c for c in plan.changes if c.action in TAKES_ACCESS]
    )
    for change in logged:
        level = logging.INFO if each or change.action in TAKES_ACCESS else logging.DEBUG
        if LOGGER.isEnabledFor(level):
            event(
                "would " + change.action if dry else change.action,
                level,
                change=change.sentence(dry),
            )
    if not each:
        event(
            "changes",
            counts=counts,
            note=f"{len(plan.changes)} changes: removals are listed above, the others one by "
            f"one at {env_name('log', 'level')}=debug and in `bwsync plan`",
        )


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def remember_success(
    doc: StateDocument,
    hash_: str | None,
    directory: Directory | None,
    report: RunReport,
    *,
    full: bool,
) -> None:
    """A successful run in the state document: the directory's hash (``None``: unchanged),
    when, whether it was a full reconcile, and the source's new delta tokens."""
    if hash_ is not None:
        doc.hash = hash_
    doc.last_success = _now_iso()
    doc.last_success_timestamp = time.time()
    report.last_success_timestamp = doc.last_success_timestamp
    if full:
        doc.last_full_reconcile = doc.last_success_timestamp
    if directory is not None:
        doc.delta = dict(directory.delta)


def summary(report: RunReport) -> dict[str, Any]:
    """The run as counts: the summary log line, the state's ``last_run``, the history."""
    return {
        "command": report.command,
        "result": report.result,
        "exit_code": report.exit_code,
        "started": datetime.fromtimestamp(report.started, UTC).isoformat(timespec="seconds"),
        "seconds": round(report.duration, 3),
        "directory": report.directory_objects,
        "skipped": report.skipped,
        "planned": report.planned,
        "applied": report.applied,
        "sent": report.sent,
        "unsent_batches": report.unsent_batches,
        "retries": report.retries,
        "error": report.error,
    }


def record(doc: StateDocument, report: RunReport) -> None:
    """The run's summary as the document's ``last_run`` and in its history."""
    doc.record_run(summary(report))


def record_failure(store: StateStore, report: RunReport) -> None:
    """Remember that this run failed without touching the hash or the delta tokens."""
    report.finished = time.time()
    try:
        fresh = store.load()
        if fresh.lease is not None and not store.owns(fresh.lease):
            return  # another run holds it: leave its document alone
        fresh.lease = None
        record(fresh, report)
        store.save(fresh)
    except StateError as exc:
        event("state_not_updated", logging.WARNING, error=str(exc))
