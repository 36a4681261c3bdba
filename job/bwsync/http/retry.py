"""When to try an HTTP call again, and how long to wait first: one engine for every client.

Three pieces, as stamina and kopf split them:

* the **predicate** (``classify``, or a client's own built on it) looks at one failed attempt,
  the response or the httpx exception, and returns a ``Decision``: ``RETRY_NOW`` (temporary;
  the policy's backoff decides the wait), ``retry_after(seconds)`` (temporary; the server said
  how long, and is honoured in full: an earlier retry only earns another 429) or ``GIVE_UP``
  (permanent: a 400, a 404, a refused certificate). A decision also says whether the wait holds
  every request of the client (a rate limit, ``pause_all``) and whether the service signalled
  pressure (``shrink``: fewer requests in flight);
* the **policy** (``RetryPolicy``), set by each caller: how many retries, one time budget (the
  seconds since the first attempt, waits included, beyond which no wait is started), one
  exponential backoff with jitter, and the injectable clock, sleep and jitter;
* the **engine** (``Retrier.call``) runs attempts until one succeeds, the predicate gives up
  (the last response is returned, or the exception re-raised, for the caller to translate), or
  the policy ends the retries (``RetriesExhausted``, whose ``note`` is the one "gave up"
  wording of every client).

Every wait of every client goes through ``RetryPolicy.sleep``, by default ``bwsync.stop.sleep``
(the run's stop request cuts it short; ``time.sleep`` outside a run), and every attempt starts
with ``checkpoint(name)``: the two places where a stop request (SIGTERM) cuts waits short and
keeps new requests from starting.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Final, Literal

import httpx

from bwsync import stop
from bwsync.http.pressure import Gate, Limiter

__all__ = [
    "GIVE_UP",
    "RETRY_NOW",
    "Decision",
    "Predicate",
    "Retrier",
    "RetriesExhausted",
    "RetryPolicy",
    "checkpoint",
    "classify",
    "retry_after",
    "retry_after_seconds",
    "temporary",
]


def checkpoint(name: str) -> None:
    """Called before every attempt of any client, ``name`` saying what is about to be sent:
    after a stop request (SIGTERM), no new request starts (``bwsync.stop.check`` raises
    ``Interrupted``)."""
    stop.check(name)


# --------------------------------------------------------------------------------------------
# The predicate


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after one failed attempt.

    ``action``: ``now`` (temporary, the policy's backoff decides the wait), ``after`` (wait
    ``seconds``, the server's own figure) or ``give_up``. ``pause_all``: the wait holds every
    request of the client, not only this one (a rate limit is the service's, not the
    request's). ``shrink``: the service is under pressure; fewer requests in flight.
    ``budget``: a time budget of its own for this kind of wait, replacing the policy's retry
    count and budget (a login rate limit that refills once a minute), and ``why`` what is waited
    for, for the message when that budget runs out.
    """

    action: Literal["now", "after", "give_up"]
    seconds: float = 0.0
    pause_all: bool = False
    shrink: bool = False
    budget: float | None = None
    why: str = ""

    @property
    def retry(self) -> bool:
        return self.action != "give_up"


RETRY_NOW: Final = Decision("now")
GIVE_UP: Final = Decision("give_up")


def retry_after(seconds: float, *, pause_all: bool = False, shrink: bool = False) -> Decision:
    """Retry once ``seconds`` have passed (the server's own figure)."""
    return Decision("after", max(0.0, seconds), pause_all=pause_all, shrink=shrink)


Predicate = Callable[[httpx.Response | None, BaseException | None], Decision]
"""(the response, or ``None`` when an exception replaced it; that exception) → ``Decision``.
Only called for attempts that did not succeed (a 2xx is never retried)."""


def temporary(status: int | None, exc: BaseException | None = None) -> bool:
    """What is worth another attempt at all: 429 (rate limit), any 5xx, timeouts and transport
    failures other than a refused certificate or a URL scheme httpx cannot speak (waiting
    cannot fix either). Never: every other status, redirects included, and an httpx error that
    is not a transport failure (a body that cannot be decoded)."""
    if exc is not None:
        return (
            isinstance(exc, httpx.TransportError)
            and not isinstance(exc, httpx.UnsupportedProtocol)
            and "CERTIFICATE_VERIFY_FAILED" not in str(exc)
        )
    return status == 429 or (status is not None and 500 <= status <= 599)


def retry_after_seconds(
    response: httpx.Response, now: Callable[[], float] = time.time
) -> float | None:
    """``Retry-After`` in seconds: delta-seconds, decimals included (Graph sends ``2.128``), or
    an HTTP-date read against ``now``; ``None`` when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def classify(response: httpx.Response | None, exc: BaseException | None) -> Decision:
    """The predicate every client starts from.

    =====================================  ===========================================
    attempt                                decision
    =====================================  ===========================================
    429 with ``Retry-After: N``            retry after N s, every request paused, shrink
    429 without ``Retry-After``            retry now (backoff), every request paused, shrink
    5xx with ``Retry-After: N``            retry after N s (Graph's 503)
    5xx                                    retry now (backoff)
    timeout, connection refused or reset   retry now (backoff)
    certificate refused, other 4xx, 3xx    give up
    =====================================  ===========================================
    """
    if response is None:
        return RETRY_NOW if temporary(None, exc) else GIVE_UP
    status = response.status_code
    if not temporary(status):
        return GIVE_UP
    hint = retry_after_seconds(response)
    limited = status == 429
    if hint is not None:
        return retry_after(hint, pause_all=limited, shrink=limited)
    return Decision("now", pause_all=limited, shrink=limited)


# --------------------------------------------------------------------------------------------
# The policy


@dataclass(slots=True)
class RetryPolicy:
    """How long one client keeps trying, set by each caller.

    ``max_retries`` retries after the first attempt; ``budget`` seconds since the first attempt,
    waits included, beyond which no wait is started (a server asking for more gets no retry:
    a CronJob has a deadline); the backoff without a server figure is ``backoff_base`` × 2^(n-1),
    capped at ``backoff_cap``, times a jitter factor in [0.5, 1) that spreads clients which
    failed together. Tests pass ``sleep`` and ``clock`` that record and advance a fake time,
    and ``jitter=lambda: 0.0``.
    """

    max_retries: int = 6
    budget: float = 300.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    sleep: Callable[[float], None] = stop.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random

    def backoff(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1-based) when the server named none."""
        base: float = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        return base * (0.5 + self.jitter() / 2)


class RetriesExhausted(Exception):
    """The retries ended on a temporary failure. ``response`` (or ``exc``) is the last attempt's
    outcome, for the caller to translate; ``note`` says why in the one wording of every client,
    ``count_ran_out`` whether it was only the number of attempts (the note then says no more
    than "after N attempts")."""

    def __init__(
        self,
        note: str,
        *,
        response: httpx.Response | None,
        exc: BaseException | None,
        attempts: int,
        waited: float,
    ) -> None:
        super().__init__(note)
        self.note = note
        self.count_ran_out = note == f"gave up after {attempts} attempts"
        self.response = response
        self.exc = exc
        self.attempts = attempts
        self.waited = waited


# --------------------------------------------------------------------------------------------
# The engine


@dataclass(slots=True)
class Attempt:
    """What ``Retrier`` tells its ``on_retry`` observer about a retry it is about to wait for."""

    name: str
    number: int
    response: httpx.Response | None
    exc: BaseException | None
    decision: Decision
    delay: float
    waited: float


@dataclass(slots=True)
class Retrier:
    """Runs one call's attempts under a policy and a predicate.

    ``gate`` (a shared pause) and ``limiter`` (the bound on requests in flight) are those of
    the client: several threads calling the same ``Retrier`` wait out a rate limit together and
    stay within the bound. ``pacer(response)`` may ask for a pause of every request after any
    response, a successful one included (a service announcing its remaining budget).
    ``on_retry`` is called before each wait (metrics, a log line).
    """

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    predicate: Predicate = classify
    gate: Gate | None = None
    limiter: Limiter | None = None
    pacer: Callable[[httpx.Response], float | None] | None = None
    on_retry: Callable[[Attempt], None] | None = None

    def call(self, name: str, attempt: Callable[[], httpx.Response]) -> httpx.Response:
        """The first successful response, or the last one the predicate gives up on; an
        exception the predicate gives up on is re-raised; ``RetriesExhausted`` when the policy
        ends the retries. ``name`` ("GET /v1.0/users") is what the stop check and the notes say.
        """
        started = self.policy.clock()
        waited = 0.0
        number = 0
        while True:
            number += 1
            outcome = self._attempt(name, attempt, number, started, waited)
            if isinstance(outcome, httpx.Response):
                return outcome
            delay, shared = outcome
            waited += delay
            if not shared:
                self.policy.sleep(delay)
            # A shared pause is waited out at the next attempt's gate, with the other threads.

    def _attempt(
        self,
        name: str,
        attempt: Callable[[], httpx.Response],
        number: int,
        started: float,
        waited: float,
    ) -> httpx.Response | tuple[float, bool]:
        """One attempt: the response to hand back, or the wait before the next one and whether
        it is the shared pause. The slot of the bound is held from before the request is sent
        until the gate is closed for a 429's window, so a request that waited for that slot
        sees the pause instead of slipping into the window."""
        if self.gate is not None:
            self.gate.wait()
        generation = self.limiter.acquire() if self.limiter is not None else None
        ok = False
        try:
            if self.gate is not None:
                self.gate.wait()  # a pause may have begun while this waited for a slot
            checkpoint(name)
            response: httpx.Response | None = None
            exc: httpx.HTTPError | None = None
            try:
                response = attempt()
            except httpx.HTTPError as error:
                exc = error
            ok = response is not None and response.status_code != 429
            if response is not None and self.pacer is not None:
                self._pace(response, generation)
            if response is not None and response.is_success:
                return response
            decision = self.predicate(response, exc)
            if not decision.retry:
                if exc is not None:
                    raise exc
                assert response is not None
                return response
            if decision.shrink and self.limiter is not None:
                self.limiter.shrink(generation)
            policy = self.policy
            delay = decision.seconds if decision.action == "after" else policy.backoff(number)
            note = self._refusal(decision, number, delay, waited, policy.clock() - started)
            if note:
                raise RetriesExhausted(
                    note, response=response, exc=exc, attempts=number, waited=waited
                )
            if decision.budget is not None:
                delay = min(delay, decision.budget - waited)
            if self.on_retry is not None:
                self.on_retry(Attempt(name, number, response, exc, decision, delay, waited))
            if response is not None:
                response.close()
            shared = decision.pause_all and self.gate is not None
            if shared:
                assert self.gate is not None
                self.gate.close_for(delay)
            return delay, shared
        finally:
            if self.limiter is not None:
                self.limiter.release(ok)

    def _pace(self, response: httpx.Response, generation: int | None) -> None:
        """Pace every request when the service says its budget runs low (a pause before the
        next request, and fewer in flight)."""
        assert self.pacer is not None
        seconds = self.pacer(response)
        if seconds is None or seconds <= 0:
            return
        if self.gate is not None:
            self.gate.close_for(seconds)
        else:
            self.policy.sleep(seconds)
        if self.limiter is not None:
            self.limiter.shrink(generation)

    def _refusal(
        self, decision: Decision, number: int, delay: float, waited: float, elapsed: float
    ) -> str:
        """Why no further attempt is made (the one "gave up" wording), or ``""`` to retry."""
        if decision.budget is not None:
            if decision.budget - waited <= 0:
                return f"gave up after waiting {waited:.0f}s for {decision.why}"
            return ""
        if number > self.policy.max_retries:
            return f"gave up after {number} attempts"
        if max(elapsed, waited) + delay > self.policy.budget:
            return (
                f"gave up: waiting {delay:.0f}s more would exceed "
                f"{self.policy.budget:.0f}s of retries"
            )
        return ""
