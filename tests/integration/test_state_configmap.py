"""The configmap backend against the Kubernetes stand-in over HTTPS: what the API enforces
(resourceVersion conflicts, 401, 403, 404) and how bwsync answers, in a pod and via kubeconfig."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import orjson
import pytest

from bwsync.errors import StateError
from bwsync.state import open_store
from bwsync.state.base import StateConflictError, StateDocument
from bwsync.state.configmap import DATA_KEY, ConfigMapStateStore
from tests.fixtures.state import (
    SA_USER,
    InCluster,
    Kubeconfig,
    KubeTLS,
    free_port,
    write_kubeconfig,
)
from tests.standins.kubernetes import FakeKubernetes

CHART_LABELS = {
    "app.kubernetes.io/name": "bwsync",
    "app.kubernetes.io/component": "state",
    "bwsync/profile": "default",
}
CHART_ANNOTATIONS = {"helm.sh/resource-policy": "keep"}


def test_in_cluster_uses_the_pods_namespace_and_token(kube_in_cluster: InCluster) -> None:
    store = open_store(kube_in_cluster.settings())
    store.save(StateDocument(hash="h1"))
    assert store.description == "configmap bwsync-ns/bwsync-state"
    obj = kube_in_cluster.api.configmap("bwsync-ns", "bwsync-state")
    assert obj is not None
    assert orjson.loads(obj["data"][DATA_KEY])["hash"] == "h1"
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "bwsync"}
    assert kube_in_cluster.api.count(user=SA_USER) >= 1


def test_namespace_setting_overrides_the_pods(kube_in_cluster: InCluster) -> None:
    store = open_store(kube_in_cluster.settings(namespace="other"))
    store.save(StateDocument(hash="h1"))
    assert kube_in_cluster.api.configmap("other", "bwsync-state") is not None
    assert kube_in_cluster.api.configmap("bwsync-ns", "bwsync-state") is None


def test_kubeconfig_uses_the_current_contexts_namespace(kubeconfig: Kubeconfig) -> None:
    store = open_store(kubeconfig.settings())
    store.save(StateDocument(hash="h1"))
    assert store.description == "configmap team-a/bwsync-state"
    assert kubeconfig.api.configmap("team-a", "bwsync-state") is not None
    assert kubeconfig.api.count(user="kubernetes-admin") >= 1


def test_chart_made_configmap_needs_only_get_and_update(kube_in_cluster: InCluster) -> None:
    """As deployed by the chart: an empty ConfigMap with its labels, and a Role allowing get
    and update of that one name. A whole run works, and the chart's metadata survives."""
    api = kube_in_cluster.api
    api.put_configmap(
        "bwsync-ns", "bwsync-state", labels=CHART_LABELS, annotations=CHART_ANNOTATIONS
    )
    api.tokens[kube_in_cluster.token].verbs = {"get", "update"}
    api.tokens[kube_in_cluster.token].resource_names = {"bwsync-state"}
    store = open_store(kube_in_cluster.settings())
    assert store.load() == StateDocument()
    doc = store.acquire_lease("default/pod-1/7", 900)
    doc.hash = "applied"
    store.release(doc)
    again = open_store(kube_in_cluster.settings())
    again.clear()
    obj = api.configmap("bwsync-ns", "bwsync-state")
    assert obj is not None
    assert obj["metadata"]["labels"] == CHART_LABELS
    assert obj["metadata"]["annotations"] == CHART_ANNOTATIONS
    assert DATA_KEY not in (obj.get("data") or {})
    assert api.count("POST") == 0
    assert api.count("DELETE") == 0
    # after clear the empty ConfigMap is "no state" again, and writable without create
    fresh = open_store(kube_in_cluster.settings())
    fresh.save(StateDocument(hash="again"))
    assert open_store(kube_in_cluster.settings()).load().hash == "again"


def test_other_keys_in_the_configmap_are_kept(kube_in_cluster: InCluster) -> None:
    kube_in_cluster.api.put_configmap("bwsync-ns", "bwsync-state", {"notes": "ops were here"})
    store = open_store(kube_in_cluster.settings())
    store.load()
    store.save(StateDocument(hash="x"))
    obj = kube_in_cluster.api.configmap("bwsync-ns", "bwsync-state")
    assert obj is not None
    assert obj["data"]["notes"] == "ops were here"


def test_missing_configmap_without_create_names_the_permission(
    kube_in_cluster: InCluster,
) -> None:
    kube_in_cluster.set_verbs({"get", "update"})
    store = open_store(kube_in_cluster.settings())
    assert store.load() == StateDocument()  # 404: nothing stored yet
    with pytest.raises(StateError) as caught:
        store.acquire_lease("default/pod/1", 900)
    text = str(caught.value)
    assert caught.value.exit_code == 5
    assert "configmap bwsync-ns/bwsync-state" in text
    assert "forbidden to create configmaps in namespace bwsync-ns" in text
    assert "'create'" in text
    assert kube_in_cluster.token not in text


def test_forbidden_read_names_the_get_permission(kube_in_cluster: InCluster) -> None:
    kube_in_cluster.set_verbs({"update"})
    with pytest.raises(StateError) as caught:
        open_store(kube_in_cluster.settings()).load()
    text = str(caught.value)
    assert "forbidden to get configmaps" in text
    assert 'resourceNames: ["bwsync-state"]' in text
    assert SA_USER in text  # the API server's own message, which names the account


def test_forbidden_update_names_the_update_permission(kube_in_cluster: InCluster) -> None:
    kube_in_cluster.api.put_configmap("bwsync-ns", "bwsync-state")
    kube_in_cluster.set_verbs({"get"})
    store = open_store(kube_in_cluster.settings())
    store.load()
    with pytest.raises(StateError, match="forbidden to update configmaps"):
        store.save(StateDocument(hash="x"))


def test_revoked_token_is_a_401_state_error(kube_in_cluster: InCluster) -> None:
    kube_in_cluster.api.revoke_token(kube_in_cluster.token)
    with pytest.raises(StateError) as caught:
        open_store(kube_in_cluster.settings()).load()
    text = str(caught.value)
    assert "401" in text
    assert "in-cluster service account" in text
    assert kube_in_cluster.token not in text


def test_rotated_token_is_read_again(kube_in_cluster: InCluster) -> None:
    """The kubelet replaces the token file and the old token stops working: the 401 makes
    bwsync read the file again and retry, within the same run (same store)."""
    store = open_store(kube_in_cluster.settings())
    doc = store.acquire_lease("default/pod/1", 900)
    old = kube_in_cluster.token
    new = kube_in_cluster.rotate_token()
    doc.hash = "after-rotation"
    store.release(doc)
    api = kube_in_cluster.api
    assert [r.status for r in api.requests if r.method == "PUT"][-2:] == [401, 200]
    assert open_store(kube_in_cluster.settings()).load().hash == "after-rotation"
    assert old != new


def test_conflict_on_resource_version(kube_in_cluster: InCluster) -> None:
    a = open_store(kube_in_cluster.settings())
    b = open_store(kube_in_cluster.settings())
    a.save(StateDocument(hash="1"))
    doc_a, doc_b = a.load(), b.load()
    b.save(doc_b)
    with pytest.raises(StateConflictError, match="resourceVersion"):
        a.save(doc_a)
    assert kube_in_cluster.api.requests[-1].status == 409


def test_configmap_deleted_under_a_run_is_a_conflict(kube_in_cluster: InCluster) -> None:
    store = open_store(kube_in_cluster.settings())
    store.save(StateDocument(hash="1"))
    doc = store.load()
    del kube_in_cluster.api.configmaps[("bwsync-ns", "bwsync-state")]
    with pytest.raises(StateConflictError):
        store.save(doc)


def test_missing_namespace_is_named(kube_in_cluster: InCluster) -> None:
    store = open_store(kube_in_cluster.settings(namespace="nope"))
    store.load()
    # the stand-in has every namespace; a real server's 404 on create means no namespace
    kube_in_cluster.api.fail_next.extend([404, 404])  # the GET, then the POST
    with pytest.raises(StateError, match="namespace 'nope' does not exist"):
        store.save(StateDocument())


def test_server_error_is_a_state_error(kube_in_cluster: InCluster) -> None:
    kube_in_cluster.api.fail_next.append(500)
    with pytest.raises(StateError, match="get failed with HTTP 500"):
        open_store(kube_in_cluster.settings()).load()


def test_wrong_ca_is_refused(kube_in_cluster: InCluster, tmp_path: Path) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    shutil.copy(other, kube_in_cluster.sa_dir / "ca.crt")
    with pytest.raises(StateError, match="cannot reach the Kubernetes API") as caught:
        open_store(kube_in_cluster.settings()).load()
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_unreachable_api_is_a_state_error(
    kube_in_cluster: InCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(free_port()))
    with pytest.raises(
        StateError, match=r"cannot reach the Kubernetes API at https://127\.0\.0\.1"
    ):
        open_store(kube_in_cluster.settings()).load()


def test_not_in_a_pod_and_no_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none")
    with pytest.raises(StateError, match="not in a pod") as caught:
        store.load()
    assert caught.value.exit_code == 5


def test_missing_namespace_file_asks_for_the_setting(kube_in_cluster: InCluster) -> None:
    os.unlink(kube_in_cluster.sa_dir / "namespace")
    with pytest.raises(StateError, match="BWSYNC_STATE__NAMESPACE"):
        open_store(kube_in_cluster.settings()).load()


def test_kubeconfig_with_token_file_and_relative_ca(
    fake_kube: FakeKubernetes, kube_tls: KubeTLS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths in a kubeconfig resolve against its own directory, as kubectl does;
    ``tokenFile`` is re-read when the token rotates."""
    d = tmp_path / "conf"
    d.mkdir()
    shutil.copy(kube_tls.cert, d / "ca.crt")
    token = fake_kube.issue_token("oidc:alice")
    (d / "token").write_text(token + "\n")
    write_kubeconfig(d / "config", fake_kube.url, Path("ca.crt"), {"tokenFile": "token"})
    cluster_ca = d / "config"
    cluster_ca.write_text(cluster_ca.read_text().replace(str(Path("ca.crt")), "ca.crt"))
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}{os.pathsep}{d / 'config'}")
    store = ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none")
    store.save(StateDocument(hash="k"))
    new = fake_kube.issue_token("oidc:alice")
    (d / "token").write_text(new)
    fake_kube.revoke_token(token)
    doc = store.load()
    assert doc.hash == "k"
    assert store.description == "configmap team-a/bwsync-state"


def test_kubeconfig_exec_plugin(
    fake_kube: FakeKubernetes, kube_tls: KubeTLS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = fake_kube.issue_token("eks:bwsync")
    plugin = tmp_path / "get-token"
    plugin.write_text(
        "#!/bin/sh\n"
        'echo "$KUBERNETES_EXEC_INFO" > "$(dirname "$0")/exec-info.json"\n'
        'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        f'"status":{{"token":"{token}","expirationTimestamp":"2099-01-01T00:00:00Z"}}}}\'\n'
    )
    plugin.chmod(0o755)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "args": ["--cluster", "fake"],
            "interactiveMode": "Never",
        }
    }
    write_kubeconfig(tmp_path / "config", fake_kube.url, kube_tls.cert, user)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    store = ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none")
    store.save(StateDocument(hash="e"))
    assert store.load().hash == "e"
    info = orjson.loads((tmp_path / "exec-info.json").read_bytes())
    assert info["kind"] == "ExecCredential"
    assert fake_kube.count(user="eks:bwsync") >= 2


def test_kubeconfig_wins_over_in_cluster_when_set(
    kube_in_cluster: InCluster, kube_tls: KubeTLS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = kube_in_cluster.api.issue_token("kubeconfig-user")
    write_kubeconfig(tmp_path / "config", kube_in_cluster.api.url, kube_tls.cert, {"token": token})
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    open_store(kube_in_cluster.settings()).save(StateDocument())
    assert kube_in_cluster.api.count(user="kubeconfig-user") >= 1
    assert kube_in_cluster.api.count(user=SA_USER) == 0


@pytest.mark.parametrize("inline", [True, False], ids=["data", "files"])
def test_kubeconfig_client_certificate(
    fake_kube: FakeKubernetes,
    kube_tls: KubeTLS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inline: bool,
) -> None:
    """kubeadm's and kind's admin kubeconfig: a client certificate instead of a token."""
    cert, key = kube_tls.client_cert("kubernetes-admin")
    fake_kube.allow_client_cert("kubernetes-admin")
    if inline:
        user = {
            "client-certificate-data": base64.b64encode(cert).decode(),
            "client-key-data": base64.b64encode(key).decode(),
        }
    else:
        (tmp_path / "admin.crt").write_bytes(cert)
        (tmp_path / "admin.key").write_bytes(key)
        user = {"client-certificate": "admin.crt", "client-key": "admin.key"}
    write_kubeconfig(tmp_path / "config", fake_kube.url, kube_tls.cert, user)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    store = ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none")
    store.save(StateDocument(hash="cert"))
    assert store.load().hash == "cert"
    assert fake_kube.count(user="kubernetes-admin") >= 2


def test_unknown_client_certificate_is_a_401(
    fake_kube: FakeKubernetes, kube_tls: KubeTLS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = kube_tls.client_cert("stranger")
    user = {
        "client-certificate-data": base64.b64encode(cert).decode(),
        "client-key-data": base64.b64encode(key).decode(),
    }
    write_kubeconfig(tmp_path / "config", fake_kube.url, kube_tls.cert, user)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    with pytest.raises(StateError, match="401"):
        ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none").load()
