"""The paced HTTP client of the Okta and OneLogin sources (``bwsync.sources.paced_http``) with
httpx.MockTransport and Okta's rate-limit headers: pacing before the limit, 429 waits, bounded
retries, what ``bwsync.http_retry`` calls temporary."""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from bwsync import stop
from bwsync.errors import Interrupted
from bwsync.sources.okta import OKTA_RATE, OktaError
from bwsync.sources.paced_http import PacedHttp
from bwsync.stop import StopRequest, active
from tests.fixtures.clock import FakeClock

ORG = "https://example.okta.com"
Handler = Callable[[httpx.Request], httpx.Response]


def _paced(handler: Handler, clock: FakeClock, **kw: Any) -> PacedHttp:
    return PacedHttp(
        httpx.Client(transport=httpx.MockTransport(handler)),
        OKTA_RATE,
        OktaError,
        sleep=clock.sleep,
        clock=clock,
        monotonic=clock,
        **kw,
    )


def _rate(remaining: int, reset: float, limit: int = 100) -> dict[str, str]:
    return {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": str(int(reset)),
    }


def test_no_waiting_while_the_budget_is_comfortable() -> None:
    clock = FakeClock()
    http = _paced(lambda r: httpx.Response(200, headers=_rate(50, clock.now + 30)), clock)
    for _ in range(5):
        http.request("GET", f"{ORG}/x", "GET /x")
    assert clock.slept == []


def test_slows_down_before_zero_and_waits_at_zero() -> None:
    clock = FakeClock()
    remaining = iter([5, 0, 99])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=_rate(next(remaining), clock.now + 20))

    http = _paced(handler, clock)
    http.request("GET", f"{ORG}/x", "GET /x")  # 5 of 100 left, 20 s to the reset
    http.request("GET", f"{ORG}/x", "GET /x")  # waited 20/5 = 4 s first; now 0 left
    http.request("GET", f"{ORG}/x", "GET /x")  # waited for the reset
    assert clock.slept == [4.0, 20.0]


def test_a_wall_clock_stepped_back_does_not_lengthen_the_wait() -> None:
    """Waits are timed on the monotonic clock; only the reset is read against the wall."""
    wall, steady = FakeClock(), FakeClock(now=100.0)
    remaining = iter([5, 99])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=_rate(next(remaining), wall.now + 20))

    http = PacedHttp(
        httpx.Client(transport=httpx.MockTransport(handler)),
        OKTA_RATE,
        OktaError,
        sleep=steady.sleep,
        clock=wall,
        monotonic=steady,
    )
    http.request("GET", f"{ORG}/x", "GET /x")  # 5 of 100 left, 20 s to the reset
    wall.now -= 3600  # NTP steps the wall clock back an hour
    http.request("GET", f"{ORG}/x", "GET /x")
    assert steady.slept == [4.0]


def test_a_stop_request_ends_the_paced_client_too() -> None:
    """A stop requested while a request waits for the rate limit's reset: no request more
    (``bwsync.stop``); by default the wait is the stop request's, which the request cuts
    short."""
    clock = FakeClock()
    request = StopRequest()
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.path)
        return httpx.Response(429, headers=_rate(0, clock.now + 7))

    def wait(seconds: float) -> None:
        request.request("SIGTERM")

    http = PacedHttp(
        httpx.Client(transport=httpx.MockTransport(handler)),
        OKTA_RATE,
        OktaError,
        sleep=wait,
        clock=clock,
        monotonic=clock,
    )
    with active(request), pytest.raises(Interrupted, match="before GET /x"):
        http.request("GET", "https://example.okta.com/x", "GET /x")
    assert len(calls) == 1
    default = PacedHttp(httpx.Client(), OKTA_RATE, OktaError)
    assert default.sleep is stop.sleep
    default.client.close()


def test_429_waits_for_the_reset_then_retries() -> None:
    clock = FakeClock()
    answers = [
        httpx.Response(429, headers=_rate(0, clock.now + 7), json={"errorCode": "E0000047"}),
        httpx.Response(200, json=[]),
    ]
    http = _paced(lambda r: answers.pop(0), clock)
    assert http.request("GET", f"{ORG}/x", "GET /x").status_code == 200
    assert clock.slept == [7.25]


def test_429_gives_up_when_the_reset_is_too_far_or_repeats() -> None:
    clock = FakeClock()
    far = _paced(
        lambda r: httpx.Response(429, headers=_rate(0, clock.now + 5000)), clock, max_wait=900
    )
    with pytest.raises(OktaError, match=r"GET /x: rate limit still exceeded .*5000 s"):
        far.request("GET", f"{ORG}/x", "GET /x")
    again = _paced(lambda r: httpx.Response(429, headers=_rate(0, clock.now + 1)), clock)
    with pytest.raises(OktaError, match="after 5 waits"):
        again.request("GET", f"{ORG}/x", "GET /x")


def test_5xx_and_transport_errors_back_off_a_bounded_number_of_times() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200)

    assert _paced(flaky, clock).request("GET", f"{ORG}/x", "GET /x").status_code == 200
    assert clock.slept == [1.0, 2.0]
    always = _paced(lambda r: httpx.Response(503), clock, max_retries=2)
    assert always.request("GET", f"{ORG}/x", "GET /x").status_code == 503  # caller translates
    down = _paced(flaky_forever, clock, max_retries=1)
    with pytest.raises(OktaError, match=r"GET /x: ConnectError: refused"):
        down.request("GET", f"{ORG}/x", "GET /x")


def flaky_forever(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused")


def test_a_400_is_never_retried() -> None:
    clock = FakeClock()
    calls: list[int] = []

    def bad(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(400, json={"errorCode": "E0000031"})

    _paced(bad, clock).request("GET", f"{ORG}/x", "GET /x")
    assert calls == [1] and clock.slept == []


def test_a_refused_certificate_and_a_dated_retry_after_follow_http_retry() -> None:
    """The paced client decides what is temporary as every HTTP client of bwsync does
    (``bwsync.http_retry``): a certificate refusal fails at once, waiting cannot fix it; a
    429 without rate headers waits for its ``Retry-After``, an HTTP date included."""
    clock = FakeClock()
    calls: list[int] = []

    def refused(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")

    with pytest.raises(OktaError, match="CERTIFICATE_VERIFY_FAILED"):
        _paced(refused, clock).request("GET", f"{ORG}/x", "GET /x")
    assert calls == [1] and clock.slept == []
    in_ten = formatdate(time.time() + 10, usegmt=True)
    answers = [httpx.Response(429, headers={"Retry-After": in_ten}), httpx.Response(200)]
    http = _paced(lambda r: answers.pop(0), clock)
    assert http.request("GET", f"{ORG}/x", "GET /x").status_code == 200
    assert len(clock.slept) == 1 and 8.0 < clock.slept[0] <= 10.25
