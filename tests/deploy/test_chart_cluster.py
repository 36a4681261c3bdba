"""The Helm chart on a real Kubernetes API server (kube-apiserver 1.37 + etcd, RBAC on).

`helm install`, `upgrade` and `uninstall` with the default values and every
examples/*/values.yaml, each in a namespace of its own: the server validates every object
(what `helm template` and the offline schemas cannot: time zones, cross-field rules, admission),
and what it stored is read back and compared with what helm sent, so a field the server drops
or rewrites shows. A Job is made from the CronJob as `kubectl create job --from=cronjob/…` does.
No controllers or kubelets run: nothing is scheduled, the objects are only stored.

The examples' PrometheusRule (metrics.prometheusRule.enabled) is a custom resource: on a bare
API server `helm install` fails with "no matches for kind PrometheusRule". These tests install
prometheus-operator's own CRD (tests/kube/crds, v0.85.0) for the module, so the rule is
validated against its real schema, and remove it at the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kube import (
    KUBE_MODULE,
    Helm,
    KubeApi,
    KubeApiServer,
    condition_status,
    wait_until,
)

from .conftest import CHART, ROOT

pytestmark = pytest.mark.kube_apiserver

EXAMPLES = ROOT / "examples"
RELEASE = "corp"
FULLNAME = f"{RELEASE}-bwsync"
VALUE_FILES = {"defaults": None} | {
    f"example-{p.parent.name}": p for p in sorted(EXAMPLES.glob("*/values.yaml"))
}
PROMETHEUS_RULE_CRD = KUBE_MODULE / "crds" / "monitoring.coreos.com_prometheusrules.yaml"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"

# Where each kind lives in the API, for reading back what helm created.
API_PATHS = {
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts/{name}",
    "Secret": "/api/v1/namespaces/{ns}/secrets/{name}",
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps/{name}",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/{name}",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}",
    "CronJob": "/apis/batch/v1/namespaces/{ns}/cronjobs/{name}",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies/{name}",
    "PrometheusRule": "/apis/monitoring.coreos.com/v1/namespaces/{ns}/prometheusrules/{name}",
}


@pytest.fixture(scope="module")
def helm(
    helm_bin: str, kube_apiserver: KubeApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Helm:
    return Helm(kube_apiserver, tmp_path_factory.mktemp("helm"), helm_bin)


@pytest.fixture(scope="module")
def prometheus_rule_crd(kube_apiserver: KubeApiServer) -> Iterator[None]:
    """prometheus-operator's PrometheusRule CRD, established, for this module only."""
    admin = kube_apiserver.admin
    crd = yaml.safe_load(PROMETHEUS_RULE_CRD.read_text())
    name = crd["metadata"]["name"]
    admin.create(CRD_PATH, crd)
    wait_until(f"CRD {name} Established", lambda: _not_established(admin.get(f"{CRD_PATH}/{name}")))
    # The API server serves the new kind only once its discovery is updated.
    wait_until(
        "monitoring.coreos.com/v1 served",
        lambda: _not_served(admin, "/apis/monitoring.coreos.com/v1"),
    )
    yield
    admin.delete(f"{CRD_PATH}/{name}")


def _not_established(crd: dict[str, Any] | None) -> str | None:
    """None once the CRD is Established, else what its status says. Its conditions are
    absent (or null) until the apiextensions controller first sets them, a moment after
    the create: more than a moment on a loaded machine."""
    if crd is None:
        return "CRD not found"
    status = condition_status(crd, "Established")
    if status == "True":
        return None
    return f"Established={status}, status={crd.get('status')!r}"


def _not_served(admin: KubeApi, path: str) -> str | None:
    code = admin.request("GET", path).status_code
    return None if code == 200 else f"GET {path} answered {code}"


def _manifest(helm: Helm, namespace: str) -> list[dict[str, Any]]:
    """What helm sent for the release (`helm get manifest`)."""
    out = helm("get", "manifest", RELEASE, "-n", namespace).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _differences(sent: Any, stored: Any, where: str = "") -> list[str]:
    """Where the stored object lacks or changed what was sent. The server adds defaults
    (more keys) and omits empty values (an empty list or map is the same as none)."""
    if sent in ({}, [], None, "") and stored in ({}, [], None, "", ...):
        return []
    if isinstance(sent, dict):
        if not isinstance(stored, dict):
            return [f"{where}: sent a map, stored {stored!r}"]
        found: list[str] = []
        for key, value in sent.items():
            found += _differences(value, stored.get(key, ...), f"{where}.{key}")
        return found
    if isinstance(sent, list):
        if not isinstance(stored, list) or len(stored) != len(sent):
            return [f"{where}: sent {sent!r}, stored {stored!r}"]
        return [d for i, (a, b) in enumerate(zip(sent, stored, strict=True))
                for d in _differences(a, b, f"{where}[{i}]")]  # fmt: skip
    return [] if sent == stored else [f"{where}: sent {sent!r}, stored {stored!r}"]


def _stored(server: KubeApiServer, doc: dict[str, Any]) -> dict[str, Any] | None:
    meta = doc["metadata"]
    return server.admin.get(API_PATHS[doc["kind"]].format(ns=meta["namespace"], name=meta["name"]))


def _values_args(values: Path | None) -> list[str]:
    return ["-f", str(values)] if values else []


@pytest.mark.parametrize("name", sorted(VALUE_FILES))
def test_install_upgrade_uninstall(
    helm: Helm,
    kube_apiserver: KubeApiServer,
    kube_namespace: str,
    prometheus_rule_crd: None,
    name: str,
) -> None:
    values = _values_args(VALUE_FILES[name])
    ns = kube_namespace
    installed = helm("install", RELEASE, str(CHART), "-n", ns, *values)
    # the server's warnings (an unknown field it dropped, a deprecated API) fail the test
    assert "Warning" not in installed.stderr, installed.stderr
    sent = _manifest(helm, ns)
    assert {d["kind"] for d in sent} >= {"CronJob", "ServiceAccount"}
    for doc in sent:
        stored = _stored(kube_apiserver, doc)
        assert stored is not None, f"{doc['kind']}/{doc['metadata']['name']} not stored"
        # a Secret's stringData is folded into data by the server
        assert set(stored.get("data") or {}) >= set(doc.get("stringData") or {})
        kept = {k: v for k, v in doc.items() if k != "stringData"}
        assert _differences(kept, stored) == [], f"{doc['kind']}/{doc['metadata']['name']}"

    # upgrade: a changed schedule reaches the server, the release's objects stay
    upgraded = helm("upgrade", RELEASE, str(CHART), "-n", ns, *values,
                    "--set", "schedule=5 4 * * *")  # fmt: skip
    assert "Warning" not in upgraded.stderr, upgraded.stderr
    cronjob = kube_apiserver.admin.ok("GET", API_PATHS["CronJob"].format(ns=ns, name=FULLNAME))
    assert cronjob["spec"]["schedule"] == "5 4 * * *"
    assert cronjob["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE
    assert helm("history", RELEASE, "-n", ns, "-o", "json").stdout.count('"revision"') == 2

    helm("uninstall", RELEASE, "-n", ns)
    for doc in sent:
        stored = _stored(kube_apiserver, doc)
        keep = doc["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"
        assert (stored is not None) == keep, f"{doc['kind']}/{doc['metadata']['name']}"


def test_cronjob_pod_spec_as_stored(
    helm: Helm, kube_apiserver: KubeApiServer, kube_namespace: str
) -> None:
    """The default install's pod, as the server keeps it: what the kubelet would run."""
    helm("install", RELEASE, str(CHART), "-n", kube_namespace)
    cronjob = kube_apiserver.admin.ok(
        "GET", API_PATHS["CronJob"].format(ns=kube_namespace, name=FULLNAME)
    )
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    rules = job["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob"
    assert rules[0]["onExitCodes"]["values"] == [2, 6]
    assert rules[1] == {  # stopped by SIGTERM after giving its lease back: retried freely
        "action": "Ignore",
        "onExitCodes": {"containerName": "bwsync", "operator": "In", "values": [7]},
    }
    assert rules[2] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    pod = job["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60  # 20 s stop grace + 40 s to wrap up
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["automountServiceAccountToken"] is True  # configmap state needs the token
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BWSYNC_STATE__BACKEND"] == "configmap"
    assert env["BWSYNC_STATE__CONFIGMAP"] == f"{FULLNAME}-state"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/run/secrets/bwsync"]["readOnly"] is True
    secrets = next(v for v in pod["volumes"] if v["name"] == "secrets")
    assert secrets["secret"] == {"secretName": FULLNAME, "defaultMode": 0o440}


def test_job_from_cronjob(helm: Helm, kube_apiserver: KubeApiServer, kube_namespace: str) -> None:
    """The first run the NOTES tell the admin to trigger: `kubectl create job --from=cronjob/…`
    does exactly this POST (the CronJob's job template, owned by the CronJob, annotated as a
    manual instantiation). The server validates the Job (podFailurePolicy included) and
    stores it; with no controller running, it stays without pods."""
    ns = kube_namespace
    notes = helm("install", RELEASE, str(CHART), "-n", ns).stdout
    found = re.search(rf"kubectl -n {ns} create job --from=cronjob/(\S+) (\S+)-\$\(date", notes)
    assert found, notes
    cronjob_name, job_prefix = found.groups()
    admin = kube_apiserver.admin
    cronjob = admin.ok("GET", API_PATHS["CronJob"].format(ns=ns, name=cronjob_name))
    template = cronjob["spec"]["jobTemplate"]
    job_name = f"{job_prefix}-manual-1700000000"
    created = admin.create(f"/apis/batch/v1/namespaces/{ns}/jobs", {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "labels": template["metadata"].get("labels", {}),
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": cronjob_name,
                "uid": cronjob["metadata"]["uid"], "controller": True,
            }],
        },
        "spec": template["spec"],
    })  # fmt: skip
    assert created["metadata"]["name"] == job_name
    assert len(job_name) <= 63
    stored = admin.ok("GET", f"/apis/batch/v1/namespaces/{ns}/jobs/{job_name}")
    want = template["spec"]["template"]["spec"]
    assert _differences(want, stored["spec"]["template"]["spec"]) == []
    assert stored["spec"]["podFailurePolicy"] == template["spec"]["podFailurePolicy"]
    assert stored["metadata"]["labels"]["bwsync/profile"] == "default"
    assert stored.get("status", {}).get("active") is None  # no controller: never started


def test_server_refuses_an_unknown_time_zone(helm: Helm, kube_namespace: str) -> None:
    """`helm template`, the chart's schema and the offline OpenAPI schemas all accept it; only
    the API server checks the name against its time zone database."""
    res = helm("install", RELEASE, str(CHART), "-n", kube_namespace,
               "--set", "timeZone=Mars/Olympus", check=False)  # fmt: skip
    assert res.returncode != 0
    assert "unknown time zone Mars/Olympus" in res.stderr


def test_profiles_install_one_cronjob_each(
    helm: Helm, kube_apiserver: KubeApiServer, kube_namespace: str, tmp_path: Path
) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({
        "profiles": {
            "engineering": {"settings": {"source": "file", "file": {"path": "/data/eng.json"}}},
            "sales": {"schedule": "45 6 * * 1-5", "existingSecret": "bwsync-sales"},
        },
    }))  # fmt: skip
    helm("install", RELEASE, str(CHART), "-n", kube_namespace, "-f", str(values))
    listed = kube_apiserver.admin.ok("GET", f"/apis/batch/v1/namespaces/{kube_namespace}/cronjobs")
    names = sorted(c["metadata"]["name"] for c in listed["items"])
    assert len(names) == 2, names
    role = kube_apiserver.admin.ok(
        "GET", API_PATHS["Role"].format(ns=kube_namespace, name=FULLNAME)
    )
    (rule,) = role["rules"]
    assert len(rule["resourceNames"]) == 2
