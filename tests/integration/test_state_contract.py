"""The contract every state backend keeps, run against each one over real I/O.

file (a temp dir), objectstore (moto S3 server; fake-gcs-server for GCS; Azurite for Azure
Blob), configmap on a real kube-apiserver, as the chart's pod (its ServiceAccount, bound only by
the chart's Role) and through a kubeconfig. Each test builds several store instances on the
same object: each instance is one run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from bwsync.config import StateSettings
from bwsync.errors import LeaseHeldError, StateConflictError, StateError
from bwsync.state import StateStore, open_store
from bwsync.state.base import (
    MAX_DOCUMENT_BYTES,
    STATE_VERSION,
    StateDocument,
)
from tests.fixtures.state import BACKEND_FIXTURES, BACKENDS

StoreFactory = Callable[[], StateStore]


@pytest.fixture(params=BACKENDS)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """A factory of independent stores on one state object of the parametrized backend."""
    settings: StateSettings
    if request.param == "file":
        settings = StateSettings(backend="file", path=tmp_path / "state" / "state.json")
    else:
        settings = request.getfixturevalue(BACKEND_FIXTURES[request.param]).settings()
    return lambda: open_store(settings)


def test_nothing_stored_loads_an_empty_document(new_store: StoreFactory) -> None:
    doc = new_store().load()
    assert doc == StateDocument()


def test_saved_document_reads_back_in_another_run(new_store: StoreFactory) -> None:
    first = new_store()
    doc = first.load()
    doc.hash = "abc"
    doc.delta = {"users": "token-1"}
    doc.record_run({"result": "applied", "invited": 3})
    first.save(doc)
    again = new_store().load()
    assert again.hash == "abc"
    assert again.delta == {"users": "token-1"}
    assert again.last_run == {"result": "applied", "invited": 3}
    assert again.history == [{"result": "applied", "invited": 3}]


def test_stale_write_is_a_conflict_and_keeps_the_winner(new_store: StoreFactory) -> None:
    a, b = new_store(), new_store()
    doc_a, doc_b = a.load(), b.load()  # both see "nothing yet"
    doc_b.hash = "b"
    b.save(doc_b)
    doc_a.hash = "a"
    with pytest.raises(StateConflictError) as caught:
        a.save(doc_a)
    assert caught.value.exit_code == 5
    assert new_store().load().hash == "b"
    # and once more on an existing document
    doc_a, doc_b = a.load(), b.load()
    doc_b.hash = "b2"
    b.save(doc_b)
    doc_a.hash = "a2"
    with pytest.raises(StateConflictError):
        a.save(doc_a)
    assert new_store().load().hash == "b2"


def test_a_live_lease_keeps_a_second_run_out(new_store: StoreFactory) -> None:
    first = new_store()
    held = first.acquire_lease("default/host-a/101", 900)
    assert held.lease is not None
    assert held.lease.holder == "default/host-a/101"
    with pytest.raises(LeaseHeldError) as caught:
        new_store().acquire_lease("default/host-b/202", 900)
    assert caught.value.exit_code == 5
    assert "default/host-a/101" in str(caught.value)
    assert first.description in str(caught.value)
    first.release(held)
    assert new_store().load().lease is None
    assert new_store().acquire_lease("default/host-b/202", 900).lease is not None


def test_an_expired_lease_is_taken_over(new_store: StoreFactory) -> None:
    crashed = new_store()
    crashed.acquire_lease("default/host-a/101", 60, now=1_000.0)
    taker = new_store()
    doc = taker.acquire_lease("default/host-b/202", 60, now=1_061.0)
    assert doc.lease is not None
    assert doc.lease.holder == "default/host-b/202"
    # the crashed run, had it come back, cannot write over the new holder
    with pytest.raises(StateConflictError):
        crashed.release(StateDocument(hash="late"))
    assert new_store().load().lease == doc.lease


def test_release_of_a_failed_run_keeps_the_previous_state(new_store: StoreFactory) -> None:
    setup = new_store()
    doc = setup.load()
    doc.hash, doc.delta, doc.last_success = "good", {"users": "delta-7"}, "2026-01-01T00:00:00Z"
    setup.save(doc)
    run = new_store()
    held = run.acquire_lease("default/h/1", 900)
    held.record_run({"result": "bitwarden_error"})
    run.release(held)  # the run failed: only its summary is new
    after = new_store().load()
    assert (after.hash, after.delta, after.last_success) == (
        "good",
        {"users": "delta-7"},
        "2026-01-01T00:00:00Z",
    )
    assert after.lease is None
    assert after.last_run == {"result": "bitwarden_error"}


def race_for_lease(stores: list[StateStore], prefix: str) -> list[str]:
    """Every store tries ``acquire_lease`` at the same instant; one outcome per store."""
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []

    def run(i: int, store: StateStore) -> None:
        barrier.wait()
        try:
            store.acquire_lease(f"{prefix}-{i}", 900)
            outcomes.append("won")
        except LeaseHeldError as exc:
            outcomes.append(f"lost: {exc}")

    threads = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


def test_runs_racing_for_the_lease_exactly_one_wins(new_store: StoreFactory) -> None:
    for round_ in range(3):
        outcomes = race_for_lease([new_store() for _ in range(4)], f"default/host/{round_}")
        assert outcomes.count("won") == 1, outcomes
        assert len(outcomes) == 4
        new_store().clear()


def test_unreadable_state_is_refused_and_never_overwritten(new_store: StoreFactory) -> None:
    raw = new_store()
    raw.load()
    raw._write(b"{not json", None)
    victim = new_store()
    with pytest.raises(StateError) as caught:
        victim.acquire_lease("default/h/1", 900)
    assert caught.value.exit_code == 5
    assert victim.description in str(caught.value)
    assert raw._read()[0] == b"{not json"


def test_newer_version_is_refused_and_never_overwritten(new_store: StoreFactory) -> None:
    raw = new_store()
    raw.load()
    newer = b'{"version": %d, "hash": "from-the-future"}' % (STATE_VERSION + 1)
    raw._write(newer, None)
    victim = new_store()
    with pytest.raises(StateError, match="upgrade bwsync") as caught:
        victim.acquire_lease("default/h/1", 900)
    assert victim.description in str(caught.value)
    assert raw._read()[0] == newer


def test_clear_forgets_everything_and_can_start_over(new_store: StoreFactory) -> None:
    store = new_store()
    store.clear()  # nothing there: fine
    doc = store.load()
    doc.hash = "x"
    store.save(doc)
    new_store().clear()
    assert new_store().load() == StateDocument()
    again = new_store()
    doc = again.acquire_lease("default/h/1", 900)
    doc.hash = "y"
    again.release(doc)
    assert new_store().load().hash == "y"


def test_long_history_stays_under_the_cap(new_store: StoreFactory) -> None:
    store = new_store()
    doc = store.load()
    for i in range(200):
        doc.record_run({"result": "directory_error", "error": f"{i} " + "x" * 5000})
    store.save(doc)
    data, _ = store._read()
    assert data is not None
    assert len(data) <= MAX_DOCUMENT_BYTES
    back = new_store().load()
    assert back.last_run == doc.last_run
    assert back.history[-1] == doc.last_run
