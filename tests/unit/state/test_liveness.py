"""liveness: a lease holder's process identity, and when it provably is gone (real processes on
this machine, and a stand-in /proc for what this machine cannot show)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bwsync.state import liveness

pytestmark = pytest.mark.skipif(
    liveness.this_process() is None, reason="needs Linux /proc (process identities)"
)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[bytes]]:
    waits = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    proc = subprocess.Popen(waits, stdin=subprocess.PIPE)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    assert proc.stdin is not None
    proc.stdin.close()


def test_a_running_process_is_not_gone(child: subprocess.Popen[bytes]) -> None:
    identity = liveness.process_identity(child.pid)
    assert identity is not None and identity.startswith("linux/")
    assert liveness.visible(identity)
    assert liveness.gone(identity) is None
    assert liveness.gone(liveness.this_process()) is None


def test_an_exited_process_is_gone_as_a_zombie_then_as_no_process(
    child: subprocess.Popen[bytes],
) -> None:
    identity = liveness.process_identity(child.pid)
    child.kill()
    # Wait for the exit without reaping it: the child stays a zombie until child.wait().
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    zombie = f"process {child.pid} has exited on this host (a zombie not yet reaped)"
    assert liveness.gone(identity) == zombie
    child.wait()
    assert liveness.gone(identity) == f"process {child.pid} no longer runs on this host"


def test_a_reused_pid_is_gone(child: subprocess.Popen[bytes]) -> None:
    identity = liveness.process_identity(child.pid)
    assert identity is not None
    head, _, start = identity.rpartition("/")
    earlier = f"{head}/{int(start) - 1}"  # the same PID, started earlier: another process
    reason = liveness.gone(earlier)
    assert reason is not None and "PID now belongs to another one" in reason


@pytest.mark.parametrize(
    "identity",
    [
        None,
        "",
        "p/host/12",  # a holder name, not an identity
        "linux/00000000-0000-0000-0000-000000000000/4026531836/1/1",  # another machine or boot
        "windows/x/y/1/2",
    ],
)
def test_what_cannot_be_judged_is_never_gone(identity: str | None) -> None:
    assert liveness.gone(identity) is None


def test_another_pid_namespace_is_out_of_sight(child: subprocess.Popen[bytes]) -> None:
    """A pod or a container has its own PID namespace: its PIDs are not ours to read, even
    on the same machine, so a holder there is never judged gone."""
    identity = liveness.process_identity(child.pid)
    assert identity is not None
    _, boot, _, pid, start = identity.split("/")
    elsewhere = f"linux/{boot}/1/{pid}/{start}"
    child.kill()
    child.wait()
    assert not liveness.visible(elsewhere)
    assert liveness.gone(elsewhere) is None


def _fake_proc(tmp: Path, *, stat: str | None, own_pid: int | None = None) -> Path:
    """A /proc holding this process's host identity and, as PID 4242, ``stat``."""
    (tmp / "sys/kernel/random").mkdir(parents=True)
    (tmp / "sys/kernel/random/boot_id").write_text("boot-1\n")
    (tmp / "self/ns").mkdir(parents=True)
    (tmp / "self/ns/pid").symlink_to("pid:[77]")
    (tmp / "self/stat").write_text(f"{own_pid or os.getpid()} (python) S 1 2 3\n")
    if stat is not None:
        (tmp / "4242").mkdir()
        (tmp / "4242/stat").write_text(stat)
    return tmp


def _stat(comm: str, state: str = "S", start: int = 555) -> str:
    fields = [state, *["0"] * 18, str(start), "0"]  # the start time is field 22
    return f"4242 ({comm}) {' '.join(fields)}\n"


def test_a_command_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, stat=_stat("bw sync) (x"))
    assert liveness.process_identity(4242, proc) == "linux/boot-1/77/4242/555"
    assert liveness.gone("linux/boot-1/77/4242/555", proc) is None
    assert liveness.gone("linux/boot-1/77/4242/554", proc) is not None
    assert liveness.gone("linux/boot-1/77/4243/555", proc) is not None


def test_an_unreadable_process_is_not_gone(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, stat="4242 (bwsync) S garbage\n")
    assert liveness.process_identity(4242, proc) is None
    assert liveness.gone("linux/boot-1/77/4242/555", proc) is None


def test_a_proc_of_another_namespace_proves_nothing(tmp_path: Path) -> None:
    """/proc mounted from another PID namespace: /proc/self is not this process."""
    proc = _fake_proc(tmp_path, stat=None, own_pid=os.getpid() + 1)
    assert liveness.process_identity(4242, proc) is None
    assert liveness.gone("linux/boot-1/77/4242/555", proc) is None
