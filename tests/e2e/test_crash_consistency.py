"""Crash consistency: bwsync killed (SIGKILL) or stopped (SIGTERM) at each stage of a run, on
every state backend, then run again at once (issue 19).

Real processes (``python -m bwsync``) against real slapd, the Bitwarden stand-in and every
state backend's server; the scenario is ``crash.py``'s. bwsync is stopped where it stands
waiting, never after a sleep:

* ``fetch``: its request for the second page of users is held by the LDAP proxy;
* ``plan``: the plan is made and the lease taken; the first import request is held at the
  stand-in before it runs;
* ``batches``: the first import ran; its answer is held (between batch 1 and batch 2 of 3);
* ``revokes``: the imports and the first revocation ran; the second is held before it runs
  (between two revocations: a SIGKILL leaves one done, a SIGTERM two);
* ``state_write``: everything is applied and verified; its final state write is held by the
  state server's proxy, or (``file``) by the state file's lock. ``none`` has no state write.

A SIGKILLed run gives nothing back: where it held the lease, the next run (same host) must
take it over at once, saying so. A SIGTERMed run lets the held request finish, gives the lease
back, keeps the hash, reports ``interrupted`` and exits 7; stopped during its final state
write, it ends as it would have (exit 0). In every case the next run leaves the organization
exactly as an uninterrupted run does, the state stays readable and ends released with the
reference hash, and nothing is applied twice for one plan: no import body or revocation twice
in one run, and no member revoked by both runs.
"""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bwsync.standin.server import RecordedRequest
from tests.e2e.bwsync_process import BwsyncProcess, run_bwsync
from tests.e2e.crash import (
    BACKENDS,
    PEOPLE,
    PROFILE,
    Reference,
    StateTarget,
    base_env,
    org_of,
    reference_run,
    seed_org,
    start_directory,
    state_target,
)
from tests.fixtures.ldap import Slapd
from tests.fixtures.proxy import HoldingProxy, ldap_search
from tests.standins.bitwarden import FakeBitwarden

STAGES = ["fetch", "plan", "batches", "revokes", "state_write"]
CASES = [
    (sig, stage, backend)
    for sig in ("SIGKILL", "SIGTERM")
    for stage in STAGES
    for backend in BACKENDS
    if not (stage == "state_write" and backend == "none")
]


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = start_directory(tmp_path_factory.mktemp("crash-directory"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(directory: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference_run(directory, tmp_path_factory.mktemp("crash-reference"))


class KillPoint:
    """Where run 1 is stopped; ``arm`` before it starts, ``wait`` until it stands there,
    then ``let_go`` (the held request goes on) or ``cut`` (it never completes)."""

    def __init__(
        self, stage: str, fake: FakeBitwarden, ldap: HoldingProxy, target: StateTarget
    ) -> None:
        self.stage = stage
        self.fake = fake
        self.ldap = ldap
        self.target = target
        self._release: Callable[[], None] = lambda: None
        self._cut: Callable[[], None] = lambda: None
        self._wait: Callable[[int], None] = lambda pid: None

    def arm(self) -> None:
        if self.stage == "fetch":
            # The second paged search under the people (the first page is in).
            hold = self.ldap.hold("up", ldap_search(2, containing=PEOPLE.encode()))
            self._wait, self._release, self._cut = (lambda _: hold.wait()), hold.release, hold.drop
        elif self.stage in ("plan", "batches", "revokes"):
            if self.stage == "revokes":
                pause = self.fake.pause("revoke_member", 2)
            else:
                pause = self.fake.pause("import", 1, before=self.stage == "plan")

            def cut() -> None:
                pause.drop()
                pause.finished.wait()  # logged by the stand-in before the next run starts

            self._wait, self._release, self._cut = (lambda _: pause.wait()), pause.release, cut
        else:
            # The last Bitwarden request is the re-read's group list; once it is answered,
            # the next thing bwsync does is its final state write.
            self._verified = self.fake.pause("list_groups", 2, before=False)
            self._wait = self._wait_for_write

    def _wait_for_write(self, pid: int) -> None:
        self._verified.wait()
        write = self.target.hold_write()
        self._release, self._cut = write.release, write.drop
        self._verified.release()
        write.wait(pid)

    def wait(self, pid: int) -> None:
        self._wait(pid)

    def let_go(self) -> None:
        self._release()

    def cut(self) -> None:
        self._cut()


@dataclass
class Runs:
    first: BwsyncProcess
    first_code: int
    first_requests: list[RecordedRequest]
    second: BwsyncProcess
    second_code: int
    second_requests: list[RecordedRequest]
    after_first: Any
    first_metric: str | None


def _imports_and_revokes(requests: list[RecordedRequest]) -> tuple[Counter[bytes], Counter[str]]:
    """What was applied: the import bodies and the revoked member ids the stand-in carried
    out (a request dropped before it ran is logged with status 0, and was not)."""
    done = [r for r in requests if 200 <= r.status < 300]
    imports = Counter(r.raw for r in done if r.endpoint == "import")
    revokes = Counter(r.path.split("/")[-2] for r in done if r.endpoint == "revoke_member")
    return imports, revokes


def _metric_result(path: Path) -> str:
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == "bwsync_last_run_result" and sample.value == 1:
                return str(sample.labels["result"])
    raise AssertionError("no result in the metrics")


@pytest.mark.parametrize(("sig", "stage", "backend"), CASES)
def test_stopped_at_a_stage_then_the_next_run_finishes_the_job(
    sig: str,
    stage: str,
    backend: str,
    directory: Slapd,
    reference: Reference,
    fake_bitwarden: FakeBitwarden,
    holding_proxy: Callable[..., HoldingProxy],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    seed_org(fake_bitwarden)
    target = state_target(backend, request, tmp_path, holding_proxy)
    ldap = holding_proxy(directory.port, ldap=True)
    metrics = tmp_path / "bwsync.prom"
    env = base_env(directory, ldap.port, fake_bitwarden, tmp_path / "secrets", metrics)
    env.update(target.env)
    point = KillPoint(stage, fake_bitwarden, ldap, target)
    point.arm()

    first = BwsyncProcess.start(env)
    point.wait(first.pid)
    if sig == "SIGKILL":
        first_code = first.kill()
        point.cut()  # the held request dies with the process
    else:
        first.signal(signal.SIGTERM)
        first.wait_for("stop_requested")  # the watcher saw it while bwsync waited
        point.let_go()  # the request in flight finishes
        first_code = first.finish()
    first_requests = fake_bitwarden.requests
    fake_bitwarden.clear_requests()
    after_first = target.document()
    first_metric = _metric_result(metrics) if metrics.exists() else None

    second_code, second = run_bwsync(env)
    runs = Runs(first, first_code, first_requests, second, second_code,
                fake_bitwarden.requests, after_first, first_metric)  # fmt: skip

    _check_first_run(runs, sig, stage)
    _check_second_run(runs, sig, stage, backend)
    # The organization is exactly what an uninterrupted run leaves.
    assert org_of(fake_bitwarden) == reference.org
    final = target.document()
    if final is not None:
        assert final.lease is None
        assert final.hash == reference.hash_for(fake_bitwarden)
    # Nothing applied twice for one plan.
    imports_1, revokes_1 = _imports_and_revokes(runs.first_requests)
    imports_2, revokes_2 = _imports_and_revokes(runs.second_requests)
    for counted in (imports_1, revokes_1, imports_2, revokes_2):
        assert not [k for k, n in counted.items() if n > 1], counted
    assert not set(revokes_1) & set(revokes_2)


def _check_first_run(runs: Runs, sig: str, stage: str) -> None:
    first, doc = runs.first, runs.after_first
    if sig == "SIGKILL":
        assert runs.first_code == -signal.SIGKILL
        assert runs.first_metric is None  # a killed run reports nothing
        if doc is not None:
            assert doc.hash is None  # nothing remembered as applied
            if stage == "fetch":
                assert doc.lease is None  # not taken yet
            else:
                assert doc.lease is not None and doc.lease.holder.endswith(f"/{first.pid}")
        return
    if stage == "state_write":  # the stop came when the work was done: the run ends as it would
        assert runs.first_code == 0, first.log()
        assert first.summary()["result"] == "success"
        assert runs.first_metric == "success"
        assert doc is not None and doc.lease is None and doc.hash is not None
        return
    assert runs.first_code == 7, first.log()
    summary = first.summary()
    assert summary["result"] == "interrupted" and summary["exit_code"] == 7
    before = {"fetch": "the next page of the search under " + PEOPLE,
              "plan": "import 2/3", "batches": "import 2/3",
              "revokes": "revoke member"}[stage]  # fmt: skip
    assert summary["error"].startswith(f"stopped by SIGTERM before {before}"), summary
    assert runs.first_metric == "interrupted"
    if stage in ("plan", "batches"):
        assert summary["sent"] == {"members": 2000, "groups": 0}  # the request in flight ended
        assert len([r for r in runs.first_requests if r.endpoint == "import"]) == 1
    if stage == "revokes":  # the one held ended; none started after it
        assert summary["applied"]["revoke"] == 2
        assert sum(_imports_and_revokes(runs.first_requests)[1].values()) == 2
    if doc is not None:
        assert doc.lease is None  # given back
        assert doc.hash is None  # untouched
        assert doc.last_run is not None and doc.last_run["result"] == "interrupted"


def _check_second_run(runs: Runs, sig: str, stage: str, backend: str) -> None:
    second = runs.second
    assert runs.second_code == 0, second.log()
    took_over = second.events("lease_taken_over")
    if sig == "SIGKILL" and stage != "fetch" and backend != "none":
        (event,) = took_over
        assert event["holder"] == f"{PROFILE}/{_host(runs)}/{runs.first.pid}"
        assert event["reason"] == f"process {runs.first.pid} no longer runs on this host"
    else:
        assert took_over == []
    if sig == "SIGTERM" and stage == "state_write":
        assert second.summary()["result"] == "no_change"
        assert runs.second_requests == []  # not even a token
    else:
        assert second.summary()["result"] == "success"


def _host(runs: Runs) -> str:
    (lease,) = runs.first.events("lease")
    return str(lease["holder"]).split("/")[1]
