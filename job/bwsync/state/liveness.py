"""Whether the holder of a lease is provably gone: the process identity a lease records.

A lease names its holder for people (``profile/host/pid``) and, beside it, the holder's
*process identity*: ``linux/<boot id>/<PID namespace>/<pid>/<start time>``, where the boot id
is the kernel's (``/proc/sys/kernel/random/boot_id``, new at every boot), the PID namespace
the inode of ``/proc/self/ns/pid`` and the start time field 22 of ``/proc/<pid>/stat`` (clock
ticks after boot). A run that finds another run's lease still valid takes it over at once when,
and only when, all of this holds:

* same boot id and same PID namespace as its own: the PID means the same process to both
  (the same machine, booted once; the same container, or none);
* and that PID runs nothing any more, or runs a process with another start time (the PID was
  reused), or only a zombie (the holder exited, its parent has not reaped it yet).

"Runs nothing any more" is the kernel's word, never ``/proc``'s alone: a ``/proc`` mounted
``hidepid=2`` / ``hidepid=invisible`` (systemd's ``ProtectProc=invisible``, CIS hardening)
shows a process of another user no ``/proc/<pid>`` at all while it runs. A missing entry is
confirmed with ``kill(pid, 0)``: ``ESRCH`` (no such process) proves the holder gone; ``EPERM``
(it exists, but belongs to someone else) or success proves it alive.

Anything else proves nothing, and the lease is honoured until it expires: another machine,
another container or **another pod** (each has its own PID namespace, and a new pod has a new
host name too), no ``/proc``, an identity this version cannot read. For pods, bwsync relies on
two things instead (README, docs/operations.md): the pod is stopped with SIGTERM, on which the
run gives its lease back (``bwsync.stop``); and the rest (SIGKILL after the grace period, an
OOM kill, a lost node) is left to the lease's expiry, ``BWSYNC_STATE__LEASE_SECONDS``. A
lease the holder renews as a heartbeat, with a short expiry, would shorten that wait, but every
run would have to write the state every few seconds and stop itself the moment a renewal
failed (or a second run could apply beside a live first one): a slow state store would then
fail runs that succeed today. An expiry longer than the longest run needs neither.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

PROC = Path("/proc")

#: ``os.kill``'s shape: how ``gone`` asks the kernel whether a PID exists (signal 0 sends
#: nothing); tests pass their own.
Kill = Callable[[int, int], None]


def this_process() -> str | None:
    """This process's identity, or ``None`` where it cannot be read (no Linux ``/proc``)."""
    return process_identity(os.getpid())


def process_identity(pid: int, proc: Path = PROC) -> str | None:
    """The identity of process ``pid`` as seen from here; ``None`` when it cannot be read."""
    host = _host(proc)
    start = _start_time(proc, pid)
    if host is None or start is None:
        return None
    return f"linux/{host}/{pid}/{start}"


def visible(identity: str | None, proc: Path = PROC) -> bool:
    """Whether ``identity`` was taken on this machine, in this PID namespace: whether ``gone``
    can judge it at all."""
    parts = (identity or "").split("/")
    return len(parts) == 5 and parts[0] == "linux" and _host(proc) == f"{parts[1]}/{parts[2]}"


def gone(identity: str | None, proc: Path = PROC, *, kill: Kill = os.kill) -> str | None:
    """Why the process ``identity`` names provably runs no more, or ``None`` when that cannot
    be proven (it runs, or it is out of sight: see the module docstring). ``kill`` confirms a
    PID ``proc`` does not show."""
    parts = (identity or "").split("/")
    if len(parts) != 5 or parts[0] != "linux" or not parts[3].isdigit():
        return None
    boot, namespace, pid, start = parts[1], parts[2], int(parts[3]), parts[4]
    if _host(proc) != f"{boot}/{namespace}":
        return None  # another machine, boot or PID namespace: its PIDs are not ours to read
    stat = _stat(proc, pid)
    if stat is None:
        if _exists(pid, kill):  # hidden from this /proc (hidepid), not gone
            return None
        return f"process {pid} no longer runs on this host"
    if stat is _UNREADABLE:
        return None
    if stat[19] != start:
        return f"process {pid} no longer runs on this host (the PID now belongs to another one)"
    if stat[0] == "Z":
        return f"process {pid} has exited on this host (a zombie not yet reaped)"
    return None


def _exists(pid: int, kill: Kill) -> bool:
    """Whether the kernel knows process ``pid`` (in this PID namespace: ``gone`` checked
    that ``proc`` is this process's own). Only "no such process" says it does not."""
    try:
        kill(pid, 0)
    except OSError as exc:
        return exc.errno != errno.ESRCH
    return True


def _host(proc: Path) -> str | None:
    """``<boot id>/<PID namespace>``, when ``proc`` is this process's own ``/proc``."""
    try:
        boot = (proc / "sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink(proc / "self/ns/pid")  # "pid:[4026531836]"
        # A /proc mounted from another PID namespace would make every PID mean another process.
        if int((proc / "self/stat").read_text().split()[0]) != os.getpid():
            return None
    except (OSError, ValueError, IndexError):
        return None
    inode = namespace.partition("[")[2].rstrip("]")
    if not boot or not inode.isdigit():
        return None
    return f"{boot}/{inode}"


#: ``_stat`` of a process that exists but cannot be read: not provably gone.
_UNREADABLE: list[str] = []


def _stat(proc: Path, pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first, the start
    time at index 19), ``None`` when there is no such process, ``_UNREADABLE``."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return _UNREADABLE
    # The command name is in parentheses and may itself hold spaces and parentheses.
    fields = text[text.rfind(")") + 2 :].split()
    return fields if len(fields) >= 20 and fields[19].isdigit() else _UNREADABLE


def _start_time(proc: Path, pid: int) -> str | None:
    stat = _stat(proc, pid)
    return None if not stat else stat[19]
