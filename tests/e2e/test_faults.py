"""Faults injected into the crash scenario (``crash.py``), each followed by a clean recovery
(issue 19): Bitwarden 5xx and timeouts at import batch k of 3, the state store down at the
final write (every backend that has one), the LDAP server restarted between two pages.

A fault bwsync rides out (one 5xx, one timeout) ends the run as an uninterrupted one. A fault
that outlives the retries fails the run with its documented exit code, leaving the hash
untouched and, where it could still write, the lease given back; the next run, started at once
(taking over the lease of a run that could not give it back), leaves the organization exactly
as an uninterrupted run does.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.bwsync_process import BwsyncProcess, run_bwsync
from tests.e2e.crash import (
    PEOPLE,
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


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_directory(tmp_path_factory.mktemp("fault-directory"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def reference(directory: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference_run(directory, tmp_path_factory.mktemp("fault-reference"))


class Scenario:
    def __init__(
        self,
        directory: Slapd,
        fake: FakeBitwarden,
        target: StateTarget,
        ldap: HoldingProxy,
        tmp_path: Path,
    ) -> None:
        seed_org(fake)
        self.fake = fake
        self.target = target
        self.ldap = ldap
        self.env = base_env(directory, ldap.port, fake, tmp_path / "secrets", tmp_path / "m.prom")
        self.env.update(target.env)

    def recover(self, reference: Reference, *, took_over: bool = False) -> BwsyncProcess:
        """The next run, at once: it must leave the organization as an uninterrupted run."""
        self.fake.clear_faults()
        code, run = run_bwsync(self.env)
        assert code == 0, run.log()
        assert bool(run.events("lease_taken_over")) == took_over
        self.check(reference)
        return run

    def check(self, reference: Reference) -> None:
        assert org_of(self.fake) == reference.org
        doc = self.target.document()
        if doc is not None:
            assert doc.lease is None
            assert doc.hash == reference.hash_for(self.fake)


@pytest.fixture
def scenario(
    directory: Slapd,
    fake_bitwarden: FakeBitwarden,
    holding_proxy: Callable[..., HoldingProxy],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> Scenario:
    backend = getattr(request, "param", "file")
    target = state_target(backend, request, tmp_path, holding_proxy)
    return Scenario(directory, fake_bitwarden, target, holding_proxy(directory.port, ldap=True),
                    tmp_path)  # fmt: skip


def _import_statuses(fake: FakeBitwarden) -> list[int]:
    return [r.status for r in fake.requests_to("import")]


# -- Bitwarden -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_one_5xx_at_batch_k_is_retried(
    scenario: Scenario, reference: Reference, batch: int
) -> None:
    scenario.fake.server_error("import", skip=batch - 1, times=1, status=503)
    code, run = run_bwsync(scenario.env)
    assert code == 0, run.log()
    assert run.summary()["retries"] == 1
    statuses = [200, 200, 200]
    statuses.insert(batch - 1, 503)
    assert _import_statuses(scenario.fake) == statuses
    scenario.check(reference)


def test_5xx_at_batch_2_past_the_retries_fails_then_the_next_run_finishes(
    scenario: Scenario, reference: Reference
) -> None:
    env = scenario.env | {"BWSYNC_BITWARDEN__MAX_RETRIES": "1"}
    scenario.fake.server_error("import", skip=1, times=None, status=502)
    code, run = run_bwsync(env)
    assert code == 4, run.log()
    summary = run.summary()
    assert summary["error"].startswith("Bitwarden import 2/3 failed: HTTP 502")
    assert summary["sent"] == {"members": 2000, "groups": 0}
    doc = scenario.target.document()
    assert doc is not None and doc.lease is None and doc.hash is None
    scenario.recover(reference)


@pytest.mark.parametrize("lasting", [False, True], ids=["once", "lasting"])
def test_a_timeout_at_batch_2(scenario: Scenario, reference: Reference, lasting: bool) -> None:
    """The stand-in holds batch 2 past bwsync's 1 s timeout; bwsync's retry arriving proves
    the first attempt timed out. Once: the retry goes through. Lasting: the retry times out
    too, the run fails (exit 4), the next one finishes the job."""
    env = scenario.env | {"BWSYNC_BITWARDEN__TIMEOUT": "1", "BWSYNC_BITWARDEN__MAX_RETRIES": "1"}
    first = scenario.fake.pause("import", 2)
    retry = scenario.fake.pause("import", 3)
    run = BwsyncProcess.start(env)
    first.wait()
    retry.wait()  # bwsync gave up on the first attempt and sent it again
    first.drop()  # lost on the way: never applied
    if lasting:
        code = run.finish()  # the retry times out too
        retry.drop()
        assert code == 4, run.log()
        assert "Bitwarden import 2/3 failed: ReadTimeout" in run.summary()["error"]
        scenario.recover(reference)
        return
    retry.release()
    assert run.finish() == 0, run.log()
    assert run.summary()["retries"] == 1
    scenario.check(reference)


#: Each kind of Bitwarden write, and what the server answers when it is sent a second time
#: after the first took effect: the import and the group writes are the same again (200);
#: a revocation (restoration) is refused as done already (HTTP 400 "Already revoked.").
WRITES = {
    "import": 200,
    "update_group": 200,  # the relink of g0
    "revoke_member": 400,
    "restore_member": 400,
    "set_group_member_ids": 200,  # emptying a stale group
}


@pytest.mark.parametrize("endpoint", list(WRITES))
def test_a_write_that_took_effect_but_whose_answer_was_lost(
    scenario: Scenario, reference: Reference, endpoint: str
) -> None:
    """The server applies the write, its answer never comes (held past bwsync's timeout,
    then the connection is cut): bwsync sends it again, as it must not know whether it was
    applied. The second answer says it is done (or, for a revocation or a restoration, that
    it was done already): the run succeeds and leaves the organization as an uninterrupted
    one (the review of issue 19 saw a retried revocation fail the run, exit 4)."""
    env = scenario.env | {"BWSYNC_BITWARDEN__TIMEOUT": "2", "BWSYNC_BITWARDEN__MAX_RETRIES": "1"}
    nth = 2 if endpoint == "import" else 1  # import: batch 2 of 3
    lost = scenario.fake.pause(endpoint, nth, before=False)
    code, run = run_bwsync(env)
    lost.drop()
    assert code == 0, run.log()
    assert lost.reached.is_set()
    statuses = [r.status for r in scenario.fake.requests_to(endpoint)]
    assert statuses[nth - 1 : nth + 1] == [200, WRITES[endpoint]], statuses
    assert run.summary()["result"] == "success"
    assert run.summary()["retries"] >= 1
    notes = [e["note"] for e in run.events("apply") if "already" in e.get("note", "")]
    done_already = {"revoke_member": ["revoked already"], "restore_member": ["active already"]}
    assert notes == done_already.get(endpoint, []), notes
    scenario.check(reference)


# -- the state store -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["file", "configmap", "s3", "gcs", "azure"], indirect=True)
def test_the_state_store_down_at_the_final_write(scenario: Scenario, reference: Reference) -> None:
    """Everything applied, then the store is gone: exit 5; the lease, taken earlier, cannot be
    given back. The next run (same host) takes it over and records the hash."""
    verified = scenario.fake.pause("list_groups", 2, before=False)
    run = BwsyncProcess.start(scenario.env)
    verified.wait()
    write = scenario.target.hold_write()
    verified.release()
    write.wait(run.pid)
    restore = _store_down(scenario.target)
    write.release()
    assert run.finish() == 5, run.log()
    assert run.summary()["result"] == "failed"
    assert org_of(scenario.fake) == reference.org  # applied; only the record failed
    restore()
    doc = scenario.target.document()
    assert doc is not None and doc.hash is None  # not remembered: the next run re-sends
    assert doc.lease is not None and doc.lease.holder.endswith(f"/{run.pid}")
    scenario.fake.clear_requests()
    scenario.recover(reference, took_over=True)


def _store_down(target: StateTarget) -> Callable[[], None]:
    """Make the store unreachable now; return what brings it back."""
    if target.proxy is not None:
        target.proxy.down()
        return target.proxy.up
    # The file backend: the volume is gone (its directory replaced by a file).
    assert target.lock_file is not None
    folder = target.lock_file.parent
    aside = folder.with_name(folder.name + ".away")
    os.replace(folder, aside)
    folder.write_text("not a directory")

    def back() -> None:
        folder.unlink()
        shutil.move(aside, folder)

    return back


# -- the directory ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["python-ldap", "ldap3"])
def test_the_ldap_server_restarted_between_two_pages(
    scenario: Scenario, reference: Reference, directory: Slapd, engine: str
) -> None:
    env = scenario.env | {"BWSYNC_LDAP__ENGINE": engine}
    page = scenario.ldap.hold("up", ldap_search(2, containing=PEOPLE.encode()))
    run = BwsyncProcess.start(env)
    page.wait()
    directory.restart()  # its connections end; bwsync's cookie means nothing to the new one
    assert run.finish() == 3, run.log()
    summary = run.summary()
    assert summary["error"].startswith(f"LDAP ldap://127.0.0.1:{scenario.ldap.port}"), summary
    assert scenario.fake.writes() == []
    page.drop()
    scenario.recover(reference)
