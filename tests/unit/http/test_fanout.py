"""bwsync.http.fanout: independent reads at the same time, results in the order asked, the
earliest failure raised, nothing new started after one, the caller's context in every thread."""

from __future__ import annotations

import contextvars
import threading

import pytest

from bwsync.http.fanout import Cancelled, Fanout

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def test_results_come_in_the_order_asked_not_of_completion() -> None:
    gates = {n: threading.Event() for n in range(6)}

    def read(n: int) -> int:
        if n < 5:
            assert gates[n + 1].wait(5)  # each waits for the one after it to finish
        gates[n].set()
        return n * n

    with Fanout(6) as fan:
        assert fan.map(read, range(6)) == [0, 1, 4, 9, 16, 25]


def test_one_thread_is_the_sequential_read_on_the_callers_thread() -> None:
    main = threading.current_thread()
    with Fanout(1) as fan:
        assert fan.map(lambda n: threading.current_thread() is main, range(3)) == [True] * 3
        assert fan.together(lambda: threading.current_thread() is main) == [True]


def test_together_runs_reads_that_may_map_themselves() -> None:
    with Fanout(4) as fan:
        out = fan.together(
            lambda: fan.map(lambda n: n + 1, range(5)),
            lambda: "groups",
            lambda: None,
        )
    assert out == [[1, 2, 3, 4, 5], "groups", None]


def test_the_earliest_failure_in_argument_order_is_raised_and_nothing_new_starts() -> None:
    started: list[int] = []
    lock = threading.Lock()
    third_failed = threading.Event()

    def read(n: int) -> int:
        with lock:
            started.append(n)
        if n == 3:
            third_failed.set()
            raise ValueError("page 3")
        if n == 1:
            assert third_failed.wait(5)
            raise KeyError("page 1")  # failed later, but comes first in the directory
        return n

    with Fanout(2) as fan, pytest.raises(KeyError, match="page 1"):
        fan.map(read, [1, 3, 5, 7, 9, 11])
    assert fan.cancelled.is_set()
    assert len(started) < 6  # the reads after the failures were never started
    with pytest.raises(Cancelled):
        fan.check()


def test_the_callers_context_reaches_every_thread() -> None:
    WHO.set("the run")
    with Fanout(3) as fan:
        assert fan.map(lambda _: WHO.get(), range(4)) == ["the run"] * 4
        assert fan.together(WHO.get, WHO.get) == ["the run", "the run"]
