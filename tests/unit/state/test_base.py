"""The state document and the lease logic, over an in-memory backend."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Iterator

import orjson
import pytest

from bwsync.errors import LeaseHeldError, StateConflictError, StateError
from bwsync.logs import LOGGER
from bwsync.state.base import (
    HISTORY_LIMIT,
    MAX_DOCUMENT_BYTES,
    MAX_MEMORY_BYTES,
    MAX_SUMMARY_TEXT,
    STATE_VERSION,
    Lease,
    NoStateStore,
    StateDocument,
    StateStore,
)
from bwsync.state.liveness import process_identity, this_process


class Memory:
    """One stored object shared by several stores, as a bucket is shared by several runs."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.version = 0
        self.lock = threading.Lock()


class MemoryStore(StateStore):
    description = "memory test"

    def __init__(self, memory: Memory) -> None:
        super().__init__()
        self.memory = memory

    def _read(self) -> tuple[bytes | None, str | None]:
        with self.memory.lock:
            m = self.memory
            return m.data, (str(m.version) if m.data is not None else None)

    def _write(self, data: bytes, expected_version: str | None) -> str:
        with self.memory.lock:
            m = self.memory
            current = str(m.version) if m.data is not None else None
            if current != expected_version:
                raise StateConflictError("the test store")
            m.data, m.version = data, m.version + 1
            return str(m.version)

    def _delete(self) -> None:
        self.memory.data = None


# -- the document --------------------------------------------------------------------------
def test_round_trip_keeps_every_field() -> None:
    doc = StateDocument(
        hash="h",
        last_success="2026-01-01T00:00:00Z",
        last_success_timestamp=1.5,
        last_full_reconcile=2,
        delta={"users": "t"},
        lease=Lease("p/h/1", 99.0),
    )
    doc.record_run({"result": "success"})
    back = StateDocument.from_bytes(doc.to_bytes(), "x")
    assert back == doc
    assert back.last_full_reconcile == 2.0


def test_history_is_bounded_by_count() -> None:
    doc = StateDocument()
    for i in range(HISTORY_LIMIT + 5):
        doc.record_run({"n": i})
    assert len(doc.history) == HISTORY_LIMIT
    assert doc.history[0] == {"n": 5}


def test_size_cap_trims_oldest_history_first() -> None:
    doc = StateDocument()
    for i in range(HISTORY_LIMIT):
        doc.record_run({"n": i, **{f"text{j}": "e" * 1900 for j in range(4)}})
    data = doc.to_bytes()
    assert len(data) <= MAX_DOCUMENT_BYTES
    assert doc.history[-1]["n"] == HISTORY_LIMIT - 1
    assert doc.history[0]["n"] > 0


def test_size_cap_without_history_to_trim_refuses() -> None:
    doc = StateDocument(last_run={"error": "e" * MAX_DOCUMENT_BYTES})
    with pytest.raises(StateError, match="over 65536"):
        doc.to_bytes()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"{}", "no valid version"),
        (b'{"version": true}', "no valid version"),
        (b'{"version": 0}', "no valid version"),
        (b'{"version": "1"}', "no valid version"),
        (b'{"version": 99}', "version 99"),
        (b'{"version": 1, "hash": 5}', "hash should be str"),
        (b'{"version": 1, "delta": []}', "delta should be dict"),
        (b'{"version": 1, "lease": {"holder": "x"}}', "unexpected shape"),
        (b'{"version": 1, "last_success_timestamp": "yesterday"}', "should be float"),
    ],
)
def test_unusable_documents_are_refused_with_the_place(data: bytes, message: str) -> None:
    with pytest.raises(StateError, match=message) as caught:
        StateDocument.from_bytes(data, "configmap ns/name")
    assert "configmap ns/name" in str(caught.value)
    assert caught.value.exit_code == 5


def test_document_fields_and_no_memory_by_default() -> None:
    fields = orjson.loads(StateDocument().to_bytes())
    assert set(fields) == {
        "version",
        "hash",
        "fingerprint",
        "last_success",
        "last_success_timestamp",
        "last_full_reconcile",
        "last_run",
        "delta",
        "history",
        "lease",
        "memory",
    }
    assert fields["version"] == STATE_VERSION == 2
    assert fields["memory"] is None  # members are remembered only for servers that cannot list


def test_a_version_1_document_is_read_and_the_memory_kept_through_a_write() -> None:
    doc = StateDocument.from_bytes(b'{"version": 1, "hash": "h"}', "file x")
    assert doc.hash == "h" and doc.memory is None
    doc.memory = {"format": 1, "scope": "s", "sets": {}}
    again = StateDocument.from_bytes(doc.to_bytes(), "file x")
    assert again.memory == doc.memory
    with pytest.raises(StateError, match="memory should be dict"):
        StateDocument.from_bytes(b'{"version": 2, "memory": []}', "file x")


def test_the_memory_has_its_own_cap_beside_the_history_one() -> None:
    doc = StateDocument(memory={"data": "m" * (MAX_MEMORY_BYTES - 100)})
    for i in range(HISTORY_LIMIT):
        doc.record_run({"n": i, **{f"text{j}": "e" * 1900 for j in range(4)}})
    data = doc.to_bytes()
    # under a ConfigMap's 1 MiB, with room for its metadata
    assert MAX_DOCUMENT_BYTES < len(data) <= MAX_DOCUMENT_BYTES + MAX_MEMORY_BYTES < 1_000_000
    assert doc.history[0]["n"] > 0  # the history gave way, not the memory
    doc.memory = {"data": "m" * MAX_MEMORY_BYTES}
    with pytest.raises(StateError, match="memory of synced members is"):
        doc.to_bytes()


def test_run_summaries_are_masked_short_or_long() -> None:
    from bwsync.redact import remember

    remember("StateSecret-0123456789")
    doc = StateDocument()
    doc.record_run({"error": "echo: StateSecret-0123456789 via https://u:pw@h/", "n": 1})
    doc.record_run({"error": "StateSecret-0123456789 " + "x" * (MAX_SUMMARY_TEXT + 10)})
    data = doc.to_bytes().decode()
    assert "StateSecret" not in data
    assert "u:pw" not in data
    assert doc.history[0]["n"] == 1


# -- the lease -----------------------------------------------------------------------------
def test_lease_granted_then_refused_to_another_then_released() -> None:
    memory = Memory()
    a, b = MemoryStore(memory), MemoryStore(memory)
    held = a.acquire_lease("p/a/1", 60, now=100)
    assert held.lease is not None and held.lease.run is not None
    assert held.lease == Lease("p/a/1", 160, run=held.lease.run)
    with pytest.raises(LeaseHeldError, match="p/a/1, until 1970-01-01T00:02:40Z"):
        b.acquire_lease("p/b/2", 60, now=120)
    a.release(held)
    assert MemoryStore(memory).load().lease is None


def test_a_run_that_read_before_another_applied_does_not_apply() -> None:
    """B read the state, A then took the lease, applied and released: B's plan is stale."""
    memory = Memory()
    a, b = MemoryStore(memory), MemoryStore(memory)
    a.load()
    b.load()
    doc = a.acquire_lease("p/a/1", 60)
    doc.hash = "new"
    doc.record_run({"profile": "p", "result": "success"})
    a.release(doc)
    with pytest.raises(StateConflictError, match="its last run: profile p, result success"):
        b.acquire_lease("p/b/2", 60)
    assert MemoryStore(memory).load().hash == "new"


def test_own_writes_do_not_count_as_another_run() -> None:
    memory = Memory()
    a = MemoryStore(memory)
    doc = a.load()
    doc.delta = {"users": "t"}
    a.save(doc)
    assert a.acquire_lease("p/a/1", 60).delta == {"users": "t"}


def test_expired_lease_is_taken_over_and_the_old_holder_cannot_write() -> None:
    memory = Memory()
    old, new = MemoryStore(memory), MemoryStore(memory)
    stale = old.acquire_lease("p/a/1", 60, now=100)
    new.acquire_lease("p/b/2", 60, now=161)
    stale.hash = "late"
    conflict = r"changed since this run read it \(written by p/b/2 while this run held the lease"
    with pytest.raises(StateConflictError, match=conflict):
        old.release(stale)
    assert MemoryStore(memory).load().hash is None


def test_release_wins_over_a_write_that_kept_our_lease() -> None:
    """A "nothing to do" run recorded itself while we held the lease (its document carried
    our lease): our release still lands."""
    memory = Memory()
    holder, bystander = MemoryStore(memory), MemoryStore(memory)
    doc = holder.acquire_lease("p/a/1", 60)
    seen = bystander.load()
    seen.record_run({"result": "no_change"})
    bystander.save(seen)
    doc.hash = "applied"
    holder.release(doc)
    final = MemoryStore(memory).load()
    assert final.hash == "applied"
    assert final.lease is None


def test_lease_race_over_threads_has_one_winner() -> None:
    memory = Memory()
    stores = [MemoryStore(memory) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    won: list[str] = []
    lost: list[str] = []

    def go(i: int) -> None:
        barrier.wait()
        try:
            stores[i].acquire_lease(f"p/h/{i}", 60)
            won.append(str(i))
        except LeaseHeldError as exc:
            lost.append(str(exc))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert len(lost) == len(stores) - 1
    assert all(f"p/h/{won[0]}" in msg for msg in lost)


def test_no_state_store_remembers_nothing() -> None:
    store = NoStateStore()
    doc = store.acquire_lease("p/h/1", 60)
    store.release(doc)
    assert store.load() == StateDocument()
    store.clear()


def test_a_huge_error_message_is_cut_not_fatal() -> None:
    doc = StateDocument()
    doc.record_run({"result": "config_error", "error": "bad setting\n" * 20_000, "n": 1})
    assert doc.last_run is not None
    assert len(doc.last_run["error"]) <= MAX_SUMMARY_TEXT
    assert doc.last_run["n"] == 1
    assert len(doc.to_bytes()) <= MAX_DOCUMENT_BYTES


# -- taking over the lease of a holder that is gone (liveness) -------------------------------
@pytest.fixture
def events() -> Iterator[list[logging.LogRecord]]:
    """The bwsync events logged during the test."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    LOGGER.addHandler(handler)
    level = LOGGER.level
    LOGGER.setLevel(logging.DEBUG)
    yield records
    LOGGER.removeHandler(handler)
    LOGGER.setLevel(level)


@pytest.fixture
def ended() -> str:
    """The identity of a process of this host that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(proc.pid)
    proc.wait()
    if identity is None:
        pytest.skip("needs Linux /proc (process identities)")
    return identity


def test_the_lease_of_a_holder_gone_from_this_host_is_taken_over_at_once(
    ended: str, events: list[logging.LogRecord]
) -> None:
    memory = Memory()
    MemoryStore(memory).acquire_lease("p/h/1", 900, now=100, process=ended)  # then killed
    taker = MemoryStore(memory)
    doc = taker.acquire_lease("p/h/2", 900, now=101, process=this_process())
    assert doc.lease == Lease("p/h/2", 1001, this_process(), run=taker._run)
    (record,) = [r for r in events if r.getMessage() == "lease_taken_over"]
    fields = record.bwsync_fields  # type: ignore[attr-defined]
    assert fields["holder"] == "p/h/1"
    assert fields["reason"] == f"process {ended.split('/')[3]} no longer runs on this host"
    assert fields["expires"] == "1970-01-01T00:16:40Z"
    assert record.levelno == logging.WARNING


def test_the_lease_of_a_live_holder_of_this_host_is_refused() -> None:
    if this_process() is None:
        pytest.skip("needs Linux /proc (process identities)")
    memory = Memory()
    MemoryStore(memory).acquire_lease("p/h/1", 900, now=100, process=this_process())
    with pytest.raises(LeaseHeldError, match=r"its process still runs on this host"):
        MemoryStore(memory).acquire_lease("p/h/2", 900, now=101, process="linux/x/y/2/3")


def test_a_holder_on_another_host_or_pod_waits_for_the_expiry(
    events: list[logging.LogRecord],
) -> None:
    """A pod's process cannot be judged from another pod: only the expiry ends its lease."""
    memory = Memory()
    elsewhere = "linux/00000000-0000-0000-0000-000000000000/4026531836/1/42"
    MemoryStore(memory).acquire_lease("p/pod-a/1", 900, now=100, process=elsewhere)
    with pytest.raises(LeaseHeldError, match=r"another host, pod or container.*until it expires"):
        MemoryStore(memory).acquire_lease("p/pod-b/1", 900, now=999, process=this_process())
    assert MemoryStore(memory).acquire_lease("p/pod-b/1", 900, now=1000).lease is not None
    assert not [r for r in events if r.getMessage() == "lease_taken_over"]


def test_a_lease_without_an_identity_is_never_judged(ended: str) -> None:
    """Written by an older version (no ``process``): honoured until it expires."""
    memory = Memory()
    MemoryStore(memory).acquire_lease("p/h/1", 900, now=100)
    with pytest.raises(LeaseHeldError, match=r"p/h/1, until 1970-01-01T00:16:40Z$"):
        MemoryStore(memory).acquire_lease("p/h/2", 900, now=101, process=ended)


def test_the_same_holder_name_in_another_process_is_another_holder(ended: str) -> None:
    """Two containers with one host name both run bwsync as PID 1: the names are equal, the
    identities are not, and the lease is not shared."""
    memory = Memory()
    elsewhere = "linux/00000000-0000-0000-0000-000000000000/4026531836/1/42"
    first = MemoryStore(memory)
    held = first.acquire_lease("p/bwsync/1", 900, now=100, process=elsewhere)
    with pytest.raises(LeaseHeldError):
        MemoryStore(memory).acquire_lease("p/bwsync/1", 900, now=101, process=ended)
    first.release(held)  # the holder's own release still works
    assert MemoryStore(memory).load().lease is None


def test_a_takeover_does_not_apply_a_plan_older_than_the_lost_holder(ended: str) -> None:
    """B read the state, then A took the lease and died: B's plan predates whatever A sent,
    so B gets no lease; the next run takes over and plans afresh."""
    memory = Memory()
    b = MemoryStore(memory)
    b.load()
    MemoryStore(memory).acquire_lease("p/h/1", 900, now=100, process=ended)
    with pytest.raises(StateConflictError, match="lease holder p/h/1"):
        b.acquire_lease("p/h/2", 900, now=101, process=this_process())
    fresh = MemoryStore(memory)
    fresh.load()
    assert fresh.acquire_lease("p/h/3", 900, now=102, process=this_process()).lease is not None


def test_the_process_identity_round_trips() -> None:
    doc = StateDocument(lease=Lease("p/h/1", 99.0, "linux/b/1/2/3", run="0123abcd"))
    assert StateDocument.from_bytes(doc.to_bytes(), "x") == doc
    old = b'{"version": 1, "lease": {"holder": "p/h/1", "expires": 99}}'
    assert StateDocument.from_bytes(old, "x").lease == Lease("p/h/1", 99.0, None)
    with pytest.raises(StateError, match="process should be str"):
        StateDocument.from_bytes(
            b'{"version": 1, "lease": {"holder": "p", "expires": 9, "process": 5}}', "x"
        )


@pytest.fixture
def running() -> Iterator[subprocess.Popen[bytes]]:
    """A process of this host that runs until the test ends it."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)  # fmt: skip
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    assert proc.stdin is not None
    proc.stdin.close()


def test_a_holder_alive_when_this_run_read_the_state_is_not_taken_over(
    running: subprocess.Popen[bytes], events: list[logging.LogRecord]
) -> None:
    """B read the state (then the organization) while A held the lease and ran; A applied and
    died before its state write. B's plan predates what A applied: no takeover, exit 5. The
    next run reads the state with A gone and takes over."""
    holder = process_identity(running.pid)
    if holder is None:
        pytest.skip("needs Linux /proc (process identities)")
    memory = Memory()
    held = MemoryStore(memory).acquire_lease("p/h/1", 900, now=100, process=holder)
    late = MemoryStore(memory)
    late.load()
    running.kill()
    running.wait()
    with pytest.raises(LeaseHeldError, match="still running when this run read the state") as e:
        late.acquire_lease("p/h/2", 900, now=101, process=this_process())
    assert e.value.exit_code == 5 and "p/h/1" in str(e.value)
    assert not [r for r in events if r.getMessage() == "lease_taken_over"]
    assert MemoryStore(memory).load().lease == held.lease  # left alone
    fresh = MemoryStore(memory)
    fresh.load()
    assert fresh.acquire_lease("p/h/3", 900, now=102, process=this_process()).lease is not None
    assert [r for r in events if r.getMessage() == "lease_taken_over"]


def test_the_same_holder_name_without_identities_is_another_run() -> None:
    """Two hostNetwork pods of one node are both ``p/<node>/1``; a lease of an older version
    has no identity, and where /proc cannot be read a run has none: equal names (and unknown
    identities) never make another run's lease this run's own."""
    memory = Memory()
    first = MemoryStore(memory)
    held = first.acquire_lease("p/node/1", 900, now=100)
    second = MemoryStore(memory)
    with pytest.raises(LeaseHeldError, match="p/node/1, until"):
        second.acquire_lease("p/node/1", 900, now=101)
    assert held.lease is not None and not second.owns(held.lease)
    assert first.owns(held.lease)
    first.release(held)
    assert MemoryStore(memory).load().lease is None


def test_a_release_after_a_takeover_by_a_run_of_the_same_name_saves_nothing() -> None:
    memory = Memory()
    old = MemoryStore(memory)
    stale = old.acquire_lease("p/node/1", 60, now=100)
    MemoryStore(memory).acquire_lease("p/node/1", 60, now=161)  # expired: taken by another
    stale.hash = "late"
    with pytest.raises(StateConflictError, match="written by p/node/1 while this run held"):
        old.release(stale)
    assert MemoryStore(memory).load().hash is None


def test_a_lease_left_by_an_earlier_run_of_this_process_is_taken_over(
    events: list[logging.LogRecord],
) -> None:
    """``sync --every``: a pass that could not give its lease back (the store was down) left
    it with this process's identity; the passes of one process follow one another, so the
    next pass takes it over instead of failing until it expires."""
    me = this_process()
    if me is None:
        pytest.skip("needs Linux /proc (process identities)")
    memory = Memory()
    MemoryStore(memory).acquire_lease("p/h/1", 900, now=100, process=me)
    later = MemoryStore(memory)
    later.load()
    assert later.acquire_lease("p/h/1", 900, now=101, process=me).lease is not None
    (record,) = [r for r in events if r.getMessage() == "lease_taken_over"]
    assert "an earlier run of this process" in record.bwsync_fields["reason"]  # type: ignore[attr-defined]


def test_a_lease_kept_for_a_given_up_write_is_honoured_until_it_ends() -> None:
    """A run stopped with a Bitwarden write in flight leaves its lease, without a process
    identity, until that write's timeout (``run._keep_busy``): not taken over before, even on
    this host; the refusal says why; it round-trips."""
    memory = Memory()
    store = MemoryStore(memory)
    doc = store.acquire_lease("p/h/1", 900, now=100)
    doc.lease = Lease("p/h/1", 160, run=doc.lease.run if doc.lease else None, busy="a write")
    store.save(doc)
    assert MemoryStore(memory).load().lease == doc.lease
    with pytest.raises(LeaseHeldError, match=r"p/h/1, until 1970-01-01T00:02:40Z \(a write\)$"):
        MemoryStore(memory).acquire_lease("p/h/2", 900, now=159, process=this_process())
    assert MemoryStore(memory).acquire_lease("p/h/2", 900, now=160).lease is not None
