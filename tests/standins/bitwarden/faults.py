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
* ``expire_tokens``: every token issued so far expires now.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

from bwsync.standin.http import UNHANDLED, Response, json_response, public_error
from bwsync.standin.server import ENDPOINTS, BitwardenStandIn

__all__ = ["Fault", "FaultInjection", "internal_error"]


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

    def matches(self, endpoint: str) -> bool:
        return (self.times is None or self.times > 0) and self.endpoint in ("*", endpoint)


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
    requests."""

    def __init__(self, *, rate_limits: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate_limits = rate_limits
        self._windows: dict[tuple[str, float], list[float]] = {}
        self._faults: list[Fault] = []

    def reset(self) -> None:
        """Forget members, groups, tokens, faults, requests and events."""
        with self._lock:
            super().reset()
            self._faults.clear()

    def fail(
        self,
        endpoint: str = "*",
        *,
        status: int = 500,
        times: int | None = 1,
        retry_after: int | None = None,
        body: bytes | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` requests to ``endpoint`` with ``status`` and ``body``
        (default: the server's own error body for that status)."""
        self._add_fault(
            Fault(
                endpoint,
                status=status,
                times=times,
                retry_after=retry_after,
                body=body,
                delay=delay,
            )
        )

    def throttle(
        self, endpoint: str = "*", *, times: int | None = 1, retry_after: int | None = 1
    ) -> None:
        """429 as the cloud's rate limiter sends it (§4): ``Retry-After`` and the internal error
        body. ``retry_after=None`` omits the header, as Vaultwarden does."""
        self._add_fault(Fault(endpoint, status=429, times=times, retry_after=retry_after))

    def server_error(
        self, endpoint: str = "*", *, times: int | None = 1, status: int = 500
    ) -> None:
        """5xx with the public API's unhandled-error body."""
        self._add_fault(Fault(endpoint, status=status, times=times))

    def slow(self, endpoint: str = "*", seconds: float = 1.0, *, times: int | None = None) -> None:
        """Delay the answer (then answer normally): for client timeouts."""
        self._add_fault(Fault(endpoint, status=None, times=times, delay=seconds))

    def disconnect(self, endpoint: str = "*", *, times: int | None = 1) -> None:
        """Close the connection without answering: the client sees a transport error."""
        self._add_fault(Fault(endpoint, status=None, times=times, disconnect=True))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

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
        """A switched-on fault for this endpoint, else a tripped rate limit, answers instead
        of the endpoint (after its delay); a fault that only delays lets it answer."""
        fault = self._take_fault(endpoint) or self._rate_limited(method, endpoint)
        if fault is None:
            return None
        if fault.delay:
            time.sleep(fault.delay)
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
