"""cloud_http: the retry predicate, Retry-After, error translation — over httpx.MockTransport."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bwsync import stop
from bwsync.errors import ConfigError, DirectoryError, Interrupted
from bwsync.sources.cloud_http import (
    CloudApiError,
    CloudHttp,
    RetryPolicy,
    json_error_detail,
    request_name,
    retry_after,
    should_retry,
)
from bwsync.stop import StopRequest, active


class _Err(CloudApiError):
    service = "Test API"


def _http(handler: httpx.MockTransport, slept: list[float], **kw: object) -> CloudHttp:
    policy = RetryPolicy(sleep=slept.append, jitter=lambda: 0.0, max_retries=3)
    return CloudHttp(
        "Test API",
        error_class=_Err,
        base_url="https://api.test",
        transport=handler,
        policy=policy,
        **kw,  # type: ignore[arg-type]
    )


def test_should_retry_predicate() -> None:
    assert should_retry(429) and should_retry(503) and should_retry(500)
    assert not should_retry(400) and not should_retry(403) and not should_retry(404)
    assert should_retry(None, httpx.ConnectError("boom"))
    assert not should_retry(None, httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]"))
    assert not should_retry(None, ValueError("x"))


def test_retry_after_seconds_and_date() -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    assert retry_after(httpx.Response(429)) is None
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"})) is None
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert retry_after(httpx.Response(429, headers={"Retry-After": past})) == 0.0


def test_request_name_drops_query() -> None:
    assert request_name("get", "https://g/v1.0/users?$skiptoken=SECRET") == "GET /v1.0/users"


def test_429_honours_retry_after_then_succeeds() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(429, headers={"Retry-After": "2"})
        return httpx.Response(200, json={"value": []})

    slept: list[float] = []
    with _http(httpx.MockTransport(handler), slept) as http:
        assert http.get_json("/v1/users") == {"value": []}
        assert http.requests == 3 and http.stats.retries == 2
    assert slept == [2.0, 2.0]


def test_bounded_retries_name_the_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"error": {"code": "serviceNotAvailable", "message": "x"}})

    slept: list[float] = []
    with _http(httpx.MockTransport(handler), slept) as http, pytest.raises(_Err) as info:
        http.get_json("/v1/users", params={"token": "SECRET"})
    err = info.value
    assert isinstance(err, DirectoryError) and err.exit_code == 3
    assert err.status == 503 and err.code == "serviceNotAvailable"
    assert "GET /v1/users" in str(err) and "SECRET" not in str(err)
    assert "gave up after 4 attempts" in str(err)
    assert slept == [0.5, 1.0, 2.0]  # backoff 1, 2, 4 s with zero jitter (×0.5)


def test_4xx_is_not_retried_and_extra_predicate_is() -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(1)
        if len(seen) == 1:
            return httpx.Response(403, json={"error": {"code": 403, "message": "quota"}})
        return httpx.Response(400, json={"error": "invalid_request", "error_description": "bad\nx"})

    slept: list[float] = []
    http = _http(
        httpx.MockTransport(handler),
        slept,
        retry_on=lambda r: r.status_code == 403,
    )
    with pytest.raises(_Err) as info:
        http.request("GET", "/x")
    assert len(seen) == 2 and info.value.code == "invalid_request"
    assert str(info.value) == "Test API GET /x failed: 400 invalid_request: bad"


def test_transport_errors_retried_then_translated() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    slept: list[float] = []
    with pytest.raises(_Err) as info:
        _http(httpx.MockTransport(handler), slept).request("GET", "/x")
    assert "ConnectError: refused" in str(info.value) and info.value.status is None
    assert len(slept) == 3


def test_a_stop_request_ends_the_retries() -> None:
    """Stopped while waiting to retry: no further attempt (``bwsync.stop``); by default the
    policy's wait is the stop request's, which the request cuts short."""
    calls: list[str] = []
    request = StopRequest()

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.url.path)
        return httpx.Response(503)

    def wait(seconds: float) -> None:
        request.request("SIGTERM")

    http = CloudHttp(
        "Test API", error_class=_Err, base_url="https://api.test",
        transport=httpx.MockTransport(handler), policy=RetryPolicy(sleep=wait),
    )  # fmt: skip
    with active(request), pytest.raises(Interrupted, match="before GET /users"):
        http.request("GET", "/users")
    assert calls == ["/users"]
    assert RetryPolicy().sleep is stop.sleep


def test_total_wait_is_bounded() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "100"})

    slept: list[float] = []
    http = _http(httpx.MockTransport(handler), slept)
    http.policy.max_total = 150
    with pytest.raises(_Err):
        http.request("GET", "/x")
    assert slept == [100.0]


def test_json_error_detail_shapes() -> None:
    r = httpx.Response(400, text="<html>" + "x" * 1000)
    code, msg = json_error_detail(r)
    assert code is None and len(msg) <= 256
    r = httpx.Response(401, json={"errorCode": "E0000011", "errorSummary": "Invalid token"})
    assert json_error_detail(r) == ("E0000011", "Invalid token")


def test_an_unloadable_ca_file_is_a_settings_error_naming_the_setting(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate")
    expected = r"BWSYNC_ENTRA__CA_FILE: .*ca\.pem holds no usable PEM"
    with pytest.raises(ConfigError, match=expected) as info:
        CloudHttp("x", ca_file=not_pem, ca_setting="BWSYNC_ENTRA__CA_FILE")
    assert info.value.exit_code == 2


def test_a_long_retry_after_is_honoured_in_full_within_the_budget() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "200"})
        return httpx.Response(200, json={})

    slept: list[float] = []
    http = _http(httpx.MockTransport(handler), slept)
    http.request("GET", "/x")
    assert slept == [200.0]  # above max_wait (120), below max_total (300)
