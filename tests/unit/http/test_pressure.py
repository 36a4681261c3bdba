"""bwsync.http.pressure: a pause shared by a client's threads is waited out once, and the
bound on requests in flight halves under pressure and grows back one by one."""

from __future__ import annotations

import threading

import pytest

from bwsync.http.pressure import Gate, Limiter
from tests.fixtures.clock import FakeClock


def test_an_open_gate_does_not_wait() -> None:
    clock = FakeClock()
    gate = Gate(clock, clock.sleep)
    gate.wait()
    gate.close_for(0)
    gate.wait()
    assert clock.slept == [] and gate.pauses == 0 and gate.open


def test_a_pause_is_waited_out_once_however_many_threads_wait() -> None:
    clock = FakeClock()
    asleep, release = threading.Event(), threading.Event()

    def sleep(seconds: float) -> None:
        asleep.set()
        release.wait(5)  # hold the pause until every other thread waits for it
        clock.sleep(seconds)

    gate = Gate(clock, sleep)
    gate.close_for(5.0)
    threads = [threading.Thread(target=gate.wait) for _ in range(8)]
    for t in threads:
        t.start()
    assert asleep.wait(5)
    release.set()
    for t in threads:
        t.join(5)
    assert not any(t.is_alive() for t in threads)
    assert clock.slept == [5.0] and gate.pauses == 1


def test_a_later_end_extends_the_pause_an_earlier_one_does_not() -> None:
    clock = FakeClock()
    gate = Gate(clock, clock.sleep)
    gate.close_for(5.0)
    gate.close_for(2.0)
    gate.wait()
    assert clock.slept == [5.0]
    gate.close_for(1.0)
    gate.close_for(3.0)
    gate.wait()
    assert clock.slept == [5.0, 3.0]


def test_a_pause_cut_short_counts_as_served() -> None:
    """A stop request ends the sleep early (and the next stop check ends the run); a test's
    sleep may only record. Either way the gate does not sleep the same pause again."""
    clock = FakeClock()
    recorded: list[float] = []
    gate = Gate(clock, recorded.append)
    gate.close_for(30.0)
    gate.wait()
    gate.wait()
    assert recorded == [30.0]


def test_the_limiter_halves_once_per_burst_and_grows_back_by_one() -> None:
    limiter = Limiter(8)
    assert limiter.limit == 8
    tokens = [limiter.acquire() for _ in range(3)]
    limiter.shrink(tokens[0])
    assert limiter.limit == 4
    limiter.shrink(tokens[1])  # started before the first halving: the same burst
    assert limiter.limit == 4
    limiter.shrink(limiter.acquire())  # a request started after it: pressure again
    assert limiter.limit == 2
    for _ in range(4):
        limiter.release(ok=True)
    assert limiter.in_flight == 0
    assert limiter.limit == 3  # two requests went through at limit 2: one more slot
    for _ in range(3):
        limiter.acquire()
        limiter.release(ok=True)
    assert limiter.limit == 4
    for _ in range(100):
        limiter.acquire()
        limiter.release(ok=True)
    assert limiter.limit == 8  # never above the ceiling
    assert limiter.peak == 4


def test_the_limiter_never_goes_below_one_nor_starts_at_zero() -> None:
    limiter = Limiter(1)
    limiter.shrink()
    assert limiter.limit == 1
    with pytest.raises(ValueError, match="at least 1"):
        Limiter(0)


def test_the_limiter_holds_requests_beyond_the_limit() -> None:
    limiter = Limiter(2)
    limiter.acquire()
    limiter.acquire()
    third = threading.Event()

    def wants_a_slot() -> None:
        limiter.acquire()
        third.set()

    worker = threading.Thread(target=wants_a_slot)
    worker.start()
    assert not third.wait(0.2)  # held: two in flight already
    limiter.release()
    assert third.wait(5)
    worker.join(5)
    assert limiter.in_flight == 2 and limiter.peak == 2
