"""The Helm chart: `helm lint` and `helm template` over value sets, every manifest validated
strictly against the oldest and newest Kubernetes the chart supports, and what must hold of it
(security context, RBAC scope, podFailurePolicy, settings that bwsync accepts, schema strictness).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bwsync.config import Settings
from bwsync.settings import load_settings
from tests.fixtures.setting_files import localize

from .conftest import CHART, ROOT
from .schema_gen import build

#: Oldest and newest Kubernetes the chart supports (Chart.yaml kubeVersion: >=1.27).
KUBE_VERSIONS = ("1.27.0", "1.37.0")
NAMESPACE = "bw"
RELEASE = "corp"
#: What a cluster with the Prometheus Operator serves (`helm template --api-versions`).
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"

FULL = {
    "image": {"repository": "registry.example/bwsync", "digest": "sha256:" + "a" * 64},
    "imagePullSecrets": [{"name": "regcred"}],
    "schedule": "*/30 6-20 * * 1-5",
    "timeZone": "Europe/Berlin",
    "settings": {
        "source": "ldap",
        "bitwarden": {"server": "https://vault.example.com", "timeout": 12.5, "max_retries": 3},
        "sync": {"remove_disabled": True, "invite_users": False, "user_filter": "(dept=IT)"},
        "ldap": {
            "url": "ldaps://ldap.example.com:636",
            "base_dn": "dc=example,dc=com",
            "bind_dn": "cn=bwsync,ou=svc,dc=example,dc=com",
            "page_size": 500,
            "ca_file": "/etc/bwsync/ca/ca.pem",
            "user_path": None,
        },
        "metrics": {"pushgateway_url": "http://pushgateway.monitoring:9091"},
        "state": {"lease_seconds": 1200},
        "stop_grace_seconds": 45,
    },
    "terminationGracePeriodSeconds": 90,
    "secrets": {
        "bitwarden": {
            "client_id": "organization.6d1b3a0e-58f5-4a3b-9c4b-3f1d0d2b6f2e",
            "client_secret": "s3cr3t",
        },
        "ldap": {"bind_password": "ldap-pw"},
    },
    "secretFiles": {"google-sa.json": '{"type": "service_account"}'},
    "extraEnv": [{"name": "TZ", "value": "Europe/Berlin"}],
    "extraEnvFrom": [{"configMapRef": {"name": "proxy-settings"}}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "corp-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/bwsync/ca", "readOnly": True}],
    "podAnnotations": {"example.com/team": "it"},
    "priorityClassName": "batch-low",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]}
                ]
            }
        }
    },
    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "full": FULL,
    "existing-secret": {"existingSecret": "bwsync-credentials"},
    "objectstore-state": {
        "state": {
            "backend": "objectstore",
            "objectstore": {"url": "s3://bwsync/state.json", "endpoint": "https://minio:9000"},
        },
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}},
    },
    "no-state": {"state": {"backend": "none"}},
    "network-policy": {
        "networkPolicy": {
            "enabled": True,
            "kubeApiServer": {"cidrs": ["10.96.0.1/32", "172.18.0.2/32"]},
            "egress": [
                {
                    "to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}],
                    "ports": [{"protocol": "TCP", "port": 636}],
                },
                {"ports": [{"protocol": "TCP", "port": 443}]},
            ],
        }
    },
    "profiles": {
        "suspend": True,
        "profiles": {
            "engineering": {
                "suspend": False,
                "settings": {"ldap": {"url": "ldap://ldap:389", "base_dn": "ou=eng,dc=x"}},
                "secrets": {"bitwarden": {"client_secret": "eng"}},
            },
            "sales": {
                "schedule": "45 6 * * 1-5",
                "existingSecret": "bwsync-sales",
                "settings": {"source": "file", "file": {"path": "/data/sales.json"}},
            },
            "support": {
                "state": {"backend": "objectstore", "objectstore": {"url": "s3://b/support"}},
            },
        },
    },
    "prometheus-rule": {
        "metrics": {
            "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
            "grafanaDashboard": {"enabled": True},
        }
    },
}


Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def chart_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart as committed. The metrics issue owns files/bwsync-rules.yaml and
    files/bwsync-dashboard.json; until both are written, a copy gets minimal stand-ins so the
    chart's embedding templates are still exercised."""
    files = CHART / "files"
    if (files / "bwsync-rules.yaml").is_file() and (files / "bwsync-dashboard.json").is_file():
        return CHART
    copy = tmp_path_factory.mktemp("chart") / "bwsync"
    shutil.copytree(CHART, copy)
    (copy / "files").mkdir(exist_ok=True)
    if not (copy / "files" / "bwsync-rules.yaml").is_file():
        (copy / "files" / "bwsync-rules.yaml").write_text(
            "groups:\n  - name: bwsync\n    rules:\n      - alert: BwsyncNoRecentSuccess\n"
            "        expr: time() - bwsync_last_success_timestamp_seconds > 3 * 3600\n"
        )
    if not (copy / "files" / "bwsync-dashboard.json").is_file():
        (copy / "files" / "bwsync-dashboard.json").write_text('{"title": "bwsync"}\n')
    return copy


def _helm(helm_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_bin, *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="session")
def render(helm_bin: str, chart_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Render:
    cache: dict[str, list[dict[str, Any]]] = {}

    def _render(
        values: dict[str, Any], *extra: str, kube: str = KUBE_VERSIONS[-1], crds: bool = True
    ) -> Any:
        """``crds``: the cluster has the Prometheus Operator's PrometheusRule kind."""
        key = json.dumps([values, extra, kube, crds], sort_keys=True)
        if key not in cache:
            vf = tmp_path_factory.mktemp("values") / "values.yaml"
            vf.write_text(yaml.safe_dump(values))
            api = ["--api-versions", PROMETHEUS_RULE_API] if crds else []
            res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--namespace", NAMESPACE,
                        "--kube-version", kube, "-f", str(vf), *api, *extra)  # fmt: skip
            assert res.returncode == 0, res.stderr
            cache[key] = [d for d in yaml.safe_load_all(res.stdout) if d]
        return cache[key]

    return _render


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = _kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def _sync_only(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents that are not the `helm test` pods' (component `test`)."""
    return [d for d in docs if d["metadata"]["labels"].get("app.kubernetes.io/component") != "test"]


def _pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = [c["spec"]["jobTemplate"]["spec"]["template"]["spec"] for c in _kind(docs, "CronJob")]
    return specs + [p["spec"] for p in _kind(docs, "Pod")]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


# --- lint, template, validation -------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint(helm_bin: str, chart_dir: Path, tmp_path: Path, name: str) -> None:
    vf = tmp_path / "values.yaml"
    vf.write_text(yaml.safe_dump(VALUE_SETS[name]))
    res = _helm(helm_bin, "lint", "--strict", str(chart_dir), "-f", str(vf),
                "--kube-version", KUBE_VERSIONS[0])  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr


def _validate_prometheus_rule(doc: dict[str, Any]) -> None:
    """kubernetes-validate knows no CRDs: check PrometheusRule's shape by hand."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(doc["spec"]) == {"groups"}
    for group in doc["spec"]["groups"]:
        assert group["name"]
        assert group["rules"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule)
            assert isinstance(rule["expr"], str | int)
            assert set(rule) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                                 "annotations"}  # fmt: skip


@pytest.mark.parametrize("kube", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_manifests_validate_strictly(render: Render, name: str, kube: str) -> None:
    docs = render(VALUE_SETS[name], kube=kube)
    assert _kind(docs, "CronJob")
    for doc in docs:
        if doc["kind"] == "PrometheusRule":
            _validate_prometheus_rule(doc)
            continue
        try:
            kubernetes_validate.validate(doc, kube, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} invalid for {kube}: {exc}")


def test_chart_refuses_kubernetes_older_than_supported(helm_bin: str, chart_dir: Path) -> None:
    res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--kube-version", "1.26.0")
    assert res.returncode != 0
    assert "kubeVersion" in res.stderr


def test_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert str(chart["appVersion"]) == project["version"]


# --- what must hold ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_security_context_is_hardened(render: Render, name: str) -> None:
    for spec in _pod_specs(render(VALUE_SETS[name])):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["restartPolicy"] == "Never"
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}  # noqa: S108
            assert c["resources"]["limits"]["memory"]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_cronjob_and_pod_failure_policy(render: Render, name: str) -> None:
    for cj in _kind(render(VALUE_SETS[name]), "CronJob"):
        spec = cj["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        for key in ("startingDeadlineSeconds", "successfulJobsHistoryLimit",
                    "failedJobsHistoryLimit", "timeZone", "suspend"):  # fmt: skip
            assert key in spec, key
        job = spec["jobTemplate"]["spec"]
        for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
            assert isinstance(job[key], int), key
        rules = job["podFailurePolicy"]["rules"]
        by_codes = {
            tuple(r["onExitCodes"]["values"]): r["action"] for r in rules if "onExitCodes" in r
        }
        # 2 and 6 cannot change on a retry; 7 (stopped, lease given back) is retried freely.
        assert by_codes == {(2, 6): "FailJob", (7,): "Ignore"}
        for rule in rules:
            if "onExitCodes" in rule:
                assert rule["onExitCodes"]["containerName"] == "bwsync"
                assert rule["onExitCodes"]["operator"] == "In"
        containers = job["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["bwsync"]
        # A first install plans only (mode: plan) until switched to sync.
        assert containers[0]["args"] == ["plan", "--output", "text"]
        # SIGKILL comes after bwsync's stop grace and the 30 s it needs to give the lease back.
        grace = VALUE_SETS[name].get("settings", {}).get("stop_grace_seconds", 20)
        assert job["template"]["spec"]["terminationGracePeriodSeconds"] >= grace + 30


def test_a_termination_grace_shorter_than_the_stop_grace_is_refused(
    helm_bin: str, chart_dir: Path
) -> None:
    """The pod would be killed before bwsync gives its lease back after a SIGTERM."""
    res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--kube-version", "1.37.0",
                "--set", "settings.stop_grace_seconds=45",
                "--set", "terminationGracePeriodSeconds=60")  # fmt: skip
    assert res.returncode != 0
    assert "terminationGracePeriodSeconds (60) must be at least" in res.stderr
    res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--kube-version", "1.37.0",
                "--set", "settings.stop_grace_seconds=45",
                "--set", "terminationGracePeriodSeconds=75")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "terminationGracePeriodSeconds: 75" in res.stdout


def test_the_stop_grace_cannot_slip_past_the_check_in_extra_env(
    helm_bin: str, chart_dir: Path
) -> None:
    """BWSYNC_STOP_GRACE_SECONDS=120 in extraEnv would win over the checked setting, and the
    pod would be killed 50 s after its SIGTERM, before bwsync gives its lease back."""
    res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--kube-version", "1.37.0",
                "--set", "extraEnv[0].name=BWSYNC_STOP_GRACE_SECONDS",
                "--set-string", "extraEnv[0].value=120",
                "--set", "terminationGracePeriodSeconds=50")  # fmt: skip
    assert res.returncode != 0
    assert "extraEnv of profile default: set settings.stop_grace_seconds" in res.stderr
    res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--kube-version", "1.37.0",
                "--set", "extraEnv[0].name=TZ",
                "--set-string", "extraEnv[0].value=UTC")  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_rbac_is_only_the_state_configmaps(render: Render) -> None:
    for name in ("defaults", "profiles", "full", "network-policy"):
        docs = _sync_only(render(VALUE_SETS[name]))
        role = _one(docs, "Role")
        assert len(role["rules"]) == 1
        rule = role["rules"][0]
        assert rule["apiGroups"] == [""]
        assert rule["resources"] == ["configmaps"]
        assert sorted(rule["verbs"]) == ["get", "patch", "update"]
        state_maps = [
            d
            for d in _kind(docs, "ConfigMap")
            if d["metadata"]["labels"].get("app.kubernetes.io/component") == "state"
        ]
        assert sorted(rule["resourceNames"]) == sorted(d["metadata"]["name"] for d in state_maps)
        for cm in state_maps:
            assert cm["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
            assert "data" not in cm  # bwsync owns the content; an upgrade never resets it
        assert not _kind(docs, "ClusterRole")
        assert not _kind(docs, "ClusterRoleBinding")
        binding = _one(docs, "RoleBinding")
        sa = _one(docs, "ServiceAccount")
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
        ]


@pytest.mark.parametrize("name", ["objectstore-state", "no-state"])
def test_no_rbac_without_configmap_state(render: Render, name: str) -> None:
    docs = render(VALUE_SETS[name])
    assert not _kind(docs, "Role")
    assert not _kind(docs, "RoleBinding")
    assert not _kind(docs, "ConfigMap")
    for spec in _pod_specs(docs):
        assert spec["automountServiceAccountToken"] is False


def test_objectstore_state_settings_and_workload_identity(render: Render) -> None:
    docs = render(VALUE_SETS["objectstore-state"])
    env = _env(_pod_specs(docs)[0]["containers"][0])
    assert env["BWSYNC_STATE__BACKEND"] == "objectstore"
    assert env["BWSYNC_STATE__URL"] == "s3://bwsync/state.json"
    assert env["BWSYNC_STATE__ENDPOINT"] == "https://minio:9000"
    for sa in _kind(docs, "ServiceAccount"):  # the sync's, and the test's by default
        assert "eks.amazonaws.com/role-arn" in sa["metadata"]["annotations"]


def test_settings_become_env_and_secrets_files_bwsync_accepts(
    render: Render, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered environment plus the Secret's files, loaded by bwsync's own settings code."""
    docs = render(FULL)
    cronjob = _one(docs, "CronJob")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = _env(container)
    assert env["BWSYNC_LDAP__PAGE_SIZE"] == "500"
    assert env["BWSYNC_BITWARDEN__TIMEOUT"] == "12.5"
    assert env["BWSYNC_SYNC__INVITE_USERS"] == "false"
    assert env["BWSYNC_SYNC__REMOVE_DISABLED"] == "true"
    assert "BWSYNC_LDAP__USER_PATH" not in env  # null = not set
    assert env["BWSYNC_STATE__CONFIGMAP"] == f"{RELEASE}-bwsync-state"
    assert env["BWSYNC_STATE__NAMESPACE"] == NAMESPACE
    assert env["TZ"] == "Europe/Berlin"
    assert container["image"] == "registry.example/bwsync@sha256:" + "a" * 64
    assert {"name": "ca", "mountPath": "/etc/bwsync/ca", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert pod["nodeSelector"] == FULL["nodeSelector"]
    assert pod["tolerations"] == FULL["tolerations"]
    assert pod["affinity"] == FULL["affinity"]

    secret = _one(docs, "Secret")
    mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
    volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
    assert mount == {"name": "secrets", "mountPath": "/run/secrets/bwsync", "readOnly": True}
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert env["BWSYNC_SECRETS_DIR"] == "/run/secrets/bwsync"
    assert sorted(secret["data"]) == [
        "bwsync_bitwarden__client_id",
        "bwsync_bitwarden__client_secret",
        "bwsync_ldap__bind_password",
        "google-sa.json",
    ]
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    for key, value in secret["data"].items():
        (secrets_dir / key).write_bytes(base64.b64decode(value))

    # The CA file the extra volume mounts (a ConfigMap in the cluster), made here.
    bwsync_env = {name: value for name, value in env.items() if name.startswith("BWSYNC_")}
    for name, value in localize(bwsync_env, tmp_path / "mounted").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BWSYNC_SECRETS_DIR", str(secrets_dir))
    settings = load_settings()
    assert settings.profile == "default"
    assert settings.ldap.page_size == 500
    assert settings.ldap.bind_password is not None
    assert settings.ldap.bind_password.get_secret_value() == "ldap-pw"
    assert settings.bitwarden.client_secret is not None
    assert settings.bitwarden.client_secret.get_secret_value() == "s3cr3t"
    assert settings.bitwarden.organization_id == "6d1b3a0e-58f5-4a3b-9c4b-3f1d0d2b6f2e"
    assert settings.state.backend == "configmap"
    assert settings.state.lease_seconds == 1200


def test_existing_secret_is_mounted_and_none_created(render: Render) -> None:
    docs = render(VALUE_SETS["existing-secret"])
    assert not _kind(docs, "Secret")
    for spec in _pod_specs(docs):
        volume = next(v for v in spec["volumes"] if v["name"] == "secrets")
        assert volume["secret"]["secretName"] == "bwsync-credentials"


def test_profiles_one_cronjob_secret_and_state_each(render: Render) -> None:
    docs = render(VALUE_SETS["profiles"])
    cronjobs = {c["metadata"]["labels"]["bwsync/profile"]: c for c in _kind(docs, "CronJob")}
    assert sorted(cronjobs) == ["engineering", "sales", "support"]
    names = {p: c["metadata"]["name"] for p, c in cronjobs.items()}
    assert names["engineering"] == f"{RELEASE}-bwsync-engineering"
    # A profile's false wins over the top-level true.
    assert cronjobs["engineering"]["spec"]["suspend"] is False
    assert cronjobs["sales"]["spec"]["suspend"] is True
    assert cronjobs["sales"]["spec"]["schedule"] == "45 6 * * 1-5"
    assert cronjobs["support"]["spec"]["schedule"] == "17 * * * *"

    secrets = {s["metadata"]["name"] for s in _kind(docs, "Secret")}
    assert secrets == {names["engineering"], names["support"]}  # sales brings its own

    def env(profile: str) -> dict[str, str]:
        job = cronjobs[profile]["spec"]["jobTemplate"]["spec"]
        return _env(job["template"]["spec"]["containers"][0])

    assert env("engineering")["BWSYNC_PROFILE"] == "engineering"
    assert env("engineering")["BWSYNC_LDAP__BASE_DN"] == "ou=eng,dc=x"
    assert env("engineering")["BWSYNC_STATE__CONFIGMAP"] == names["engineering"] + "-state"
    assert env("sales")["BWSYNC_SOURCE"] == "file"
    assert env("sales")["BWSYNC_LOG__FORMAT"] == "json"  # inherited from the top level
    assert env("support")["BWSYNC_STATE__BACKEND"] == "objectstore"
    states = {c["metadata"]["name"] for c in _kind(docs, "ConfigMap")}
    assert states == {names["engineering"] + "-state", names["sales"] + "-state"}
    for role in _kind(docs, "Role"):  # the sync's and the test's, each on every state map
        assert sorted(role["rules"][0]["resourceNames"]) == sorted(states)
    tests = {p["metadata"]["labels"]["bwsync/profile"] for p in _kind(docs, "Pod")}
    assert tests == {"engineering", "sales", "support"}


def test_profiles_sharing_state_are_refused(helm_bin: str, chart_dir: Path) -> None:
    res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--kube-version", "1.37.0",
                "--set", "state.configmap.name=shared", "--set", "profiles.a.suspend=false",
                "--set", "profiles.b.suspend=false")  # fmt: skip
    assert res.returncode != 0
    assert "would share the state ConfigMap shared" in res.stderr


def test_network_policy(render: Render) -> None:
    assert not _kind(render({}), "NetworkPolicy")
    docs = render(VALUE_SETS["network-policy"])
    np = _one(docs, "NetworkPolicy")
    spec = np["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == []
    dns, api, ldap, https = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert [t["ipBlock"]["cidr"] for t in api["to"]] == ["10.96.0.1/32", "172.18.0.2/32"]
    assert ldap == VALUE_SETS["network-policy"]["networkPolicy"]["egress"][0]
    assert https == {"ports": [{"protocol": "TCP", "port": 443}]}
    selector = spec["podSelector"]["matchLabels"]
    for spec_labels in [
        c["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        for c in _kind(docs, "CronJob")
    ] + [p["metadata"]["labels"] for p in _kind(docs, "Pod")]:
        assert selector.items() <= spec_labels.items()


def test_prometheus_rule_and_dashboard(render: Render, chart_dir: Path) -> None:
    assert not _kind(render({}), "PrometheusRule")
    docs = render(VALUE_SETS["prometheus-rule"])
    rule = _one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    source = yaml.safe_load((chart_dir / "files" / "bwsync-rules.yaml").read_text())
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in source["groups"]]
    dashboards = [d for d in _kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("board")]
    assert len(dashboards) == 1
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards[0]["data"]["bwsync.json"]) == json.loads(
        (chart_dir / "files" / "bwsync-dashboard.json").read_text()
    )
    # The no-recent-success threshold follows the schedule the values describe.
    daily = render({"metrics": {"prometheusRule": {"enabled": True, "intervalSeconds": 86400}}})
    exprs = [r["expr"] for g in _one(daily, "PrometheusRule")["spec"]["groups"] for r in g["rules"]]
    assert any("3 * 86400" in str(e) for e in exprs)


def test_prometheus_rule_only_where_its_crd_is(
    render: Render, helm_bin: str, chart_dir: Path, tmp_path: Path
) -> None:
    """On a cluster without the Prometheus Operator the rule is left out (an unknown kind
    fails the whole install), the dashboard ConfigMap stays, and the notes say what happened."""
    docs = render(VALUE_SETS["prometheus-rule"], crds=False)
    assert not _kind(docs, "PrometheusRule")
    assert any(d["metadata"]["name"].endswith("dashboard") for d in _kind(docs, "ConfigMap"))
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(VALUE_SETS["prometheus-rule"]))
    without = _render_notes(helm_bin, chart_dir, tmp_path / "a", "-f", str(values))
    assert "no PrometheusRule was created" in without
    assert "bwsync-rules.yaml" in without
    with_crd = _render_notes(
        helm_bin, chart_dir, tmp_path / "b", "-f", str(values), "--api-versions",
        PROMETHEUS_RULE_API,
    )  # fmt: skip
    assert "no PrometheusRule was created" not in with_crd
    # Alerts without metrics cannot fire: the notes say so until a Pushgateway is set.
    assert "no profile sends metrics" in with_crd
    wired = {**VALUE_SETS["prometheus-rule"],
             "settings": {"metrics": {"pushgateway_url": "http://pgw:9091"}}}  # fmt: skip
    values.write_text(yaml.safe_dump(wired))
    notes = _render_notes(
        helm_bin, chart_dir, tmp_path / "c", "-f", str(values), "--api-versions",
        PROMETHEUS_RULE_API,
    )  # fmt: skip
    assert "no profile sends metrics" not in notes


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, ["plan", "--output", "text"]),
        ({"mode": "plan"}, ["plan", "--output", "text"]),
        ({"mode": "sync"}, ["sync"]),
        ({"mode": "sync", "args": ["plan", "--detail"]}, ["plan", "--detail"]),
    ],
    ids=["default", "plan", "sync", "args-win"],
)
def test_schedule_plans_until_switched_to_sync(
    render: Render, values: dict[str, Any], expected: list[str]
) -> None:
    (cron,) = _kind(render(values), "CronJob")
    (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == expected


def test_profile_mode_overrides_the_release_mode(render: Render) -> None:
    docs = render({"mode": "sync", "profiles": {"a": {}, "b": {"mode": "plan"}}})
    args = {
        c["metadata"]["labels"]["bwsync/profile"]: c["spec"]["jobTemplate"]["spec"]["template"][
            "spec"
        ]["containers"][0]["args"]
        for c in _kind(docs, "CronJob")
    }
    assert args == {"a": ["sync"], "b": ["plan", "--output", "text"]}


def test_notes_say_the_schedule_only_plans_and_how_to_switch(
    helm_bin: str, chart_dir: Path, tmp_path: Path
) -> None:
    notes = _render_notes(helm_bin, chart_dir, tmp_path / "plan")
    assert "Each run only PLANS (mode: plan)" in notes
    assert f"helm upgrade {RELEASE} <chart> -n {NAMESPACE} --reuse-values --set mode=sync" in notes
    synced = _render_notes(helm_bin, chart_dir, tmp_path / "sync", "--set", "mode=sync")
    assert "Each run syncs (mode: sync)" in synced
    assert "PLANS" not in synced


#: What every place that answers a safety stop says: the two allowances, each with the limit
#: it lifts, the empty-directory stop that neither lifts, and never raising the limits.
SAFETY_STOP_ADVICE = (
    "bwsync plan",
    "--allow-removals n",
    "--allow-emptied-groups n",
    "max_emptied_groups",
    "empty-directory stop",
    "do not raise the limits",
)


def _safety_stop_answers(helm_bin: str, chart_dir: Path, tmp_path: Path) -> dict[str, str]:
    rules = yaml.safe_load((chart_dir / "files" / "bwsync-rules.yaml").read_text())
    (alert,) = [
        rule["annotations"]["description"]
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "BwsyncSafetyStop"
    ]
    operations = (ROOT / "docs" / "operations.md").read_text()
    (row,) = [line for line in operations.splitlines() if line.startswith("| `BwsyncSafetyStop`")]
    steps = operations.split("**After a safety stop**", 1)[1].split("In Kubernetes,", 1)[0]
    (exit6,) = [
        line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| 6 |")
    ]
    return {
        "chart notes": _render_notes(helm_bin, chart_dir, tmp_path),
        "BwsyncSafetyStop alert": alert,
        "operations.md's alert table": row,
        "operations.md's safety section": steps,
        "README's exit codes": exit6,
    }


def test_every_place_gives_the_one_safety_stop_advice(
    helm_bin: str, chart_dir: Path, tmp_path: Path
) -> None:
    """The notes, the alert, operations.md and the README answer a safety stop alike (issue 22
    found three different answers): review the plan, then one run with --allow-removals or
    --allow-emptied-groups, neither of which lifts the empty-directory stop; never raise the
    limits."""
    for where, text in _safety_stop_answers(helm_bin, chart_dir, tmp_path).items():
        flat = " ".join(text.split()).lower().replace("`", "")
        missing = [phrase for phrase in SAFETY_STOP_ADVICE if phrase not in flat]
        if where == "README's exit codes":  # the settings table beside it names the limits
            missing = [m for m in missing if m != "max_emptied_groups"]
        assert not missing, f"{where} lacks {missing}: {text}"
        assert "raise the limit," not in flat and "raise bwsync_" not in flat, where


def test_helm_test_hook_runs_check(render: Render) -> None:
    pods = _kind(render({}), "Pod")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["args"] == ["check", "--read-only"]
    disabled = render({"tests": {"enabled": False}})
    assert not _kind(disabled, "Pod")
    assert [d["kind"] for d in disabled if d["kind"] == "ServiceAccount"] == ["ServiceAccount"]


@pytest.mark.parametrize("name", ["defaults", "profiles", "full"])
def test_helm_test_pod_may_only_read_the_state(render: Render, name: str) -> None:
    """`bwsync check` reads; its pod runs as its own ServiceAccount, with `get` on the state
    ConfigMaps and nothing else (the sync's account may update them)."""
    docs = render(VALUE_SETS[name])
    tests = [d for d in docs if d not in _sync_only(docs)]
    sa = _one(tests, "ServiceAccount")
    role, binding = _one(tests, "Role"), _one(tests, "RoleBinding")
    assert sa["automountServiceAccountToken"] is False
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": _one(_sync_only(docs), "Role")["rules"][0]["resourceNames"],
            "verbs": ["get"],
        }
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    sync_sa = _one(_sync_only(docs), "ServiceAccount")["metadata"]["name"]
    for pod in _kind(docs, "Pod"):
        assert pod["spec"]["serviceAccountName"] == sa["metadata"]["name"] != sync_sa
    for cron in _kind(docs, "CronJob"):
        spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == sync_sa


def test_helm_test_account_without_configmap_state_has_no_rights(render: Render) -> None:
    docs = render(VALUE_SETS["no-state"])
    assert not _kind(docs, "Role") and not _kind(docs, "RoleBinding")
    own = render({"tests": {"serviceAccount": {"annotations": {"iam.gke.io/x": "read-only"}}}})
    test_sa = next(d for d in _kind(own, "ServiceAccount") if d not in _sync_only(own))
    assert test_sa["metadata"]["annotations"] == {"iam.gke.io/x": "read-only"}


def _render_notes(helm_bin: str, chart_dir: Path, tmp_path: Path, *args: str) -> str:
    """NOTES.txt is rendered only by `helm install`, which needs a cluster to learn its version:
    render it as a template of a copy of the chart instead."""
    copy = tmp_path / "bwsync"
    shutil.copytree(chart_dir, copy)
    notes_src = (copy / "templates" / "NOTES.txt").read_text()
    indented = "".join("  " + line for line in notes_src.splitlines(keepends=True))
    (copy / "templates" / "zz-notes.yaml").write_text("notes: |\n" + indented)
    res = _helm(helm_bin, "template", RELEASE, str(copy), "--namespace", NAMESPACE,
                "--kube-version", "1.37.0", "--show-only", "templates/zz-notes.yaml",
                *args)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return str(yaml.safe_load(res.stdout)["notes"])


def test_notes_tell_how_to_trigger_a_first_run(
    helm_bin: str, chart_dir: Path, tmp_path: Path
) -> None:
    notes = _render_notes(helm_bin, chart_dir, tmp_path)
    assert f"kubectl -n {NAMESPACE} create job --from=cronjob/{RELEASE}-bwsync " in notes
    assert f"get configmap {RELEASE}-bwsync-state" in notes
    assert f"kubectl -n {NAMESPACE} logs -f job/" in notes
    assert f"helm test {RELEASE}" in notes
    assert "WARNING" not in notes


def test_notes_warn_when_network_policy_blocks_the_state(
    helm_bin: str, chart_dir: Path, tmp_path: Path
) -> None:
    notes = _render_notes(helm_bin, chart_dir, tmp_path, "--set", "networkPolicy.enabled=true")
    assert "networkPolicy.kubeApiServer.cidrs" in notes


# --- the values schema ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"schedul": "0 * * * *"}, "additional properties 'schedul' not allowed"),
        ({"settings": {"ldap": {"urll": "ldap://x"}}}, "'urll' not allowed"),
        ({"settings": {"ldpa": {}}}, "'ldpa' not allowed"),
        ({"settings": {"ldap": {"page_size": "lots"}}}, "page_size"),
        ({"settings": {"source": "ldpa"}}, "source"),
        ({"settings": {"profile": "x"}}, "'profile' not allowed"),
        ({"settings": {"state": {"backend": "file"}}}, "'backend' not allowed"),
        ({"secrets": {"bitwarden": {"client_secrte": "x"}}}, "'client_secrte' not allowed"),
        ({"suspend": "yes"}, "suspend"),
        ({"backoffLimit": -1}, "backoffLimit"),
        ({"state": {"backend": "s3"}}, "backend"),
        ({"profiles": {"Sales_EU": {}}}, "Sales_EU"),
        ({"profiles": {"sales": {"schedulle": "x"}}}, "'schedulle' not allowed"),
        ({"networkPolicy": {"enable": True}}, "'enable' not allowed"),
        ({"image": {"tag": 1.2}}, "tag"),
    ],
)
def test_schema_rejects_typos_and_wrong_types(
    helm_bin: str, chart_dir: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    vf = tmp_path / "values.yaml"
    vf.write_text(yaml.safe_dump(values))
    res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--kube-version", "1.37.0",
                "-f", str(vf))  # fmt: skip
    assert res.returncode != 0
    assert "values don't meet the specifications of the schema" in res.stderr
    assert message in res.stderr


def test_values_are_read_as_bwsync_reads_them(render: Render) -> None:
    """The chart's schema takes the spellings bwsync's settings take: a choice in any case,
    a duration with a unit; the rendered variables reach bwsync as written."""
    docs = render(
        {
            "settings": {
                "log": {"level": "DEBUG"},
                "sync": {"removal_mode": "Revoke", "full_reconcile_every": "24h"},
                "ldap": {"engine": "Python-LDAP", "timeout": "5m"},
            }
        }
    )
    env = _env(
        _one(docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    )
    assert env["BWSYNC_LOG__LEVEL"] == "DEBUG"
    assert env["BWSYNC_SYNC__FULL_RECONCILE_EVERY"] == "24h"
    assert env["BWSYNC_LDAP__TIMEOUT"] == "5m"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"settings": {"log": {"level": "loud"}}}, "level"),
        ({"settings": {"ldap": {"timeout": "soon"}}}, "timeout"),
    ],
)
def test_the_schema_still_refuses_what_bwsync_would(
    helm_bin: str, chart_dir: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    vf = tmp_path / "values.yaml"
    vf.write_text(yaml.safe_dump(values))
    res = _helm(helm_bin, "template", RELEASE, str(chart_dir), "--kube-version", "1.37.0",
                "-f", str(vf))  # fmt: skip
    assert res.returncode != 0
    assert "values don't meet the specifications of the schema" in res.stderr
    assert message in res.stderr


def test_schema_names_only_real_settings() -> None:
    """Every key the schema allows under `settings`/`secrets` is a bwsync setting of that type
    (regenerate with `python -m tests.deploy.schema_gen` after changing config.py)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    model_fields = Settings.model_fields
    for part in ("settings", "secrets"):
        for name, prop in schema["definitions"][part]["properties"].items():
            assert name in model_fields, f"{part}.{name} is not a bwsync setting"
            section = model_fields[name].annotation
            if prop.get("type") != "object":
                continue
            fields = section.model_fields  # type: ignore[union-attr]
            for field in prop["properties"]:
                assert field in fields, f"{part}.{name}.{field} is not a bwsync setting"


def _types_only(schema: Any) -> Any:
    """A schema without its descriptions: what decides whether a value is accepted."""
    if isinstance(schema, dict):
        return {k: _types_only(v) for k, v in schema.items() if k != "description"}
    if isinstance(schema, list):
        return [_types_only(v) for v in schema]
    return schema


def test_schema_is_current_for_existing_settings() -> None:
    """The committed schema accepts the types config.py accepts, for every setting it names
    (descriptions may lag; regenerate with `python -m tests.deploy.schema_gen`)."""
    committed = _types_only(json.loads((CHART / "values.schema.json").read_text()))
    fresh = _types_only(build())
    for part in ("settings", "secrets"):
        for name, prop in committed["definitions"][part]["properties"].items():
            new = fresh["definitions"][part]["properties"][name]
            if prop.get("type") != "object":
                assert prop == new, f"{part}.{name} is stale"
                continue
            for field, fprop in prop["properties"].items():
                assert fprop == new["properties"][field], f"{part}.{name}.{field} is stale"
    assert {k: v for k, v in committed.items() if k != "definitions"} == {
        k: v for k, v in fresh.items() if k != "definitions"
    }
