"""The container image, built with podman from the real Dockerfile and run as a user would:
`IMAGE` (sync), `IMAGE plan`, `IMAGE check`, with a read-only root filesystem, settings from an
env file and secrets mounted as files, against a real slapd and the Bitwarden stand-in on the
host network (both bound to 127.0.0.1).

The base is a Debian bookworm with Debian's python3 (no registry can be pulled from here),
passed through the Dockerfile's PYTHON_IMAGE build argument; tests/deploy/podman.py explains
the rest of the harness. One build per session; podman's layer cache makes a rerun quick.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bwsync.testing.fake_bitwarden import FakeBitwarden
from tests.fixtures.ldap import Slapd, person

from .conftest import ROOT
from .podman import BASE_IMAGE, Podman, missing_binaries

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


def _report(line: str) -> None:
    """Measurements, on the terminal even when pytest captures output."""
    if sys.__stderr__ is not None:
        sys.__stderr__.write(f"\n[image] {line}\n")


def test_image_config(built_image: Built) -> None:
    podman = built_image.podman
    info = json.loads(podman.run("image", "inspect", built_image.tag).stdout)[0]
    config = info["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["bwsync"]
    assert config["Cmd"] == ["sync"]
    labels = config["Labels"]
    for key in ("title", "description", "source", "licenses", "version", "revision"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.version"] == "0.0.0-test"
    size = podman.image_size(built_image.tag)
    compressed = podman.compressed_size(built_image.tag)
    base = podman.image_size(BASE_IMAGE)
    _report(
        f"built in {built_image.build_seconds:.0f} s; size {size / 1e6:.0f} MB uncompressed "
        f"(base {base / 1e6:.0f} MB, bwsync's layers {(size - base) / 1e6:.0f} MB), "
        f"{compressed / 1e6:.0f} MB compressed"
    )
    assert compressed <= MAX_IMAGE_BYTES


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

    plan = podman.container_run(tag, ["plan"], options=scenario.options())
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "ann@example.com" in plan.stdout + plan.stderr
    assert not scenario.fake.requests_to("import")
    assert not (scenario.state / "state.json").exists()

    # The image's default command: one full sync.
    sync = podman.container_run(tag, options=scenario.options())
    assert sync.returncode == 0, sync.stdout + sync.stderr
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
