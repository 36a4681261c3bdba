"""Stopping a run part-way, cleanly: what SIGTERM and SIGINT do to ``sync`` and ``plan``.

Kubernetes stops a Job's pod with SIGTERM (``activeDeadlineSeconds``, a node drain, preemption,
a deleted pod) and kills it ``terminationGracePeriodSeconds`` later. Dying on the first signal
would keep the state lease until it expires, and leave no summary line and no metrics. So:

* The first signal is a **stop request**. bwsync starts no new request (every Bitwarden
  attempt, token requests included; every directory page; every state call of the run) and
  cuts any retry or backoff wait short. The request in flight is let finish, or time out,
  within the grace period, ``BWSYNC_STOP_GRACE_SECONDS`` (default 20 s); the chart sets
  ``terminationGracePeriodSeconds`` above it.
* When the grace period is over and the run still waits on that request, the main thread is
  interrupted where it waits (a SIGALRM, sent to it alone, whose handler raises
  ``Interrupted``; a request that fails of that interruption is reported as interrupted too).
* The run then ends as a failed run does (``run.py``): the lease is given back, the stored hash
  and delta tokens stay as they were (the next run sends everything again; the import is
  idempotent), the summary line and the metrics say ``interrupted``, and the exit code is 7
  (``errors.Interrupted``). If the grace period gave up a Bitwarden write, the server may
  still be applying it: the lease then stays until that write's timeout, and the next run
  waits for it (``run.py``: ``_keep_busy``).
* A stop that comes once every write to Bitwarden succeeded changes nothing
  (``StopRequest.after_writes``): what is left, the re-read that verifies them (read-only) and
  the state write that saves the new hash, goes on within the grace period, and the run ends
  as it would have. Stopping it there would keep the old hash for writes that all took
  effect, and the next run would send everything again; past the grace period it is
  interrupted all the same.
* The wrap-up of a stopped run is bounded too (``StopRequest.wrap_up``): giving the lease
  back may take the grace period again, at most ``WRAP_UP_STATE_SECONDS`` (20 s), the metrics
  delivery the grace period once more, at most ``WRAP_UP_METRICS_SECONDS`` (10 s); a step that
  takes longer is given up and said so (a lease not given back stays until it expires, or
  until a run on the same host sees this process gone). So a stopped run ends within three
  grace periods, and within 30 s after one: the margin the chart keeps between the grace
  period and the pod's ``terminationGracePeriodSeconds``. A grace period of 3 s fits
  ``docker stop``'s 10 s.
* A second signal ends the process at once with 128 + the signal number (143 for SIGTERM,
  130 for SIGINT), as a shell reports a process a signal killed. A lease it held stays until
  it expires, or until a run on the same host sees its process gone (``state.liveness``).

Before the run: a stop signal that comes before ``on_signals`` took over is held by the
process entry point (``bwsync.held_signals``: bwsync is PID 1 in its container, which would
drop it), and the run starts stopped.

Why a watcher thread: a Python signal handler runs only once the main thread is back in the
interpreter, so it would run only when the LDAP page or the HTTP answer it waits for arrives.
Worse, a signal that lands in the main thread interrupts the system call it waits in, and
python-ldap's C library does not resume its wait: it fails with "Can't contact LDAP server:
Interrupted system call" (the crash tests caught it). So the stop signals are blocked in the
main thread, and in every thread it starts, and the kernel delivers them to ``_Watcher``,
whose thread alone leaves them unblocked: the interpreter's C-level handler writes the signal
number to a socket (``signal.set_wakeup_fd``), where the watcher reads it at once. The
Python-level handler does nothing but keep the default action (death) away.

How the stop reaches the code that makes requests: the run makes its ``StopRequest`` the
*active* one (``active``, a context variable) for its own work; the Bitwarden client, the
cloud sources' HTTP layer and the LDAP engines call ``check(before)`` before each request and
wait with ``sleep``, which find it there (``snapshot.BackgroundRead`` copies the context into
its worker thread). Outside a run, both behave as if no stop were ever requested.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Final, TypeVar

from bwsync.errors import Interrupted
from bwsync.held_signals import STOP_SIGNALS, hold_early, release_early, take_held
from bwsync.logs import event
from bwsync.worker import InThread

__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "STOP_SIGNALS",
    "WRAP_UP_METRICS_SECONDS",
    "WRAP_UP_STATE_SECONDS",
    "StopRequest",
    "WrapUpTimeout",
    "active",
    "check",
    "hold_early",
    "on_signals",
    "release_early",
    "sleep",
]

#: Seconds the request in flight may take after a stop request (``BWSYNC_STOP_GRACE_SECONDS``).
DEFAULT_GRACE_SECONDS: Final = 20.0
#: After a stop request, what giving the lease back may take at most (the grace period if less).
WRAP_UP_STATE_SECONDS: Final = 20.0
#: After a stop request, what delivering the metrics may take at most (the grace period if
#: less). With the state's part, the 30 s the chart keeps after the grace period.
WRAP_UP_METRICS_SECONDS: Final = 10.0
#: Written to the wakeup socket by ``on_signals`` to end its watcher (no signal has number 0).
_QUIT: Final = 0

T = TypeVar("T")


class WrapUpTimeout(TimeoutError):
    """A step of the wrap-up did not end within its time after a stop request (a
    ``TimeoutError``: what the metrics delivery expects of a push that takes too long)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"did not answer within the time left after the stop ({seconds:g} s)")
        self.seconds = seconds


class StopRequest:
    """Whether, and why, this process was asked to stop; shared by every thread of the run."""

    def __init__(self, grace: float = DEFAULT_GRACE_SECONDS) -> None:
        self.grace = grace
        """Seconds the request in flight may take after the request (see the module doc)."""
        self.reason: str | None = None
        """What asked: ``SIGTERM``, ``SIGINT``."""
        self.given_up = False
        """Whether the grace period ran out and the request in flight was interrupted."""
        self.writes_done = False
        """Set by the run while it finishes after its last write succeeded (``after_writes``):
        a stop request then no longer stops it before a request, only the grace period."""
        self._event = threading.Event()

    def __repr__(self) -> str:
        return f"StopRequest(reason={self.reason!r}, grace={self.grace!r})"

    def request(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def check(self, before: str) -> None:
        """Raise ``Interrupted`` if a stop was requested: call it before starting ``before``."""
        if self._event.is_set() and not self.writes_done:
            raise Interrupted(self.reason or "a stop request", before=before)

    def sleep(self, seconds: float) -> None:
        """A retry or backoff wait, cut short by a stop request (the next ``check`` raises);
        once the writes are done, waited out (only the grace period's end interrupts it)."""
        if self.writes_done:
            time.sleep(seconds)
        else:
            self._event.wait(seconds)

    @contextlib.contextmanager
    def after_writes(self) -> Iterator[None]:
        """The block of a run that follows its last write to Bitwarden, all of them accepted:
        a stop request lets it finish (see the module doc) within the grace period."""
        self.writes_done = True
        try:
            yield
        finally:
            self.writes_done = False

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; whether a stop was requested (loop mode's interval)."""
        return self._event.wait(seconds)

    def wrap_up(self, step: Callable[[], T], cap: float, name: str = "wrap-up") -> T:
        """Run ``step`` of the wrap-up (giving the lease back, delivering the metrics) and
        return what it returns, or raise what it raises. Without a stop request it is simply
        called: its own timeouts bound it. After one, it may take the grace period, at most
        ``cap`` seconds; then ``WrapUpTimeout``, and the step is left to itself in its thread
        (a daemon: it never holds the process back).

        A thread, because the main thread cannot be trusted to get out of every call in time:
        obstore's calls block in Rust, where no signal reaches. (A stop that comes during a
        step that started without one leaves it to its own timeouts.)"""
        if not self.requested:
            return step()
        work = InThread(step, f"bwsync-{name}")
        limit = min(self.grace, cap)
        if not work.wait(limit):
            raise WrapUpTimeout(limit)
        return work.outcome()


_ACTIVE: contextvars.ContextVar[StopRequest | None] = contextvars.ContextVar(
    "bwsync_stop", default=None
)


@contextlib.contextmanager
def active(stop: StopRequest) -> Iterator[StopRequest]:
    """Make ``stop`` the one ``check`` and ``sleep`` consult, for the run's work. The grace
    period's interruption, too, only ever hits code inside this block: never the wrap-up that
    gives the lease back and reports."""
    token = _ACTIVE.set(stop)
    try:
        yield stop
    finally:
        _ACTIVE.reset(token)


def check(before: str) -> None:
    """``StopRequest.check`` of the active stop request; nothing outside a run."""
    stop = _ACTIVE.get()
    if stop is not None:
        stop.check(before)


def sleep(seconds: float) -> None:
    """A retry or backoff wait that the active stop request cuts short (``time.sleep`` outside
    a run): the default ``sleep`` of every HTTP client that retries."""
    stop = _ACTIVE.get()
    if stop is None:
        time.sleep(seconds)
    else:
        stop.sleep(seconds)


# --------------------------------------------------------------------------------------------
# Signals


def _grace_over(signum: int, frame: FrameType | None) -> None:
    """SIGALRM, sent to the main thread by ``_Watcher`` when the grace period is over: give up
    the request in flight, if the run is still at work (``active``)."""
    stop = _ACTIVE.get()
    if stop is not None and stop.requested:
        raise Interrupted(stop.reason or "a stop request", grace=stop.grace)


class _Watcher(threading.Thread):
    """Reads signal numbers from the wakeup socket: the first stop signal requests the stop
    and starts the grace period, a second one ends the process."""

    def __init__(self, receiver: socket.socket, stop: StopRequest, main: int) -> None:
        super().__init__(name="bwsync-signals", daemon=True)
        self.receiver = receiver
        self.stop = stop
        self.main = main
        self.signals = 0

    def run(self) -> None:
        deadline: float | None = None
        while True:
            self.receiver.settimeout(
                None if deadline is None else max(0.0, deadline - time.monotonic())
            )
            try:
                data = self.receiver.recv(64)
            except TimeoutError:
                deadline = None
                # Only the main thread's waits can be interrupted; ``_grace_over`` decides.
                self.stop.given_up = True
                signal.pthread_kill(self.main, signal.SIGALRM)
                continue
            except OSError:
                return
            if not data or _QUIT in data:  # the block of ``on_signals`` is being left
                return
            for signum in data:
                if signum in STOP_SIGNALS and self._stop_signal(signal.Signals(signum)):
                    deadline = time.monotonic() + self.stop.grace

    def _stop_signal(self, sig: signal.Signals) -> bool:
        """Handle one stop signal; whether the grace period starts now."""
        self.signals += 1
        if self.signals == 1:
            self.stop.request(sig.name)
            event(
                "stop_requested",
                logging.WARNING,
                signal=sig.name,
                grace_seconds=self.stop.grace,
                note="no new request is started; the one in flight may finish within the grace "
                "period; then the lease is given back and bwsync exits 7. A second signal ends "
                "it at once",
            )
            return True
        code = 128 + int(sig)
        event(
            "stopped_at_once",
            logging.ERROR,
            signal=sig.name,
            exit_code=code,
            note="second signal: no lease given back, no summary, no metrics; a held lease "
            "stays until it expires or a run on this host sees this process gone",
        )
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)


@contextlib.contextmanager
def on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """SIGTERM and SIGINT request ``stop`` while the block runs (the CLI's ``sync`` and
    ``plan``); the handlers before it are restored after. Signals can only be handled on the
    main thread: anywhere else this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def received(signum: int, frame: FrameType | None) -> None:
        # The Python-level handler: ``_Watcher`` did the work already. Requesting again is
        # harmless, and covers a signal that comes while the block is being left.
        stop.request(signal.Signals(signum).name)

    receiver, sender = socket.socketpair()
    sender.setblocking(False)
    # The wakeup socket first: a signal between the two steps is then never lost.
    old_fd = signal.set_wakeup_fd(sender.fileno(), warn_on_full_buffer=False)
    old_handlers = {s: signal.signal(s, received) for s in STOP_SIGNALS}
    old_alarm = signal.signal(signal.SIGALRM, _grace_over)
    watcher = _Watcher(receiver, stop, threading.main_thread().ident or 0)
    watcher.start()  # before the mask: its thread is the one that takes the signals
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    # A signal held since the process started (``hold_early``) is the run's stop request.
    held = take_held()
    if held:
        sender.send(bytes(held))
    try:
        yield stop
    finally:
        # In this order: no signal number is written to a closed socket, and the SIGALRM
        # handler stays until the watcher, which may send one, has ended.
        signal.set_wakeup_fd(old_fd)
        sender.send(bytes([_QUIT]))
        watcher.join()
        sender.close()
        receiver.close()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGALRM, old_alarm)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
