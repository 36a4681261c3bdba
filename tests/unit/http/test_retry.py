"""bwsync.http.retry: the predicate as a table, the policy's backoff, and the engine's bounds
(retries, time budget, a decision's own budget) with the one "gave up" wording."""

from __future__ import annotations

from collections.abc import Callable
from email.utils import formatdate

import httpx
import pytest

from bwsync.http.retry import (
    GIVE_UP,
    RETRY_NOW,
    Attempt,
    Decision,
    Retrier,
    RetriesExhausted,
    classify,
    retry_after,
    retry_after_seconds,
    temporary,
)
from tests.fixtures.clock import FakeClock

REQUEST = httpx.Request("GET", "https://api.test/x")


def _response(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=REQUEST)


# -- the predicate, as a table -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Retry-After": "7"}, retry_after(7, pause_all=True, shrink=True)),
        (429, {"Retry-After": "2.128"}, retry_after(2.128, pause_all=True, shrink=True)),
        (429, {}, Decision("now", pause_all=True, shrink=True)),
        (429, {"Retry-After": "soon"}, Decision("now", pause_all=True, shrink=True)),
        (503, {"Retry-After": "30"}, retry_after(30)),
        (503, {}, RETRY_NOW),
        (500, {}, RETRY_NOW),
        (502, {}, RETRY_NOW),
        (504, {}, RETRY_NOW),
        (400, {}, GIVE_UP),
        (401, {}, GIVE_UP),
        (403, {}, GIVE_UP),
        (404, {}, GIVE_UP),
        (409, {}, GIVE_UP),
        (422, {}, GIVE_UP),
        (301, {}, GIVE_UP),
        (400, {"Retry-After": "5"}, GIVE_UP),
    ],
)
def test_responses(status: int, headers: dict[str, str], expected: Decision) -> None:
    assert classify(_response(status, headers), None) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("connection refused", request=REQUEST), RETRY_NOW),
        (httpx.ConnectTimeout("slow to connect", request=REQUEST), RETRY_NOW),
        (httpx.ReadTimeout("slow to answer", request=REQUEST), RETRY_NOW),
        (httpx.RemoteProtocolError("peer closed", request=REQUEST), RETRY_NOW),
        (httpx.ReadError("reset by peer", request=REQUEST), RETRY_NOW),
        (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] no", request=REQUEST), GIVE_UP),
        (httpx.DecodingError("bad gzip", request=REQUEST), GIVE_UP),
        (httpx.UnsupportedProtocol("ftp://", request=REQUEST), GIVE_UP),
        (httpx.ProxyError("502 from the proxy", request=REQUEST), RETRY_NOW),
    ],
)
def test_exceptions(exc: httpx.HTTPError, expected: Decision) -> None:
    assert classify(None, exc) == expected


def test_temporary_is_the_predicate_without_waits() -> None:
    assert temporary(429) and temporary(500) and temporary(599)
    assert not temporary(400) and not temporary(404) and not temporary(None, ValueError("x"))


def test_retry_after_seconds_reads_numbers_decimals_and_dates() -> None:
    assert retry_after_seconds(_response(429, {"Retry-After": "7"})) == 7.0
    assert retry_after_seconds(_response(429, {"Retry-After": "2.128"})) == 2.128
    assert retry_after_seconds(_response(429, {"Retry-After": "-3"})) == 0.0
    assert retry_after_seconds(_response(429)) is None
    assert retry_after_seconds(_response(429, {"Retry-After": "soon"})) is None
    date = formatdate(1_000_030, usegmt=True)
    assert retry_after_seconds(_response(429, {"Retry-After": date}), lambda: 1_000_000) == 30.0
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after_seconds(_response(429, {"Retry-After": past})) == 0.0


def test_backoff_doubles_is_capped_and_jittered() -> None:
    clock = FakeClock()
    policy = clock.policy(backoff_base=1.0, backoff_cap=60.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 7, 8, 30)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        30.0,
        30.0,
        30.0,
    ]
    policy.jitter = lambda: 0.999
    assert 0.99 < policy.backoff(1) < 1.0


# -- the engine --------------------------------------------------------------------------------


def _answers(
    *responses: httpx.Response | Exception,
) -> tuple[list[int], Callable[[], httpx.Response]]:
    calls: list[int] = []
    queue = list(responses)

    def attempt() -> httpx.Response:
        calls.append(1)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return calls, attempt


def test_retries_until_success_with_the_servers_wait_or_the_backoff() -> None:
    clock = FakeClock()
    _calls, attempt = _answers(
        _response(503), _response(429, {"Retry-After": "7"}), _response(500), _response(200)
    )
    seen: list[Attempt] = []
    response = Retrier(clock.policy(), on_retry=seen.append).call("GET /x", attempt)
    assert response.status_code == 200
    assert clock.slept == [0.5, 7.0, 2.0]  # backoff(1), the server's 7 s, backoff(3)
    assert [(a.number, a.delay) for a in seen] == [(1, 0.5), (2, 7.0), (3, 2.0)]


def test_gives_up_at_once_and_hands_back_the_response_or_the_exception() -> None:
    clock = FakeClock()
    calls, attempt = _answers(_response(404))
    assert Retrier(clock.policy()).call("GET /x", attempt).status_code == 404
    refused = httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]", request=REQUEST)
    calls, attempt = _answers(refused)
    with pytest.raises(httpx.ConnectError):
        Retrier(clock.policy()).call("GET /x", attempt)
    assert calls == [1] and clock.slept == []


def test_the_retry_count_ends_retries() -> None:
    clock = FakeClock()
    calls, attempt = _answers(_response(503))
    with pytest.raises(RetriesExhausted) as info:
        Retrier(clock.policy(max_retries=3)).call("GET /x", attempt)
    assert len(calls) == 4 and clock.slept == [0.5, 1.0, 2.0]
    assert info.value.note == "gave up after 4 attempts"
    assert info.value.response is not None and info.value.response.status_code == 503
    assert info.value.attempts == 4 and info.value.waited == 3.5


def test_the_time_budget_refuses_a_wait_that_would_pass_it() -> None:
    clock = FakeClock()
    calls, attempt = _answers(_response(429, {"Retry-After": "1000"}))
    with pytest.raises(RetriesExhausted) as info:
        Retrier(clock.policy(budget=300)).call("GET /x", attempt)
    assert clock.slept == [] and len(calls) == 1
    assert info.value.note == "gave up: waiting 1000s more would exceed 300s of retries"


def test_the_budget_counts_time_spent_in_requests_too() -> None:
    clock = FakeClock()

    def slow() -> httpx.Response:
        clock.advance(100)  # a request that takes 100 s to fail
        return _response(503)

    with pytest.raises(RetriesExhausted, match="would exceed 250s"):
        Retrier(clock.policy(budget=250, max_retries=10)).call("GET /x", slow)
    assert clock.slept == [0.5, 1.0]  # at 201.5 s, a third wait of 2 s and a request won't fit


def test_a_decision_with_its_own_budget_ignores_the_retry_count() -> None:
    """A login rate limit that refills once a minute: back off up to 90 s in all, the last
    wait cut to what is left, then give up naming what was waited for."""
    clock = FakeClock()
    _calls, attempt = _answers(_response(429))

    def decide(response: httpx.Response | None, exc: BaseException | None) -> Decision:
        return Decision("now", budget=90, why="the login rate limit")

    with pytest.raises(RetriesExhausted) as info:
        Retrier(clock.policy(max_retries=3), decide).call("POST /token", attempt)
    assert clock.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 28.5]
    assert info.value.note == "gave up after waiting 90s for the login rate limit"


def test_a_pacer_pauses_after_a_successful_response() -> None:
    clock = FakeClock()
    _calls, attempt = _answers(_response(200))
    retrier = Retrier(clock.policy(), pacer=lambda r: 4.0)
    retrier.call("GET /x", attempt)
    assert clock.slept == [4.0]


def test_time_is_waited_through_the_policys_sleep_only() -> None:
    """Every wait goes through ``RetryPolicy.sleep``: the one place a stop request cuts short."""
    waits: list[float] = []
    _calls, attempt = _answers(_response(503), _response(429, {"Retry-After": "3"}), _response(200))
    policy = FakeClock().policy(sleep=waits.append)
    Retrier(policy).call("GET /x", attempt)
    assert waits == [0.5, 3.0]
