"""stop: the stop request, where it is found, and the signals that set it (in this process;
a second signal and whole runs are in tests/e2e/test_stop.py)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from bwsync import held_signals, stop
from bwsync.errors import Interrupted
from bwsync.stop import StopRequest, WrapUpTimeout, active, on_signals

#: Upper bound for a wait that a stop request must end early: reached only when it does not.
NEVER = 600.0


def _in_thread(target: object) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
    thread.start()
    return thread


def test_check_raises_only_once_requested() -> None:
    request = StopRequest()
    request.check("import 1/3")  # nothing requested: nothing happens
    request.request("SIGTERM")
    request.request("SIGINT")  # the first reason is kept
    with pytest.raises(Interrupted) as caught:
        request.check("import 2/3")
    assert caught.value.exit_code == 7
    assert caught.value.result == "interrupted"
    assert "stopped by SIGTERM before import 2/3" in str(caught.value)


def test_a_stop_request_cuts_a_wait_short() -> None:
    request = StopRequest()
    woke = threading.Event()

    def backoff() -> None:
        with active(request):
            stop.sleep(NEVER)
        woke.set()

    thread = _in_thread(backoff)
    request.request("SIGTERM")
    assert woke.wait(NEVER)
    thread.join()
    assert request.wait(NEVER) is True


def test_check_and_sleep_find_the_active_request_only() -> None:
    request = StopRequest()
    request.request("SIGINT")
    stop.check("outside any run")  # no active request: nothing happens
    with active(request):
        with pytest.raises(Interrupted, match="SIGINT before list members"):
            stop.check("list members")
        stop.sleep(NEVER)  # requested already: returns at once
    stop.check("after the run")


def test_signals_request_the_stop_and_handlers_are_restored() -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    request = StopRequest()
    with on_signals(request):
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.wait(NEVER)
        assert request.reason == "SIGTERM"
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_grace_period_interrupts_a_wait_of_the_run_only() -> None:
    """Past the grace period the main thread's wait is given up, inside the run's work
    (``active``); outside it the same alarm changes nothing."""
    inside = StopRequest(grace=0.01)

    def request_in_flight() -> None:
        with active(inside):
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(NEVER)  # a request that never ends

    with (
        on_signals(inside),
        pytest.raises(Interrupted, match=r"did not end within the 0\.01 s"),
    ):
        request_in_flight()
    outside = StopRequest(grace=0.01)
    with on_signals(outside):
        os.kill(os.getpid(), signal.SIGINT)
        assert outside.wait(NEVER)
        # The watcher's alarm comes after the grace period; then this is still running.
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGALRM)
        assert outside.reason == "SIGINT"


def test_elsewhere_than_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def worker() -> None:
        with on_signals(StopRequest()) as request:
            seen.append(request)
            seen.append(signal.getsignal(signal.SIGTERM))

    _in_thread(worker).join()
    assert isinstance(seen[0], StopRequest)
    assert seen[1] == before


# -- the wrap-up: giving the lease back and the metrics, bounded after a stop -----------------


def test_a_wrap_up_step_without_a_stop_takes_its_time() -> None:
    """No stop request: the step is called, in this thread; its own timeouts bound it; its
    result and errors come back."""
    request = StopRequest(grace=0.01)
    here = threading.current_thread()
    assert request.wrap_up(lambda: threading.current_thread() is here, cap=0.01) is True
    with pytest.raises(KeyError, match="boom"):
        request.wrap_up(lambda: {}["boom"], cap=NEVER)


def test_after_a_stop_a_wrap_up_step_is_given_up_past_the_grace_period() -> None:
    request = StopRequest(grace=0.01)
    request.request("SIGTERM")
    never = threading.Event()
    with pytest.raises(WrapUpTimeout, match=r"time left after the stop \(0\.01 s\)"):
        request.wrap_up(lambda: never.wait(NEVER), cap=20.0)
    never.set()
    assert request.wrap_up(lambda: 42, cap=20.0) == 42  # one that ends in time


def test_the_wrap_up_takes_the_cap_when_the_grace_period_is_longer() -> None:
    request = StopRequest(grace=NEVER)
    request.request("SIGTERM")
    never = threading.Event()
    with pytest.raises(WrapUpTimeout) as caught:
        request.wrap_up(lambda: never.wait(NEVER), cap=0.01)
    assert caught.value.seconds == 0.01
    never.set()


def test_once_the_writes_are_done_a_stop_leaves_the_run_to_the_grace_period() -> None:
    """After the last write succeeded (``after_writes``) a stop request no longer stops the
    run before a request, nor cuts a retry wait short; the grace period's end still does."""
    request = StopRequest(grace=0.01)

    def verifying() -> None:
        with active(request), request.after_writes():
            os.kill(os.getpid(), signal.SIGTERM)
            assert request.wait(NEVER)
            stop.check("list members")  # the re-read goes on
            stop.sleep(NEVER)  # a retry wait: waited until the grace period ends it

    with on_signals(request), pytest.raises(Interrupted, match=r"0\.01 s grace"):
        verifying()
    assert not request.writes_done
    with pytest.raises(Interrupted, match="SIGTERM before import"):
        request.check("import")


@pytest.fixture
def own_handlers() -> Iterator[None]:
    """The stop signals' handlers of this (pytest's) process, as they were after the test."""
    before = {s: signal.getsignal(s) for s in stop.STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


@pytest.mark.usefixtures("own_handlers")
def test_a_signal_before_the_run_took_over_is_its_stop_request() -> None:
    """PID 1 drops a signal it has no handler for: one that comes during the imports is held
    (``hold_early``) and becomes the run's stop request, not lost."""
    stop.hold_early()
    os.kill(os.getpid(), signal.SIGTERM)  # held: this process goes on
    request = StopRequest()
    with on_signals(request):
        assert request.wait(NEVER)
        assert request.reason == "SIGTERM"
    assert (
        signal.getsignal(signal.SIGTERM) is held_signals._held
    )  # still held until the process ends


@pytest.mark.usefixtures("own_handlers")
def test_a_command_that_is_not_a_run_gets_the_default_disposition_back() -> None:
    stop.hold_early()
    os.kill(os.getpid(), signal.SIGINT)  # held
    with pytest.raises(KeyboardInterrupt):  # delivered once released, as by default
        stop.release_early()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.usefixtures("own_handlers")
def test_signals_not_held_are_left_alone() -> None:
    """``bwsync.cli.main`` called by a program or a test: its handlers are not touched."""
    mine = signal.getsignal(signal.SIGTERM)
    stop.release_early()
    assert signal.getsignal(signal.SIGTERM) is mine
