"""BitwardenClient against httpx.MockTransport: a handler routing on method and path.

Covers the token flow (form, caching, renewal, one refresh on 401), the retry predicate,
Retry-After, the time cap, error translation, and that the client secret never shows."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import orjson
import pytest

from bwsync import stop
from bwsync.bitwarden import (
    DEVICE_TYPE,
    BitwardenClient,
    TokenCache,
    backoff_delay,
    should_retry,
    tls_verify,
)
from bwsync.config import BitwardenSettings
from bwsync.errors import (
    BitwardenAuthError,
    BitwardenClientError,
    BitwardenError,
    BitwardenServerError,
    ConfigError,
    Interrupted,
)
from bwsync.model import CollectionGrant, OrgGroup, OrgMember
from bwsync.stop import StopRequest, active
from tests.fixtures.clock import FakeClock
from tests.standins.tls import self_signed_tls

SECRET = "s3cr3t-Th1s-Must-Never-Show"
ORG = "2f1e6d5c-4b3a-4c2d-9e8f-7a6b5c4d3e2f"
API = "https://bw.example.test/api"
IDENTITY = "https://bw.example.test/identity/connect/token"

Handler = Callable[[httpx.Request], httpx.Response]


class Router:
    """Routes (method, path) to handlers; records every request; serves tokens by default."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Handler]] = {}
        self.requests: list[httpx.Request] = []
        self.tokens = 0
        self.token_lifetime = 3600
        self.valid: set[str] = set()

    def on(self, method: str, path: str, *responses: Handler | httpx.Response) -> None:
        """Answer with these, in order; the last one repeats."""
        handlers = [r if callable(r) else (lambda _req, r=r: r) for r in responses]
        self.routes[(method, path)] = handlers

    def token(self, _request: httpx.Request) -> httpx.Response:
        self.tokens += 1
        value = f"token-{self.tokens}"
        self.valid = {value}
        return httpx.Response(
            200,
            json={
                "access_token": value,
                "expires_in": self.token_lifetime,
                "token_type": "Bearer",
                "scope": "api.organization",
            },
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.path)
        handlers = self.routes.get(key)
        if handlers:
            handler = handlers.pop(0) if len(handlers) > 1 else handlers[0]
            return handler(request)
        if key == ("POST", "/identity/connect/token"):
            return self.token(request)
        return httpx.Response(404)

    def to(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def settings(**kw: Any) -> BitwardenSettings:
    values: dict[str, Any] = {
        "server": "https://bw.example.test",
        "client_id": f"organization.{ORG}",
        "client_secret": SECRET,
        "max_retries": 3,
    }
    values.update(kw)
    return BitwardenSettings(**values)


class Env:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.clock = FakeClock(1000.0)
        self.slept = self.clock.slept
        self.requests: list[tuple[str, int]] = []
        self.retries: list[str] = []

    @property
    def now(self) -> float:
        return self.clock.now

    @now.setter
    def now(self, value: float) -> None:
        self.clock.now = value

    def client(self, **kw: Any) -> BitwardenClient:
        return BitwardenClient(
            settings(**kw),
            transport=httpx.MockTransport(self.router),
            sleep=self.clock.sleep,
            on_request=lambda e, s: self.requests.append((e, s)),
            on_retry=self.retries.append,
            clock=self.clock,
            jitter=lambda: 0.0,
        )


@pytest.fixture
def router() -> Router:
    return Router()


@pytest.fixture
def env(router: Router) -> Env:
    return Env(router)


@pytest.fixture
def client(env: Env) -> Iterator[BitwardenClient]:
    with env.client() as c:
        yield c


def members_json(*items: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        200, json={"object": "list", "data": list(items), "continuationToken": None}
    )


def authed(router: Router, ok: httpx.Response) -> Handler:
    """A handler that answers 401 unless the bearer token is the current one."""

    def handle(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        return ok if token in router.valid else httpx.Response(401)

    return handle


def no_secret(*things: object) -> None:
    for thing in things:
        assert SECRET not in str(thing)
        assert SECRET not in repr(thing)


# --------------------------------------------------------------------------------------------
# token


def test_token_request_form_and_headers(client: BitwardenClient, router: Router) -> None:
    client.check_token()
    (req,) = router.requests
    assert str(req.url) == IDENTITY
    assert req.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = parse_qsl(req.content.decode())
    assert [k for k, _ in form] == [
        "scope",
        "client_id",
        "deviceType",
        "deviceIdentifier",
        "deviceName",
        "grant_type",
        "client_secret",
    ]
    values = dict(form)
    assert values["scope"] == "api.organization"
    assert values["client_id"] == f"organization.{ORG}"
    assert values["deviceType"] == str(DEVICE_TYPE) == "8"
    assert values["deviceName"] == "linux"
    assert values["deviceIdentifier"] == settings().device_identifier
    assert values["grant_type"] == "client_credentials"
    assert values["client_secret"] == SECRET
    assert req.headers["Device-Type"] == "8"
    assert req.headers["Bitwarden-Client-Name"] == "bwsync"
    assert req.headers["User-Agent"].startswith("bwsync/")
    assert req.headers["Accept"] == "application/json"
    assert req.extensions["timeout"]["read"] == settings().timeout


def test_api_requests_carry_client_headers_and_timeout(env: Env, router: Router) -> None:
    router.on("GET", "/api/public/groups", members_json())
    with env.client(timeout=7.5) as c:
        c.list_groups()
    for req in router.requests:
        assert req.headers["Device-Type"] == "8"
        assert req.headers["Bitwarden-Client-Name"] == "bwsync"
        assert req.headers["Bitwarden-Client-Version"]
        assert req.extensions["timeout"] == {"connect": 7.5, "read": 7.5, "write": 7.5, "pool": 7.5}


def test_token_is_cached_and_sent_as_bearer(client: BitwardenClient, router: Router) -> None:
    router.on("GET", "/api/public/members", authed(router, members_json()))
    client.check_token()
    for _ in range(3):
        assert client.list_members() == []
    assert router.tokens == 1
    assert all(
        r.headers["Authorization"] == "Bearer token-1" for r in router.to("/api/public/members")
    )


@pytest.mark.parametrize(("lifetime", "renew_after"), [(3600, 3300), (60, 54)])
def test_token_renewed_before_it_expires(
    env: Env, router: Router, lifetime: int, renew_after: int
) -> None:
    router.token_lifetime = lifetime
    router.on("GET", "/api/public/groups", authed(router, members_json()))
    with env.client() as c:
        c.list_groups()
        env.now += renew_after - 1
        c.list_groups()
        assert router.tokens == 1
        env.now += 2
        c.list_groups()
        assert router.tokens == 2
    assert all(s == 200 for _, s in env.requests)


def test_401_fetches_a_new_token_once_and_repeats(
    env: Env, client: BitwardenClient, router: Router
) -> None:
    router.on("GET", "/api/public/groups", authed(router, members_json()))
    client.list_groups()
    router.valid = set()  # the server forgot the token (expired, rotated key …)
    assert client.list_groups() == []
    assert router.tokens == 2
    assert [s for e, s in env.requests if e == "list_groups"] == [200, 401, 200]
    assert env.retries == []  # a refresh is not a retry


def test_second_401_is_an_auth_error(client: BitwardenClient, router: Router) -> None:
    router.on("GET", "/api/public/groups", httpx.Response(401))
    with pytest.raises(BitwardenAuthError) as info:
        client.list_groups()
    assert info.value.status == 401
    assert router.tokens == 2
    assert len(router.to("/api/public/groups")) == 2


def test_403_is_an_auth_error_not_retried(client: BitwardenClient, router: Router) -> None:
    router.on("POST", "/api/public/organization/import", httpx.Response(403))
    with pytest.raises(BitwardenAuthError):
        client.import_organization(b"{}")
    assert len(router.to("/api/public/organization/import")) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": "invalid_client"}, "invalid_client"),
        ({"error": "invalid_scope", "error_description": "bad scope"}, "invalid_scope: bad scope"),
        (
            {
                "message": "Incorrect client_secret",
                "error": "",
                "error_description": "",
                "validationErrors": {"": ["Incorrect client_secret"]},
                "errorModel": {"message": "Incorrect client_secret", "object": "error"},
                "object": "error",
            },
            "Incorrect client_secret",
        ),
    ],
)
def test_token_4xx_is_auth_error_with_the_server_words(
    env: Env, router: Router, body: dict[str, Any], expected: str
) -> None:
    router.on("POST", "/identity/connect/token", httpx.Response(400, json=body))
    with env.client() as c, pytest.raises(BitwardenAuthError) as info:
        c.check_token()
    err = info.value
    assert expected in str(err)
    assert IDENTITY in str(err)
    assert err.status == 400
    assert err.url == IDENTITY
    assert err.errors == {}
    assert len(router.requests) == 1  # never retried
    no_secret(err, err.args, err.message, err.__cause__, c)


def test_token_failure_during_an_api_call_is_an_auth_error(
    client: BitwardenClient, router: Router
) -> None:
    router.on(
        "POST", "/identity/connect/token", httpx.Response(400, json={"error": "invalid_client"})
    )
    with pytest.raises(BitwardenAuthError, match="invalid_client") as info:
        client.import_organization(b"{}")
    assert router.to("/api/public/organization/import") == []
    no_secret(info.value)


def test_token_echoing_the_secret_is_cut_out_of_messages(
    client: BitwardenClient, router: Router
) -> None:
    """A server that echoes the form in an unstructured body must not leak the secret far:
    bodies are cut to 256 characters, the secret is beyond that."""
    page = "<html>" + "x" * 400 + f"client_secret={SECRET}</html>"
    router.on("POST", "/identity/connect/token", httpx.Response(400, text=page))
    with pytest.raises(BitwardenAuthError) as info:
        client.check_token()
    no_secret(info.value)


def test_token_429_is_retried(env: Env, client: BitwardenClient, router: Router) -> None:
    router.on(
        "POST",
        "/identity/connect/token",
        httpx.Response(429, headers={"Retry-After": "5"}),
        router.token,
    )
    router.on("GET", "/api/public/members", members_json())
    assert client.list_members() == []
    assert env.slept == [5.0]
    assert env.retries == ["token"]


def test_token_429_without_retry_after_waits_out_the_login_rate_limit(
    env: Env, router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """Vaultwarden's login limiter: 429, no Retry-After, one login a minute. bwsync keeps
    asking with backoff past max_retries (3 here), up to login_rate_limit_wait in all."""
    limited = httpx.Response(429, json={"message": "Too many login requests"})
    router.on("POST", "/identity/connect/token", *([limited] * 7), router.token)
    caplog.set_level("WARNING", logger="bwsync")
    with env.client(login_rate_limit_wait=90) as c:
        c.check_token()
    assert env.slept == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]  # 61.5 s: one 60 s refill
    assert env.retries == ["token"] * 7
    waits = [r for r in caplog.records if r.getMessage() == "login_rate_limited"]
    assert len(waits) == 7
    assert "waiting for the server's login rate limit" in waits[0].bwsync_fields["note"]


def test_login_rate_limit_wait_is_bounded(env: Env, router: Router) -> None:
    router.on("POST", "/identity/connect/token", httpx.Response(429, text="Too many"))
    with env.client(login_rate_limit_wait=90) as c, pytest.raises(BitwardenServerError) as info:
        c.check_token()
    assert sum(env.slept) == 90  # the last wait is cut to what is left
    assert env.slept[-1] == 90 - 61.5
    assert "gave up after waiting 90s for the server's login rate limit" in str(info.value)
    assert "BWSYNC_BITWARDEN__LOGIN_RATE_LIMIT_WAIT=90" in str(info.value)
    assert info.value.status == 429


def test_token_404_says_there_is_no_identity_endpoint(env: Env, router: Router) -> None:
    catcher = {"error": {"code": 404, "reason": "Not Found", "description": "..."}}
    router.on("POST", "/vault/identity/connect/token", httpx.Response(404, json=catcher))
    with (
        env.client(server="https://bw.example.test/vault") as c,
        pytest.raises(BitwardenClientError) as info,
    ):
        c.check_token()
    text = str(info.value)
    assert text.startswith(
        "Bitwarden token failed: there is no identity endpoint at "
        "https://bw.example.test/vault/identity/connect/token (HTTP 404): check "
        "BWSYNC_BITWARDEN__SERVER=https://bw.example.test/vault"
    )
    assert "refused the organization API key" not in text
    assert len(router.requests) == 1
    with (
        env.client(identity_url="https://id.example.test/x") as c,
        pytest.raises(BitwardenClientError) as info,
    ):
        c.check_token()
    assert "check BWSYNC_BITWARDEN__IDENTITY_URL=https://id.example.test/x" in str(info.value)


def test_token_cache_carries_the_token_to_the_next_client(env: Env, router: Router) -> None:
    """``sync --every``: one token for every pass until it is about to expire."""
    tokens = TokenCache()
    router.token_lifetime = 3600
    router.on("GET", "/api/public/groups", authed(router, members_json()))
    for _ in range(3):
        with BitwardenClient(
            settings(),
            transport=httpx.MockTransport(router),
            clock=env.clock,
            tokens=tokens,
        ) as c:
            c.list_groups()
        env.now += 1000
    assert router.tokens == 1  # 3000 s < 3600 - 300
    env.now += 300
    with BitwardenClient(
        settings(), transport=httpx.MockTransport(router), clock=env.clock, tokens=tokens
    ) as c:
        c.list_groups()
    assert router.tokens == 2
    assert "token-" not in repr(tokens)


def test_token_200_without_a_token_is_refused(client: BitwardenClient, router: Router) -> None:
    router.on("POST", "/identity/connect/token", httpx.Response(200, json={"nope": 1}))
    with pytest.raises(BitwardenError):
        client.check_token()


def test_missing_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="CLIENT_SECRET"):
        BitwardenClient(settings(client_secret=None))


def test_repr_has_no_secret(client: BitwardenClient) -> None:
    no_secret(client, client.auth, vars(client))


# --------------------------------------------------------------------------------------------
# retries


def test_retry_predicate() -> None:
    assert should_retry(429)
    assert should_retry(500)
    assert should_retry(503)
    for status in (200, 301, 400, 401, 403, 404, 409, 415, 422):
        assert not should_retry(status)
    req = httpx.Request("GET", "https://x")
    assert should_retry(None, httpx.ConnectError("refused", request=req))
    assert should_retry(None, httpx.ReadTimeout("slow", request=req))
    assert should_retry(None, httpx.RemoteProtocolError("dropped", request=req))
    assert not should_retry(
        None, httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]", request=req)
    )
    assert not should_retry(None, httpx.DecodingError("bad gzip", request=req))


def test_backoff_is_exponential_capped_and_jittered() -> None:
    assert [backoff_delay(n, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(1, 0.999) < 1.0
    assert backoff_delay(30, 0.0) == 30.0


def test_429_waits_retry_after(env: Env, client: BitwardenClient, router: Router) -> None:
    router.on(
        "POST",
        "/api/public/organization/import",
        httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "Slow down!"}),
        httpx.Response(200),
    )
    client.import_organization(b"{}")
    assert env.slept == [7.0]
    assert env.retries == ["import"]
    assert [s for e, s in env.requests if e == "import"] == [429, 200]


def test_429_retry_after_as_http_date(env: Env, client: BitwardenClient, router: Router) -> None:
    import time

    router.on(
        "GET",
        "/api/public/groups",
        httpx.Response(429, headers={"Retry-After": formatdate(time.time() + 30, usegmt=True)}),
        members_json(),
    )
    client.list_groups()
    assert 28 <= env.slept[0] <= 31


def test_429_without_retry_after_backs_off(
    env: Env, client: BitwardenClient, router: Router
) -> None:
    router.on(
        "GET",
        "/api/public/groups",
        httpx.Response(429),
        httpx.Response(429),
        members_json(),
    )
    client.list_groups()
    assert env.slept == [0.5, 1.0]


def test_5xx_exhausting_retries(env: Env, client: BitwardenClient, router: Router) -> None:
    router.on(
        "POST",
        "/api/public/organization/import",
        httpx.Response(
            503,
            json={
                "object": "error",
                "message": "An unhandled server error has occurred.",
                "errors": None,
            },
        ),
    )
    with pytest.raises(BitwardenServerError) as info:
        client.import_organization(b"{}", step="import 2/3")
    err = info.value
    assert err.status == 503
    assert err.step == "import 2/3"
    assert err.url == API + "/public/organization/import"
    assert err.message == "An unhandled server error has occurred."
    assert "import 2/3" in str(err)
    assert "HTTP 503" in str(err)
    assert "after 4 attempts" in str(err)
    assert len(router.to("/api/public/organization/import")) == 4  # 1 + max_retries
    assert env.slept == [0.5, 1.0, 2.0]
    assert env.retries == ["import"] * 3


def test_a_stop_request_ends_the_retries(env: Env, router: Router) -> None:
    """Stopped during a backoff wait: the wait is cut short and no further attempt is made
    (``bwsync.stop``); the default ``sleep`` is the stop request's."""
    request = StopRequest()
    router.on("POST", "/api/public/organization/import", httpx.Response(503))

    def backoff(seconds: float) -> None:
        env.slept.append(seconds)
        request.request("SIGTERM")  # the pod is being stopped while bwsync waits

    with (
        BitwardenClient(settings(), transport=httpx.MockTransport(router), sleep=backoff) as c,
        active(request),
        pytest.raises(Interrupted, match="stopped by SIGTERM before import 2/3"),
    ):
        c.import_organization(b"{}", step="import 2/3")
    assert len(router.to("/api/public/organization/import")) == 1
    assert len(env.slept) == 1


def test_the_default_retry_wait_is_the_stop_requests(
    router: Router, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(stop, "sleep", waits.append)
    router.on(
        "GET", "/api/public/groups", httpx.Response(503), httpx.Response(200, json={"data": []})
    )
    with BitwardenClient(settings(), transport=httpx.MockTransport(router)) as c:
        assert c.list_groups() == []
    assert len(waits) == 1


def test_no_attempt_starts_once_a_stop_is_requested(router: Router) -> None:
    request = StopRequest()
    request.request("SIGINT")
    with (
        BitwardenClient(settings(), transport=httpx.MockTransport(router)) as c,
        active(request),
        pytest.raises(Interrupted),
    ):
        c.check_token()
    assert router.requests == []


def test_no_retries_when_max_retries_is_zero(env: Env, router: Router) -> None:
    router.on("GET", "/api/public/groups", httpx.Response(500))
    with env.client(max_retries=0) as c, pytest.raises(BitwardenServerError):
        c.list_groups()
    assert len(router.to("/api/public/groups")) == 1
    assert env.slept == []


def test_total_wait_is_capped(env: Env, router: Router) -> None:
    router.on("GET", "/api/public/groups", httpx.Response(429, headers={"Retry-After": "1000"}))
    with env.client() as c, pytest.raises(BitwardenServerError, match="gave up") as info:
        c.list_groups()
    assert env.slept == []
    assert info.value.status == 429


def test_400_not_retried_and_field_errors_surfaced(
    env: Env, client: BitwardenClient, router: Router
) -> None:
    router.on(
        "POST",
        "/api/public/organization/import",
        httpx.Response(
            400,
            json={
                "object": "error",
                "message": "The request's model state is invalid.",
                "errors": {"Members[0].Email": ["The Email field is not a valid e-mail address."]},
            },
        ),
    )
    with pytest.raises(BitwardenClientError) as info:
        client.import_organization(b"{}")
    err = info.value
    assert err.status == 400
    assert err.message == "The request's model state is invalid."
    assert err.errors == {"Members[0].Email": ["The Email field is not a valid e-mail address."]}
    assert "Members[0].Email: The Email field is not a valid e-mail address." in str(err)
    assert len(router.to("/api/public/organization/import")) == 1
    assert env.slept == []


@pytest.mark.parametrize(
    "payload",
    [
        {"Message": "Seat limit has been reached.", "ValidationErrors": {"Seats": ["full"]}},
        {"message": "Seat limit has been reached.", "validationErrors": {"Seats": "full"}},
    ],
)
def test_internal_error_shape_any_casing(
    client: BitwardenClient, router: Router, payload: dict[str, Any]
) -> None:
    router.on("POST", "/api/public/organization/import", httpx.Response(400, json=payload))
    with pytest.raises(BitwardenClientError) as info:
        client.import_organization(b"{}")
    assert info.value.message == "Seat limit has been reached."
    assert info.value.errors == {"Seats": ["full"]}


def test_a_long_server_message_is_shown_once_and_whole(
    client: BitwardenClient, router: Router
) -> None:
    """Vaultwarden repeats its message under validationErrors[""]; messages over 256
    characters used to be shown twice (``…; (body): …``), and cut."""
    text = f"User email {'a' * 244}@example.com is not a valid email address"
    body = {
        "message": text,
        "validationErrors": {"": [text]},
        "errorModel": {"message": text, "object": "error"},
        "object": "error",
    }
    router.on("POST", "/api/public/organization/import", httpx.Response(400, json=body))
    with pytest.raises(BitwardenClientError) as info:
        client.import_organization(b"{}")
    assert str(info.value).count(text) == 1
    assert "(body)" not in str(info.value)
    assert info.value.errors == {}


def test_unstructured_bodies_are_shortened(client: BitwardenClient, router: Router) -> None:
    router.on(
        "POST", "/api/public/organization/import", httpx.Response(413, text="<html>" + "y" * 5000)
    )
    with pytest.raises(BitwardenClientError) as info:
        client.import_organization(b"{}")
    assert info.value.message is not None
    assert len(info.value.message) <= 256
    assert len(str(info.value)) < 500


def test_redirect_is_not_followed_and_explained(client: BitwardenClient, router: Router) -> None:
    router.on(
        "POST",
        "/api/public/organization/import",
        httpx.Response(301, headers={"Location": "https://elsewhere/api"}),
    )
    with pytest.raises(BitwardenClientError, match="redirected to https://elsewhere/api"):
        client.import_organization(b"{}")


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("dropped"),
    ],
)
def test_transport_errors_retried_then_translated(
    env: Env, router: Router, exc: httpx.HTTPError
) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise type(exc)(str(exc), request=request)

    router.on("GET", "/api/public/members", boom)
    with env.client() as c, pytest.raises(BitwardenServerError) as info:
        c.list_members()
    assert info.value.status is None
    assert info.value.url == API + "/public/members"
    assert isinstance(info.value.__cause__, type(exc))  # chained, as STYLE asks
    assert len(router.to("/api/public/members")) == 4
    assert ("list_members", 0) in env.requests
    assert type(exc).__name__ in str(info.value)


def test_transport_error_then_success(env: Env, client: BitwardenClient, router: Router) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    router.on("GET", "/api/public/members", boom, members_json())
    assert client.list_members() == []
    assert env.slept == [0.5]


def test_token_transport_error_is_named_as_token(
    env: Env, client: BitwardenClient, router: Router
) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    router.on("POST", "/identity/connect/token", boom)
    with pytest.raises(BitwardenServerError, match="identity/connect/token") as info:
        client.list_members()
    assert info.value.step == "token"
    assert ("token", 0) in env.requests
    assert env.retries == ["token"] * 3


def test_certificate_failure_not_retried(env: Env, client: BitwardenClient, router: Router) -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(
            "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", request=request
        )

    router.on("POST", "/identity/connect/token", boom)
    with pytest.raises(BitwardenServerError, match="CERTIFICATE_VERIFY_FAILED"):
        client.check_token()
    assert env.slept == []


# --------------------------------------------------------------------------------------------
# operations


def test_import_sends_the_exact_bytes(client: BitwardenClient, router: Router) -> None:
    body = orjson.dumps(
        {"groups": [], "members": [], "overwriteExisting": False, "largeImport": False}
    )
    router.on("POST", "/api/public/organization/import", httpx.Response(200))
    client.import_organization(body)
    (req,) = router.to("/api/public/organization/import")
    assert req.content == body
    assert req.headers["Content-Type"] == "application/json; charset=utf-8"
    assert req.headers["Authorization"] == "Bearer token-1"
    assert str(req.url) == API + "/public/organization/import"


def test_list_members_and_groups_parse(client: BitwardenClient, router: Router) -> None:
    router.on(
        "GET",
        "/api/public/members",
        members_json(
            {
                "object": "member",
                "id": "m1",
                "email": "a@x.com",
                "externalId": "a",
                "status": 2,
                "type": 2,
                "userId": "u",
                "name": "A",
                "twoFactorEnabled": False,
            },
            {
                "object": "member",
                "id": "m2",
                "email": "b@x.com",
                "externalId": None,
                "status": -1,
                "type": 0,
            },
        ),
    )
    router.on(
        "GET",
        "/api/public/groups",
        members_json(
            {"object": "group", "id": "g1", "name": "Eng", "externalId": "eng", "collections": []},
        ),
    )
    router.on("GET", "/api/public/groups/g1/member-ids", httpx.Response(200, json=["m1"]))
    assert client.list_members() == [
        OrgMember("m1", "a@x.com", "a", 2, 2),
        OrgMember("m2", "b@x.com", None, -1, 0),
    ]
    assert client.list_groups() == [OrgGroup("g1", "Eng", "eng")]
    assert client.group_member_ids("g1") == ["m1"]


def test_list_endpoints_missing_give_none(client: BitwardenClient, router: Router) -> None:
    catcher = {"error": {"code": 404, "reason": "Not Found", "description": "..."}}
    router.on("GET", "/api/public/members", httpx.Response(404, json=catcher))
    router.on("GET", "/api/public/groups", httpx.Response(404, json=catcher))
    assert client.list_members() is None
    assert client.list_groups() is None


@pytest.mark.parametrize(
    "answer",
    [httpx.Response(404), httpx.Response(404, text="<html>Not Found</html>"),
     httpx.Response(404, json={"message": "Resource not found."})],
)  # fmt: skip
def test_a_404_other_than_vaultwarden_s_is_an_error_naming_the_url(
    client: BitwardenClient, router: Router, answer: httpx.Response
) -> None:
    router.on("GET", "/api/public/groups", answer)
    with pytest.raises(BitwardenClientError) as info:
        client.list_groups()
    assert info.value.status == 404
    assert "/api/public/groups" in str(info.value)
    assert "not the JSON 404 Vaultwarden answers" in str(info.value)


def test_group_member_ids_404_is_a_client_error(client: BitwardenClient, router: Router) -> None:
    with pytest.raises(BitwardenClientError) as info:
        client.group_member_ids("nope")
    assert info.value.status == 404


def test_group_member_ids_missing_ok_gives_none(client: BitwardenClient, router: Router) -> None:
    router.on("GET", "/api/public/groups/g1/member-ids", httpx.Response(200, json=["m1", "m2"]))
    assert client.group_member_ids("g1", missing_ok=True) == ["m1", "m2"]
    assert client.group_member_ids("gone", missing_ok=True) is None


def test_empty_a_group(env: Env, client: BitwardenClient, router: Router) -> None:
    router.on("PUT", "/api/public/groups/g/1/member-ids", httpx.Response(200))
    assert client.set_group_member_ids("g/1", []) is True
    (put,) = [r for r in router.requests if r.method == "PUT"]
    assert put.url.raw_path == b"/api/public/groups/g%2F1/member-ids"
    assert put.headers["Content-Type"] == "application/json; charset=utf-8"
    assert orjson.loads(put.content) == {"memberIds": []}
    assert put.headers["Authorization"].startswith("Bearer ")
    assert ("set_group_member_ids", 200) in env.requests


def test_set_group_members_sends_the_ids(client: BitwardenClient, router: Router) -> None:
    router.on("PUT", "/api/public/groups/g1/member-ids", httpx.Response(200))
    assert client.set_group_member_ids("g1", ["m1", "m2"]) is True
    (put,) = [r for r in router.requests if r.method == "PUT"]
    assert orjson.loads(put.content) == {"memberIds": ["m1", "m2"]}


def test_delete_a_group(env: Env, client: BitwardenClient, router: Router) -> None:
    router.on("DELETE", "/api/public/groups/g1", httpx.Response(200))
    assert client.delete_group("g1") is True
    assert [(r.method, r.url.path) for r in router.requests][-1] == (
        "DELETE",
        "/api/public/groups/g1",
    )
    assert ("delete_group", 200) in env.requests


def test_list_groups_reads_each_groups_collection_grants(
    client: BitwardenClient, router: Router
) -> None:
    grants = [
        {"id": "c1", "readOnly": True, "hidePasswords": True, "manage": False},
        {"id": "c2", "readOnly": False, "hidePasswords": False, "manage": True},
        {"readOnly": True},  # no id: not a grant bwsync can name
    ]
    listed = [
        {"object": "group", "id": "g1", "name": "Eng", "externalId": "eng", "collections": grants},
        {"object": "group", "id": "g2", "name": "Ops", "externalId": None, "collections": None},
    ]
    router.on("GET", "/api/public/groups", httpx.Response(200, json={"data": listed}))
    assert client.list_groups() == [
        OrgGroup(
            "g1",
            "Eng",
            "eng",
            (CollectionGrant("c1", True, True, False), CollectionGrant("c2", manage=True)),
        ),
        OrgGroup("g2", "Ops", None),
    ]


def test_relink_a_group_sends_name_and_external_id_without_collections(
    env: Env, client: BitwardenClient, router: Router
) -> None:
    """No ``collections`` key at all: the server then keeps the group's grants."""
    group = {"object": "group", "id": "g1", "name": "Eng", "externalId": "uuid-1"}
    router.on("PUT", "/api/public/groups/g1", httpx.Response(200, json=group))
    assert client.update_group("g1", "Eng", "uuid-1") is True
    (put,) = [r for r in router.requests if r.method == "PUT"]
    assert orjson.loads(put.content) == {"name": "Eng", "externalId": "uuid-1"}
    assert put.headers["Content-Type"] == "application/json; charset=utf-8"
    assert ("update_group", 200) in env.requests
    assert client.update_group("gone", "Eng", "uuid-1") is False  # 404, and its GET 404 too


def test_group_writes_on_a_group_already_gone_say_so(
    client: BitwardenClient, router: Router
) -> None:
    assert client.set_group_member_ids("gone", []) is False
    assert client.delete_group("gone") is False
    # each 404 confirmed by a read of the group, which answers 404 too
    assert [(r.method, r.url.path) for r in router.requests if "token" not in r.url.path] == [
        ("PUT", "/api/public/groups/gone/member-ids"),
        ("GET", "/api/public/groups/gone"),
        ("DELETE", "/api/public/groups/gone"),
        ("GET", "/api/public/groups/gone"),
    ]


def test_a_404_to_a_group_write_while_the_group_is_there_is_an_error(
    client: BitwardenClient, router: Router
) -> None:
    """An empty 404 may come from a proxy as well as from the server: the group's GET
    answering 200 makes it an error, not "gone"."""
    group = {"object": "group", "id": "g1", "name": "Ops", "externalId": "ops"}
    router.on("GET", "/api/public/groups/g1", httpx.Response(200, json=group))
    with pytest.raises(BitwardenClientError, match="answered 404, but the group is still there"):
        client.set_group_member_ids("g1", [])
    with pytest.raises(BitwardenClientError, match="still there") as info:
        client.delete_group("g1")
    assert info.value.step == "delete group" and info.value.status == 404


def test_group_writes_retry_5xx_and_surface_400(
    env: Env, client: BitwardenClient, router: Router
) -> None:
    router.on("PUT", "/api/public/groups/g1/member-ids", httpx.Response(503), httpx.Response(200))
    assert client.set_group_member_ids("g1", []) is True
    assert env.retries == ["set_group_member_ids"]
    bad = {
        "object": "error",
        "message": "The request's model state is invalid.",
        "errors": {"$.memberIds[0]": ["The JSON value could not be converted to System.Guid."]},
    }
    router.on("DELETE", "/api/public/groups/g2", httpx.Response(400, json=bad))
    with pytest.raises(BitwardenClientError, match="model state is invalid") as info:
        client.delete_group("g2")
    assert info.value.step == "delete group"
    assert info.value.errors == {
        "$.memberIds[0]": ["The JSON value could not be converted to System.Guid."]
    }


def test_unexpected_list_body_is_an_error(client: BitwardenClient, router: Router) -> None:
    router.on("GET", "/api/public/members", httpx.Response(200, text="<html>captive portal</html>"))
    with pytest.raises(BitwardenServerError, match="unexpected answer"):
        client.list_members()


def test_revoke_and_restore_urls(client: BitwardenClient, router: Router) -> None:
    router.on("POST", "/api/public/members/m/1/revoke", httpx.Response(200))
    router.on("POST", "/api/public/members/m2/restore", httpx.Response(200))
    client.revoke_member("m/1")
    client.restore_member("m2")
    paths = [
        r.url.raw_path
        for r in router.requests
        if r.method == "POST" and b"members" in r.url.raw_path
    ]
    assert paths == [b"/api/public/members/m%2F1/revoke", b"/api/public/members/m2/restore"]


def test_revoke_error_carries_the_server_message(client: BitwardenClient, router: Router) -> None:
    router.on(
        "POST",
        "/api/public/members/m1/revoke",
        httpx.Response(
            400,
            json={"object": "error", "message": "Only owners can revoke other owners.",
                  "errors": None},
        ),
    )  # fmt: skip
    with pytest.raises(BitwardenClientError, match=r"Only owners can revoke other owners\.") as e:
        client.revoke_member("m1")
    assert e.value.step == "revoke member"


def _error(message: str) -> httpx.Response:
    return httpx.Response(400, json={"object": "error", "message": message, "errors": None})


@pytest.mark.parametrize(
    ("action", "path", "answer"),
    [
        ("revoke_member", "/api/public/members/m1/revoke", "Already revoked."),
        ("restore_member", "/api/public/members/m1/restore", "Already active."),
    ],
)
def test_a_member_already_in_the_wanted_state_is_done(
    client: BitwardenClient, router: Router, action: str, path: str, answer: str
) -> None:
    """The server's 400 for a member revoked (restored) already: the retry of a request that
    took effect but whose answer was lost (a timeout, a cut connection), or a change made by
    hand since the plan. Either way the member is as the plan wants: done, not a failure."""
    router.on("POST", path, httpx.Response(503), _error(answer))
    assert getattr(client, action)("m1") is False
    router.on("POST", path, _error(answer))
    assert getattr(client, action)("m1") is False
    router.on("POST", path, httpx.Response(200))
    assert getattr(client, action)("m1") is True
    # Any other 400 is still a failure, the other action's answer included.
    other = "Already active." if answer == "Already revoked." else "Already revoked."
    router.on("POST", path, _error(other))
    with pytest.raises(BitwardenClientError, match=other):
        getattr(client, action)("m1")


def test_on_request_sees_every_exchange(env: Env, client: BitwardenClient, router: Router) -> None:
    router.on("POST", "/api/public/organization/import", httpx.Response(500), httpx.Response(200))
    client.import_organization(b"{}")
    assert env.requests == [("token", 200), ("import", 500), ("import", 200)]


@pytest.mark.parametrize(
    ("server", "api", "identity"),
    [
        ("us", "https://api.bitwarden.com", "https://identity.bitwarden.com/connect/token"),
        ("eu", "https://api.bitwarden.eu", "https://identity.bitwarden.eu/connect/token"),
        (
            "https://vault.example.org/",
            "https://vault.example.org/api",
            "https://vault.example.org/identity/connect/token",
        ),
    ],
)
def test_url_layouts(server: str, api: str, identity: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.path.endswith("/connect/token"):
            return Router().token(request)
        return members_json()

    with BitwardenClient(settings(server=server), transport=httpx.MockTransport(handler)) as c:
        c.list_groups()
    assert seen == [identity, api + "/public/groups"]


# --------------------------------------------------------------------------------------------
# TLS trust


def _write_ca(path: Path) -> None:
    files = self_signed_tls(path.parent / "ca", common_name="bwsync test CA")
    path.write_bytes(files.ca_file.read_bytes())


def test_explicit_ca_file_is_the_only_trust_anchor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = tmp_path / "ca.pem"
    _write_ca(ca)
    monkeypatch.setenv("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt")
    verify = tls_verify(settings(ca_file=ca))
    assert isinstance(verify, ssl.SSLContext)
    subjects = [dict(x[0] for x in c["subject"]) for c in verify.get_ca_certs()]
    assert subjects == [{"commonName": "bwsync test CA"}]
    assert tls_verify(settings()) is True


def test_unreadable_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    bad = tmp_path / "nope.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="CA_FILE"):
        BitwardenClient(settings(ca_file=bad))


def _echo(status: int, shape: str) -> Handler:
    """A server that echoes the request (secret included) back in its error."""

    def handle(request: httpx.Request) -> httpx.Response:
        echoed = request.content.decode()
        if shape == "json":
            return httpx.Response(
                status, json={"message": f"bad request {echoed}", "errors": {echoed: [echoed]}}
            )
        if shape == "oauth":
            return httpx.Response(
                status, json={"error": "invalid_client", "error_description": echoed}
            )
        return httpx.Response(status, text=f"{echoed}")

    return handle


@pytest.mark.parametrize("status", [200, 400, 401, 429, 500])
@pytest.mark.parametrize("shape", ["json", "oauth", "text"])
def test_secret_never_shows_even_when_echoed(
    env: Env, router: Router, status: int, shape: str
) -> None:
    router.on("POST", "/identity/connect/token", _echo(status, shape))
    with env.client(max_retries=1) as c, pytest.raises(BitwardenError) as info:
        c.list_members()
    err = info.value
    chain: list[object] = [err, err.args, err.message, err.errors, err.url]
    cause = err.__cause__ or err.__context__
    while cause is not None:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    no_secret(*chain)
    assert "***" in str(err) or shape == "text" or status == 200


@pytest.mark.parametrize(
    "item",
    [
        {"email": "a@x.com", "status": 2, "type": 2},  # no id
        {"id": "m1", "email": "a@x.com", "status": "confirmed", "type": 2},  # not an integer
        "m1",
    ],
)
def test_a_member_list_of_the_wrong_shape_is_an_unexpected_answer(
    client: BitwardenClient, router: Router, item: object
) -> None:
    router.on("GET", "/api/public/members", httpx.Response(200, json={"data": [item]}))
    with pytest.raises(BitwardenServerError, match=r"unexpected answer from .*/public/members"):
        client.list_members()


def test_detach_waits_for_a_callback_already_running() -> None:
    """A read left running after its run ended may be inside a callback when the run detaches
    it: detach waits for that call, and no callback runs once it has returned."""
    import threading

    entered, release = threading.Event(), threading.Event()
    seen: list[tuple[str, int]] = []

    def on_request(endpoint: str, code: int) -> None:
        entered.set()
        release.wait(10)
        seen.append((endpoint, code))

    client = BitwardenClient(
        settings(),
        transport=httpx.MockTransport(lambda r: httpx.Response(404)),
        on_request=on_request,
    )
    response = httpx.Response(404, request=httpx.Request("GET", "https://bw.test/public/members"))
    worker = threading.Thread(target=client._record, args=(response,))
    worker.start()
    assert entered.wait(10)
    detaching = threading.Thread(target=client.detach)
    detaching.start()
    detaching.join(0.3)
    assert detaching.is_alive(), "detach returned while a callback was still running"
    release.set()
    worker.join(10)
    detaching.join(10)
    assert len(seen) == 1
    client._record(response)  # after detach: not reported
    assert len(seen) == 1
