"""A newcomer's first day: the README's two set-up commands on a minimal Debian 12 and Ubuntu
24.04 holding only python3, git and ca-certificates (no pip, no compiler, no Go).

Each test unpacks a fresh machine (tests/deploy/chroot.py), clones this repository into it and
runs `./dev` exactly as the README says. As root with CI=true, `./dev` must install everything
the tests need — a tool it cannot get fails the set-up — then the demo and the unit tests pass
with nothing skipped, and a second set-up installs nothing. As a user without root or sudo,
`./dev demo` still works, on the pure-Python LDAP engine, and says so in one line.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from . import chroot
from .conftest import ROOT

pytestmark = [pytest.mark.slow]

DEMO_DONE = "The second sync found the directory unchanged and sent nothing."


@pytest.fixture
def machine_requirements() -> None:
    """Root (chroot, mount namespaces, debootstrap) and the binaries; under CI their absence is
    a failure, since .ci/run runs as root and ./dev installs debootstrap."""
    why = None
    if os.geteuid() != 0:
        why = "the first-day test needs root (debootstrap, chroot, unshare)"
    elif missing := chroot.missing_binaries():
        why = f"the first-day test needs {', '.join(missing)} (./dev setup installs debootstrap)"
    if why is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{why}; CI must have it")
    pytest.skip(why)


def _dev_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("dev: ")]


def _timed(
    steps: dict[str, float], name: str, call: Callable[[], subprocess.CompletedProcess[str]]
) -> subprocess.CompletedProcess[str]:
    start = time.monotonic()
    try:
        return call()
    finally:
        steps[name] = round(time.monotonic() - start, 1)


@pytest.mark.usefixtures("machine_requirements")
@pytest.mark.parametrize("distro", [chroot.DEBIAN_12, chroot.UBUNTU_24_04], ids=lambda d: d.name)
def test_first_day_as_root_under_ci(
    distro: chroot.Distro, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    steps: dict[str, float] = {}
    with chroot.Machine.fresh(distro, tmp_path) as machine:
        # Not under /root (mode 0700): tests/unit/state/test_liveness.py runs a reader as
        # nobody that imports bwsync from the checkout, and fails there (left to its owner).
        machine.clone(ROOT, "/srv/bwsync")
        ci = {"CI": "true"}

        demo = _timed(steps, "demo", lambda: machine.run("cd /srv/bwsync && ./dev demo", env=ci))
        out = demo.stdout + demo.stderr
        assert demo.returncode == 0, out[-6000:]
        assert DEMO_DONE in demo.stdout
        # uv came from PyPI (there is no pip); the compiler and headers from apt.
        lines = _dev_lines(demo.stderr)
        assert any(line.startswith("dev: installing uv ") for line in lines), lines
        installed = " ".join(line for line in lines if line.startswith("dev: installing "))
        for package in ("gcc", "libldap2-dev", "-dev"):
            assert package in installed, lines
        assert not [line for line in lines if "unavailable" in line], lines
        fast = machine.run(
            "cd /srv/bwsync && .venv/bin/python -c 'import ldap; print(ldap.__version__)'"
        )
        assert fast.returncode == 0, fast.stderr  # python-ldap was compiled

        unit = _timed(
            steps, "test tests/unit",
            lambda: machine.run(
                "cd /srv/bwsync && ./dev test tests/unit -q -p no:cacheprovider", env=ci
            ),
        )  # fmt: skip
        assert unit.returncode == 0, (unit.stdout + unit.stderr)[-6000:]
        summary = unit.stdout.strip().splitlines()[-1]
        assert re.search(r"\d+ passed", summary), summary
        assert "skipped" not in summary, summary  # every tool a unit test wants is there
        lines = _dev_lines(unit.stderr)
        assert any("building helm.sh/helm" in line for line in lines), lines

        again = _timed(
            steps, "setup again", lambda: machine.run("cd /srv/bwsync && ./dev setup", env=ci)
        )
        assert again.returncode == 0, again.stderr[-4000:]
        assert _dev_lines(again.stderr) == [], again.stderr  # idempotent: nothing to install
    record_property("seconds", steps)
    print(f"{distro.name}: {steps}")  # the timings, for `pytest -s`


@pytest.mark.usefixtures("machine_requirements")
def test_first_day_without_root_falls_back_to_ldap3(tmp_path: Path) -> None:
    """No root, no sudo: nothing can be apt-installed. The demo still runs; python-ldap's
    absence is one line naming the fallback; under CI the same absence is a failure."""
    with chroot.Machine.fresh(chroot.DEBIAN_12, tmp_path) as machine:
        owner = machine.add_user("newcomer")
        machine.clone(ROOT, "/home/newcomer/bwsync", owner=owner)
        cmd = "cd ~/bwsync && ./dev demo"

        demo = machine.run(cmd, user="newcomer")
        assert demo.returncode == 0, (demo.stdout + demo.stderr)[-6000:]
        assert DEMO_DONE in demo.stdout
        unavailable = [line for line in _dev_lines(demo.stderr) if "unavailable" in line]
        assert len(unavailable) == 1, demo.stderr
        assert "python-ldap" in unavailable[0] and "pure-Python ldap3 engine" in unavailable[0]
        engine = machine.run("cd ~/bwsync && .venv/bin/python -c 'import ldap'", user="newcomer")
        assert engine.returncode != 0  # really without python-ldap

        strict = machine.run(cmd, user="newcomer", env={"CI": "true"})
        assert strict.returncode == 1, strict.stdout + strict.stderr
        assert DEMO_DONE not in strict.stdout
        failing = [line for line in _dev_lines(strict.stderr) if "CI=true: failing" in line]
        assert len(failing) == 1 and "python-ldap" in failing[0], strict.stderr
