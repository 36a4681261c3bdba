"""OktaSource against the Okta stand-in over HTTPS on loopback: the real client, unmodified."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bwsync.cli import main
from bwsync.config import OktaSettings, SyncSettings
from bwsync.errors import ConfigError, OktaError
from bwsync.http.retry import RetryPolicy
from bwsync.normalize import normalize
from bwsync.payload import build_payload
from bwsync.sources.base import FetchRequest
from bwsync.sources.okta import OktaSource
from tests.fixtures.clock import FakeClock
from tests.fixtures.okta_onelogin import OKTA_CLIENT_ID, KeyPair, OktaFactory
from tests.standins.bitwarden import FakeBitwarden
from tests.standins.okta import FakeOkta, okta_directory
from tests.standins.tls import TlsFiles

Settings = Callable[..., OktaSettings]


def _source(settings: OktaSettings, sync: SyncSettings | None = None, **kw: Any) -> OktaSource:
    return OktaSource(settings, sync or SyncSettings(), **kw)


@pytest.mark.parametrize("oauth", [True, False], ids=["service-app", "api-token"])
def test_full_fetch_every_shape(fake_okta: FakeOkta, okta_settings: Settings, oauth: bool) -> None:
    d = _source(okta_settings(fake_okta, oauth=oauth)).fetch(FetchRequest())
    users = {u.external_id: u for u in d.users or []}
    # Regular users first (Okta's order), then the deprovisioned query: a fixed order.
    assert list(users) == [
        "00u_ann", "00u_bob", "00u_sue", "00u_lou", "00u_pam", "00u_stu", "00u_amy", "00u_dee",
    ]  # fmt: skip
    assert users["00u_bob"].email == "bob@example.com"
    assert users["00u_sue"].disabled and not users["00u_sue"].deleted
    assert users["00u_dee"].deleted
    assert not any(users[u].disabled or users[u].deleted for u in ("00u_lou", "00u_pam", "00u_stu"))
    groups = {g.external_id: g for g in d.groups or []}
    assert list(groups["00g_eng"].user_member_external_ids) == [
        "00u_ann", "00u_bob", "00u_sue", "00u_dee",
    ]  # fmt: skip
    assert groups["00g_empty"].user_member_external_ids == {}
    assert groups["00g_app"].name == "Salesforce users"
    paths = [r.path for r in fake_okta.requests]
    assert paths.count("/api/v1/users") == 2
    auth = {
        r.authorization.split(" ")[0] for r in fake_okta.requests_to("/api/") if r.authorization
    }
    assert auth == ({"Bearer"} if oauth else {"SSWS"})


def test_import_body_is_what_bwdc_sends(fake_okta: FakeOkta, okta_settings: Settings) -> None:
    sync = SyncSettings(remove_disabled=True)
    d = normalize(_source(okta_settings(fake_okta), sync).fetch(FetchRequest()))
    payload = build_payload(
        d.users, d.groups, sync, api_url="https://api.bitwarden.com", org_id="o"
    )
    body = orjson.loads(payload.requests[0].body)
    members = {m["externalId"]: (m["email"], m["deleted"]) for m in body["members"]}
    assert members["00u_sue"] == ("sue@example.com", True)  # disabled + remove_disabled
    assert members["00u_dee"] == ("dee@example.com", True)
    assert members["00u_ann"] == ("ann@example.com", False)
    assert body["groups"][0] == {
        "name": "Engineering",
        "externalId": "00g_eng",
        "memberExternalIds": ["00u_ann", "00u_bob", "00u_sue", "00u_dee"],
    }
    # Same directory, same body: the order is fixed, so the hash is stable across runs.
    again = normalize(_source(okta_settings(fake_okta), sync).fetch(FetchRequest()))
    assert build_payload(again.users, again.groups, sync, api_url="x", org_id="o").hash == (
        build_payload(d.users, d.groups, sync, api_url="x", org_id="o").hash
    )


def test_filters_and_search_expressions(fake_okta: FakeOkta, okta_settings: Settings) -> None:
    sync = SyncSettings(
        user_filter='exclude:ann@example.com | profile.email sw "s"',
        group_filter="include:Engineering, Ops",
    )
    d = _source(okta_settings(fake_okta), sync).fetch(FetchRequest())
    assert [g.name for g in d.groups or []] == ["Engineering", "Ops"]
    # Native filter: emails starting with "s" (sue only; ann would be excluded anyway), plus
    # the deprovisioned query ANDed to it; then §6.2 keeps direct members of Engineering/Ops.
    assert [u.external_id for u in d.users or []] == ["00u_sue"]
    assert len(fake_okta.requests_to("/api/v1/users")) == 2


def test_bad_native_filter_fails_naming_the_request(
    fake_okta: FakeOkta, okta_settings: Settings
) -> None:
    sync = SyncSettings(user_filter='|profile.nickName eq "x"')
    with pytest.raises(
        OktaError, match=r"GET /api/v1/users failed: HTTP 400 E0000031 Invalid search"
    ):
        _source(okta_settings(fake_okta), sync).fetch(FetchRequest())


def test_paging_follows_link_headers(
    fake_okta_factory: OktaFactory, okta_settings: Settings
) -> None:
    fake = fake_okta_factory(okta_directory(450, 6))
    fake.page_sizes = {"users": (100, 200), "groups": (2, 10), "members": (50, 1000)}
    d = _source(okta_settings(fake)).fetch(FetchRequest())
    expected = sum(1 for u in fake.directory.users)
    assert len(d.users or []) == expected
    assert len({u.external_id for u in d.users or []}) == expected
    everyone = (d.groups or [])[0]
    assert everyone.name == "Everyone" and len(everyone.user_member_external_ids) == 450
    assert len(fake.requests_to("/api/v1/groups/00g_everyone0000000/users")) == 9
    assert len([r for r in fake.requests if r.path == "/api/v1/groups"]) == 3


def test_ten_thousand_users(fake_okta_factory: OktaFactory, okta_settings: Settings) -> None:
    fake = fake_okta_factory(okta_directory(10_000, 40))
    start = time.perf_counter()
    d = _source(okta_settings(fake)).fetch(FetchRequest())
    assert len(d.users or []) == 10_000
    assert sum(1 for u in d.users or [] if u.deleted) == sum(
        1 for u in fake.directory.users if u["status"] == "DEPROVISIONED"
    )
    assert len(d.groups or []) == 40
    assert time.perf_counter() - start < 30


def test_rate_limit_is_paced_and_429_waits_for_the_reset(
    fake_okta_factory: OktaFactory, okta_settings: Settings
) -> None:
    fake = fake_okta_factory(okta_directory(30, 6), rate_limit=5, rate_window=1.0)
    fake.page_sizes = {"users": (10, 200), "groups": (10, 10), "members": (1000, 1000)}
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    # One request at a time: a budget of 5 a second leaves no room for requests in flight.
    one = SyncSettings(max_concurrent_requests=1)
    d = _source(okta_settings(fake), one, policy=RetryPolicy(sleep=sleep)).fetch(FetchRequest())
    assert len(d.users or []) == 30
    assert slept, "the client slowed down as the budget ran out"
    assert [r.status for r in fake.requests].count(429) == 0  # pacing kept us inside
    # Another client spent the org's budget: a 429 waits for X-Rate-Limit-Reset, then retries.
    slept.clear()
    fake.fail(
        "/api/v1/groups",
        status=429,
        body={"errorCode": "E0000047", "errorSummary": "API call exceeded rate limit"},
        headers={
            "X-Rate-Limit-Limit": "600",
            "X-Rate-Limit-Remaining": "0",
            # Two seconds ahead: the stand-in's Date has whole seconds, so a reset one second
            # ahead is already reached (a wait of 0) when the request crosses a second.
            "X-Rate-Limit-Reset": str(int(time.time()) + 2),
        },
    )
    d = _source(okta_settings(fake, oauth=False), one, policy=RetryPolicy(sleep=sleep)).fetch(
        FetchRequest()
    )
    assert len(d.groups or []) == 6
    assert [r.status for r in fake.requests].count(429) == 1
    assert 1.0 < slept[0] <= 3.5


def test_server_errors_are_retried_then_fail_the_run(
    fake_okta: FakeOkta, okta_settings: Settings
) -> None:
    fake_okta.fail("/api/v1/groups", status=503, times=2)
    d = _source(okta_settings(fake_okta), policy=FakeClock().policy()).fetch(FetchRequest())
    assert len(d.groups or []) == 4
    fake_okta.fail("/api/v1/groups/00g_ops/users", status=500, times=10)
    with pytest.raises(OktaError, match=r"GET /api/v1/groups/00g_ops/users failed: HTTP 500"):
        _source(okta_settings(fake_okta), policy=FakeClock().policy()).fetch(FetchRequest())


def test_expired_token_is_renewed_once(fake_okta: FakeOkta, okta_settings: Settings) -> None:
    source = _source(okta_settings(fake_okta))
    fake_okta.token_lifetime = 3600
    original = source._get

    calls = {"n": 0}

    def get(url: str, what: str) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            fake_okta.expire_tokens()
        return original(url, what)

    source._get = get  # type: ignore[method-assign]
    d = source.fetch(FetchRequest())
    assert len(d.users or []) == 8
    assert len(fake_okta.requests_to("/oauth2/v1/token")) == 2


def test_assertion_is_verified(
    fake_okta: FakeOkta, okta_settings: Settings, tmp_path: Path, okta_ec_key: KeyPair
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrong = tmp_path / "wrong.pem"
    wrong.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    results = _source(okta_settings(fake_okta, private_key_file=wrong)).check()
    assert [r.ok for r in results] == [False]
    assert "invalid_client" in results[0].detail and "signature is invalid" in results[0].detail
    assert "PRIVATE KEY" not in results[0].detail
    # An EC P-256 key signs ES256, which the stand-in verifies too.
    ec_settings = okta_settings(
        fake_okta, client_id=OKTA_CLIENT_ID + "ec", private_key_file=okta_ec_key.private_file
    )
    assert all(r.ok for r in _source(ec_settings).check())


def test_check_names_the_missing_scope(
    fake_okta: FakeOkta, okta_settings: Settings, okta_key: KeyPair
) -> None:
    fake_okta.register_client("0oa_users_only", okta_key.public_pem, ("okta.users.read",))
    results = _source(okta_settings(fake_okta, client_id="0oa_users_only")).check()
    assert not results[0].ok
    assert "grant okta.groups.read to the service app" in results[0].detail


def test_check_explains_a_non_admin_api_token(fake_okta: FakeOkta, okta_settings: Settings) -> None:
    fake_okta.api_tokens["00weak"] = False
    results = _source(okta_settings(fake_okta, oauth=False, token="00weak")).check()
    assert [r.name for r in results] == ["read users", "read groups"]
    assert not results[0].ok and "E0000006" in results[0].detail
    assert "Read-only Administrator" in results[0].detail
    results = _source(okta_settings(fake_okta, oauth=False, token="00wrong")).check()
    assert "E0000011 Invalid token provided" in results[0].detail
    assert "00wrong" not in results[0].detail


@pytest.mark.parametrize("concurrency", [1, 8])
@pytest.mark.parametrize("resource_nonce", [False, True])
def test_dpop_required_binds_the_token_to_a_run_key(
    fake_okta: FakeOkta, okta_settings: Settings, resource_nonce: bool, concurrency: int
) -> None:
    fake_okta.dpop_required = True
    fake_okta.dpop_resource_nonce = resource_nonce
    sync = SyncSettings(max_concurrent_requests=concurrency)
    d = _source(okta_settings(fake_okta), sync).fetch(FetchRequest())
    assert len(d.users or []) == 8 and len(d.groups or []) == 4
    token_answers = [r.status for r in fake_okta.requests_to("/oauth2/v1/token")]
    assert token_answers == [400, 400, 200]  # DPoP required, then the nonce, then the token
    schemes = {
        r.authorization.split(" ")[0] for r in fake_okta.requests_to("/api/") if r.authorization
    }
    assert schemes == {"DPoP"}
    refused = [r.status for r in fake_okta.requests_to("/api/")].count(401)
    if concurrency == 1:
        assert refused == int(resource_nonce)
    else:  # the three first reads (two users queries, the groups) may all be told at once
        assert refused <= 3 * int(resource_nonce)
    check = _source(okta_settings(fake_okta)).check()
    assert all(r.ok for r in check)


def test_dpop_proofs_are_checked_by_the_stand_in(
    fake_okta: FakeOkta, okta_settings: Settings
) -> None:
    import ssl

    import httpx

    fake_okta.dpop_required = True
    source = _source(okta_settings(fake_okta))
    source._authorize()
    source.close()
    token = source._access_token
    # A DPoP-bound token without its proof, or presented as a bearer token, is refused.
    context = ssl.create_default_context(cafile=str(okta_settings(fake_okta).ca_file))
    with httpx.Client(verify=context) as client:
        bare = client.get(
            f"{fake_okta.url}/api/v1/users", headers={"Authorization": f"DPoP {token}"}
        )
        bearer = client.get(
            f"{fake_okta.url}/api/v1/users", headers={"Authorization": f"Bearer {token}"}
        )
    assert bare.status_code == 401 and "invalid_dpop_proof" in bare.headers["WWW-Authenticate"]
    assert bearer.status_code == 401


def test_ca_file_is_required_for_a_private_ca(fake_okta: FakeOkta, okta_settings: Settings) -> None:
    settings = okta_settings(fake_okta, ca_file=None)
    with pytest.raises(
        OktaError, match=r"POST /oauth2/v1/token failed: ConnectError: .*CERTIFICATE"
    ):
        _source(settings, policy=FakeClock().policy()).fetch(FetchRequest())


def test_missing_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="BWSYNC_OKTA__ORG_URL"):
        OktaSource(OktaSettings(), SyncSettings()).fetch(FetchRequest())
    assert not OktaSource(OktaSettings(), SyncSettings()).check()[0].ok


def test_bwsync_sync_end_to_end(
    fake_okta: FakeOkta,
    fake_bitwarden_self_hosted: FakeBitwarden,
    standin_tls: TlsFiles,
    okta_key: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bw = fake_bitwarden_self_hosted
    for k, v in {
        "BWSYNC_SOURCE": "okta",
        "BWSYNC_OKTA__ORG_URL": fake_okta.url + "/",
        "BWSYNC_OKTA__CLIENT_ID": OKTA_CLIENT_ID,
        "BWSYNC_OKTA__PRIVATE_KEY_FILE": str(okta_key.private_file),
        "BWSYNC_OKTA__CA_FILE": str(standin_tls.ca_file),
        "BWSYNC_BITWARDEN__SERVER": bw.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": bw.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": bw.client_secret,
        "BWSYNC_STATE__BACKEND": "none",
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(k, v)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "ok    directory: token" in out and "ok    directory: read groups" in out
    assert main(["sync"]) == 0
    body = bw.requests_to("import")[0].body
    assert {m["externalId"] for m in body["members"]} >= {"00u_ann", "00u_dee"}
    assert [g["name"] for g in body["groups"]] == [
        "Engineering",
        "Ops",
        "Empty",
        "Salesforce users",
    ]
    assert "PRIVATE KEY" not in capsys.readouterr().err


def test_proxy_variables_are_honoured(
    fake_okta: FakeOkta, okta_settings: Callable[..., OktaSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A "proxy" that records the first line it is sent and hangs up: the source must go
    # through it (HTTPS_PROXY), as the Bitwarden client and the Entra/Google sources do.
    seen: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        listener.close()  # retries are refused at once
        with conn:
            seen.append(conn.recv(4096).split(b"\r\n", 1)[0])

    worker = threading.Thread(target=serve, daemon=True)
    worker.start()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        with pytest.raises(OktaError):
            _source(okta_settings(fake_okta, timeout=5), policy=FakeClock().policy()).fetch(
                FetchRequest()
            )
        worker.join(5)
    finally:
        listener.close()
    host = fake_okta.url.removeprefix("https://")
    assert seen == [f"CONNECT {host} HTTP/1.1".encode()]
