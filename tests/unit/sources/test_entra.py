"""Entra source, pure rules and request/response logic over ``httpx.MockTransport`` (the real
msal runs on top of it: tenant discovery and the token request are answered by the handler)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from bwsync.config import EntraSettings, SyncSettings
from bwsync.errors import ConfigError
from bwsync.http.retry import RetryPolicy
from bwsync.settings import load_settings
from bwsync.sources.base import FetchRequest
from bwsync.sources.entra import (
    CLOUDS,
    DELTA_KEY,
    EntraError,
    EntraSource,
    _clauses,
    _skip_reason,
    jwt_claims,
    user_entry,
)
from tests.fixtures.clock import FakeClock

TENANT = "11111111-2222-3333-4444-555555555555"
LOGIN = "https://login.test"
GRAPH = "https://graph.test"


def _jwt(claims: dict[str, object]) -> str:
    def enc(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'none'})}.{enc(claims)}.sig"


Handler = Callable[[httpx.Request], httpx.Response | None]


class Tenant:
    """Answers msal's discovery and token requests; Graph requests go to ``graph``."""

    def __init__(self, graph: Handler) -> None:
        self.graph = graph
        self.tokens = 0
        self.token_status: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/openid-configuration"):
            return httpx.Response(
                200,
                json={
                    "token_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{LOGIN}/{TENANT}/oauth2/v2.0/authorize",
                    "issuer": f"{LOGIN}/{TENANT}/v2.0",
                },
            )
        if path.endswith("/oauth2/v2.0/token"):
            if self.token_status:
                status = self.token_status.pop(0)
                return httpx.Response(status, headers={"Retry-After": "3"}, json={})
            self.tokens += 1
            token = _jwt({"roles": ["User.Read.All"], "n": self.tokens})
            return httpx.Response(
                200, json={"access_token": token, "token_type": "Bearer", "expires_in": 3599}
            )
        response = self.graph(request)
        assert response is not None, f"unexpected {request.method} {request.url}"
        return response


def _source(handler: Tenant, slept: list[float] | None = None, **sync: object) -> EntraSource:
    settings = EntraSettings(
        tenant_id=TENANT,
        client_id="app",
        client_secret="secret",  # type: ignore[arg-type]
        authority_url=LOGIN,
        graph_url=GRAPH,
    )
    clock, waits = FakeClock(), slept if slept is not None else []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds)

    policy = RetryPolicy(sleep=sleep, clock=clock, jitter=lambda: 0.0)
    return EntraSource(
        settings, SyncSettings(**sync), transport=httpx.MockTransport(handler), policy=policy
    )


def _empty_graph(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/v1.0/users/delta":
        return httpx.Response(200, json={"value": [], "@odata.deltaLink": f"{GRAPH}/v1.0/d?t=1"})
    return httpx.Response(200, json={"value": []})


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            {"id": "1", "mail": " A@X.com ", "userPrincipalName": "a@y.com"},
            ("a@x.com", False, False),
        ),
        ({"id": "1", "mail": None, "userPrincipalName": "A@Y.com"}, ("a@y.com", False, False)),
        ({"id": "1", "mail": "", "userPrincipalName": "a@y.com"}, ("a@y.com", False, False)),
        (
            {"id": "1", "mail": "a@t.onmicrosoft.com", "userPrincipalName": "a@y.com"},
            ("a@y.com", False, False),
        ),
        ({"id": "1", "mail": "a@t.onmicrosoft.com"}, ("a@t.onmicrosoft.com", False, False)),
        ({"id": "1", "mail": "a@x.com", "accountEnabled": False}, ("a@x.com", True, False)),
        ({"id": "1", "mail": "a@x.com", "accountEnabled": None}, ("a@x.com", False, False)),
        ({"id": "1", "@removed": {"reason": "changed"}}, (None, False, True)),
        ({"id": "1", "@removed": {"reason": "deleted"}}, (None, False, False)),
    ],
)
def test_user_entry_follows_bwdc(item: dict[str, object], expected: tuple[object, ...]) -> None:
    u = user_entry(item)
    assert (u.email, u.disabled, u.deleted) == expected
    assert u.reference_id == u.external_id == "1"


def test_skip_reasons() -> None:
    assert _skip_reason(user_entry({"id": "1"})) == "no_email"
    assert _skip_reason(user_entry({"id": "1", "userPrincipalName": "x#EXT#@t.com"})) == "guest"
    off = user_entry({"id": "1", "userPrincipalName": "x#EXT#@t.com", "accountEnabled": False})
    assert _skip_reason(off) is None  # disabled entries are kept, as bwdc does


def test_secondary_clauses() -> None:
    assert _clauses(" excludeGroup: A ,b|exclude:X@Y.com|bogus|a:b:c") == [
        ("excludegroup", ["a", "b"]),
        ("exclude", ["x@y.com"]),
    ]


def test_jwt_claims_reads_roles_and_tolerates_garbage() -> None:
    assert jwt_claims(_jwt({"roles": ["A"]})) == {"roles": ["A"]}
    assert jwt_claims("opaque") == {}


def test_clouds_cover_every_setting_value() -> None:
    assert set(CLOUDS) == {"global", "usgov", "china"}
    src = EntraSource(EntraSettings(cloud="usgov"), SyncSettings())
    assert (src.authority, src.graph, src.resource) == (
        "https://login.microsoftonline.us",
        "https://graph.microsoft.us",
        "https://graph.microsoft.us",
    )


def test_next_link_off_the_graph_host_is_refused() -> None:
    def graph(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"value": [], "@odata.nextLink": "https://evil.test/v1.0/users?x=1"}
        )

    with pytest.raises(EntraError, match="outside the Graph host"):
        _source(Tenant(graph), groups=False).fetch(FetchRequest())


def test_401_mints_a_fresh_token_once() -> None:
    seen: list[str] = []

    def graph(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if len(seen) == 1:
            return httpx.Response(401, json={"error": {"code": "InvalidAuthenticationToken"}})
        return _empty_graph(request)

    tenant = Tenant(graph)
    _source(tenant, groups=False).fetch(FetchRequest())
    # A fresh token was minted once and used (the reads that overlap may still carry the old).
    assert tenant.tokens == 2 and len(set(seen)) == 2


def test_token_endpoint_throttling_is_retried() -> None:
    tenant = Tenant(_empty_graph)
    tenant.token_status = [429, 503]
    slept: list[float] = []
    d = _source(tenant, slept, groups=False).fetch(FetchRequest())
    assert d.users == [] and slept == [3.0, 3.0]


def test_delta_link_of_another_host_is_not_followed() -> None:
    calls: list[str] = []

    def graph(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        return _empty_graph(request)

    stale = {DELTA_KEY: "https://graph.microsoft.com/v1.0/users/delta?$deltatoken=x"}
    d = _source(Tenant(graph), groups=False).fetch(FetchRequest(delta=stale))
    assert not any("graph.microsoft.com" in c for c in calls)
    assert d.delta == {DELTA_KEY: f"{GRAPH}/v1.0/d?t=1"}


def test_delta_failure_other_than_refusal_is_an_error() -> None:
    def graph(request: httpx.Request) -> httpx.Response:
        if "deltatoken" in str(request.url):
            return httpx.Response(500, json={"error": {"code": "generalException"}})
        return _empty_graph(request)

    with pytest.raises(EntraError, match="500 generalException"):
        _source(Tenant(graph), groups=False).fetch(
            FetchRequest(delta={DELTA_KEY: f"{GRAPH}/v1.0/users/delta?$deltatoken=x"})
        )


def test_no_users_sync_means_no_delta_and_users_none() -> None:
    d = _source(Tenant(_empty_graph), users=False).fetch(FetchRequest())
    assert d.users is None and d.groups == [] and d.delta == {}


def test_certificate_file_must_hold_key_and_certificate(tmp_path: Path) -> None:
    pem = tmp_path / "only-cert.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n")
    settings = EntraSettings(tenant_id="t", client_id="c", certificate_file=pem)
    with pytest.raises(ConfigError, match=r"CERTIFICATE_FILE: .*only-cert\.pem must hold"):
        EntraSource(settings, SyncSettings()).fetch(FetchRequest())


def test_settings_require_one_credential(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AZURE_FEDERATED_TOKEN_FILE", raising=False)
    monkeypatch.setenv("BWSYNC_SOURCE", "entra")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert [p.split(":")[0] for p in info.value.problems] == [
        "BWSYNC_ENTRA__TENANT_ID",
        "BWSYNC_ENTRA__CLIENT_ID",
        "BWSYNC_ENTRA__CLIENT_SECRET",
    ]
    monkeypatch.setenv("BWSYNC_ENTRA__TENANT_ID", TENANT)
    monkeypatch.setenv("BWSYNC_ENTRA__CLIENT_ID", "app")
    with pytest.raises(ConfigError, match=r"CLIENT_SECRET: required .* or workload identity"):
        load_settings()
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(tmp_path / "token"))
    assert load_settings().entra.client_id == "app"
    monkeypatch.setenv("BWSYNC_ENTRA__CLIENT_SECRET", "x")
    monkeypatch.setenv("BWSYNC_ENTRA__CERTIFICATE_FILE", str(tmp_path / "c.pem"))
    with pytest.raises(ConfigError, match="keep one credential"):
        load_settings()


def test_google_settings_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BWSYNC_SOURCE", "google")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems == [
        "BWSYNC_GOOGLE__CREDENTIALS_FILE: required for the google source",
        "BWSYNC_GOOGLE__ADMIN_EMAIL: required for the google source",
    ]


def test_an_echoed_client_secret_never_reaches_the_error() -> None:
    """The issue's reproduction: an identity endpoint (a custom authority, an intercepting
    proxy) echoing the token request in ``error_description``, URL-encoded."""
    from urllib.parse import quote

    from bwsync.redact import remember

    secret = 'Entra"Secret\\XYZ-0123'
    remember(secret)  # as every run does with the settings' secrets (run.execute, cli.main)

    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/openid-configuration"):
            return Tenant(_empty_graph)(request)
        body = request.content.decode()
        return httpx.Response(
            401,
            json={"error": "invalid_client", "error_description": f"AADSTS7000215: {body}"},
        )

    settings = EntraSettings(
        tenant_id=TENANT,
        client_id="app",
        client_secret=secret,  # type: ignore[arg-type]
        authority_url=LOGIN,
        graph_url=GRAPH,
    )
    source = EntraSource(settings, SyncSettings(), transport=httpx.MockTransport(refuse))
    with pytest.raises(EntraError) as info:
        source.token()
    shown = f"{info.value} {info.value.detail}"
    assert "AADSTS7000215" in shown
    for form in (secret, quote(secret, safe=""), "Entra%22Secret", "XYZ-0123"):
        assert form not in shown
