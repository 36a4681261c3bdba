"""Okta source logic with httpx.MockTransport: filters, paging, errors, settings (the HTTP
layer under it, Okta's rate-limit signals included: test_cloud_http.py)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydantic import ValidationError

from bwsync.config import OktaSettings, SyncSettings
from bwsync.errors import ConfigError, OktaError
from bwsync.sources.base import FetchRequest
from bwsync.sources.cloud_http import same_origin_next
from bwsync.sources.okta import (
    DpopKey,
    OktaSource,
    client_assertion,
    deprovisioned_filter,
    load_private_key,
    next_link,
    okta_reset_in,
    user_from_okta,
)
from tests.fixtures.clock import FakeClock

ORG = "https://example.okta.com"
Handler = Callable[[httpx.Request], httpx.Response]


def _user(uid: str, email: str | None, status: str = "ACTIVE") -> dict[str, Any]:
    return {"id": uid, "status": status, "profile": {"email": email, "login": uid}}


def _source(handler: Handler, sync: SyncSettings | None = None, **kw: Any) -> OktaSource:
    settings = OktaSettings(org_url=ORG, token="00secret-token")
    return OktaSource(
        settings, sync or SyncSettings(), transport=httpx.MockTransport(handler), **kw
    )


# -- pure helpers ------------------------------------------------------------------------------


def test_deprovisioned_query_as_bwdc_builds_it() -> None:
    assert deprovisioned_filter(None) == 'status eq "DEPROVISIONED"'
    assert deprovisioned_filter('a eq "b"') == '(a eq "b") and status eq "DEPROVISIONED"'
    assert deprovisioned_filter('lastUpdated gt "x"') is None


def test_user_mapping() -> None:
    u = user_from_okta(_user("00u1", "  Ann@Example.COM ", "SUSPENDED"))
    assert (u.external_id, u.email, u.disabled, u.deleted) == (
        "00u1",
        "ann@example.com",
        True,
        False,
    )
    assert user_from_okta(_user("00u2", None, "DEPROVISIONED")).deleted
    for status in ("LOCKED_OUT", "PASSWORD_EXPIRED", "STAGED", "PROVISIONED", "RECOVERY"):
        u = user_from_okta(_user("x", "x@y.z", status))
        assert not u.disabled and not u.deleted
    with pytest.raises(OktaError, match="without an id"):
        user_from_okta({"profile": {}})


def test_link_header_parsing_and_same_origin() -> None:
    response = httpx.Response(
        200,
        headers=[
            ("Link", f'<{ORG}/api/v1/users?limit=2>; rel="self"'),
            ("Link", f'<{ORG}/api/v1/users?after=abc&limit=2>; rel="next"'),
        ],
    )
    assert next_link(response) == f"{ORG}/api/v1/users?after=abc&limit=2"
    combined = httpx.Response(
        200, headers={"Link": f'<{ORG}/a>; rel="self", <{ORG}/b>; rel="next"'}
    )
    assert next_link(combined) == f"{ORG}/b"
    assert next_link(httpx.Response(200)) is None
    # A next link to another host is re-rooted on our base: the token never leaves it.
    assert same_origin_next("https://proxy:8443", f"{ORG}/api/v1/users?after=x") == (
        "https://proxy:8443/api/v1/users?after=x"
    )


def test_reset_uses_the_server_date() -> None:
    date = formatdate(1_800_000_000, usegmt=True)
    response = httpx.Response(200, headers={"X-Rate-Limit-Reset": "1800000042", "Date": date})
    assert okta_reset_in(response, now=1_799_999_000.0) == 42.0  # local clock skewed
    assert okta_reset_in(httpx.Response(200), 0.0) is None


# -- the source over a mock transport ---------------------------------------------------------


def _router(pages: dict[str, list[tuple[list[dict[str, Any]], str | None]]]) -> Handler:
    """Serve list endpoints from ``pages[path]``: each entry a page and its next URL."""
    served: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "SSWS 00secret-token"
        key = request.url.path + ("?" + request.url.query.decode() if request.url.query else "")
        entries = pages.get(key) or pages.get(request.url.path)
        if entries is None:
            return httpx.Response(404, json={"errorCode": "E0000007", "errorSummary": "Not found"})
        n = served.get(key, 0)
        served[key] = n + 1
        page, nxt = entries[n] if n < len(entries) else ([], None)
        headers = {"Link": f'<{nxt}>; rel="next"'} if nxt else {}
        return httpx.Response(200, json=page, headers=headers)

    return handler


DEPRO = "/api/v1/users?filter=status+eq+%22DEPROVISIONED%22"


def test_fetch_order_filters_and_scoping() -> None:
    handler = _router(
        {
            "/api/v1/users": [
                ([_user("u1", "a@x.io"), _user("u2", "b@x.io", "SUSPENDED")], f"{ORG}/p2"),
            ],
            "/p2": [([_user("u3", "c@x.io")], None)],
            DEPRO: [([_user("u9", "gone@x.io", "DEPROVISIONED")], None)],
            "/api/v1/groups": [
                (
                    [
                        {"id": "g1", "profile": {"name": "Eng"}},
                        {"id": "g2", "profile": {"name": "HR"}},
                    ],
                    None,
                )
            ],
            "/api/v1/groups/g1/users": [([{"id": "u1"}], None)],
            "/api/v1/groups/g2/users": [([{"id": "u3"}], None)],
        }
    )
    d = _source(handler).fetch(FetchRequest())
    assert [u.external_id for u in d.users or []] == ["u1", "u2", "u3", "u9"]
    assert [list(g.user_member_external_ids) for g in d.groups or []] == [["u1"], ["u3"]]
    sync = SyncSettings(group_filter="exclude:hr", user_filter="exclude:a@x.io")
    d = _source(_router_again(handler), sync).fetch(FetchRequest())
    # §6.2: only direct members of the returned groups, plus deleted users.
    assert [g.name for g in d.groups or []] == ["Eng"]
    assert [u.external_id for u in d.users or []] == ["u9"]


def _router_again(handler: Handler) -> Handler:
    # The mock router counts pages served; a fresh one for the second fetch.
    return _router(
        {
            "/api/v1/users": [([_user("u1", "a@x.io"), _user("u2", "b@x.io", "SUSPENDED")], None)],
            DEPRO: [([_user("u9", "gone@x.io", "DEPROVISIONED")], None)],
            "/api/v1/groups": [
                (
                    [
                        {"id": "g1", "profile": {"name": "Eng"}},
                        {"id": "g2", "profile": {"name": "HR"}},
                    ],
                    None,
                )
            ],
            "/api/v1/groups/g1/users": [([{"id": "u1"}], None)],
            "/api/v1/groups/g2/users": [([{"id": "u3"}], None)],
        }
    )


def test_users_off_and_groups_off() -> None:
    handler = _router({"/api/v1/groups": [([], None)]})
    d = _source(handler, SyncSettings(users=False)).fetch(FetchRequest())
    assert d.users is None and d.groups == []
    handler = _router({"/api/v1/users": [([], None)], DEPRO: [([], None)]})
    d = _source(handler, SyncSettings(groups=False)).fetch(FetchRequest())
    assert d.users == [] and d.groups is None


def test_errors_name_the_request_and_okta_code_never_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            403,
            json={
                "errorCode": "E0000006",
                "errorSummary": "You do not have permission to perform the requested action",
                "errorCauses": [],
            },
            headers={
                "WWW-Authenticate": 'Bearer realm="x", scope="okta.users.read", '
                'error="insufficient_scope"'
            },
        )

    with pytest.raises(OktaError) as info:
        _source(handler).fetch(FetchRequest())
    message = str(info.value)
    assert message.startswith("Okta GET /api/v1/users failed: HTTP 403 E0000006 You do not have")
    assert "(the token lacks scope okta.users.read)" in message
    assert "00secret-token" not in message and info.value.exit_code == 3


def test_non_json_and_non_array_bodies_fail() -> None:
    with pytest.raises(OktaError, match=r"HTTP 502 <html>bad gateway"):
        _source(
            lambda r: httpx.Response(502, text="<html>bad gateway</html>"),
            policy=FakeClock().policy(),
        ).fetch(FetchRequest())
    with pytest.raises(OktaError, match="expected a JSON array"):
        _source(lambda r: httpx.Response(200, json={"users": []})).fetch(FetchRequest())


# -- OAuth pieces -------------------------------------------------------------------------------


def _pem(tmp_path: Path, kind: str = "rsa") -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key: Any = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if kind == "rsa"
        else ec.generate_private_key(ec.SECP384R1())
    )
    path = tmp_path / f"{kind}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _claims(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    h, c, _ = jwt.split(".")

    def pad(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    return orjson.loads(pad(h)), orjson.loads(pad(c))


def test_client_assertion_claims(tmp_path: Path) -> None:
    key = load_private_key(_pem(tmp_path))
    header, claims = _claims(client_assertion("0oa1", f"{ORG}/oauth2/v1/token", key, "k1", 1000.0))
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "k1"}
    assert claims["iss"] == claims["sub"] == "0oa1"
    assert claims["aud"] == f"{ORG}/oauth2/v1/token"
    assert claims["exp"] - claims["iat"] == 300 and claims["jti"]


def test_bad_private_keys_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_private_key(tmp_path / "missing.pem")
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="not an unencrypted PEM") as info:
        load_private_key(junk)
    assert "not a key" not in str(info.value)
    with pytest.raises(ConfigError, match="RSA and EC P-256"):
        load_private_key(_pem(tmp_path, "ec384"))


def test_token_flow_and_oauth_errors(tmp_path: Path) -> None:
    key_file = _pem(tmp_path)
    answers: list[httpx.Response] = [
        httpx.Response(
            400,
            json={
                "error": "invalid_scope",
                "error_description": "The following scopes were requested, but not granted: "
                "okta.groups.read",
            },
        )
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/v1/token":
            form = dict(httpx.QueryParams(request.content.decode()))
            assert form["grant_type"] == "client_credentials"
            assert form["client_assertion_type"].endswith("jwt-bearer")
            if answers:
                return answers.pop(0)
            scopes = form["scope"].split()
            if "okta.groups.read" in scopes:
                return httpx.Response(
                    400, json={"error": "invalid_scope", "error_description": "no"}
                )
            return httpx.Response(
                200, json={"access_token": "at", "token_type": "Bearer", "expires_in": 3600}
            )
        return httpx.Response(200, json=[])

    settings = OktaSettings(org_url=ORG, client_id="0oa1", private_key_file=key_file)
    source = OktaSource(settings, SyncSettings(), transport=httpx.MockTransport(handler))
    results = source.check()
    assert results[0].name == "token" and not results[0].ok
    assert "invalid_scope" in results[0].detail
    assert "grant okta.groups.read to the service app" in results[0].detail


# -- settings -----------------------------------------------------------------------------------


def test_org_url_normalized_https_only() -> None:
    assert OktaSettings(org_url=" example.okta.com/ ").org_url == "https://example.okta.com"
    assert OktaSettings(org_url="https://example.okta.com//").org_url == "https://example.okta.com"
    for bad in ("http://example.okta.com", "https://example-admin.okta.com", "https://x.io/?a=1"):
        with pytest.raises(ValidationError):
            OktaSettings(org_url=bad)


def test_exactly_one_credential(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="two different credentials"):
        OktaSettings(token="t", client_id="c", private_key_file=tmp_path / "k")
    with pytest.raises(ValidationError, match="go together"):
        OktaSettings(client_id="c")
    with pytest.raises(ConfigError, match="BWSYNC_OKTA__TOKEN"):
        OktaSource(OktaSettings(org_url=ORG), SyncSettings()).fetch(FetchRequest())


def test_secrets_are_masked_in_repr() -> None:
    assert "00secret" not in repr(OktaSettings(org_url=ORG, token="00secret"))


def test_dpop_proof_claims() -> None:
    dpop = DpopKey()
    header, claims = _claims(dpop.proof("GET", f"{ORG}/api/v1/users?limit=2", 1000.0, "tok"))
    assert header["typ"] == "dpop+jwt" and header["alg"] == "ES256"
    assert set(header["jwk"]) == {"kty", "crv", "x", "y"}  # the public half only
    assert claims["htm"] == "GET" and claims["htu"] == f"{ORG}/api/v1/users"
    assert claims["ath"] == "GnZ0607njffhrEOak8P6jjyUV4TU3sn9jjARc4svHWI"  # b64url(sha256("tok"))
    assert "nonce" not in claims and claims["jti"] != _claims(dpop.proof("GET", ORG, 1.0))[1]["jti"]
    assert dpop.remember_nonce(httpx.Response(400, headers={"DPoP-Nonce": "n1"}))
    assert not dpop.remember_nonce(httpx.Response(400, headers={"DPoP-Nonce": "n1"}))
    assert _claims(dpop.proof("POST", ORG, 1.0))[1]["nonce"] == "n1"
