"""The configmap backend on a real Kubernetes API server (kube-apiserver + etcd, RBAC on).

In a pod: bwsync runs as the chart's ServiceAccount, bound only by the chart's own Role
(get/update/patch of its one ConfigMap), with a TokenRequest token, ``ca.crt`` and the
``namespace`` file in a service-account directory and ``KUBERNETES_SERVICE_HOST``/``_PORT``
set, as Kubernetes gives the CronJob's pod. Outside: a kubeconfig (token, token file, exec
plugin, client certificate). What the server answered is read from its audit log.

Only a 5xx and a hanging server come from ``tests/standins/kubernetes.py``: the real server
cannot be made to give those on a read.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bwsync.errors import StateConflictError, StateError
from bwsync.state import open_store
from bwsync.state.base import StateDocument
from bwsync.state.configmap import DATA_KEY, ConfigMapStateStore
from bwsync.state.kube import from_kubeconfig
from tests.fixtures.kube import (
    CHART_RELEASE,
    CHART_STATE,
    ROOT,
    Helm,
    InCluster,
    KubeApiServer,
    Kubeconfig,
    PodIdentity,
    write_kubeconfig,
)
from tests.fixtures.ldap import free_port
from tests.standins.bitwarden import FakeBitwarden
from tests.standins.kubernetes import BrokenKubernetes

pytestmark = pytest.mark.kube_apiserver

RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"


def _state(obj: dict[str, Any] | None) -> dict[str, Any]:
    """bwsync's state document in a ConfigMap as the server stored it."""
    assert obj is not None
    result: dict[str, Any] = orjson.loads((obj.get("data") or {})[DATA_KEY])
    return result


# -- in a pod, as the chart deploys it ------------------------------------------------------


def test_in_cluster_uses_the_pods_namespace_and_token(kube_in_cluster: InCluster) -> None:
    store = open_store(kube_in_cluster.settings())
    store.save(StateDocument(hash="h1"))
    assert store.description == f"configmap {kube_in_cluster.namespace}/{CHART_STATE}"
    assert _state(kube_in_cluster.stored())["hash"] == "h1"
    done = kube_in_cluster.server.audited(
        kube_in_cluster.namespace, lambda e: len(e) >= 2, user=kube_in_cluster.user
    )
    assert [(e.verb, e.code) for e in done] == [("get", 200), ("update", 200)]


def test_chart_role_is_enough_for_a_whole_run(kube_in_cluster: InCluster) -> None:
    """The chart's empty ConfigMap and its Role (get/update of that one name): load, lease,
    release and clear all work, the chart's labels and annotations survive, and bwsync never
    asks to create, patch, list or delete."""
    store = open_store(kube_in_cluster.settings())
    assert store.load() == StateDocument()
    doc = store.acquire_lease("default/pod-1/7", 900)
    doc.hash = "applied"
    store.release(doc)
    open_store(kube_in_cluster.settings()).clear()
    obj = kube_in_cluster.stored()
    assert obj is not None
    labels = obj["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "state"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"
    assert obj["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert DATA_KEY not in (obj.get("data") or {})
    # after clear the empty ConfigMap is "no state" again, and writable without create
    open_store(kube_in_cluster.settings()).save(StateDocument(hash="again"))
    assert open_store(kube_in_cluster.settings()).load().hash == "again"
    verbs = {e.verb for e in kube_in_cluster.requests()}
    assert verbs == {"get", "update"}
    assert all(e.code < 400 for e in kube_in_cluster.requests())


def test_first_sync_creates_the_state_and_later_ones_update_it(
    kube_in_cluster: InCluster, fake_bitwarden: FakeBitwarden, tmp_path: Path
) -> None:
    """Two `bwsync sync` processes one after the other, in the pod: the first writes the state
    into the chart's empty ConfigMap, the second updates it (a new resourceVersion)."""
    directory = tmp_path / "directory.json"
    env = _sync_env(kube_in_cluster, fake_bitwarden, directory)
    directory.write_bytes(orjson.dumps({"users": [{"id": "u1", "email": "a@example.com"}]}))
    first = _sync(env)
    assert first.returncode == 0, first.stderr
    after_first = kube_in_cluster.stored()
    state = _state(after_first)
    assert state["hash"]
    assert [h["result"] for h in state["history"]] == ["success"]
    assert state["lease"] is None

    directory.write_bytes(orjson.dumps({"users": [
        {"id": "u1", "email": "a@example.com"}, {"id": "u2", "email": "b@example.com"},
    ]}))  # fmt: skip
    second = _sync(env)
    assert second.returncode == 0, second.stderr
    after_second = kube_in_cluster.stored()
    assert after_first is not None and after_second is not None
    assert after_second["metadata"]["resourceVersion"] != after_first["metadata"]["resourceVersion"]
    assert after_second["metadata"]["uid"] == after_first["metadata"]["uid"]
    state = _state(after_second)
    assert state["hash"] != _state(after_first)["hash"]
    assert [h["result"] for h in state["history"]] == ["success", "success"]
    assert {m.external_id for m in fake_bitwarden.members} >= {"u1", "u2"}


def _sync_env(pod: InCluster, fake_bitwarden: FakeBitwarden, directory: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("BWSYNC_")}
    return base | pod.env() | {
        "BWSYNC_SECRETS_DIR": os.environ["BWSYNC_SECRETS_DIR"],
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(directory),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_BITWARDEN__MAX_RETRIES": "0",
        "BWSYNC_LOG__FORMAT": "json",
    }  # fmt: skip


def _sync(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bwsync", "sync"], env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


def test_stale_resource_version_is_a_409_conflict(kube_in_cluster: InCluster) -> None:
    a = open_store(kube_in_cluster.settings())
    b = open_store(kube_in_cluster.settings())
    a.save(StateDocument(hash="1"))
    doc_a, doc_b = a.load(), b.load()
    doc_b.hash = "2"
    b.save(doc_b)
    doc_a.hash = "3"
    with pytest.raises(StateConflictError, match="resourceVersion"):
        a.save(doc_a)
    events = kube_in_cluster.server.audited(
        kube_in_cluster.namespace, lambda e: any(x.code == 409 for x in e), verb="update"
    )
    assert [e.code for e in events if e.verb == "update"][-1] == 409
    assert _state(kube_in_cluster.stored())["hash"] == "2"  # b's write stands


def test_other_keys_in_the_configmap_are_kept(kube_in_cluster: InCluster) -> None:
    obj = kube_in_cluster.stored()
    assert obj is not None
    obj["data"] = {"notes": "ops were here"}
    kube_in_cluster.server.admin.ok(
        "PUT", f"/api/v1/namespaces/{kube_in_cluster.namespace}/configmaps/{CHART_STATE}", obj
    )
    store = open_store(kube_in_cluster.settings())
    store.load()
    store.save(StateDocument(hash="x"))
    stored = kube_in_cluster.stored()
    assert stored is not None
    assert stored["data"]["notes"] == "ops were here"


def test_missing_role_is_a_403_naming_the_verb(kube_in_cluster: InCluster) -> None:
    """The chart's Role deleted (its binding left dangling): the server refuses, and the
    message names the verb, the resource name and the account."""
    admin, ns = kube_in_cluster.server.admin, kube_in_cluster.namespace
    admin.delete(f"{RBAC.format(ns=ns)}/roles/{CHART_RELEASE}")
    with pytest.raises(StateError) as caught:
        open_store(kube_in_cluster.settings()).load()
    text = str(caught.value)
    assert caught.value.exit_code == 5
    assert f"forbidden to get configmaps in namespace {ns}" in text
    assert "verb 'get'" in text
    assert f'resourceNames: ["{CHART_STATE}"]' in text
    assert f'User "{kube_in_cluster.user}" cannot get resource "configmaps"' in text
    assert kube_in_cluster.pod.token not in text


def test_role_without_update_is_a_403_naming_update(kube_in_cluster: InCluster) -> None:
    admin, ns = kube_in_cluster.server.admin, kube_in_cluster.namespace
    role_path = f"{RBAC.format(ns=ns)}/roles/{CHART_RELEASE}"
    role = admin.ok("GET", role_path)
    role["rules"][0]["verbs"] = ["get"]
    admin.ok("PUT", role_path, role)
    store = open_store(kube_in_cluster.settings())
    store.load()
    with pytest.raises(StateError, match="forbidden to update configmaps") as caught:
        store.save(StateDocument(hash="x"))
    assert "verb 'update'" in str(caught.value)


def test_missing_configmap_with_the_chart_role_names_create(kube_in_cluster: InCluster) -> None:
    """Someone deleted the chart's ConfigMap: reading finds nothing, and the first write asks
    for `create`, which the chart's Role (rightly) does not grant."""
    kube_in_cluster.server.admin.delete(
        f"/api/v1/namespaces/{kube_in_cluster.namespace}/configmaps/{CHART_STATE}"
    )
    store = open_store(kube_in_cluster.settings())
    assert store.load() == StateDocument()
    with pytest.raises(StateError) as caught:
        store.acquire_lease("default/pod/1", 900)
    text = str(caught.value)
    assert caught.value.exit_code == 5
    assert f"forbidden to create configmaps in namespace {kube_in_cluster.namespace}" in text
    assert "create it (the Helm chart does)" in text
    assert "'create'" in text


def test_configmap_created_when_the_role_allows_it(
    kube_in_cluster: InCluster,
) -> None:
    """No chart ConfigMap, and a Role that may create ConfigMaps (create cannot be limited by
    name): the first save creates it with bwsync's label, the next replaces it."""
    admin, ns = kube_in_cluster.server.admin, kube_in_cluster.namespace
    admin.delete(f"/api/v1/namespaces/{ns}/configmaps/{CHART_STATE}")
    admin.grant(ns, CHART_RELEASE, ["create"])
    store = open_store(kube_in_cluster.settings())
    store.save(StateDocument(hash="1"))
    obj = kube_in_cluster.stored()
    assert obj is not None
    assert obj["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "bwsync"}
    assert _state(obj)["hash"] == "1"
    again = open_store(kube_in_cluster.settings())
    doc = again.load()
    doc.hash = "2"
    again.save(doc)
    assert _state(kube_in_cluster.stored())["hash"] == "2"
    events = kube_in_cluster.server.audited(ns, lambda e: len(e) >= 4, user=kube_in_cluster.user)
    assert [(e.verb, e.code) for e in events] == [
        ("get", 404), ("create", 201), ("get", 200), ("update", 200),
    ]  # fmt: skip


def test_two_creates_at_once_one_is_a_conflict(kube_in_cluster: InCluster) -> None:
    """Both runs saw no ConfigMap; the second POST is 409 AlreadyExists: a conflict."""
    admin, ns = kube_in_cluster.server.admin, kube_in_cluster.namespace
    admin.delete(f"/api/v1/namespaces/{ns}/configmaps/{CHART_STATE}")
    admin.grant(ns, CHART_RELEASE, ["create"])
    a, b = open_store(kube_in_cluster.settings()), open_store(kube_in_cluster.settings())
    a.load()
    b.load()
    b.save(StateDocument(hash="b"))
    with pytest.raises(StateConflictError):
        a.save(StateDocument(hash="a"))
    assert _state(kube_in_cluster.stored())["hash"] == "b"


def test_configmap_deleted_under_a_run_is_a_conflict(kube_in_cluster: InCluster) -> None:
    store = open_store(kube_in_cluster.settings())
    store.save(StateDocument(hash="1"))
    doc = store.load()
    kube_in_cluster.server.admin.delete(
        f"/api/v1/namespaces/{kube_in_cluster.namespace}/configmaps/{CHART_STATE}"
    )
    with pytest.raises(StateConflictError):
        store.save(doc)


def test_revoked_token_is_a_401_state_error(kube_in_cluster: InCluster) -> None:
    kube_in_cluster.pod.revoke()
    with pytest.raises(StateError) as caught:
        open_store(kube_in_cluster.settings()).load()
    text = str(caught.value)
    assert "401" in text
    assert "in-cluster service account" in text
    assert kube_in_cluster.pod.token not in text


def test_rotated_token_is_read_again(kube_in_cluster: InCluster) -> None:
    """The kubelet replaces the token file and the old token stops working: the 401 makes
    bwsync read the file again and retry, within the same run (same store)."""
    store = open_store(kube_in_cluster.settings())
    doc = store.acquire_lease("default/pod/1", 900)
    old = kube_in_cluster.pod.token
    new = kube_in_cluster.pod.rotate_token()
    assert old != new
    doc.hash = "after-rotation"
    store.release(doc)
    events = kube_in_cluster.server.audited(
        kube_in_cluster.namespace, lambda e: any(x.code == 401 for x in e), name=CHART_STATE
    )
    rejected = [i for i, e in enumerate(events) if e.code == 401]
    assert rejected, events
    retried = events[rejected[-1] + 1]
    assert (retried.user, retried.code) == (kube_in_cluster.user, 200)
    assert open_store(kube_in_cluster.settings()).load().hash == "after-rotation"


def test_namespace_setting_overrides_the_pods(kube_in_cluster: InCluster) -> None:
    admin = kube_in_cluster.server.admin
    other = f"{kube_in_cluster.namespace}-other"
    admin.create_namespace(other)
    admin.grant(other, CHART_RELEASE, ["get", "create", "update"])
    # the binding names the pod's ServiceAccount in its own namespace
    binding = admin.ok("GET", f"{RBAC.format(ns=other)}/rolebindings")["items"][0]
    binding["subjects"][0]["namespace"] = kube_in_cluster.namespace
    admin.ok("PUT", f"{RBAC.format(ns=other)}/rolebindings/{binding['metadata']['name']}", binding)
    store = open_store(kube_in_cluster.settings(namespace=other))
    store.save(StateDocument(hash="h1"))
    assert _state(kube_in_cluster.stored(namespace=other))["hash"] == "h1"
    assert DATA_KEY not in (kube_in_cluster.stored() or {}).get("data", {})


def test_missing_namespace_file_asks_for_the_setting(kube_in_cluster: InCluster) -> None:
    os.unlink(kube_in_cluster.sa_dir / "namespace")
    with pytest.raises(StateError, match="BWSYNC_STATE__NAMESPACE"):
        open_store(kube_in_cluster.settings()).load()


def test_wrong_ca_is_refused(kube_in_cluster: InCluster, tmp_path: Path) -> None:
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", kube_in_cluster.sa_dir / "ca.crt")
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


# -- the chart's lifecycle -------------------------------------------------------------------


def test_state_survives_helm_uninstall_and_reinstall(
    kube_apiserver: KubeApiServer, kube_namespace: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The chart keeps its state ConfigMap on `helm uninstall` (resource-policy: keep): a
    reinstall finds bwsync's memory, so it does not resend a full import."""
    ns = kube_namespace
    helm = Helm(kube_apiserver, tmp_path / "helm")
    helm("install", CHART_RELEASE, str(ROOT / "helm" / "bwsync"), "-n", ns)
    pod = PodIdentity.create(kube_apiserver, ns, CHART_RELEASE, tmp_path / "sa")
    for name, value in kube_apiserver.in_cluster_env().items():
        monkeypatch.setenv(name, value)
    settings = InCluster(kube_apiserver, pod, ns).settings()
    open_store(settings).save(StateDocument(hash="remembered"))

    helm("uninstall", CHART_RELEASE, "-n", ns)
    kept = kube_apiserver.admin.configmap(ns, CHART_STATE)
    assert _state(kept)["hash"] == "remembered"
    assert (
        kube_apiserver.admin.get(f"/api/v1/namespaces/{ns}/serviceaccounts/{CHART_RELEASE}") is None
    )

    helm("install", CHART_RELEASE, str(ROOT / "helm" / "bwsync"), "-n", ns)
    again = kube_apiserver.admin.configmap(ns, CHART_STATE)
    assert _state(again)["hash"] == "remembered"
    assert again is not None and kept is not None
    assert again["metadata"]["uid"] == kept["metadata"]["uid"]
    pod = PodIdentity.create(kube_apiserver, ns, CHART_RELEASE, tmp_path / "sa2")
    assert open_store(InCluster(kube_apiserver, pod, ns).settings()).load().hash == "remembered"


# -- through a kubeconfig --------------------------------------------------------------------


def test_kubeconfig_uses_the_current_contexts_namespace(kubeconfig: Kubeconfig) -> None:
    store = open_store(kubeconfig.settings())
    store.save(StateDocument(hash="h1"))
    assert store.description == f"configmap {kubeconfig.namespace}/bwsync-state"
    assert _state(kubeconfig.stored())["hash"] == "h1"
    events = kubeconfig.server.audited(kubeconfig.namespace, lambda e: len(e) >= 2,
                                       user=kubeconfig.user)  # fmt: skip
    assert [(e.verb, e.code) for e in events] == [("get", 404), ("create", 201)]


def test_missing_namespace_is_named(kubeconfig: Kubeconfig) -> None:
    """The real server's answers for a namespace that does not exist: 404 on the read (no
    ConfigMap), 404 on the create (no namespace) — as the cluster's admin, who may do both."""
    admin = kubeconfig.server.admin
    nope = f"{kubeconfig.namespace}-nope"
    config = from_kubeconfig([kubeconfig.server.kubeconfig], namespace=nope)
    store = ConfigMapStateStore("bwsync-state", config=config)
    assert store.load() == StateDocument()
    with pytest.raises(StateError, match=f"namespace '{nope}' does not exist"):
        store.save(StateDocument())
    assert admin.get(f"/api/v1/namespaces/{nope}") is None


def test_kubeconfig_with_token_file_and_relative_ca(
    kubeconfig: Kubeconfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative paths in a kubeconfig resolve against its own directory, as kubectl does;
    ``tokenFile`` is re-read when the token rotates."""
    server, ns = kubeconfig.server, kubeconfig.namespace
    pod = PodIdentity.create(server, ns, "deployer", tmp_path / "conf")
    d = pod.sa_dir  # token and ca.crt, side by side with the kubeconfig
    write_kubeconfig(d / "config", server.url, "ca.crt", {"tokenFile": "token"}, ns)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}{os.pathsep}{d / 'config'}")
    store = ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none")
    store.save(StateDocument(hash="k"))
    pod.rotate_token()
    assert store.load().hash == "k"
    assert store.description == f"configmap {ns}/bwsync-state"


def test_kubeconfig_exec_plugin(
    kubeconfig: Kubeconfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin = tmp_path / "get-token"
    plugin.write_text(
        "#!/bin/sh\n"
        'echo "$KUBERNETES_EXEC_INFO" > "$(dirname "$0")/exec-info.json"\n'
        'printf \'{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential",'
        f'"status":{{"token":"{kubeconfig.token}","expirationTimestamp":"2099-01-01T00:00:00Z"}}}}\'\n'
    )
    plugin.chmod(0o755)
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "args": ["--cluster", "test"],
            "interactiveMode": "Never",
        }
    }
    write_kubeconfig(tmp_path / "config", kubeconfig.server.url, kubeconfig.server.ca_file,
                     user, kubeconfig.namespace)  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    store = ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none")
    store.save(StateDocument(hash="e"))
    assert store.load().hash == "e"
    info = orjson.loads((tmp_path / "exec-info.json").read_bytes())
    assert info["kind"] == "ExecCredential"


def test_kubeconfig_wins_over_in_cluster_when_set(
    kube_in_cluster: InCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ns = kube_in_cluster.server, kube_in_cluster.namespace
    server.admin.create_service_account(ns, "operator")
    server.admin.grant(ns, "operator", ["get", "update"])
    token = server.admin.service_account_token(ns, "operator")
    write_kubeconfig(tmp_path / "config", server.url, server.ca_file, {"token": token}, ns)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    open_store(kube_in_cluster.settings()).save(StateDocument())
    operator = f"system:serviceaccount:{ns}:operator"
    assert server.audited(ns, lambda e: len(e) >= 2, user=operator)
    assert kube_in_cluster.requests() == []


@pytest.mark.parametrize("inline", [True, False], ids=["data", "files"])
def test_kubeconfig_client_certificate(
    kubeconfig: Kubeconfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    """kubeadm's and kind's admin kubeconfig: a client certificate (signed by the cluster CA)
    instead of a token; RBAC binds its common name."""
    server, ns = kubeconfig.server, kubeconfig.namespace
    cert, key = server.pki.client_cert(tmp_path, "jane")
    server.admin.grant(ns, "jane", ["get", "create", "update"], user=True)
    if inline:
        user = {
            "client-certificate-data": base64.b64encode(cert.read_bytes()).decode(),
            "client-key-data": base64.b64encode(key.read_bytes()).decode(),
        }
    else:
        user = {"client-certificate": cert.name, "client-key": key.name}
    write_kubeconfig(tmp_path / "config", server.url, server.ca_file, user, ns)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    store = ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none")
    store.save(StateDocument(hash="cert"))
    assert store.load().hash == "cert"
    assert server.audited(ns, lambda e: len(e) >= 3, user="jane")


def test_client_certificate_of_another_ca_is_a_401(
    kubeconfig: Kubeconfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fixtures.kube import Pki

    (tmp_path / "other").mkdir()
    stranger = Pki.create(tmp_path / "other")
    user = {"client-certificate": str(stranger.admin_cert), "client-key": str(stranger.admin_key)}
    write_kubeconfig(tmp_path / "config", kubeconfig.server.url, kubeconfig.server.ca_file,
                     user, kubeconfig.namespace)  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "config"))
    with pytest.raises(StateError, match="401"):
        ConfigMapStateStore("bwsync-state", service_account_dir=tmp_path / "none").load()


# -- what only a stand-in can do ------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_is_a_state_error(
    kube_in_cluster: InCluster, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with BrokenKubernetes(status=status) as broken:
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(broken.port))
        shutil.copy(broken.ca_file, kube_in_cluster.sa_dir / "ca.crt")
        with pytest.raises(StateError, match=f"get failed with HTTP {status}"):
            open_store(kube_in_cluster.settings()).load()


def test_api_that_never_answers_times_out(
    kube_in_cluster: InCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    with BrokenKubernetes(hang=True) as broken:
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(broken.port))
        shutil.copy(broken.ca_file, kube_in_cluster.sa_dir / "ca.crt")
        with pytest.raises(StateError, match=r"cannot reach the Kubernetes API .*Timeout"):
            open_store(kube_in_cluster.settings(timeout=0.5)).load()
