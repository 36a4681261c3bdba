"""The state document and the contract every state backend fulfils.

The document is small, versioned JSON: the last payload hash and the fingerprint of the
settings it does not cover (``bwsync.fingerprint``), timestamps, incremental tokens,
the last run's summary, a short history and a lease — a few KiB, kept under
``MAX_DOCUMENT_BYTES`` (64 KiB) by trimming the history. It never holds secrets. Against a
server that cannot list members (Vaultwarden) it also holds ``memory``, the members bwsync
synced there (``bwsync.memory``: compressed emails, opaque here), which may take up to
``MAX_MEMORY_BYTES`` more: the whole stays under a ConfigMap's 1 MiB, so every backend can
hold it. Version 2 added ``memory``; version 1 documents are read as they are.

Backends only move bytes: ``_read`` returns the stored bytes and an opaque *version* (a
ConfigMap ``resourceVersion``, an object ETag, a file's content digest); ``_write`` stores bytes
only if the stored version is still the one given (``None`` = no document stored yet) and raises
``StateConflictError`` otherwise. A backend whose container exists without a document (a
ConfigMap created by the Helm chart, without our key) returns ``(None, version)``: there is no
document, but the next write is still conditional on that version. Everything else (parsing,
the lease, history trimming) is here, once, so every backend behaves the same.

One writer at a time: before the Bitwarden stage a run takes the lease with a conditional write.
Two runs that read the same version cannot both win that write; the loser re-reads, sees a live
lease and exits 5 naming its holder. A run whose state was rewritten after it read it (another
run applied and released in the meantime) does not get the lease either: its plan is stale.

How a lease ends:

* the holder gives it back: at the end of every run that took it, failed or interrupted
  (SIGTERM/SIGINT, ``bwsync.stop``), with the run's summary and the hash unchanged unless the
  run succeeded;
* a run on the same host takes it over at once when the holder provably is gone: same machine
  and PID namespace, and its process no longer runs (``liveness``, which also says why a pod's
  lease cannot be judged so: another pod is another PID namespace). The log says so
  (``lease_taken_over``, with the holder and the reason). Only a run that found the holder
  gone already when it read the state (before it read the organization) takes over: a holder
  alive then may have applied after this run's plan was made, and that plan is not applied;
* otherwise it expires, ``BWSYNC_STATE__LEASE_SECONDS`` after it was taken: the only way a
  lease of a pod killed outright (SIGKILL, OOM, a lost node) ends.
"""

from __future__ import annotations

import logging
import secrets
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from bwsync.config import env_name
from bwsync.errors import LeaseHeldError, StateConflictError, StateError, shorten
from bwsync.logs import event
from bwsync.redact import redact_data
from bwsync.state import liveness

STATE_VERSION = 2
HISTORY_LIMIT = 20
#: The document without its memory of synced members; history gives way first.
MAX_DOCUMENT_BYTES = 64 * 1024
#: The memory of synced members (``bwsync.memory``). With the rest, under a ConfigMap's 1 MiB.
MAX_MEMORY_BYTES = 900 * 1024
#: longest text kept in a run summary (an error message), in characters
MAX_SUMMARY_TEXT = 2000
#: Why the lease of an earlier pass of this very process is taken over (``acquire_lease``).
EARLIER_RUN = "an earlier run of this process (sync --every) that could not give it back"


@dataclass(slots=True)
class Lease:
    holder: str
    """``profile/host/pid``, for people (``lease_holder`` in ``run.py``)."""
    expires: float
    """Epoch seconds after which another run may take the lease over."""
    process: str | None = None
    """The holder's process identity (``liveness``): whether it provably is gone. ``None`` in
    documents of older versions and where it cannot be read."""
    run: str | None = None
    """A random id of the run that took it: the only thing that tells a run its own lease
    (``StateStore.owns``). Names are equal for two containers of one host name, or two
    hostNetwork pods of one node, all PID 1; identities are equal for two passes of one
    ``sync --every`` process, and unknown in documents of older versions and without /proc.
    ``None`` in documents of older versions: never this run's."""
    busy: str | None = None
    """Why the lease outlives its holder's run: a Bitwarden write that run gave up at a stop
    may still be running on the server until ``expires`` (``run.py``). No process identity
    then: nothing takes it over before; the next run waits for it to end."""


@dataclass(slots=True)
class StateDocument:
    version: int = STATE_VERSION
    hash: str | None = None
    """bwdc-compatible hash of the last import that was applied completely."""
    fingerprint: str | None = None
    """What that apply did beyond the import body (``bwsync.fingerprint``): the settings that
    change the plan but not the body. ``None``: written by an older bwsync."""
    last_success: str | None = None
    """ISO-8601 time of the last successful run (applied, or nothing to do)."""
    last_success_timestamp: float | None = None
    """The same as epoch seconds, for the metric that must survive failed runs."""
    last_full_reconcile: float | None = None
    """Epoch seconds of the last run that applied without trusting the hash."""
    last_run: dict[str, Any] | None = None
    """Summary of the most recent run, failed or not."""
    delta: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    lease: Lease | None = None
    memory: dict[str, Any] | None = None
    """The members bwsync synced to a server that cannot list them (``bwsync.memory``);
    replaced by a successful run; a failed one adds what its accepted imports carried."""

    def record_run(self, summary: dict[str, Any]) -> None:
        """Remember a run's summary (counts, result, durations; never member lists).

        Text values are masked (``bwsync.redact``: the document is readable by whoever may read
        the ConfigMap or the bucket) and cut to ``MAX_SUMMARY_TEXT`` characters: an error
        message listing every bad setting or entry must not make the document too big to
        write, which would turn the run's real failure into a state failure.
        """
        summary = {
            k: (
                shorten(v, MAX_SUMMARY_TEXT)
                if isinstance(v, str) and len(v) > MAX_SUMMARY_TEXT
                else redact_data(v)
            )
            for k, v in summary.items()
        }
        self.last_run = summary
        self.history = [*self.history, summary][-HISTORY_LIMIT:]

    def to_bytes(self) -> bytes:
        """The stored form; oldest history entries give way first when it would exceed the cap.

        Apart from the memory, nothing in the document grows with the directory, but a run
        summary carries error text and per-reason counts: trimming history keeps a long streak
        of verbose failures from making the state unwritable (which would fail every later run
        with exit 5). The memory has its own cap, checked by the run before it applies.
        """
        memory = len(orjson.dumps(self.memory)) if self.memory is not None else 0
        if memory > MAX_MEMORY_BYTES:  # the run refuses such a memory before applying
            raise StateError(
                f"the memory of synced members is {memory} bytes, over {MAX_MEMORY_BYTES}; "
                "not writing it"
            )
        while True:
            data = orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
            if len(data) - memory <= MAX_DOCUMENT_BYTES:
                return data
            if not self.history:  # a bug, never a function of directory size
                raise StateError(
                    f"state document is {len(data) - memory} bytes (without the memory of "
                    f"synced members), over {MAX_DOCUMENT_BYTES}; not writing it"
                )
            self.history = self.history[1:]

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> StateDocument:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StateError(
                f"state in {where} is not valid JSON ({exc}); not overwriting it. "
                "Inspect it, then `bwsync state clear` to start over"
            ) from None
        if not isinstance(raw, dict):
            raise StateError(f"state in {where} is not a JSON object; not overwriting it")
        version = raw.get("version")
        # bool is an int to Python; a version of True or 0 is not one we ever wrote
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise StateError(
                f"state in {where} has no valid version ({version!r}); not overwriting it. "
                "Inspect it, then `bwsync state clear` to start over"
            )
        if version > STATE_VERSION:
            raise StateError(
                f"state in {where} has version {version!r}, this bwsync understands up to "
                f"{STATE_VERSION}; upgrade bwsync (it is never overwritten by an older one)"
            )
        try:
            lease = _typed(raw, "lease", dict)
            return cls(
                version=STATE_VERSION,
                hash=_typed(raw, "hash", str),
                fingerprint=_typed(raw, "fingerprint", str),
                last_success=_typed(raw, "last_success", str),
                last_success_timestamp=_typed(raw, "last_success_timestamp", float),
                last_full_reconcile=_typed(raw, "last_full_reconcile", float),
                last_run=_typed(raw, "last_run", dict),
                delta={str(k): v for k, v in (_typed(raw, "delta", dict) or {}).items()},
                history=[h for h in (_typed(raw, "history", list) or []) if isinstance(h, dict)],
                lease=Lease(
                    holder=str(lease["holder"]),
                    expires=float(lease["expires"]),
                    process=_typed(lease, "process", str),
                    run=_typed(lease, "run", str),
                    busy=_typed(lease, "busy", str),
                )
                if lease
                else None,
                memory=_typed(raw, "memory", dict),
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise StateError(
                f"state in {where} has an unexpected shape ({exc}); not overwriting it. "
                "Inspect it, then `bwsync state clear` to start over"
            ) from None


def _typed(raw: dict[str, Any], key: str, kind: type) -> Any:
    """``raw[key]`` if it is absent, null or a ``kind``; a ``TypeError`` otherwise.

    A field of the wrong type (a hand-edited ConfigMap, another tool's object) would otherwise
    surface later as a crash in the middle of a run, after the directory was read.
    """
    value = raw.get(key)
    if value is None:
        return None
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{key} should be {kind.__name__}, not {type(value).__name__}")
    return value


class StateStore(ABC):
    """A place to keep one state document, with compare-and-swap writes."""

    #: e.g. "file /var/lib/bwsync/state.json" — named in every error
    description: str = "state"

    def __init__(self) -> None:
        self._version: str | None = None
        #: whether this store (this run) has read the document: then the lease is only granted
        #: on the version it read, see ``acquire_lease``
        self._loaded = False
        #: at the last ``load``: why the holder of the lease stored then provably was gone
        #: (``liveness.gone``), ``None`` if it was not (or there was no lease)
        self._gone_at_read: str | None = None
        #: the id of the lease this store took, or tried to take (``Lease.run``)
        self._run: str | None = None

    # -- what a backend implements -------------------------------------------------------
    @abstractmethod
    def _read(self) -> tuple[bytes | None, str | None]:
        """Stored bytes and version; ``(None, None)`` when nothing is stored yet, ``(None,
        version)`` when the container exists without a document."""

    @abstractmethod
    def _write(self, data: bytes, expected_version: str | None) -> str:
        """Store ``data`` if the stored version is ``expected_version``; return the new one.
        Raise ``StateConflictError`` when it is not, ``StateError`` on any other failure."""

    @abstractmethod
    def _delete(self) -> None:
        """Remove the stored document (``bwsync state clear``)."""

    # -- what the run uses ---------------------------------------------------------------
    def load(self) -> StateDocument:
        data, self._version = self._read()
        self._loaded = True
        doc = StateDocument() if data is None else StateDocument.from_bytes(data, self.description)
        self._gone_at_read = liveness.gone(doc.lease.process) if doc.lease else None
        return doc

    def save(self, doc: StateDocument) -> None:
        """Write conditionally on the version last loaded or saved."""
        self._version = self._write(doc.to_bytes(), self._version)

    def check(self) -> str:
        """What ``bwsync check`` can prove without changing the document: by default that it
        is readable (and parses). Backends that can also prove a write would succeed (the lock,
        the permission) without making one say so; ``StateError`` when either fails."""
        self.load()
        return "readable"

    def owns(self, lease: Lease) -> bool:
        """Whether ``lease`` is the one this store (this run) took, or tried to: a write that
        failed may still have landed."""
        return lease.run is not None and lease.run == self._run

    def clear(self) -> None:
        self._delete()
        self._version = None
        self._loaded = False

    def acquire_lease(
        self,
        holder: str,
        seconds: float,
        now: float | None = None,
        *,
        process: str | None = None,
    ) -> StateDocument:
        """Read, then take the lease with a conditional write; return the document now held.

        A valid lease of another holder is refused, unless that holder provably is gone
        (``liveness.gone``; ``process`` is this run's identity, recorded in the lease): then
        it is taken over, and the log says from whom and why.

        When this store already read the document earlier in the run (a run reads its state
        before it plans), the lease is granted only on that same version. Another run that
        wrote in between, by taking the lease or by applying and releasing it already, made
        this run's plan stale; without this check a run that finished before its twin got here
        would let both apply. A takeover does not lift that rule: the holder that is gone wrote
        its lease after this run read the state, and this run's plan predates whatever that
        holder sent, so it exits 5 and the next run takes over and plans afresh. Nor does a
        takeover of a lease that was already there when this run read the state, unless its
        holder was gone already then: a holder that still ran may have applied (imported,
        revoked) after this run read the organization, and a plan made on that older view
        would be applied over it.
        """
        now = time.time() if now is None else now
        seen, loaded, gone_at_read = self._version, self._loaded, self._gone_at_read
        doc = self.load()
        lease = doc.lease
        if lease and not self.owns(lease) and lease.expires > now:
            # The passes of one process (``sync --every``) follow one another: a lease of this
            # process is one an earlier pass could not give back (its state store was down).
            earlier_pass = process is not None and lease.process == process
            why = EARLIER_RUN if earlier_pass else liveness.gone(lease.process)
            if why is None:
                raise LeaseHeldError(
                    self.description,
                    lease.holder,
                    f", until {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(lease.expires))}"
                    f"{_unprovable(lease)}",
                )
            if loaded and self._version == seen and gone_at_read is None and not earlier_pass:
                raise LeaseHeldError(
                    self.description,
                    lease.holder,
                    f" (it was still running when this run read the state, and has ended since: "
                    f"{why}). This run's plan may predate what that run applied, so it is not "
                    "applied; the next run takes the lease over and plans afresh",
                )
            event(
                "lease_taken_over",
                logging.WARNING,
                holder=lease.holder,
                reason=why,
                expires=_iso(lease.expires),
                backend=self.description,
            )
        if loaded and self._version != seen:
            raise StateConflictError(
                self.description,
                how=_last_run_of(doc),
                then="not applying a plan made on the older state. The next run starts from "
                "the new one",
            )
        self._run = secrets.token_hex(8)
        doc.lease = Lease(holder=holder, expires=now + seconds, process=process, run=self._run)
        try:
            self.save(doc)
        except StateConflictError:
            fresh = self.load()
            who = fresh.lease.holder if fresh.lease else "another run"
            raise LeaseHeldError(self.description, who, " (it took the lease first)") from None
        return doc

    def release(self, doc: StateDocument) -> None:
        """Save the final document without the lease.

        Conditional on the version this run last wrote. If another process wrote meanwhile but
        left our lease in place (a run that found nothing to do and recorded itself while we
        applied), ours still wins: we held the lease. If our lease was taken over (it expired:
        the run outlived ``BWSYNC_STATE__LEASE_SECONDS``), nothing is written and the error
        says by whom.
        """
        ours = doc.lease
        doc.lease = None
        try:
            self.save(doc)
        except StateConflictError:
            fresh = self.load()
            if ours is None or fresh.lease is None or fresh.lease.run != ours.run:
                who = fresh.lease.holder if fresh.lease else "another run"
                raise StateConflictError(
                    self.description,
                    how=f"written by {who} while this run held the lease: did it outlive "
                    f"{env_name('state', 'lease_seconds')}?",
                    then="this run's state was not saved",
                ) from None
            self.save(doc)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _unprovable(lease: Lease) -> str:
    """Why a valid lease is honoured, when the holder's liveness cannot be judged here."""
    if lease.busy is not None:
        return f" ({lease.busy})"
    if lease.process is None:  # written by an older version: nothing to judge by
        return ""
    if liveness.visible(lease.process):
        return " (its process still runs on this host)"
    return (
        " (taken on another host, pod or container: whether that run is still alive cannot be "
        "told from here, so the lease is honoured until it expires)"
    )


def _last_run_of(doc: StateDocument) -> str:
    """A few words on who wrote the document last, from its own record."""
    if doc.lease:
        return f"lease holder {doc.lease.holder}"
    run = doc.last_run or {}
    parts = [f"{k} {run[k]}" for k in ("profile", "result", "finished") if run.get(k) is not None]
    return "its last run: " + ", ".join(parts) if parts else "no run recorded"


class NoStateStore(StateStore):
    """``BWSYNC_STATE__BACKEND=none``: nothing remembered, every run sends the full import."""

    description = "no state (backend none)"

    def check(self) -> str:
        return "nothing is read or written"

    def _read(self) -> tuple[bytes | None, str | None]:
        return None, None

    def _write(self, data: bytes, expected_version: str | None) -> str:
        return "none"

    def _delete(self) -> None:
        return None
