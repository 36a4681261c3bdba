"""BitwardenClient against the stand-in over loopback HTTP(S): the real wire, real sockets,
real timeouts; only the retry sleeps are recorded instead of waited."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from bwsync.bitwarden import ENDPOINTS, BitwardenClient
from bwsync.errors import BitwardenAuthError, BitwardenClientError, BitwardenServerError
from bwsync.model import STATUS_INVITED, STATUS_REVOKED
from tests.fixtures.bitwarden import FakeFactory, RecordingClient
from tests.fixtures.clock import FakeClock
from tests.standins.bitwarden import FakeBitwarden
from tests.standins.proxy import ConnectProxy
from tests.standins.tls import self_signed_tls


def payload(
    *members: tuple[str, bool], groups: list[dict[str, Any]] | None = None, overwrite: bool = False
) -> bytes:
    return orjson.dumps(
        {
            "groups": groups or [],
            "members": [
                {"email": f"{ext}@example.com", "externalId": ext, "deleted": deleted}
                for ext, deleted in members
            ],
            "overwriteExisting": overwrite,
            "largeImport": False,
        }
    )


def make_client(
    fake: FakeBitwarden, clock: FakeClock | None = None, **settings: Any
) -> BitwardenClient:
    clock = clock or FakeClock(0.0)
    kw: dict[str, Any] = {"timeout": 5.0}
    kw.update(settings)
    return BitwardenClient(fake.settings(**kw), sleep=clock.sleep, clock=clock, jitter=lambda: 0.0)


def test_end_to_end_import_and_read_back(
    bitwarden_client: RecordingClient, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_owner("boss@example.com")
    bitwarden_client.check_token()
    bitwarden_client.import_organization(
        payload(
            ("ann", False),
            ("bob", False),
            groups=[{"name": "Eng", "externalId": "eng", "memberExternalIds": ["ann"]}],
        )
    )
    members = bitwarden_client.list_members()
    assert members is not None
    assert {(m.email, m.external_id, m.status) for m in members} == {
        ("boss@example.com", None, 2),
        ("ann@example.com", "ann", STATUS_INVITED),
        ("bob@example.com", "bob", STATUS_INVITED),
    }
    states = bitwarden_client.member_states()
    assert states is not None
    assert {(m.external_id, m.status) for m in states} == {
        (None, 2),
        ("ann", STATUS_INVITED),
        ("bob", STATUS_INVITED),
    }
    groups = bitwarden_client.list_groups()
    assert groups is not None
    (eng,) = groups
    ann = next(m for m in members if m.external_id == "ann")
    assert bitwarden_client.group_member_ids(eng.id) == [ann.id]
    assert fake_bitwarden.tokens_issued == 1
    (token_req,) = fake_bitwarden.requests_to("token")
    assert token_req.body["deviceType"] == "8"
    assert token_req.headers["bitwarden-client-name"] == "bwsync"
    assert bitwarden_client.slept == []


def test_429_then_success(fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.throttle("import", retry_after=2)
    clock = FakeClock(0.0)
    with make_client(fake_bitwarden, clock) as client:
        client.import_organization(payload(("ann", False)))
    assert clock.slept == [2.0]
    assert [r.status for r in fake_bitwarden.requests_to("import")] == [429, 200]
    assert fake_bitwarden.find_member(external_id="ann") is not None


def test_5xx_run_exhausts_the_retries(fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.server_error("import", times=None, status=503)
    clock = FakeClock(0.0)
    with (
        make_client(fake_bitwarden, clock, max_retries=3) as client,
        pytest.raises(BitwardenServerError) as info,
    ):
        client.import_organization(payload(("ann", False)), step="import 1/1")
    err = info.value
    assert (err.status, err.step, err.message) == (
        503,
        "import 1/1",
        "An unhandled server error has occurred.",
    )
    assert err.url == fake_bitwarden.api_url + "/public/organization/import"
    assert len(fake_bitwarden.requests_to("import")) == 4
    assert clock.slept == [0.5, 1.0, 2.0]
    assert fake_bitwarden.client_secret not in str(err)


def test_token_expiring_mid_run_is_renewed_once(fake_bitwarden: FakeBitwarden) -> None:
    with make_client(fake_bitwarden) as client:
        assert client.list_members() == []
        fake_bitwarden.expire_tokens()
        client.import_organization(payload(("ann", False)))
        assert client.list_members() is not None
    assert fake_bitwarden.tokens_issued == 2
    assert [r.status for r in fake_bitwarden.requests_to("import")] == [401, 200]


def test_short_lived_token_renewed_before_expiry(fake_bitwarden_factory: FakeFactory) -> None:
    fake = fake_bitwarden_factory(token_lifetime=60)
    clock = FakeClock(0.0)
    with make_client(fake, clock) as client:
        client.list_groups()
        clock.now += 55  # past 90 % of the lifetime: renew without waiting for a 401
        client.list_groups()
    assert fake.tokens_issued == 2
    assert all(r.status == 200 for r in fake.requests)


def test_400_surfaced_with_field_errors_and_not_retried(fake_bitwarden: FakeBitwarden) -> None:
    clock = FakeClock(0.0)
    bad = orjson.dumps({"groups": [], "members": [{"email": "nope", "externalId": "a"}]})
    with make_client(fake_bitwarden, clock) as client, pytest.raises(BitwardenClientError) as info:
        client.import_organization(bad)
    err = info.value
    assert err.status == 400
    assert err.message == "The request's model state is invalid."
    assert err.errors == {
        "Members[0].Email": ["The Email field is not a valid e-mail address."],
        "OverwriteExisting": ["The OverwriteExisting field is required."],
    }
    assert "Members[0].Email" in str(err)
    assert len(fake_bitwarden.requests_to("import")) == 1
    assert clock.slept == []


def test_business_rule_400(fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.add_member("nomp@example.com", external_id="nomp", status=STATUS_INVITED)
    with (
        make_client(fake_bitwarden) as client,
        pytest.raises(BitwardenClientError, match="Sync failed"),
    ):
        client.import_organization(payload(overwrite=True))


def test_wrong_secret_is_an_auth_error(fake_bitwarden: FakeBitwarden) -> None:
    with (
        make_client(fake_bitwarden, client_secret="wrong-secret") as client,
        pytest.raises(BitwardenAuthError, match="invalid_client") as info,
    ):
        client.check_token()
    assert fake_bitwarden.identity_url in str(info.value)
    assert "wrong-secret" not in str(info.value)
    assert len(fake_bitwarden.requests_to("token")) == 1


def test_timeout_then_success(fake_bitwarden: FakeBitwarden) -> None:
    # The timeout is every request's: the token and the retry must answer within it too, on a
    # loaded machine and across a pause of the collector in this process (0.1-0.3 s).
    fake_bitwarden.slow("list_groups", 3.0, times=1)
    clock = FakeClock(0.0)
    with make_client(fake_bitwarden, clock, timeout=1.0) as client:
        assert client.list_groups() == []
    assert clock.slept == [0.5]


def test_dropped_connection_then_success(fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.disconnect("import", times=2)
    clock = FakeClock(0.0)
    with make_client(fake_bitwarden, clock) as client:
        client.import_organization(payload(("ann", False)))
    assert len(clock.slept) == 2
    assert fake_bitwarden.find_member(external_id="ann") is not None


def test_server_down_is_a_server_error(fake_bitwarden_factory: FakeFactory) -> None:
    fake = fake_bitwarden_factory()
    settings_ = fake.settings(max_retries=1, timeout=2.0)
    fake.stop()
    slept: list[float] = []
    with (
        BitwardenClient(settings_, sleep=slept.append) as client,
        pytest.raises(BitwardenServerError, match="could not reach") as info,
    ):
        client.check_token()
    assert info.value.status is None
    assert len(slept) == 1


def test_revoke_and_restore(fake_bitwarden: FakeBitwarden) -> None:
    owner = fake_bitwarden.add_owner("boss@example.com")
    ann = fake_bitwarden.add_member("ann@example.com", external_id="ann")
    with make_client(fake_bitwarden) as client:
        client.revoke_member(ann.id)
        assert fake_bitwarden.member(ann.id).status == STATUS_REVOKED  # type: ignore[union-attr]
        client.restore_member(ann.id)
        assert fake_bitwarden.member(ann.id).status == 2  # type: ignore[union-attr]
        with pytest.raises(BitwardenClientError, match="at least one confirmed owner"):
            client.revoke_member(owner.id)
        with pytest.raises(BitwardenClientError, match="HTTP 404"):
            client.restore_member("0b7f8f0e-8d0a-4f63-9a55-111111111111")


def test_vaultwarden_end_to_end(fake_vaultwarden: FakeBitwarden) -> None:
    fake_vaultwarden.add_owner("boss@example.com")
    with make_client(fake_vaultwarden) as client:
        client.check_token()  # device fields are required by Vaultwarden
        assert client.list_members() is None
        assert client.member_states() is None
        assert client.list_groups() is None
        client.import_organization(
            payload(
                ("ann", False),
                groups=[{"name": "Eng", "externalId": "eng", "memberExternalIds": ["ann"]}],
            )
        )
        client.import_organization(payload(("ann", True)))
    ann = fake_vaultwarden.find_member(external_id="ann")
    assert ann is not None
    assert ann.status == STATUS_REVOKED
    assert fake_vaultwarden.group_member_emails("eng") == {"ann@example.com"}


def test_vaultwarden_errors(fake_vaultwarden: FakeBitwarden) -> None:
    with (
        make_client(fake_vaultwarden, client_secret="nope") as client,
        pytest.raises(BitwardenAuthError, match="Incorrect client_secret"),
    ):
        client.check_token()
    with (
        make_client(fake_vaultwarden) as client,
        pytest.raises(BitwardenClientError, match="HTTP 422"),
    ):
        client.import_organization(
            b'{"groups": [], "members": [{"email": "a@x.com"}], "overwriteExisting": false}'
        )


def test_vaultwarden_429_without_retry_after_backs_off(fake_vaultwarden: FakeBitwarden) -> None:
    fake_vaultwarden.throttle("token", retry_after=None)
    clock = FakeClock(0.0)
    with make_client(fake_vaultwarden, clock) as client:
        client.check_token()
    assert clock.slept == [0.5]


def test_on_request_and_on_retry_metrics(fake_bitwarden: FakeBitwarden) -> None:
    seen: list[tuple[str, int]] = []
    retries: list[str] = []
    fake_bitwarden.throttle("list_members", retry_after=1)
    with BitwardenClient(
        fake_bitwarden.settings(),
        sleep=lambda _s: None,
        on_request=lambda e, s: seen.append((e, s)),
        on_retry=retries.append,
    ) as client:
        client.list_members()
    assert seen == [("token", 200), ("list_members", 429), ("list_members", 200)]
    assert retries == ["list_members"]


def test_endpoint_names_match_the_stand_in(fake_bitwarden: FakeBitwarden) -> None:
    """The client's name for each request (its metric label) is the stand-in's name for the
    request it received (the name faults and assertions use), and between them every name in
    ENDPOINTS is one a request gets: a route renamed or added on one side shows here."""
    member = fake_bitwarden.add_member("ann@example.com", external_id="ann")
    group = fake_bitwarden.add_group("Eng", external_id="eng", members=[member])
    seen: list[str] = []
    with BitwardenClient(
        fake_bitwarden.settings(), sleep=lambda _s: None, on_request=lambda e, _s: seen.append(e)
    ) as client:
        client.check_token()
        client.import_organization(payload(("ann", False), groups=[]))
        client.list_members()
        client.list_groups()
        client.group_member_ids(group.id)
        client.set_group_member_ids(group.id, [member.id])
        client.update_group(group.id, "Engineering", "eng")
        assert client.delete_group("00000000-0000-0000-0000-000000000000") is False  # get_group
        client.delete_group(group.id)
        client.revoke_member(member.id)
        client.restore_member(member.id)
    assert seen == [r.endpoint for r in fake_bitwarden.requests]
    # Routes the client never calls: the stand-in still names them (401 without a token).
    fake_bitwarden.clear_requests()
    api = fake_bitwarden.api_url
    for path in (f"/public/members/{member.id}", f"/public/members/{member.id}/group-ids", "/x"):
        httpx.get(api + path, trust_env=False)
    served = {r.endpoint for r in fake_bitwarden.requests}
    assert served == {"get_member", "member_group_ids", "unknown"}
    assert set(seen) | served == set(ENDPOINTS)
    assert len(ENDPOINTS) == len(set(ENDPOINTS))


def test_through_an_http_proxy(
    fake_bitwarden: FakeBitwarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP(S)_PROXY is honoured (trust_env): the stand-in plays the proxy and sees the
    absolute-form requests meant for a host that does not resolve."""
    monkeypatch.setenv("HTTP_PROXY", fake_bitwarden.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = fake_bitwarden.settings(
        server="http://bitwarden.example.invalid", timeout=5.0, allow_http=True
    )
    with BitwardenClient(settings, sleep=lambda _s: None) as client:
        assert client.list_members() == []
    assert [r.endpoint for r in fake_bitwarden.requests] == ["token", "list_members"]


def test_no_proxy_with_a_cidr_block_goes_direct(
    fake_bitwarden: FakeBitwarden, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_PROXY's CIDR blocks are honoured (httpx alone would ignore them): the "proxy" here
    refuses plain requests, so the sync only works if the request went direct."""
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "intranet.example,127.0.0.0/8")
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("http_proxy", raising=False)
        with BitwardenClient(fake_bitwarden.settings(timeout=5.0), sleep=lambda _s: None) as c:
            assert c.list_members() == []
    assert proxy.connects == []
    assert [r.endpoint for r in fake_bitwarden.requests] == ["token", "list_members"]


# --------------------------------------------------------------------------------------------
# TLS: an explicit CA file wins over the machine's trust store


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    files = self_signed_tls(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*files.server_pair)
    return files.ca_file, server_ctx


@pytest.fixture
def tls_fake(
    fake_bitwarden_factory: FakeFactory, tls_pair: tuple[Path, ssl.SSLContext]
) -> FakeBitwarden:
    return fake_bitwarden_factory(ssl_context=tls_pair[1])


def test_https_with_explicit_ca_file(
    tls_fake: FakeBitwarden, tls_pair: tuple[Path, ssl.SSLContext]
) -> None:
    assert tls_fake.base_url.startswith("https://")
    with make_client(tls_fake, ca_file=tls_pair[0]) as client:
        assert client.list_members() == []


def test_https_without_the_ca_is_refused_and_not_retried(tls_fake: FakeBitwarden) -> None:
    clock = FakeClock(0.0)
    with (
        make_client(tls_fake, clock) as client,
        pytest.raises(BitwardenServerError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        client.check_token()
    assert clock.slept == []


def test_client_lives_within_the_cloud_rate_limits(fake_bitwarden_factory: FakeFactory) -> None:
    """One token for the whole run, and the 5-per-second POST limit absorbed by Retry-After."""
    clock = FakeClock(0.0)
    fake = fake_bitwarden_factory(rate_limits=True, clock=clock)
    with make_client(fake, clock) as client:
        for i in range(8):
            client.import_organization(payload((f"u{i}", False)))
        for _ in range(30):
            client.list_groups()
    assert fake.tokens_issued == 1
    assert clock.slept == [1.0]
    assert len(fake.members) == 8
