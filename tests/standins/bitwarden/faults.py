"""Faults and rate limits for the Bitwarden stand-in: what tests switch on to see bwsync meet
a server that throttles, fails, stalls or hangs up (§4), and what the shipped stand-in never
does.

``FaultInjection`` extends ``bwsync.standin.server.BitwardenStandIn`` through its
``_intercept`` hook, which answers before the endpoint runs:

* switched-on ``Fault`` s, per endpoint name (``ENDPOINTS``) or ``"*"``, for a number of
  requests or until cleared: ``fail``, ``throttle``, ``server_error``, ``slow``,
  ``disconnect``; each answers with the body this server sends for that status unless told;
* the cloud's committed per-IP rate limits (``rate_limits=True``), answered with 429 and
  ``Retry-After`` like the real middleware;
* ``expire_tokens``: every token issued so far expires now;
* ``pause``: the n-th request to an endpoint waits, before the endpoint runs or after it ran
  and before its answer goes out, until the test releases it (or drops it: the connection is
  closed without an answer). ``Pause.reached`` is set when the request got there: the test
  knows where the client stands without sleeping (the crash tests' kill points). A fault's
  ``skip`` lets that many matching requests through first: a fault at batch k of n.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bwsync.standin.http import UNHANDLED, Response, json_response, public_error
from bwsync.standin.server import ENDPOINTS, BitwardenStandIn

__all__ = ["Fault", "FaultInjection", "Pause", "internal_error"]

#: How long a paused request waits for the test at most (a forgotten pause fails, never hangs).
PAUSE_PATIENCE = 300.0


@dataclass(slots=True)
class Fault:
    """A switched-on misbehaviour for one endpoint (or ``"*"``), for ``times`` requests.

    ``times=None`` means until cleared. ``status=None`` only delays (or drops) and then answers
    normally.
    """

    endpoint: str
    status: int | None = None
    times: int | None = 1
    retry_after: int | None = None
    body: bytes | None = None
    delay: float = 0.0
    disconnect: bool = False
    skip: int = 0
    """Matching requests let through untouched before the fault starts."""

    def matches(self, endpoint: str) -> bool:
        return (self.times is None or self.times > 0) and self.endpoint in ("*", endpoint)


@dataclass(slots=True)
class Pause:
    """The ``nth`` request to ``endpoint`` waits ``before`` the endpoint runs, or after (the
    change made, the answer not yet sent), until ``release`` or ``drop``."""

    endpoint: str
    nth: int
    before: bool
    reached: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    """Set once the request is answered (or dropped) and in the request log."""
    _go: threading.Event = field(default_factory=threading.Event)
    dropped: bool = False

    def wait(self, timeout: float = PAUSE_PATIENCE) -> None:
        """Until the request is there; a test failure (not a hang) when it never comes."""
        assert self.reached.wait(timeout), f"request {self.nth} to {self.endpoint} never came"

    def release(self) -> None:
        self._go.set()

    def drop(self) -> None:
        """Close the connection without an answer (for ``before``: the endpoint never runs)."""
        self.dropped = True
        self._go.set()

    def _hold(self) -> None:
        self.reached.set()
        if not self._go.wait(PAUSE_PATIENCE):
            self.dropped = True


def internal_error(status: int, message: str) -> Response:
    """The internal ErrorResponseModel, used by the rate limiter (§3.6, §4)."""
    return json_response(
        status,
        {
            "object": "error",
            "message": message,
            "validationErrors": None,
            "exceptionMessage": None,
            "exceptionStackTrace": None,
            "innerExceptionMessage": None,
        },
    )


class FaultInjection(BitwardenStandIn):
    """The stand-in with fault switches and, with ``rate_limits=True``, the cloud's per-IP
    limits (§4): identity 5/s and 60/min, token 10/min; API POST/PUT/DELETE 5/s and 60/min,
    GET 200/min. Off by default (tests switch faults on explicitly); never in self-hosted mode.
    Rate windows follow the stand-in's ``clock``; ``rate_limits`` may be changed between
    requests. ``sleep`` waits out a ``slow`` fault's delay (tests may pass one that records
    or blocks, to see the delay without measuring it)."""

    def __init__(
        self,
        *,
        rate_limits: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rate_limits = rate_limits
        self._sleep = sleep
        self._windows: dict[tuple[str, float], list[float]] = {}
        self._faults: list[Fault] = []
        self._pauses: list[Pause] = []
        self._seen: dict[str, itertools.count[int]] = {}
        self._pause_of = threading.local()

    def reset(self) -> None:
        """Forget members, groups, tokens, faults, pauses, requests and events."""
        with self._lock:
            super().reset()
            self._faults.clear()
            self._release_pauses()

    def stop(self) -> None:
        with self._lock:
            self._release_pauses()  # a request still paused ends now
        super().stop()

    def pause(self, endpoint: str, nth: int = 1, *, before: bool = True) -> Pause:
        """Hold the ``nth`` request to ``endpoint`` from now on (counting from this call)
        ``before`` the endpoint runs, or after it ran and before the answer is sent."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
        pause = Pause(endpoint, nth, before)
        with self._lock:
            self._seen.pop(endpoint, None)  # counted from now
            self._pauses.append(pause)
        return pause

    def _release_pauses(self) -> None:
        for pause in self._pauses:
            pause.drop()
        self._pauses.clear()
        self._seen.clear()

    def _paused(self, endpoint: str) -> Pause | None:
        with self._lock:
            if not any(p.endpoint == endpoint for p in self._pauses):
                return None
            n = next(self._seen.setdefault(endpoint, itertools.count(1)))
            for p in self._pauses:
                if p.endpoint == endpoint and p.nth == n:
                    return p
        return None

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Response:
        self._pause_of.current = None
        response = super()._handle(method, target, headers, raw)
        pause: Pause | None = self._pause_of.current
        if pause is None:
            return response
        if not pause.before:  # the change is made (and logged); the answer waits
            pause._hold()
            if pause.dropped:
                response = Response(0, disconnect=True)
        pause.finished.set()
        return response

    def fail(
        self,
        endpoint: str = "*",
        *,
        status: int = 500,
        times: int | None = 1,
        retry_after: int | None = None,
        body: bytes | None = None,
        delay: float = 0.0,
        skip: int = 0,
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` (after ``skip`` of them) with
        ``status`` and ``body`` (default: the server's own error body for that status)."""
        self._add_fault(
            Fault(
                endpoint,
                status=status,
                times=times,
                retry_after=retry_after,
                body=body,
                delay=delay,
                skip=skip,
            )
        )

    def throttle(
        self, endpoint: str = "*", *, times: int | None = 1, retry_after: int | None = 1
    ) -> None:
        """429 as the cloud's rate limiter sends it (§4): ``Retry-After`` and the internal error
        body. ``retry_after=None`` omits the header, as Vaultwarden does."""
        self._add_fault(Fault(endpoint, status=429, times=times, retry_after=retry_after))

    def server_error(
        self, endpoint: str = "*", *, times: int | None = 1, status: int = 500, skip: int = 0
    ) -> None:
        """5xx with the public API's unhandled-error body (after ``skip`` requests)."""
        self._add_fault(Fault(endpoint, status=status, times=times, skip=skip))

    def slow(
        self, endpoint: str = "*", seconds: float = 1.0, *, times: int | None = None, skip: int = 0
    ) -> None:
        """Delay the answer (then answer normally): for client timeouts."""
        self._add_fault(Fault(endpoint, status=None, times=times, delay=seconds, skip=skip))

    def disconnect(self, endpoint: str = "*", *, times: int | None = 1) -> None:
        """Close the connection without answering: the client sees a transport error."""
        self._add_fault(Fault(endpoint, status=None, times=times, disconnect=True))

    def clear_faults(self) -> None:
        """Switch every fault off, and let every pause go (dropped)."""
        with self._lock:
            self._faults.clear()
            self._release_pauses()

    def _add_fault(self, fault: Fault) -> None:
        if fault.endpoint != "*" and fault.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {fault.endpoint!r}; one of {', '.join(ENDPOINTS)}")
        with self._lock:
            self._faults.append(fault)

    def expire_tokens(self) -> None:
        """Make every token issued so far invalid now (as if its hour had passed)."""
        with self._lock:
            for t in self._tokens:
                self._tokens[t] = 0.0

    def _intercept(self, method: str, endpoint: str) -> Response | None:
        """A pause first (see ``pause``); then a switched-on fault for this endpoint, else a
        tripped rate limit, answers instead of the endpoint (after its delay); a fault that
        only delays lets it answer."""
        pause = self._paused(endpoint)
        self._pause_of.current = pause
        if pause is not None and pause.before:
            pause._hold()
            if pause.dropped:
                return Response(0, disconnect=True)
        fault = self._take_fault(endpoint) or self._rate_limited(method, endpoint)
        if fault is None:
            return None
        if fault.delay:
            self._sleep(fault.delay)
        if fault.disconnect:
            return Response(0, disconnect=True)
        if fault.status is not None:
            return self._fault_response(fault)
        return None

    def _rate_limited(self, method: str, endpoint: str) -> Fault | None:
        """The cloud's AspNetCoreRateLimit rules (§4), sliding windows, one client IP.

        Every matching rule must have room; blocked requests are not counted
        (``StackBlockedRequests: false``). ``Retry-After`` is the time until the tripped
        rule's oldest request leaves its window, in whole seconds, at least 1."""
        if not self.rate_limits or self.self_hosted:
            return None
        if endpoint == "token":
            rules = [("identity:*", 1.0, 5), ("identity:*", 60.0, 60), ("identity:token", 60.0, 10)]
        elif method == "GET":
            rules = [("api:get", 60.0, 200)]
        else:
            verb = method.lower()
            rules = [(f"api:{verb}", 1.0, 5), (f"api:{verb}", 60.0, 60)]
        now = self._clock()
        with self._lock:
            for name, period, limit in rules:
                window = self._windows.setdefault((name, period), [])
                window[:] = [t for t in window if t > now - period]
                if len(window) >= limit:
                    wait = max(1, math.ceil(window[0] + period - now))
                    label = "1s" if period == 1.0 else "1m"
                    body = internal_error(
                        429, f"Slow down! Too many requests. Try again in {label}."
                    ).body
                    return Fault(endpoint, status=429, retry_after=wait, body=body)
            for name, period, _limit in rules:
                self._windows[(name, period)].append(now)
        return None

    def _take_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.matches(endpoint):
                    if f.skip:
                        f.skip -= 1
                        return None
                    if f.times is not None:
                        f.times -= 1
                    return dataclasses.replace(f)
        return None

    def _fault_response(self, fault: Fault) -> Response:
        """The answer to a switched-on fault: ``fault.body`` if given, else what this server
        sends for that status on that endpoint."""
        status = fault.status or 500
        extra: dict[str, str] = {}
        if fault.retry_after is not None:
            extra["Retry-After"] = str(fault.retry_after)
        if fault.body is not None:
            return Response(
                status, fault.body, {"Content-Type": "application/json; charset=utf-8", **extra}
            )
        if status == 429:
            period = f"{fault.retry_after}s" if fault.retry_after else "1m"
            resp = internal_error(429, f"Slow down! Too many requests. Try again in {period}.")
        elif fault.endpoint == "token" and 400 <= status < 500:
            resp = json_response(status, {"error": "invalid_client"})
        elif status == 401:
            resp = Response(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        elif status >= 500:
            resp = public_error(status, UNHANDLED)
        else:
            resp = Response(status)
        resp.headers.update(extra)
        return resp
