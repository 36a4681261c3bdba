"""Stop signals held from the process's first instant, until a run takes them.

bwsync is PID 1 in its container, and the kernel sends PID 1 no signal it has no handler for:
a SIGTERM during the imports and the settings pass, before ``bwsync.stop.on_signals`` took
over, would be dropped, and the run would go on as if never stopped until the SIGKILL. So the
entry point (``__main__``) holds SIGTERM and SIGINT first thing (``hold_early``); a run hands a
held signal to its watcher (``take_held``: it starts stopped, exit 7 before anything is sent);
a command that is not a run gets the default disposition back (``release_early``) and a
signal held for it takes effect then.

A module of its own, importing nothing of bwsync: the entry point calls it before the imports
it exists for (pydantic and the rest: ``bwsync.stop`` pulls them in).
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Final

__all__ = ["STOP_SIGNALS", "hold_early", "release_early", "take_held"]

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)

#: Stop signals received while held, in order; handed on once.
_EARLY: list[int] = []


def _held(signum: int, frame: FrameType | None) -> None:
    _EARLY.append(signum)


def hold_early() -> None:
    """Hold stop signals until a run (``take_held``) or ``release_early`` takes them. Only on
    the main thread."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _held)


def take_held() -> list[int]:
    """The signals held so far, in order; they are the caller's from now on."""
    held, _EARLY[:] = list(_EARLY), []
    return held


def release_early() -> None:
    """For a command that is not a run: the default disposition back (death by SIGTERM, a
    ``KeyboardInterrupt`` on SIGINT), and a signal held so far delivered now. Nothing if the
    signals were not held (``bwsync.cli.main`` called by a program, a test)."""
    if signal.getsignal(signal.SIGTERM) is not _held:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in take_held():
        signal.raise_signal(signum)
