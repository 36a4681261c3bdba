"""What the package promises, the package installs (issue 15): the built wheel, installed
into a clean virtual environment with no extras (as `pip install bwsync` does), runs every
state backend and every source's `check --offline`.

Dependencies are resolved from the wheel's own metadata, pinned to the versions of uv.lock
(``uv export``, no extras) so the test does not move with PyPI; python-ldap, the one optional
part, is absent, so the LDAP engine's documented fallback (`auto` → ldap3) and its refusal
(`python-ldap` asked for → exit 2 with the install command) are checked too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.ldap import Slapd
from tests.fixtures.setting_files import localize
from tests.standins.bitwarden import FakeBitwarden

from .conftest import ROOT, require_tool

pytestmark = pytest.mark.slow

EXAMPLES = ROOT / "examples"


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the built wheel and its dependencies, no extras."""
    uv = require_tool("uv", "./dev setup installs uv")
    tmp = tmp_path_factory.mktemp("wheel-install")
    built = _run([uv, "build", "--wheel", "--out-dir", str(tmp / "dist"), str(ROOT)], timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp / "dist").glob("bwsync-*.whl")
    pins = _run(
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
         "--format", "requirements-txt", "--project", str(ROOT)],
        timeout=300,
    )  # fmt: skip
    assert pins.returncode == 0, pins.stderr
    (tmp / "constraints.txt").write_text(pins.stdout)
    env = tmp / "venv"
    made = _run([uv, "venv", "--python", sys.executable, str(env)], timeout=300)
    assert made.returncode == 0, made.stderr
    installed = _run(
        [uv, "pip", "install", "--python", str(env / "bin" / "python"),
         "--constraint", str(tmp / "constraints.txt"), str(wheel)],
        timeout=900,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return env


Bwsync = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def bwsync(venv: Path, tmp_path: Path) -> Bwsync:
    """Run the venv's `bwsync` with only ``env`` (plus PATH and an empty secrets directory),
    from a directory outside the checkout, so nothing of the source tree is imported."""
    secrets = tmp_path / "no-secrets"
    secrets.mkdir(exist_ok=True)

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "BWSYNC_SECRETS_DIR": str(secrets),
            "BWSYNC_LOG__FORMAT": "json",
        }
        return _run(
            [str(venv / "bin" / "bwsync"), *args],
            env=base | (env or {}),
            cwd=tmp_path,
            timeout=120,
        )

    return run


def test_the_environment_has_no_extras_and_no_source_tree(venv: Path) -> None:
    python = str(venv / "bin" / "python")
    where = _run([python, "-c", "import bwsync, obstore; print(bwsync.__file__)"], cwd="/")
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout and str(ROOT / "job") not in where.stdout
    assert _run([python, "-c", "import ldap"], cwd="/").returncode != 0  # fast-ldap not in


def _example_env(example: str, tmp: Path) -> dict[str, str]:
    """The example's variables with its files made under ``tmp`` (as in test_examples)."""
    path = EXAMPLES / example / "sync.env"
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    secrets = tmp / "secrets"
    secrets.mkdir()
    for word in path.read_text().replace(",", " ").split():
        if word.startswith("bwsync_") and "__" in word:
            (secrets / word).write_text("placeholder\n")
    return localize(env, tmp / "files") | {"BWSYNC_SECRETS_DIR": str(secrets)}


@pytest.mark.parametrize("example", sorted(p.parent.name for p in EXAMPLES.glob("*/sync.env")))
def test_every_sources_check_offline(example: str, bwsync: Bwsync, tmp_path: Path) -> None:
    done = bwsync("check", "--offline", env=_example_env(example, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    settings" in done.stdout


def test_python_ldap_asked_for_and_missing_is_exit_2_with_the_install_command(
    bwsync: Bwsync, tmp_path: Path
) -> None:
    env = _example_env("ldap", tmp_path) | {"BWSYNC_LDAP__ENGINE": "python-ldap"}
    done = bwsync("check", "--offline", env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "FAIL  settings: BWSYNC_LDAP__ENGINE: python-ldap is not installed" in done.stdout
    assert "pip install 'bwsync[fast-ldap]'" in done.stdout


@pytest.mark.slapd
def test_engine_auto_falls_back_to_ldap3_against_a_real_server(
    bwsync: Bwsync, slapd: Slapd, fake_bitwarden: FakeBitwarden
) -> None:
    """The documented fallback, seen working: with python-ldap absent from this environment
    (test above), `check` connects and binds to slapd through ldap3."""
    env = {
        "BWSYNC_SOURCE": "ldap",
        "BWSYNC_LDAP__URL": slapd.url,
        "BWSYNC_LDAP__BIND_DN": slapd.bind_dn,
        "BWSYNC_LDAP__BIND_PASSWORD": slapd.bind_password,
        "BWSYNC_LDAP__BASE_DN": slapd.base_dn,
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_STATE__BACKEND": "none",
    }
    done = bwsync("check", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    directory: connect" in done.stdout
    assert "ok    directory: bind" in done.stdout


BACKENDS = {
    "file": None,
    "none": None,
    "objectstore-s3": "s3_state",
    "objectstore-gcs": "gcs_state",
    "objectstore-azure": "azure_state",
    "configmap": "kube_in_cluster",
}


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(b, marks=pytest.mark.kube_apiserver) if b == "configmap" else b
        for b in BACKENDS
    ],
)
def test_every_state_backend(
    backend: str, bwsync: Bwsync, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`state show`, then a `sync` of a one-user export against the Bitwarden stand-in, and
    `state show` again: each backend's library is installed, and works, without extras."""
    fixture = BACKENDS[backend]
    if fixture is None:
        env = {"BWSYNC_STATE__BACKEND": backend}
        if backend == "file":
            env["BWSYNC_STATE__PATH"] = str(tmp_path / "state" / "state.json")
    else:
        env = request.getfixturevalue(fixture).env()
    bw: FakeBitwarden = request.getfixturevalue("fake_bitwarden")
    people = tmp_path / "people.json"
    people.write_text('{"users": [{"id": "u1", "email": "u1@example.com"}]}')
    env |= {
        "BWSYNC_SOURCE": "file",
        "BWSYNC_FILE__PATH": str(people),
        "BWSYNC_BITWARDEN__SERVER": bw.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": bw.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": bw.client_secret,
    }
    shown = bwsync("state", "show", env=env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    synced = bwsync("sync", env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    again = bwsync("state", "show", env=env)
    assert again.returncode == 0, again.stderr
    if backend != "none":
        assert '"result": "success"' in again.stdout
    assert "Traceback" not in shown.stderr + synced.stderr + again.stderr
