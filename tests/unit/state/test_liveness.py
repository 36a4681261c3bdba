"""liveness: a lease holder's process identity, and when it provably is gone (real processes on
this machine, and a stand-in /proc for what this machine cannot show)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
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
    # No /proc/4243, and (say) the kernel knows no such process either.
    assert liveness.gone("linux/boot-1/77/4243/555", proc, kill=_no_such_process) is not None


def test_an_unreadable_process_is_not_gone(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, stat="4242 (bwsync) S garbage\n")
    assert liveness.process_identity(4242, proc) is None
    assert liveness.gone("linux/boot-1/77/4242/555", proc) is None


def test_a_proc_of_another_namespace_proves_nothing(tmp_path: Path) -> None:
    """/proc mounted from another PID namespace: /proc/self is not this process."""
    proc = _fake_proc(tmp_path, stat=None, own_pid=os.getpid() + 1)
    assert liveness.process_identity(4242, proc) is None
    assert liveness.gone("linux/boot-1/77/4242/555", proc) is None


# -- /proc that hides other users' processes (hidepid=2, ProtectProc=invisible) ---------------
# A process of another user then has no /proc/<pid> at all, though it runs: a missing entry
# proves nothing until the kernel confirms there is no such process (kill(pid, 0): ESRCH).


def _no_such_process(pid: int, sig: int) -> None:
    raise ProcessLookupError(3, "No such process")


def _not_permitted(pid: int, sig: int) -> None:
    raise PermissionError(1, "Operation not permitted")


def test_a_process_hidden_from_proc_but_running_is_not_gone(
    tmp_path: Path, child: subprocess.Popen[bytes]
) -> None:
    """A live process missing from /proc (hidden, as hidepid=2 hides another user's) is not
    gone: the real kill(pid, 0) finds it."""
    proc = _fake_proc(tmp_path, stat=None)
    identity = f"linux/boot-1/77/{child.pid}/555"
    assert liveness.gone(identity, proc) is None
    child.kill()
    child.wait()
    assert liveness.gone(identity, proc) == f"process {child.pid} no longer runs on this host"


@pytest.mark.parametrize(
    ("kill", "reason"),
    [
        (_not_permitted, None),  # another user's process: it exists (EPERM)
        (lambda pid, sig: None, None),  # signal 0 delivered: it exists
        (_no_such_process, "process 4242 no longer runs on this host"),  # ESRCH
    ],
    ids=["EPERM", "exists", "ESRCH"],
)
def test_a_missing_proc_entry_is_confirmed_by_the_kernel(
    tmp_path: Path, kill: Callable[[int, int], None], reason: str | None
) -> None:
    proc = _fake_proc(tmp_path, stat=None)
    asked: list[tuple[int, int]] = []

    def recording(pid: int, sig: int) -> None:
        asked.append((pid, sig))
        kill(pid, sig)

    assert liveness.gone("linux/boot-1/77/4242/555", proc, kill=recording) == reason
    assert asked == [(4242, 0)]


def _hidepid_reader_available() -> bool:
    return (
        os.geteuid() == 0
        and shutil.which("unshare") is not None
        and shutil.which("setpriv") is not None
    )


@pytest.fixture
def holder_of_another_user() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of uid 65534 (nobody). It runs a system ``cat``, never the checkout's
    Python: nobody may not be able to reach a checkout under /root (mode 0700)."""
    holder = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "cat"]
    proc = subprocess.Popen(holder, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    assert proc.stdin is not None
    proc.stdin.close()


@pytest.mark.skipif(
    not _hidepid_reader_available(), reason="needs root, unshare and setpriv (util-linux)"
)
def test_a_live_holder_of_another_user_under_hidepid_is_not_gone(
    holder_of_another_user: subprocess.Popen[bytes],
) -> None:
    """The review's reproduction, for real: holder and reader are different users, the reader
    has no capability (no CAP_SYS_PTRACE, no CAP_KILL) and runs in a mount namespace of its own
    whose /proc is mounted ``hidepid=invisible``, as systemd's ProtectProc=invisible and CIS
    hardening do. /proc/<pid> of the holder is not there for the reader, and kill(pid, 0)
    answers EPERM; the holder is not gone.

    The holder is nobody and the reader is uid 0 with every capability dropped (an empty
    bounding set leaves uid 0 none after exec) and out of group 0 (/proc's default ``gid=``
    would let group 0 see everything), not the other way round: the reader imports
    bwsync from the checkout, which only its owner may be able to read (a clone under /root)."""
    child = holder_of_another_user
    identity = liveness.process_identity(child.pid)
    assert identity is not None
    script = (
        "import os, sys; from bwsync.state import liveness; "
        f"print(os.path.exists('/proc/{child.pid}'), liveness.visible({identity!r}), "
        f"liveness.gone({identity!r}))"
    )
    reader = [
        "setpriv", "--regid", "65534", "--clear-groups", "--inh-caps=-all",
        "--bounding-set=-all", sys.executable, "-c", script,
    ]  # fmt: skip
    mount = "mount -t proc -o hidepid=invisible proc /proc"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'{mount} && exec "$@"', "sh", *reader],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a private /proc here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    # Hidden, judged in this PID namespace, and still not gone.
    assert done.stdout.split() == ["False", "True", "None"], done.stdout
