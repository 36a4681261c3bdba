"""One sync pass, stage by stage, timed (DESIGN.md "The run").

``execute`` is the only place that knows the order of things; each stage takes what it needs
and returns what the next one needs, and the work is in modules with one job each (``fetch``
through a source, ``normalize``, ``payload``, ``snapshot``, ``plan``, ``apply``, ``verify``,
``summary``). What it guarantees:

* nothing is written to Bitwarden before the safety check passed and the state lease is held;
* the state's hash and delta tokens change only after every import request succeeded, so a
  failed run is retried in full next time (the import is idempotent) and never half-remembered
  (a ``--force`` run that failed or was stopped once it held the lease clears them, so that
  the next run applies in full too; against a server that cannot list members, what the
  accepted import requests carried goes into the memory of synced members);
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bwsync.apply import apply, unchanged_batches
from bwsync.cleartext import exposures
from bwsync.config import Settings, env_name
from bwsync.errors import BwsyncError, ConfigError, Interrupted, StateError
from bwsync.fingerprint import plan_fingerprint
from bwsync.logs import event
from bwsync.memory import (
    MAX_MEMORY_BYTES,
    Memory,
    MemoryStateError,
    after_accepted,
    encoded_size,
    scope_of,
    stored_for,
)
from bwsync.model import Directory, RunReport
from bwsync.normalize import normalize
from bwsync.payload import ImportRequest, Payload, build_payload, is_new_hash
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
from bwsync.state.base import Lease
from bwsync.state.liveness import this_process
from bwsync.stop import WRAP_UP_STATE_SECONDS, StopRequest, WrapUpTimeout, active
from bwsync.summary import (
    Stages,
    log_changes,
    record,
    record_failure,
    remember_success,
    warn_rejected,
)
from bwsync.verify import refuse_access_left, verify

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
    """One pass. ``_run`` is the order of the stages; each stage is a method that takes what
    it needs and returns what the next one needs. What stays on the instance is what the
    wrap-up must find whatever happened (the client, the background read, the lease, the
    state read), and the ``Outcome`` the CLI shows, filled by ``_run`` from the stages'
    returns."""

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
            last_success_known=False,  # until the state is read
        )
        self.outcome = Outcome(report=self.report)
        self.stage = Stages(self.report)
        self.scope = scope_of(settings.bitwarden.organization_id or "")
        """The organization a memory of synced members belongs to (``bwsync.memory``)."""
        self.uses_bitwarden = options.bitwarden and settings.bitwarden.has_api_key
        """Whether this run talks to Bitwarden (the settings pass made sure that ``sync`` and
        ``plan`` have the API key; ``plan --directory-only`` does not talk to it)."""
        # For the wrap-up (``execute``, ``_failed``), whatever happened:
        self.doc: StateDocument | None = None
        """The state as this run read it: ``None`` until then."""
        self.client: BitwardenClient | None = None
        self.early: BackgroundRead | None = None
        self.leased: StateDocument | None = None
        self.accepted: list[ImportRequest] = []
        """The import requests the server accepted (``apply``), for ``_remember_accepted``."""
        self.writes_done = False
        """Every write to Bitwarden was accepted (``_apply``)."""

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
                    self.stop.wrap_up(
                        functools.partial(self.store.release, self.leased),
                        WRAP_UP_STATE_SECONDS,
                        "state",
                    )
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
        doc = self.doc = self._read_state()
        full = self._decide_full_apply(doc)
        if full and self.uses_bitwarden:
            self.early = self._read_early()
        directory = self.outcome.directory = self._fetch(doc)
        empty = not directory.users and not directory.groups
        if empty and not self.sync.overwrite_existing and not self.sync.remove_missing:
            # bwdc step 7: nothing fetched and nothing to remove → nothing to send.
            self._unchanged("directory empty", doc, directory)
            return
        payload = self.outcome.payload = self._payload(directory, full=full)
        if not full and not is_new_hash(payload, doc.hash):
            self._unchanged("hash unchanged", doc, directory)
            return
        # The hash remembered is the one compared above: that of bwdc's own body, before the
        # plan leaves out protected members or adds removals. Remembering the adjusted body's
        # hash would make every later run with such entries look changed.
        directory_hash = payload.hash
        org = self._snapshot(directory)
        plan = self.outcome.plan = self._plan(directory, payload, org, doc)
        if plan.protected_external_ids or plan.send_deleted:
            # Only then does the body differ from bwdc's; otherwise it is not built twice.
            payload = self.outcome.payload = self._payload(directory, full=full, plan=plan)
        safety = self.outcome.safety = self._check(plan, directory)
        # --force, a reconcile due or no remembered hash send every batch, as bwdc does.
        unsent = frozenset(unchanged_batches(payload, plan)) if not full else frozenset()
        self.outcome.unsent = unsent
        enforce_safety(safety)
        if self.options.command == "plan":
            self.report.succeeded("success")
            return
        self._apply(doc, directory, payload, plan, directory_hash, unsent=unsent)

    def _read_state(self) -> StateDocument:
        self.stop.check("reading the state")
        with self.stage("state_read", backend=self.store.description):
            doc = self.store.load()
        self.report.last_success_timestamp = doc.last_success_timestamp
        self.report.last_success_known = True
        self._wait_for_a_given_up_write(doc)
        return doc

    def _wait_for_a_given_up_write(self, doc: StateDocument) -> None:
        """A run stopped while a Bitwarden write was in flight gave that write up at the end
        of its grace period, and left its lease until the write's timeout (``_keep_busy``):
        the server may still be applying it. A sync waits for that before it reads the
        organization, so that its plan is made on what that write did, and never sends its
        own over it. A wait longer than this run's own write timeout is not waited: the lease
        step then refuses, naming the holder (exit 5)."""
        lease = doc.lease
        if self.options.command != "sync" or lease is None or lease.busy is None:
            return
        left = lease.expires - time.time()
        if left <= 0 or left > self.settings.bitwarden.timeout:
            return
        event(
            "waiting_for_a_given_up_write",
            logging.WARNING,
            holder=lease.holder,
            seconds=round(left, 1),
            reason=lease.busy,
        )
        self.stop.sleep(left)
        self.stop.check("reading the organization")

    def _keep_busy(self, doc: StateDocument) -> None:
        """The lease this run leaves when the grace period gave up one of its Bitwarden writes
        (``_wait_for_a_given_up_write``): until that write's timeout has passed, without a
        process identity, so that no run takes it over before, even on this host."""
        ours = doc.lease
        timeout = self.settings.bitwarden.timeout
        until = time.time() + timeout
        doc.lease = Lease(
            holder=ours.holder if ours else lease_holder(self.settings.profile),
            expires=until,
            run=ours.run if ours else None,
            busy=f"a Bitwarden write it gave up at a stop may still run on the server until "
            f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(until))} "
            f"({env_name('bitwarden', 'timeout')}={timeout:g})",
        )
        self.store.save(doc)

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
        warn_rejected(directory.rejected)
        return directory

    def _payload(self, directory: Directory, *, full: bool, plan: Plan | None = None) -> Payload:
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
                member_ids=not full,  # only unchanged_batches reads them
                **extra,
            )
            info["requests"] = len(payload.requests)
            info["bytes"] = sum(len(r.body) for r in payload.requests)
        return payload

    def _read_early(self) -> BackgroundRead:
        """Start reading the organization now, beside the directory fetch, for a run that
        needs it whatever the directory holds (``_decide_full_apply``). Otherwise the read
        waits for the hash comparison, so that an unchanged directory costs no Bitwarden
        request at all."""
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
        elif doc.fingerprint != plan_fingerprint(
            self.sync, memory=stored_for(doc.memory, self.scope)
        ):
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

    def _snapshot(self, directory: Directory) -> OrgSnapshot | None:
        """The organization as its list endpoints show it, with the member ids of the groups
        the plan needs (``groups_to_read``); ``None`` where the server has none (Vaultwarden)
        or this run does not talk to Bitwarden. The client it made stays for the apply."""
        if self.options.command == "sync" and not self.uses_bitwarden:
            raise ConfigError(self.settings.bitwarden.api_key_problems(self.settings.secrets_dir))
        if not self.uses_bitwarden:
            return None
        with self.stage("snapshot") as info:
            if self.early is not None:
                org = self.early.result()
                client = self.client = self.early.client
                info["read_seconds"] = round(self.early.seconds, 4)  # partly beside fetch
            else:
                client = self.client = self.client_factory(self.settings, self.report)
                org = read_org(client, detail=self.options.detail)
            info["members"] = len(org.members) if org else None
            info["groups"] = len(org.groups) if org else None
            to_read = groups_to_read(directory, org, self.sync) if org else []
            if org is not None and to_read:
                read_group_members(client, org, to_read)
                info["groups_read"] = len(to_read)
        return org

    def _plan(
        self, directory: Directory, payload: Payload, org: OrgSnapshot | None, doc: StateDocument
    ) -> Plan:
        sent_members = sum(r.members for r in payload.requests)
        sent_groups = sum(r.groups for r in payload.requests)
        with self.stage("plan") as info:
            if self.uses_bitwarden:
                memory, ignored = None, False
                if org is None:  # no list endpoints: judge against what was synced before
                    memory, ignored = self._memory(doc)
                    info["remembered"] = len(memory.members) if memory else None
                plan = make_plan(
                    directory,
                    org,
                    self.sync,
                    sent_members=sent_members,
                    sent_groups=sent_groups,
                    memory=memory,
                    scope=self.scope,
                )
                if ignored:
                    plan.notes.append(OTHER_ORGANIZATION + ": ignored; this run starts a new one")
            else:  # `plan --directory-only` (or no API key): the organization was not asked
                why = (
                    "--directory-only: the organization was not read"
                    if not self.options.bitwarden
                    else "no organization API key: the organization was not read"
                )
                plan = Plan(
                    org_known=False,
                    notes=[
                        f"{why}; showing what will be sent ({sent_members} members, "
                        f"{sent_groups} groups)"
                    ],
                )
            self.report.planned = plan.counts()
            info.update(self.report.planned)
        return plan

    def _check(self, plan: Plan, directory: Directory) -> list[str]:
        """The safety check's reasons to refuse ``plan``; then each change is logged once,
        worded "would …" when this run only plans or the check stops it."""
        safety = check_safety(
            plan,
            directory,
            self.sync,
            allow_removals=self.options.allow_removals,
            allow_emptied_groups=self.options.allow_emptied_groups,
        )
        self.report.safety_breach = bool(safety)
        dry = self.options.command == "plan" or bool(safety)
        log_changes(plan, self.report.planned, dry=dry)
        for note in plan.notes:
            event("plan_note", logging.WARNING, note=note)
        return safety

    def _memory(self, doc: StateDocument) -> tuple[Memory | None, bool]:
        """The memory of the members synced to this organization, for a server that cannot
        list them, and whether the state held one of another organization (ignored, and said
        so); exit 2 where none can be kept (state backend none) but the settings need one."""
        if self.settings.state.backend == "none":
            refusal = stateless_refusal(self.sync)
            if refusal is not None:
                raise ConfigError(refusal)
        stored = doc.memory
        ignored = stored is not None and not stored_for(stored, self.scope)
        if ignored:
            assert stored is not None
            event(
                "memory_ignored",
                logging.WARNING,
                note=f"{OTHER_ORGANIZATION} ({stored.get('scope')!r}); this run starts a new one",
            )
        return Memory.load(stored, self.scope), ignored

    def _memory_to_keep(self, plan: Plan, doc: StateDocument) -> dict[str, Any] | None:
        """The memory of synced members a successful apply of ``plan`` stores: ``None`` where
        the server can be read (the organization itself is the memory). Encoded before
        anything is sent, so that one too big to keep stops the run while nothing is applied,
        when the plan needs it (removals judged against it); otherwise the run goes on without
        one, and says what that costs."""
        memory = plan.memory
        if memory is None:
            return None
        stored = doc.memory
        old = Memory.load(stored, self.scope) if stored is not None else None
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
        self,
        doc: StateDocument,
        directory: Directory,
        payload: Payload,
        plan: Plan,
        directory_hash: str,
        *,
        unsent: frozenset[int],
    ) -> None:
        """Under the state lease: apply, re-read, and remember the success."""
        client = self.client
        assert client is not None
        memory = self._memory_to_keep(plan, doc)
        holder = lease_holder(self.settings.profile)
        self.stop.check("taking the state lease")
        with self.stage("lease", holder=holder):
            leased = self.leased = self.store.acquire_lease(
                holder, self.settings.state.lease_seconds, process=this_process()
            )
        apply(client, payload, plan, self.stage, unchanged=unsent, accepted=self.accepted)
        self.writes_done = True
        # Every write was accepted: a stop request from here on lets the re-read and the state
        # write finish within the grace period (``StopRequest.after_writes``).
        with self.stop.after_writes():
            self._finish(client, leased, directory, plan, directory_hash, memory=memory)

    def _finish(
        self,
        client: BitwardenClient,
        leased: StateDocument,
        directory: Directory,
        plan: Plan,
        directory_hash: str,
        *,
        memory: dict[str, Any] | None,
    ) -> None:
        """What follows the writes: the re-read that verifies them, then the state write that
        remembers the new hash and gives the lease back."""
        if plan.org_known:
            with self.stage("verify") as info:
                failed = verify(client, plan, self.report, planned=self.report.planned)
                self.outcome.differences = [c.sentence(dry_run=False) for c in failed]
                info["differences"] = len(failed)
            refuse_access_left(failed)
        # Without list endpoints nothing can be confirmed: `applied` stays empty and the
        # summary's `sent` says what went out.
        self.report.succeeded("success")
        # A run that left batches out was not a full apply: the next reconcile stays due.
        full = not self.report.unsent_batches
        remember_success(leased, directory_hash, directory, self.report, full=full)
        leased.memory = memory
        leased.fingerprint = plan_fingerprint(self.sync, memory=memory is not None)
        self.report.finished = time.time()
        record(leased, self.report)
        self.leased = None
        with self.stage("state_write", backend=self.store.description):
            self.store.release(leased)

    def _unchanged(self, why: str, doc: StateDocument, directory: Directory) -> None:
        self.report.succeeded("no_change")
        event("nothing_to_do", reason=why)
        if self.options.command == "sync":
            # New delta tokens are kept too: the directory they describe is the one applied.
            remember_success(doc, None, directory, self.report, full=False)
            self.report.finished = time.time()
            record(doc, self.report)
            self.store.save(doc)

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
            self._wrap_up(functools.partial(record_failure, self.store, report))
            return
        # Keep the old hash and delta tokens: the next run re-sends everything.
        releasing, self.leased = self.leased, None
        if self.options.force:
            # Unless they are what --force set aside: that old hash would make the next run
            # find nothing to do, and what --force was to repair stays half done. Without
            # them the next run, forced or not, fetches and applies in full.
            releasing.hash = None
            releasing.delta = {}
        self._remember_accepted(releasing)
        record(releasing, report)
        if self.stop.given_up and not self.writes_done:
            # A write may be in flight still on the server: the lease stays until it is over.
            self._wrap_up(functools.partial(self._keep_busy, releasing))
        else:
            self._wrap_up(functools.partial(self.store.release, releasing))

    def _remember_accepted(self, doc: StateDocument) -> None:
        """Against a server that cannot list members (the plan keeps a memory of them), what
        the import requests accepted before the failure carried goes into the memory
        (``memory.after_accepted``): the revocations they made are not counted again by the
        next run's safety limits. Nothing if that memory would not fit the state document."""
        plan = self.outcome.plan
        if plan is None or plan.memory is None or not self.accepted:
            return
        try:
            old = Memory.load(doc.memory, self.scope)
        except MemoryStateError:  # the plan read it; a damaged one stays for the next to say
            return
        memory = after_accepted(old, self.scope, (r.body for r in self.accepted))
        if memory is None:
            return
        encoded = memory.dump()
        if encoded_size(encoded) <= MAX_MEMORY_BYTES:
            doc.memory = encoded

    def _wrap_up(self, step: Callable[[], None]) -> None:
        """A state step of the wrap-up (the lease given back, the failure recorded), bounded
        after a stop request (``StopRequest.wrap_up``): the metrics must still go out before
        the pod is killed. What fails or is given up is logged, never raised: the run's own
        failure is the one reported."""
        try:
            self.stop.wrap_up(step, WRAP_UP_STATE_SECONDS, "state")
        except StateError as exc:
            event("state_not_updated", logging.WARNING, error=str(exc))
        except WrapUpTimeout as exc:
            event(
                "state_not_updated",
                logging.WARNING,
                error=f"{self.store.description} {exc}; given up. A lease this run held stays "
                "until it expires, or until a run on this host sees this process gone",
            )
