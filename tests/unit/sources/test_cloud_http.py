"""cloud_http, the one HTTP layer of the cloud sources, over httpx.MockTransport: each
provider's rate-limit signals, pacing, error translation, request counting, and what a 429
in the middle of concurrent reads does (one shared pause; nothing sent inside its window)."""

from __future__ import annotations

import threading
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest

from bwsync import stop
from bwsync.errors import ConfigError, DirectoryApiError, DirectoryError, Interrupted
from bwsync.http.fanout import Fanout
from bwsync.http.pressure import Limiter
from bwsync.http.retry import GIVE_UP, RETRY_NOW, Decision, RetryPolicy, retry_after
from bwsync.sources.cloud_http import (
    GOOGLE,
    GRAPH,
    OKTA,
    ONELOGIN,
    CloudHttp,
    Signals,
    describing,
    epoch_reset_in,
    json_error_detail,
    request_name,
    same_origin_next,
    seconds_reset_in,
)
from bwsync.stop import StopRequest, active
from tests.fixtures.clock import FakeClock

NOW = 1_800_000_000.0
REQUEST = httpx.Request("GET", "https://api.test/x")


class _Err(DirectoryApiError):
    service = "Test API"


def _http(handler: Any, clock: FakeClock, signals: Signals = GRAPH, **kw: Any) -> CloudHttp:
    return CloudHttp(
        "Test API",
        translate=describing(_Err, json_error_detail),
        signals=signals,
        base_url="https://api.test",
        transport=httpx.MockTransport(handler),
        policy=clock.policy(max_retries=3, budget=300),
        **kw,
    )


def _response(status: int, headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=REQUEST, **kw)


def _google(status: int, reason: str) -> httpx.Response:
    body = {"error": {"code": status, "message": "m", "errors": [{"reason": reason}]}}
    return _response(status, json=body)


def _okta(status: int, limit: int, remaining: int, reset: float) -> httpx.Response:
    headers = {
        "X-Rate-Limit-Limit": str(limit),
        "X-Rate-Limit-Remaining": str(remaining),
        "X-Rate-Limit-Reset": str(int(reset)),
        "Date": formatdate(NOW, usegmt=True),
    }
    return _response(status, headers, json={"errorCode": "E0000047"})


def _onelogin(status: int, limit: int, remaining: int, reset: int) -> httpx.Response:
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset),
    }
    return _response(status, headers)


# -- each provider's signals, as a table -------------------------------------------------------


@pytest.mark.parametrize(
    ("signals", "response", "expected"),
    [
        # Graph: Retry-After in seconds, decimals included, on 429 and on 503.
        (
            GRAPH,
            _response(429, {"Retry-After": "2.128"}),
            retry_after(2.128, pause_all=True, shrink=True),
        ),
        (GRAPH, _response(503, {"Retry-After": "10"}), retry_after(10)),
        (GRAPH, _response(504), RETRY_NOW),
        (GRAPH, _response(403), GIVE_UP),
        # Google: 403 quota reasons are temporary (no Retry-After), other 403s are not.
        (
            GOOGLE,
            _google(403, "userRateLimitExceeded"),
            Decision("now", pause_all=True, shrink=True),
        ),
        (GOOGLE, _google(403, "rateLimitExceeded"), Decision("now", pause_all=True, shrink=True)),
        (GOOGLE, _google(403, "quotaExceeded"), Decision("now", pause_all=True, shrink=True)),
        (GOOGLE, _google(403, "forbidden"), GIVE_UP),
        (GOOGLE, _google(403, "insufficientPermissions"), GIVE_UP),
        (GOOGLE, _google(400, "rateLimitExceeded"), GIVE_UP),
        (GOOGLE, _google(429, "rateLimitExceeded"), Decision("now", pause_all=True, shrink=True)),
        (GOOGLE, _google(503, "backendError"), RETRY_NOW),
        # Okta: a rate 429 waits for the reset read against the server's Date (+0.25 s);
        # a concurrency 429 (limit and remaining 0) backs off this request and shrinks.
        (OKTA, _okta(429, 600, 0, NOW + 42), retry_after(42.25, pause_all=True, shrink=True)),
        (OKTA, _okta(429, 0, 0, NOW + 42), Decision("now", shrink=True)),
        (OKTA, _response(429), Decision("now", pause_all=True, shrink=True)),
        (OKTA, _okta(500, 600, 10, NOW + 42), RETRY_NOW),
        (OKTA, _okta(403, 600, 10, NOW + 42), GIVE_UP),
        # OneLogin: the reset is seconds to wait.
        (ONELOGIN, _onelogin(429, 5000, 0, 832), retry_after(832.25, pause_all=True, shrink=True)),
        (ONELOGIN, _onelogin(401, 5000, 10, 832), GIVE_UP),
    ],
)
def test_provider_signals(signals: Signals, response: httpx.Response, expected: Decision) -> None:
    assert signals.decide(response, None) == expected


def test_only_okta_has_a_documented_concurrency_limit() -> None:
    assert OKTA.ceiling == 15
    assert GRAPH.ceiling is GOOGLE.ceiling is ONELOGIN.ceiling is None


@pytest.mark.parametrize(
    ("signals", "response", "pause"),
    [
        (OKTA, _okta(200, 100, 50, NOW + 30), None),  # comfortable
        (OKTA, _okta(200, 100, 5, NOW + 20), 4.0),  # 5 left for 20 s: one every 4 s
        (OKTA, _okta(200, 100, 0, NOW + 20), 20.25),  # none left: wait for the reset
        (ONELOGIN, _onelogin(200, 5000, 100, 1000), 10.0),
        (ONELOGIN, _onelogin(200, 5000, 4000, 1000), None),
        (GRAPH, _okta(200, 100, 0, NOW + 20), None),  # not Graph's headers: no pacing
    ],
)
def test_pacing(signals: Signals, response: httpx.Response, pause: float | None) -> None:
    got = signals.pace(response) if signals.pace is not None else None
    assert got == pause


def test_resets() -> None:
    date = formatdate(1_800_000_000, usegmt=True)
    response = _response(200, {"X-Rate-Limit-Reset": "1800000042", "Date": date})
    assert epoch_reset_in(response, "x-rate-limit-reset", 1_799_999_000.0) == 42.0  # skewed
    assert epoch_reset_in(_response(200), "x-rate-limit-reset", 0.0) is None
    assert seconds_reset_in(_response(200, {"X-RateLimit-Reset": "30"}), "x-ratelimit-reset") == 30
    assert seconds_reset_in(_response(200, {"X-RateLimit-Reset": "x"}), "x-ratelimit-reset") is None


# -- the client ----------------------------------------------------------------------------------


def test_a_pacing_service_spreads_requests_and_stops_when_the_budget_is_back() -> None:
    clock = FakeClock()
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "20"}
    http = _http(lambda r: httpx.Response(200, headers=headers), clock, ONELOGIN)
    for _ in range(3):
        http.send("GET", "/x")
    headers["X-RateLimit-Remaining"] = "99"
    for _ in range(3):
        http.send("GET", "/x")
    assert clock.slept == [4.0, 4.0, 4.0]


def test_429_honours_retry_after_then_succeeds_and_counts_every_request() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(200, json={"value": []})

    clock = FakeClock()
    with _http(handler, clock) as http:
        assert http.get_json("/v1/users") == {"value": []}
        assert http.requests == 3 and http.stats.retries == 2
        assert http.stats.by_status == {429: 2, 200: 1}
    assert clock.slept == [2.0, 2.0]


def test_bounded_retries_name_the_request_never_its_query() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": "serviceNotAvailable", "message": "x"}})

    clock = FakeClock()
    with _http(handler, clock) as http, pytest.raises(_Err) as info:
        http.get_json("/v1/users", params={"token": "SECRET"})
    err = info.value
    assert isinstance(err, DirectoryError) and err.exit_code == 3
    assert err.status == 503 and err.code == "serviceNotAvailable"
    assert "GET /v1/users" in str(err) and "SECRET" not in str(err)
    assert "gave up after 4 attempts" in str(err)
    assert clock.slept == [0.5, 1.0, 2.0]
    assert request_name("get", "https://g/v1.0/users?$skiptoken=SECRET") == "GET /v1.0/users"


def test_a_permanent_error_is_translated_at_once() -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        return httpx.Response(400, json={"error": "invalid_request", "error_description": "bad\nx"})

    with pytest.raises(_Err) as info:
        _http(handler, FakeClock()).request("GET", "/x")
    assert len(seen) == 1 and info.value.code == "invalid_request"
    assert str(info.value) == "Test API GET /x failed: 400 invalid_request: bad"


def test_transport_errors_retried_then_translated() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    clock = FakeClock()
    with pytest.raises(_Err) as info:
        _http(handler, clock).request("GET", "/x")
    assert "ConnectError: refused" in str(info.value) and info.value.status is None
    assert len(clock.slept) == 3
    assert "gave up after 4 attempts" in str(info.value)


def _stopped_while_waiting(status: int, headers: dict[str, str]) -> list[str]:
    """The paths a client sent before a stop request made while it waited to retry."""
    calls: list[str] = []
    request = StopRequest()

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.path)
        return httpx.Response(status, headers=headers)

    def wait(seconds: float) -> None:
        request.request("SIGTERM")

    http = CloudHttp(
        "Test API",
        translate=describing(_Err, json_error_detail),
        base_url="https://api.test",
        transport=httpx.MockTransport(handler),
        policy=RetryPolicy(sleep=wait),
    )
    with active(request), pytest.raises(Interrupted, match="before GET /users"):
        http.request("GET", "/users")
    return calls


def test_a_stop_request_ends_the_retries_and_the_shared_pause() -> None:
    """Stopped while waiting to retry, or while the shared pause of a 429 holds every request:
    no further attempt (``bwsync.stop``); by default the policy's wait is the stop request's,
    which the request cuts short."""
    assert _stopped_while_waiting(503, {}) == ["/users"]
    assert _stopped_while_waiting(429, {"Retry-After": "30"}) == ["/users"]
    assert RetryPolicy().sleep is stop.sleep


def test_a_long_retry_after_is_honoured_in_full_within_the_budget_and_refused_beyond() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "200"}), httpx.Response(200, json={})]
    clock = FakeClock()
    _http(lambda r: answers.pop(0), clock).request("GET", "/x")
    assert clock.slept == [200.0]
    far = _http(lambda r: httpx.Response(429, headers={"Retry-After": "1000"}), clock)
    with pytest.raises(_Err, match="would exceed 300s of retries"):
        far.request("GET", "/x")


def test_json_error_detail_shapes() -> None:
    code, msg = json_error_detail(httpx.Response(400, text="<html>" + "x" * 1000))
    assert code is None and len(msg) <= 256
    r = httpx.Response(401, json={"errorCode": "E0000011", "errorSummary": "Invalid token"})
    assert json_error_detail(r) == ("E0000011", "Invalid token")


def test_a_body_that_is_not_a_json_object_is_an_error() -> None:
    clock = FakeClock()
    with pytest.raises(_Err, match="GET /x failed: response is not JSON"):
        _http(lambda r: httpx.Response(200, text="<html>"), clock).get_json("/x")
    with pytest.raises(_Err, match="response is not a JSON object"):
        _http(lambda r: httpx.Response(200, json=[1]), clock).get_json("/x")


def test_an_unloadable_ca_file_is_a_settings_error_naming_the_setting(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate")
    expected = r"BWSYNC_ENTRA__CA_FILE: .*ca\.pem holds no usable PEM"
    with pytest.raises(ConfigError, match=expected) as info:
        CloudHttp(
            "x",
            translate=describing(_Err, json_error_detail),
            ca_file=not_pem,
            ca_setting="BWSYNC_ENTRA__CA_FILE",
        )
    assert info.value.exit_code == 2


def test_next_links_stay_on_the_configured_host() -> None:
    assert same_origin_next("https://proxy:8443", "https://org.okta.com/api/v1/users?after=x") == (
        "https://proxy:8443/api/v1/users?after=x"
    )


# -- a 429 in the middle of concurrent reads -----------------------------------------------------


class MemberServer:
    """Members of ``groups`` groups at /groups/{n}/members. The first read of group 0 gets a
    429 with ``Retry-After: 5`` once all of the first ``width`` reads are in flight, so that
    which requests were sent before the client knew of the window is certain. Every request is
    recorded as (sequence number, fake time, path, status)."""

    def __init__(self, clock: FakeClock, groups: int, width: int) -> None:
        self.clock = clock
        self.width = width
        self.log: list[tuple[int, float, str, int]] = []
        self.lock = threading.Lock()
        self.first = threading.Barrier(width, timeout=10)
        self.throttled_at: int | None = None
        self.http: CloudHttp | None = None
        self.groups = groups

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            seq = len(self.log)
            self.log.append((seq, self.clock(), request.url.path, 0))
        if seq < self.width:
            self.first.wait()  # the first `width` reads are all in flight together
        group = int(request.url.path.split("/")[2])
        if group == 0 and self.throttled_at is None:
            with self.lock:
                self.throttled_at = len(self.log)
            return httpx.Response(429, headers={"Retry-After": "5"})
        if seq < self.width:
            # In flight when the 429 came: answered once the client has closed its gate.
            assert self.http is not None
            gate = self.http.gate
            for _ in range(10_000):
                if self.throttled_at is not None and (not gate.open or gate.pauses):
                    break
                threading.Event().wait(0.001)
        return httpx.Response(200, json={"value": [{"id": f"u{group}-{n}"} for n in range(3)]})


def test_a_429_amid_concurrent_reads_is_waited_out_once_and_nothing_is_sent_inside_it() -> None:
    clock = FakeClock()
    server = MemberServer(clock, groups=20, width=8)
    limiter = Limiter(8)
    with Fanout(8) as fan:
        http = _http(server, clock, GRAPH, limiter=limiter, fanout=fan)
        server.http = http
        start = clock()
        results = fan.map(
            lambda n: [m["id"] for m in http.get_json(f"/groups/{n}/members")["value"]],
            range(20),
        )
    # The same directory as a sequential read, in the order asked.
    assert results == [[f"u{n}-{k}" for k in range(3)] for n in range(20)]
    # One pause, however many workers waited for it.
    assert clock.slept == [5.0]
    assert http.gate.pauses == 1
    # Nothing was sent inside the window once the client knew of it.
    assert server.throttled_at is not None
    after = [(t, path) for seq, t, path, _ in server.log if seq >= server.throttled_at]
    assert after and all(t >= start + 5.0 for t, _ in after)
    # 20 reads and one retry: the paging minimum plus the retry.
    assert http.requests == 21 and http.stats.retries == 1
    assert limiter.peak <= 8
