"""One sync pass, stage by stage, timed (DESIGN.md "The run").

``execute`` is the only place that knows the order of things; every stage it calls is a module
with one job. What it guarantees:

* nothing is written to Bitwarden before the safety check passed and the state lease is held;
* the state's hash and delta tokens change only after every import request succeeded, so a
  failed run is retried in full next time (the import is idempotent) and never half-remembered;
* every outcome, failed or not, ends in a ``RunReport`` — the summary line and the metrics are
  made from it, so they cannot disagree;
* a stop request (SIGTERM, SIGINT: ``bwsync.stop``) ends the run before its next request, as a
  failure would: lease given back, hash untouched, result ``interrupted``, exit 7.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from bwsync.changes import (
    IN_MEMBER_BATCH,
    REREAD,
    SPEC,
    STALE_GROUP_ACTIONS,
    TAKES_ACCESS,
    Change,
    Check,
)
from bwsync.cleartext import exposures
from bwsync.config import Settings, env_name
from bwsync.email_rules import REASONS
from bwsync.errors import (
    BitwardenError,
    BwsyncError,
    ConfigError,
    Interrupted,
    StateError,
)
from bwsync.fingerprint import plan_fingerprint
from bwsync.logs import LOGGER, event
from bwsync.memory import (
    MAX_MEMORY_BYTES,
    Memory,
    MemoryStateError,
    encoded_size,
    scope_of,
    stored_for,
)
from bwsync.model import STATUS_REVOKED, Directory, OrgGroup, Rejected, RunReport
from bwsync.normalize import normalize
from bwsync.payload import Payload, build_payload, is_new_hash
from bwsync.plan import (
    OTHER_ORGANIZATION,
    OrgSnapshot,
    Plan,
    check_safety,
    enforce_safety,
    groups_to_read,
    make_plan,
    stateless_refusal,
)
from bwsync.redact import remember_settings
from bwsync.snapshot import BackgroundRead, read_group_members, read_org
from bwsync.sources import build_source
from bwsync.sources.base import FetchRequest, Source
from bwsync.state import StateDocument, StateStore, open_store
from bwsync.state.liveness import this_process
from bwsync.stop import StopRequest, active

if TYPE_CHECKING:
    # Imported where a client is built (``default_client``), on the thread that reads the
    # organization beside the fetch: httpx and its stack take 30-40 ms to load.
    from bwsync.bitwarden import BitwardenClient, TokenCache

Command = Literal["sync", "plan"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    command: Command = "sync"
    force: bool = False
    """Ignore the stored hash (and incremental tokens): fetch everything and apply."""
    allow_removals: int | None = None
    allow_emptied_groups: int | None = None
    """``--allow-emptied-groups``: replaces ``max_emptied_groups`` for this run."""
    detail: bool = False
    """Read each group's members to plan membership changes (one request per group)."""
    bitwarden: bool = True
    """Read the organization (``plan``); false for ``plan --directory-only``, which lists what
    the import would carry without contacting Bitwarden."""


@dataclass(slots=True)
class Outcome:
    """What the CLI shows after a run."""

    report: RunReport
    directory: Directory | None = None
    payload: Payload | None = None
    plan: Plan | None = None
    safety: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    unsent: frozenset[int] = frozenset()
    """Indexes of ``payload.requests`` left out as unchanged (``unchanged_batches``): what
    ``sync`` does not send, and ``plan`` shows as not to be sent."""


ClientFactory = Callable[[Settings, RunReport], "BitwardenClient"]


def default_client(
    settings: Settings, report: RunReport, *, tokens: TokenCache | None = None
) -> BitwardenClient:
    """The client of one run, reporting into ``report``; ``tokens`` carries the access token
    from one pass of ``sync --every`` to the next."""
    from bwsync.bitwarden import BitwardenClient  # here, not above: see TYPE_CHECKING

    def on_request(endpoint: str, code: int) -> None:
        key = (endpoint, code)
        report.requests[key] = report.requests.get(key, 0) + 1

    def on_retry(_: str) -> None:
        report.retries += 1

    return BitwardenClient(
        settings.bitwarden, on_request=on_request, on_retry=on_retry, tokens=tokens
    )


class _Stages:
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


def lease_holder(profile: str) -> str:
    return f"{profile}/{socket.gethostname()}/{os.getpid()}"


def execute(
    settings: Settings,
    options: RunOptions,
    *,
    source: Source | None = None,
    store: StateStore | None = None,
    client_factory: ClientFactory = default_client,
    stop: StopRequest | None = None,
) -> Outcome:
    """Run one pass. Never raises for a failure of the run itself: the outcome's report
    carries the result, the error message and the exit code. ``stop`` is the process's stop
    request (the CLI's, set by SIGTERM/SIGINT); without one, nothing stops the pass.

    Every pass first remembers the settings' secrets for masking (``bwsync.redact``) and logs
    a warning for each setting that sends a credential in clear (``bwsync.cleartext``)."""
    remember_settings(settings)
    for exposure in exposures(settings):
        event("cleartext", logging.WARNING, setting=exposure.setting, warning=exposure.text)
    return _Run(
        settings,
        options,
        source,
        store or open_store(settings.state),
        client_factory,
        stop=stop or StopRequest(settings.stop_grace_seconds),
    ).execute()


class _Run:
    """One pass's working state; each method is one stage of DESIGN.md's diagram."""

    def __init__(
        self,
        settings: Settings,
        options: RunOptions,
        source: Source | None,
        store: StateStore,
        client_factory: ClientFactory,
        *,
        stop: StopRequest,
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.sync = settings.sync
        self.options = options
        self.source = source
        self.store = store
        self.client_factory = client_factory
        self.report = RunReport(
            profile=settings.profile,
            source=settings.source,
            command=options.command,
            started=time.time(),
        )
        self.outcome = Outcome(report=self.report)
        self.stage = _Stages(self.report)
        self.client: BitwardenClient | None = None
        self.doc: StateDocument | None = None
        self.leased: StateDocument | None = None
        self.early: BackgroundRead | None = None
        self.full_apply = False
        """Set once the state is read (``_decide_full_apply``), for the whole run."""
        self.uses_bitwarden = options.bitwarden and settings.bitwarden.has_api_key
        """Whether this run talks to Bitwarden (the settings pass made sure that ``sync`` and
        ``plan`` have the API key; ``plan --directory-only`` does not talk to it)."""
        self.fingerprint = ""
        """This run's ``plan_fingerprint`` against the state it read."""
        self.ignored_memory = False
        """The state holds a memory of another organization (``_memory``)."""

    def execute(self) -> Outcome:
        try:
            # The work, where a stop request is checked and the grace period may interrupt;
            # never the wrap-up below, which gives the lease back and records the run.
            with active(self.stop):
                self._run()
        except BwsyncError as exc:
            self._failed(exc)
        finally:
            if self.leased is not None:  # an unexpected error while holding the lease
                with contextlib.suppress(Exception):
                    self.store.release(self.leased)
            if not self.report.finished:
                self.report.finished = time.time()
            if self.early is not None:
                self.early.close()  # the client it shares: now, or when a running read ends
            elif self.client is not None:
                self.client.close()
        return self.outcome

    def _run(self) -> None:
        if self.uses_bitwarden and self.settings.bitwarden.ca_file is not None:
            from bwsync.bitwarden import tls_verify  # here: see TYPE_CHECKING

            tls_verify(self.settings.bitwarden)  # a bad CA file: exit 2 before any connection
        self.stop.check("reading the state")
        with self.stage("state_read", backend=self.store.description):
            self.doc = self.store.load()
        self.report.last_success_timestamp = self.doc.last_success_timestamp
        self.fingerprint = plan_fingerprint(
            self.sync, memory=stored_for(self.doc.memory, self._scope)
        )
        self.full_apply = self._decide_full_apply(self.doc)
        self.early = self._read_early()
        directory = self._fetch(self.doc)
        empty = not directory.users and not directory.groups
        if empty and not self.sync.overwrite_existing and not self.sync.remove_missing:
            # bwdc step 7: nothing fetched and nothing to remove → nothing to send.
            self._unchanged("directory empty", directory)
            return
        payload = self._payload(directory)
        if not self.full_apply and not is_new_hash(payload, self.doc.hash):
            self._unchanged("hash unchanged", directory)
            return
        # The hash remembered is the one compared above: that of bwdc's own body, before the
        # plan leaves out protected members or adds removals. Remembering the adjusted body's
        # hash would make every later run with such entries look changed.
        directory_hash = payload.hash
        plan, payload = self._plan(directory, payload)
        # --force, a reconcile due or no remembered hash send every batch, as bwdc does.
        if not self.full_apply:
            self.outcome.unsent = frozenset(unchanged_batches(payload, plan))
        if self.options.command == "plan":
            enforce_safety(self.outcome.safety)
            self.report.succeeded("success")
            return
        enforce_safety(self.outcome.safety)
        self._apply(directory, payload, plan, directory_hash)

    def _count_directory_requests(self, info: dict[str, Any]) -> None:
        """The HTTP requests of a cloud source (``cloud_http.HttpStats``), for the metrics and
        the fetch event, failed fetches included."""
        stats = getattr(self.source, "stats", None)
        if stats is None:
            return
        self.report.directory_requests = dict(stats.by_status)
        self.report.directory_retries = stats.retries
        info["requests"] = stats.requests
        info["retries"] = stats.retries

    def _fetch(self, doc: StateDocument) -> Directory:
        self.source = self.source or build_source(self.settings)
        force = self.options.force or self.sync.overwrite_existing  # bwdc's effectiveForce
        with self.stage("fetch", source=self.source.name, server=self.source.server) as info:
            try:
                raw = self.source.fetch(FetchRequest(force=force, delta=doc.delta))
            finally:
                self._count_directory_requests(info)
            info["users"] = len(raw.users or [])
            info["groups"] = len(raw.groups or [])
        with self.stage("normalize") as info:
            directory = normalize(raw)
            users = directory.users or []
            deleted = disabled = 0
            for u in users:
                if u.deleted:
                    deleted += 1
                elif u.disabled:
                    disabled += 1
            self.report.directory_objects = {
                "users": len(users) - deleted,
                "disabled_users": disabled,
                "deleted_users": deleted,
                "groups": len(directory.groups or []),
            }
            self.report.skipped = dict(directory.skipped)
            info.update(self.report.directory_objects)
            if self.report.skipped:
                info["skipped"] = self.report.skipped
        _warn_rejected(directory.rejected)
        self.outcome.directory = directory
        return directory

    def _payload(self, directory: Directory, plan: Plan | None = None) -> Payload:
        extra: dict[str, Any] = {}
        if plan is not None:
            extra["keep"] = frozenset(plan.protected_external_ids)
            extra["remove"] = plan.send_deleted
        with self.stage("payload") as info:
            payload = build_payload(
                directory.users,
                directory.groups,
                self.sync,
                api_url=self.settings.bitwarden.resolved_api_url,
                org_id=self.settings.bitwarden.organization_id or "",
                member_ids=not self.full_apply,  # only unchanged_batches reads them
                **extra,
            )
            info["requests"] = len(payload.requests)
            info["bytes"] = sum(len(r.body) for r in payload.requests)
        self.outcome.payload = payload
        return payload

    def _read_early(self) -> BackgroundRead | None:
        """Start reading the organization now, beside the directory fetch, when this run needs
        it whatever the directory holds: no hash remembered (a first run, state backend
        ``none``), ``--force``, or a full reconcile due. Otherwise the read waits for the hash
        comparison, so that an unchanged directory costs no Bitwarden request at all."""
        if not self.uses_bitwarden or not self.full_apply:
            return None
        # Not a lambda over self: the read would hold the run, and the run the read, a cycle
        # keeping every object of the pass alive until a collection.
        connect = functools.partial(self.client_factory, self.settings, self.report)
        return BackgroundRead(connect, detail=self.options.detail)

    def _decide_full_apply(self, doc: StateDocument) -> bool:
        """Whether this run applies everything, as bwdc would, whatever the directory holds:
        no hash remembered (a first run, state backend ``none``), ``--force``, settings that
        change the plan but not the import body changed since the last apply (or the state
        predates their fingerprint: ``bwsync.fingerprint``), or a full reconcile due. It then
        reads the organization beside the fetch, and sends every batch, since that snapshot
        may be as old as the fetch. Decided once, so that a reconcile falling due in the
        middle of a run cannot change its course half-way."""
        every = self.sync.full_reconcile_every
        if self.options.force:
            why = "--force"
        elif doc.hash is None:
            why = "no hash remembered (a first run, a cleared state, or state backend none)"
        elif doc.fingerprint is None:
            why = (
                "the state was written by an older bwsync, without the fingerprint of the "
                "settings that change the plan: applying in full once"
            )
        elif doc.fingerprint != self.fingerprint:
            why = (
                "settings that change the plan but not the import body changed since the last "
                "apply (remove_missing, removal_mode, stale_groups, protected_members), or the "
                "memory of synced members is not in the state"
            )
        elif every and time.time() - (doc.last_full_reconcile or 0) >= every:
            why = f"a full reconcile is due ({env_name('sync', 'full_reconcile_every')}={every})"
        else:
            return False
        event("full_apply", reason=why)
        return True

    def _plan(self, directory: Directory, payload: Payload) -> tuple[Plan, Payload]:
        has_credentials = self.uses_bitwarden
        if self.options.command == "sync" and not has_credentials:
            raise ConfigError(self.settings.bitwarden.api_key_problems(self.settings.secrets_dir))
        org: OrgSnapshot | None = None
        if has_credentials:
            with self.stage("snapshot") as info:
                if self.early is not None:
                    org = self.early.result()
                    self.client = self.early.client
                    info["read_seconds"] = round(self.early.seconds, 4)  # partly beside fetch
                else:
                    self.client = self.client_factory(self.settings, self.report)
                    org = read_org(self.client, detail=self.options.detail)
                info["members"] = len(org.members) if org else None
                info["groups"] = len(org.groups) if org else None
                to_read = groups_to_read(directory, org, self.sync) if org else []
                if org is not None and to_read:
                    assert self.client is not None
                    read_group_members(self.client, org, to_read)
                    info["groups_read"] = len(to_read)
        sent_members = sum(r.members for r in payload.requests)
        sent_groups = sum(r.groups for r in payload.requests)
        with self.stage("plan") as info:
            if has_credentials:
                memory = None
                if org is None:  # no list endpoints: judge against what was synced before
                    memory = self._memory()
                    info["remembered"] = len(memory.members) if memory else None
                plan = make_plan(
                    directory,
                    org,
                    self.sync,
                    sent_members=sent_members,
                    sent_groups=sent_groups,
                    memory=memory,
                    scope=self._scope,
                )
            else:  # `plan` without the API key: the organization was not asked anything
                plan = Plan(
                    org_known=False,
                    notes=[
                        "no organization API key: the organization was not read; showing what "
                        f"will be sent ({sent_members} members, {sent_groups} groups)"
                    ],
                )
            if self.ignored_memory:
                plan.notes.append(OTHER_ORGANIZATION + ": ignored; this run starts a new one")
            self.report.planned = plan.counts()
            info.update(self.report.planned)
        self.outcome.plan = plan
        if plan.protected_external_ids or plan.send_deleted:
            # Only then does the body differ from bwdc's; otherwise it is not built twice.
            payload = self._payload(directory, plan)
        self.outcome.safety = check_safety(
            plan,
            directory,
            self.sync,
            allow_removals=self.options.allow_removals,
            allow_emptied_groups=self.options.allow_emptied_groups,
        )
        self.report.safety_breach = bool(self.outcome.safety)
        dry = self.options.command == "plan" or bool(self.outcome.safety)
        _log_changes(plan, self.report.planned, dry=dry)
        for note in plan.notes:
            event("plan_note", logging.WARNING, note=note)
        return plan, payload

    def _memory(self) -> Memory | None:
        """The memory of the members synced to this organization, for a server that cannot
        list them; exit 2 where none can be kept (state backend none) but the settings need
        one. A memory of another organization is ignored, and said so."""
        if self.settings.state.backend == "none":
            refusal = stateless_refusal(self.sync)
            if refusal is not None:
                raise ConfigError(refusal)
        stored = self.doc.memory if self.doc is not None else None
        if stored is not None and not stored_for(stored, self._scope):
            event(
                "memory_ignored",
                logging.WARNING,
                note=f"{OTHER_ORGANIZATION} ({stored.get('scope')!r}); this run starts a new one",
            )
            self.ignored_memory = True
        return Memory.load(stored, self._scope)

    @property
    def _scope(self) -> str:
        bw = self.settings.bitwarden
        return scope_of(bw.organization_id or "")

    def _memory_to_keep(self, plan: Plan) -> dict[str, Any] | None:
        """The memory of synced members a successful apply of ``plan`` stores: ``None`` where
        the server can be read (the organization itself is the memory). Encoded before
        anything is sent, so that one too big to keep stops the run while nothing is applied,
        when the plan needs it (removals judged against it); otherwise the run goes on without
        one, and says what that costs."""
        memory = plan.memory
        if memory is None:
            return None
        stored = self.doc.memory if self.doc is not None else None
        old = Memory.load(stored, self._scope) if stored is not None else None
        if old is not None and old.same_sets(memory):
            return stored  # unchanged: not compressed again
        with self.stage("memory") as info:
            encoded = memory.dump()
            size = encoded_size(encoded)
            info.update(members=len(memory.members), revoked=len(memory.revoked), bytes=size)
        if size <= MAX_MEMORY_BYTES:
            return encoded
        problem = (
            f"the memory of the {len(memory.members)} members synced to this server (which "
            f"cannot list them) would take {size} bytes of state, over the {MAX_MEMORY_BYTES} "
            "a state document may hold (it must fit a ConfigMap)"
        )
        if self.sync.remove_missing or self.sync.overwrite_existing:
            raise MemoryStateError(
                f"{problem}; nothing was applied: {env_name('sync', 'remove_missing')} and "
                "OVERWRITE_EXISTING need it to judge removals. Turn them off to sync without it"
            )
        event("memory_not_kept", logging.WARNING, note=problem + "; not kept")
        return None

    def _apply(
        self, directory: Directory, payload: Payload, plan: Plan, directory_hash: str
    ) -> None:
        client = self.client
        assert client is not None
        memory = self._memory_to_keep(plan)
        holder = lease_holder(self.settings.profile)
        self.stop.check("taking the state lease")
        with self.stage("lease", holder=holder):
            self.leased = self.store.acquire_lease(
                holder, self.settings.state.lease_seconds, process=this_process()
            )
        _apply(client, payload, plan, self.stage, unchanged=self.outcome.unsent)
        if plan.org_known:
            with self.stage("verify") as info:
                failed = verify(client, plan, self.report, planned=self.report.planned)
                self.outcome.differences = [c.sentence(dry_run=False) for c in failed]
                info["differences"] = len(failed)
            _refuse_access_left(failed)
        # Without list endpoints nothing can be confirmed: `applied` stays empty and the
        # summary's `sent` says what went out.
        self.report.succeeded("success")
        # A run that left batches out was not a full apply: the next reconcile stays due.
        full = not self.report.unsent_batches
        _remember_success(self.leased, directory_hash, directory, self.report, full=full)
        self.leased.memory = memory
        self.leased.fingerprint = plan_fingerprint(self.sync, memory=memory is not None)
        self.report.finished = time.time()
        _record(self.leased, self.report)
        releasing, self.leased = self.leased, None
        with self.stage("state_write", backend=self.store.description):
            self.store.release(releasing)

    def _unchanged(self, why: str, directory: Directory) -> None:
        self.report.succeeded("no_change")
        event("nothing_to_do", reason=why)
        if self.options.command == "sync":
            assert self.doc is not None
            # New delta tokens are kept too: the directory they describe is the one applied.
            _remember_success(self.doc, None, directory, self.report, full=False)
            self.report.finished = time.time()
            _record(self.doc, self.report)
            self.store.save(self.doc)

    def _failed(self, exc: BwsyncError) -> None:
        if self.stop.given_up and not isinstance(exc, Interrupted):
            # The request in flight failed because the grace period interrupted its wait
            # (python-ldap reports "Interrupted system call"): the stop, not the server.
            exc = Interrupted(
                self.stop.reason or "a stop request", grace=self.stop.grace, failed=str(exc)
            )
        report = self.report
        report.failed(exc)
        if isinstance(exc, Interrupted):
            event("run_interrupted", logging.WARNING, error=report.error, exit_code=exc.exit_code)
        else:
            event("run_failed", logging.ERROR, error=report.error, exit_code=report.exit_code)
        if self.options.command != "sync" or self.doc is None or isinstance(exc, StateError):
            return
        report.finished = time.time()
        if self.leased is None:
            _record_failure(self.store, report)
            return
        # Keep the old hash and delta tokens: the next run re-sends everything.
        releasing, self.leased = self.leased, None
        _record(releasing, report)
        try:
            self.store.release(releasing)
        except StateError as state_exc:
            event("state_not_updated", logging.WARNING, error=str(state_exc))


#: Entries dropped for their email are named one warning each up to this many; the rest are
#: counted in one more warning (and all of them in the summary's ``skipped``).
REJECTED_LOG_LIMIT = 100


def _warn_rejected(rejected: list[Rejected]) -> None:
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


def _log_changes(plan: Plan, counts: dict[str, int], *, dry: bool) -> None:
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


def _apply(
    client: BitwardenClient,
    payload: Payload,
    plan: Plan,
    stage: _Stages,
    *,
    unchanged: frozenset[int],
) -> None:
    """Relink the groups the directory identifies anew, POST the import request(s) in order
    but the ``unchanged`` ones, then revoke/restore through the member endpoints, then empty
    or delete the stale groups."""
    done: Counter[str] = Counter()
    try:
        _send(client, payload, plan, stage, unchanged=unchanged, done=done)
    except BwsyncError:
        # What the member and group endpoints did before the failure is done for good: the
        # summary says so (the import's part is in ``sent``; nothing re-read confirms it).
        stage.report.applied = dict(done)
        raise


def _send(
    client: BitwardenClient,
    payload: Payload,
    plan: Plan,
    stage: _Stages,
    *,
    unchanged: frozenset[int],
    done: Counter[str],
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
        sent["members"] = sent.get("members", 0) + req.members
        sent["groups"] = sent.get("groups", 0) + req.groups
    if not plan.org_known:
        return  # revoked and restored by the import itself (Vaultwarden, by email)
    for change in plan.of("revoke", "restore"):
        assert change.member_id is not None
        with stage("apply", step=change.action, subject=change.subject):
            if change.action == "revoke":
                client.revoke_member(change.member_id)
            else:
                client.restore_member(change.member_id)
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
        check = SPEC[change.action].check
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


def _refuse_access_left(failed: list[Change]) -> None:
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


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _remember_success(
    doc: StateDocument,
    hash_: str | None,
    directory: Directory | None,
    report: RunReport,
    *,
    full: bool,
) -> None:
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


def _record(doc: StateDocument, report: RunReport) -> None:
    doc.record_run(summary(report))


def _record_failure(store: StateStore, report: RunReport) -> None:
    """Remember that this run failed without touching the hash or the delta tokens."""
    report.finished = time.time()
    try:
        fresh = store.load()
        if fresh.lease is not None and not fresh.lease.held_by(
            lease_holder(report.profile), this_process()
        ):
            return  # another run holds it: leave its document alone
        fresh.lease = None
        _record(fresh, report)
        store.save(fresh)
    except StateError as exc:
        event("state_not_updated", logging.WARNING, error=str(exc))
