"""What a service's pressure does to the requests of one client: a shared pause and an
adaptive bound on the requests in flight.

* ``Gate`` — a pause that holds every request of the client. A 429's ``Retry-After`` (or a
  rate-limit reset) is the service's window, not one request's: when one worker meets it,
  no worker sends anything until it has passed, and it is waited out once — one worker sleeps,
  the others wait for it — not once per worker, each starting when its own 429 came back.
* ``Limiter`` — at most ``limit`` requests in flight, ``limit`` between 1 and ``ceiling`` (the
  setting, never above the provider's documented concurrency limit). It halves on pressure (a
  429, a rate budget running low) and grows by one after ``limit`` requests in a row went
  through: additive increase, multiplicative decrease, as TCP does.

Both take the clock and the sleep of the client's ``RetryPolicy``, so tests drive them with a
fake time, and a stop request cuts the shared pause short like any other wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Gate", "Limiter"]


class Gate:
    """A pause shared by every thread of one client (see the module docstring)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._until = 0.0
        self._served = 0.0
        self._sleeper = False
        self.pauses = 0
        """How many pauses were waited out (one per window, however many workers waited)."""

    def close_for(self, seconds: float) -> None:
        """No request starts for ``seconds`` from now (a later end wins over an earlier one)."""
        with self._cond:
            self._until = max(self._until, self._clock() + seconds)

    @property
    def open(self) -> bool:
        with self._cond:
            return self._clock() >= self._until

    def wait(self) -> None:
        """Return once no pause is in force; one thread sleeps it out, the others wait for it.
        A pause counts as served once slept, even if the sleep came back early (a stop request
        cut it short: the next stop check ends the run; a test's recording sleep)."""
        while True:
            with self._cond:
                target = self._until
                left = target - self._clock()
                if left <= 0 or target <= self._served:
                    return
                if self._sleeper:
                    # Another thread sleeps this pause out and wakes us when it is over. The
                    # timeout only guards against a sleeper that died.
                    self._cond.wait(timeout=max(left, 0.05))
                    continue
                self._sleeper = True
                self.pauses += 1
            try:
                self._sleep(left)
            finally:
                with self._cond:
                    self._sleeper = False
                    self._served = max(self._served, target)
                    self._cond.notify_all()


class Limiter:
    """At most ``limit`` requests in flight; the limit adapts to the service's pressure."""

    def __init__(self, ceiling: int) -> None:
        if ceiling < 1:
            raise ValueError("ceiling must be at least 1")
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_flight = 0
        self.peak = 0
        """The most requests that were in flight at once (tests, the benchmark)."""
        self._cond = threading.Condition()
        self._good = 0
        self._generation = 0

    def acquire(self) -> int:
        """Wait for a free slot and take it; returns the limit's generation, for ``shrink``."""
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return self._generation

    def release(self, ok: bool = True) -> None:
        """Give the slot back; ``ok`` when the request met no pressure (it counts toward
        growing the limit again)."""
        with self._cond:
            self.in_flight -= 1
            if ok:
                self._good += 1
                if self._good >= self.limit and self.limit < self.ceiling:
                    self.limit += 1
                    self._good = 0
            self._cond.notify_all()

    def shrink(self, generation: int | None = None) -> None:
        """Halve the limit, once per burst: a request that started before the limit last
        changed (its ``acquire`` returned an older ``generation``) reports the same pressure
        and does not halve it again."""
        with self._cond:
            if generation is not None and generation < self._generation:
                return
            self._generation += 1
            self.limit = max(1, self.limit // 2)
            self._good = 0
