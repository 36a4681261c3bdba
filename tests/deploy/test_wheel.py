"""The wheel users install holds bwsync and no test code (rules: shipped.py): it is built with
``uv build`` as a release builds it, and every file it holds is listed and checked."""

from __future__ import annotations

import subprocess
import zipfile

import pytest

from .conftest import ROOT, require_tool
from .shipped import find_test_code


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Path -> text of each Python file (None for the others) of a freshly built wheel."""
    uv = require_tool("uv", "./dev setup installs uv")
    out = tmp_path_factory.mktemp("wheel")
    res = subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    (built,) = out.glob("bwsync-*.whl")
    with zipfile.ZipFile(built) as z:
        return {
            name: z.read(name).decode() if name.endswith(".py") else None
            for name in z.namelist()
            if not name.endswith("/")
        }


def test_the_wheel_holds_the_package_and_only_it(wheel: dict[str, str | None]) -> None:
    package = {
        str(p.relative_to(ROOT / "job"))
        for p in (ROOT / "job" / "bwsync").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    shipped = {n for n in wheel if not n.startswith("bwsync-")}
    assert shipped == package
    assert {"bwsync/cli.py", "bwsync/standin/server.py", "bwsync/demo/directory.json"} <= shipped


def test_the_wheel_holds_no_test_code(wheel: dict[str, str | None]) -> None:
    assert find_test_code(wheel) == []


@pytest.mark.parametrize(
    ("path", "source", "reason"),
    [
        ("bwsync/testing/__init__.py", "", "named like test code"),
        ("bwsync/conftest.py", "", "named like test code"),
        ("bwsync/sources/fake_okta.py", "", "named like test code"),
        ("bwsync/tests/data.json", None, "named like test code"),
        ("bwsync/demo/standins.py", "", "a stand-in outside"),
        ("bwsync/standin/faults.py", "class FaultInjection: ...", "defines FaultInjection"),
        ("bwsync/standin/server.py", "class S:\n    def throttle(self): ...", "defines S.throttle"),
        ("bwsync/stub.py", "class FakeGraph: ...", "defines FakeGraph"),
        ("bwsync/graph.py", "class _Server(StandInServer): ...", "serves HTTP"),
        ("bwsync/x.py", "class S(http.StandInHandler): ...", "serves HTTP"),
    ],
)
def test_the_rules_catch_test_code(path: str, source: str | None, reason: str) -> None:
    (found,) = find_test_code({path: source})
    assert found.startswith(path) and reason in found


def test_the_rules_pass_what_ships_today() -> None:
    # The shipped stand-in may serve HTTP; the package's own code may mention tests in prose.
    source = (ROOT / "job" / "bwsync" / "standin" / "http.py").read_text()
    assert find_test_code({"bwsync/standin/http.py": source, "bwsync/cli.py": "x = 'a test'"}) == []


@pytest.mark.parametrize(
    "rig",
    ["graph.py", "google_workspace.py", "okta.py", "onelogin.py", "kubernetes.py",
     "http_server.py", "bitwarden/__init__.py", "bitwarden/faults.py", "bitwarden/vaultwarden.py"],
)  # fmt: skip
def test_the_test_stand_ins_would_be_caught(rig: str) -> None:
    # Each stand-in of tests/standins (and each extension of the Bitwarden one) breaks a rule
    # if it were shipped as a module of bwsync: it is told apart by what it is, not its path.
    source = (ROOT / "tests" / "standins" / rig).read_text()
    assert find_test_code({f"bwsync/{rig.replace('/', '_')}": source})
