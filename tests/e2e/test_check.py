"""``bwsync check``'s state line: it proves what ``sync`` will need of the store, a write
included (the lock and a file beside the state; the API server's dry run for a ConfigMap),
without changing the stored document."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bwsync.cli import main
from tests.fixtures.kube import CHART_RELEASE, CHART_STATE, InCluster
from tests.standins.bitwarden import FakeBitwarden


@pytest.fixture
def sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_bitwarden: FakeBitwarden) -> None:
    """A directory and a Bitwarden server that both answer, so the state line decides."""
    people = tmp_path / "people.json"
    people.write_text(json.dumps({"users": [{"id": "u1", "email": "u1@example.com"}]}))
    for name, value in {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(people),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(name, value)


def _unwritable_directory(tmp_path: Path) -> Path:
    """An existing, readable directory this process cannot create files in: sysfs refuses
    even root; elsewhere a directory without write permission does."""
    kernel = Path("/sys/kernel")
    if os.geteuid() == 0:
        try:
            (kernel / "bwsync-probe").touch()
        except OSError:
            return kernel
        pytest.fail("/sys/kernel is writable: cannot make an unwritable directory as root")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    return locked


@pytest.mark.usefixtures("sides")
def test_a_writable_state_file_is_ok_and_left_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state" / "state.json"
    monkeypatch.setenv("BWSYNC_STATE__PATH", str(state))
    assert main(["sync"]) == 0
    before = state.read_bytes()
    capsys.readouterr()
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert f"ok    state: file {state} readable and writable (lock included)" in out
    assert state.read_bytes() == before
    assert sorted(p.name for p in state.parent.iterdir()) == ["state.json", "state.json.lock"]


@pytest.mark.usefixtures("sides")
def test_a_state_directory_that_cannot_be_written_fails_check_as_sync_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 22: `check` said `ok state … readable`, then `sync` exited 5 on the lock file."""
    state = _unwritable_directory(tmp_path) / "bwsync-state.json"
    monkeypatch.setenv("BWSYNC_STATE__PATH", str(state))
    assert main(["check"]) == 5
    out = capsys.readouterr().out
    assert "ok    directory: read file" in out
    assert "ok    bitwarden: token" in out
    [line] = [x for x in out.splitlines() if x.startswith("FAIL  state:")]
    assert "state.json.lock" in line and "ermission denied" in line
    assert main(["sync"]) == 5  # what check foretold


RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"


def _in_the_pod(kube_in_cluster: InCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in kube_in_cluster.env().items():
        monkeypatch.setenv(name, value)


@pytest.mark.kube_apiserver
@pytest.mark.usefixtures("sides")
def test_configmap_check_is_a_dry_run_update_that_stores_nothing(
    kube_in_cluster: InCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chart's Role (get, update on its ConfigMap): the API server itself answers the
    dry-run update, and the ConfigMap is the same afterwards."""
    _in_the_pod(kube_in_cluster, monkeypatch)
    before = kube_in_cluster.stored()
    assert before is not None
    assert main(["check"]) == 0
    assert "readable and writable (dry-run update)" in capsys.readouterr().out
    after = kube_in_cluster.stored()
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert main(["sync"]) == 0  # what check foretold


@pytest.mark.kube_apiserver
@pytest.mark.usefixtures("sides")
def test_configmap_check_names_the_missing_update_permission(
    kube_in_cluster: InCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Role that may read but not update: `check` used to say `ok state … readable`."""
    _in_the_pod(kube_in_cluster, monkeypatch)
    admin, ns = kube_in_cluster.server.admin, kube_in_cluster.namespace
    role_path = f"{RBAC.format(ns=ns)}/roles/{CHART_RELEASE}"
    role = admin.ok("GET", role_path)
    role["rules"][0]["verbs"] = ["get"]
    admin.ok("PUT", role_path, role)
    assert main(["check"]) == 5
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("FAIL  state:")]
    assert "forbidden to update configmaps" in line and "verb 'update'" in line
    # The chart's `helm test` pod is such a read-only identity on purpose: it says so.
    assert main(["check", "--read-only"]) == 0
    assert "readable (write not tested: --read-only)" in capsys.readouterr().out


@pytest.mark.kube_apiserver
@pytest.mark.usefixtures("sides")
def test_configmap_check_without_the_configmap_asks_for_create(
    kube_in_cluster: InCluster, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The chart's ConfigMap deleted: the first write would create it, which the chart's Role
    does not allow; the dry run says so, and creates nothing."""
    _in_the_pod(kube_in_cluster, monkeypatch)
    ns = kube_in_cluster.namespace
    kube_in_cluster.server.admin.delete(f"/api/v1/namespaces/{ns}/configmaps/{CHART_STATE}")
    assert main(["check"]) == 5
    [line] = [x for x in capsys.readouterr().out.splitlines() if x.startswith("FAIL  state:")]
    assert f"forbidden to create configmaps in namespace {ns}" in line
    kube_in_cluster.server.admin.grant(ns, CHART_RELEASE, ["create"])
    assert main(["check"]) == 0
    assert "creating it is allowed (dry run)" in capsys.readouterr().out
    assert kube_in_cluster.stored() is None
