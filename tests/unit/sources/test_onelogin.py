"""OneLogin source logic with httpx.MockTransport: email rules, ids, envelope, errors, hosts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from bwsync.config import OneLoginSettings, SyncSettings
from bwsync.errors import ConfigError, OneLoginError
from bwsync.sources.base import FetchRequest
from bwsync.sources.onelogin import (
    OneLoginSource,
    onelogin_email,
    onelogin_reset_in,
)
from tests.fixtures.clock import FakeClock

Handler = Callable[[httpx.Request], httpx.Response]
BASE = "https://api.us.onelogin.com"


def _ok(data: list[dict[str, Any]], next_link: str | None = None) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "status": {"error": False, "code": 200, "type": "success", "message": "Success"},
            "pagination": {"before_cursor": None, "after_cursor": None, "next_link": next_link},
            "data": data,
        },
    )


def _api(routes: dict[str, list[httpx.Response]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/oauth2/v2/token":
            assert request.headers["Authorization"].startswith("Basic ")
            assert request.headers["Content-Type"] == "application/json"
            return httpx.Response(200, json={"access_token": "tok", "expires_in": 36000})
        assert request.headers["Authorization"] == "bearer:tok"
        key = str(request.url).removeprefix(BASE)
        return routes[key].pop(0)

    return handler


def _source(handler: Handler, sync: SyncSettings | None = None, **settings: Any) -> OneLoginSource:
    values: dict[str, Any] = {"client_id": "cid", "client_secret": "s3cret"} | settings
    return OneLoginSource(
        OneLoginSettings(**values),
        sync or SyncSettings(),
        transport=httpx.MockTransport(handler),
        policy=FakeClock().policy(),
    )


def test_email_rules() -> None:
    rule: dict[str, Any] = {"use_prefix_suffix": True, "suffix": "@corp.io"}
    assert onelogin_email({"email": "Ann@X.io"}, **rule) == "ann@x.io"
    assert onelogin_email({"email": "", "username": "Bob@X.io"}, **rule) == "bob@x.io"
    assert onelogin_email({"email": "nope", "username": "cy"}, **rule) == "cy@corp.io"
    assert (
        onelogin_email({"email": "nope", "username": "cy"}, use_prefix_suffix=False, suffix="@c.io")
        is None
    )
    assert onelogin_email({"email": None, "username": ""}, **rule) is None
    # bwdc validates before trimming: a padded email is not "valid", the username is tried.
    assert onelogin_email({"email": " a@x.io ", "username": "a"}, **rule) == "a@corp.io"


def test_reset_is_seconds_to_wait() -> None:
    assert onelogin_reset_in(httpx.Response(429, headers={"X-RateLimit-Reset": "832"}), 0) == 832
    assert onelogin_reset_in(httpx.Response(200), 0) is None


def test_ids_become_strings_and_status_2_is_disabled() -> None:
    users = [
        {"id": 7, "email": "a@x.io", "status": 1, "role_id": [9]},
        {"id": 8, "email": "b@x.io", "status": 2, "role_id": [9, 10]},
        {"id": 11, "email": "c@x.io", "status": 3, "role_id": None},
    ]
    handler = _api(
        {
            "/api/1/users": [_ok(users[:2], f"{BASE}/api/1/users?after_cursor=x")],
            "/api/1/users?after_cursor=x": [_ok(users[2:])],
            "/api/1/roles": [_ok([{"id": 9, "name": "Eng"}, {"id": 10, "name": "HR"}])],
        }
    )
    d = _source(handler).fetch(FetchRequest())
    assert [(u.external_id, u.disabled) for u in d.users or []] == [
        ("7", False),
        ("8", True),
        ("11", False),
    ]
    assert [list(g.user_member_external_ids) for g in d.groups or []] == [["7", "8"], ["8"]]
    assert [g.external_id for g in d.groups or []] == ["9", "10"]


def test_query_part_is_appended_raw() -> None:
    handler = _api(
        {
            "/api/1/users?email=*@x.io&status=1": [_ok([])],
            "/api/1/roles?name=Eng*": [_ok([])],
        }
    )
    sync = SyncSettings(user_filter="|email=*@x.io&status=1", group_filter="|name=Eng*")
    d = _source(handler, sync).fetch(FetchRequest())
    assert d.users == [] and d.groups == []


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (
            httpx.Response(
                401,
                json={
                    "status": {
                        "error": True,
                        "code": 401,
                        "type": "Unauthorized",
                        "message": "Authentication Failure",
                    }
                },
            ),
            r"GET /api/1/users failed: HTTP 401 Unauthorized Authentication Failure",
        ),
        (
            httpx.Response(
                200,
                json={
                    "status": {
                        "error": True,
                        "code": 400,
                        "type": "bad request",
                        "message": "Invalid cursor",
                    }
                },
            ),
            r"GET /api/1/users failed: HTTP 200, status 400 bad request Invalid cursor",
        ),
        (httpx.Response(200, json={"status": {"code": 200}}), r"no `data` list"),
        (httpx.Response(404, text="<html>nope</html>"), r"HTTP 404 <html>nope</html>"),
    ],
)
def test_any_failure_mid_paging_fails_the_run(response: httpx.Response, message: str) -> None:
    handler = _api(
        {
            "/api/1/users": [_ok([{"id": 1, "email": "a@x.io"}], f"{BASE}/api/1/users?p=2")],
            "/api/1/users?p=2": [response, response],
        }
    )
    with pytest.raises(OneLoginError, match=message) as info:
        _source(handler).fetch(FetchRequest())
    assert "s3cret" not in str(info.value) and "bearer:tok" not in str(info.value)
    assert info.value.exit_code == 3


def test_pagination_loop_is_an_error() -> None:
    handler = _api({"/api/1/users": [_ok([], f"{BASE}/api/1/users")] * 2})
    with pytest.raises(OneLoginError, match="loops back"):
        _source(handler).fetch(FetchRequest())


def test_token_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            json={
                "status": {
                    "error": True,
                    "code": 401,
                    "type": "Unauthorized",
                    "message": "Authentication Failure",
                }
            },
        )

    with pytest.raises(OneLoginError, match=r"POST /auth/oauth2/v2/token failed: HTTP 401"):
        _source(handler).fetch(FetchRequest())
    check = _source(handler).check()
    assert not check[0].ok and "region or subdomain" in check[0].detail


def test_hosts() -> None:
    s = OneLoginSettings
    sync = SyncSettings()
    assert OneLoginSource(s(), sync).base_url == "https://api.us.onelogin.com"
    assert OneLoginSource(s(region="eu"), sync).base_url == "https://api.eu.onelogin.com"
    assert OneLoginSource(s(subdomain="Acme.onelogin.com"), sync).base_url == (
        "https://acme.onelogin.com"
    )
    assert OneLoginSource(s(subdomain="acme", api_url="https://p.io/"), sync).base_url == (
        "https://p.io"
    )


def test_settings_validation() -> None:
    for bad in (
        {"api_url": "http://p.io"},
        {"subdomain": "a b"},
        {"use_email_prefix_suffix": True},
    ):
        with pytest.raises(ValidationError):
            OneLoginSettings(**bad)
    with pytest.raises(ConfigError, match="BWSYNC_ONELOGIN__CLIENT_SECRET"):
        OneLoginSource(OneLoginSettings(client_id="x"), SyncSettings()).fetch(FetchRequest())
    assert "s3cret" not in repr(OneLoginSettings(client_secret="s3cret"))


def test_a_source_paces_on_the_clocks_it_is_given() -> None:
    """The seams a source offers (its policy's sleep and clock) reach its HTTP layer: with fake
    ones, three answers short of budget cost three waits of reset/remaining, then none."""
    clock = FakeClock()
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "5", "X-RateLimit-Reset": "20"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/oauth2/v2/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 36000})
        return httpx.Response(200, headers=headers, json={"data": []})

    source = OneLoginSource(
        OneLoginSettings(client_id="c", client_secret="s"),
        SyncSettings(),
        transport=httpx.MockTransport(handler),
        policy=clock.policy(),
        clock=clock,
    )
    http = source._client()
    for _ in range(3):  # 5 of 100 left, 20 s to the reset: 4 s between requests
        http.send("GET", f"{BASE}/x")
    headers["X-RateLimit-Remaining"] = "99"  # the budget is back
    for _ in range(3):
        http.send("GET", f"{BASE}/x")
    assert clock.slept == [4.0, 4.0, 4.0]
