"""The Entra source against the Graph stand-in over loopback HTTPS: real msal, real httpx,
a throwaway CA passed as ``ca_file``. Each test states the §7.2 rule it holds the source to."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from bwsync.cli import main
from bwsync.config import SyncSettings
from bwsync.normalize import normalize
from bwsync.payload import build_requests
from bwsync.sources.base import FetchRequest
from bwsync.sources.entra import DELTA_KEY, EntraError, EntraSource
from tests.fixtures.cloud import (
    GraphFixture,
    LoopbackTls,
    RecordingPolicy,
    public_key_pem,
    rsa_key_pem,
    self_signed_pem,
)
from tests.standins.bitwarden import FakeBitwarden
from tests.standins.graph import FEDERATED_AUDIENCE, FakeGraph


def _source(fake: GraphFixture, policy: RecordingPolicy | None = None, **sync: Any) -> EntraSource:
    return EntraSource(fake.settings(), SyncSettings(**sync), policy=policy)


def _emails(users: list[Any] | None) -> list[str | None]:
    return [u.email for u in users or []]


def test_users_groups_and_the_bwdc_rules(fake_graph: GraphFixture) -> None:
    ada = fake_graph.add_user("ada@example.com", mail="Ada.Lovelace@Example.com ")
    svc = fake_graph.add_user("svc@contoso.onmicrosoft.com", mail=None)  # no mail → UPN
    onms = fake_graph.add_user("bob@example.com", mail="bob@contoso.onmicrosoft.com")
    off = fake_graph.add_user("carol@example.com", enabled=False)
    fake_graph.add_user("x_partner.org#EXT#@contoso.onmicrosoft.com", mail=None, guest=True)
    guest_mail = fake_graph.add_user(
        "y_partner.org#EXT#@contoso.onmicrosoft.com", mail="y@partner.org", guest=True
    )
    inner = fake_graph.add_group("Inner", [off])
    outer = fake_graph.add_group("Outer", [ada, inner])

    d = _source(fake_graph).fetch(FetchRequest())

    assert [(u.external_id, u.email, u.disabled, u.deleted) for u in d.users or []] == [
        (ada, "ada.lovelace@example.com", False, False),
        (svc, "svc@contoso.onmicrosoft.com", False, False),
        (onms, "bob@example.com", False, False),  # an onmicrosoft.com mail yields to the UPN
        (off, "carol@example.com", True, False),
        (guest_mail, "y@partner.org", False, False),  # bwdc skips only `#` addresses
    ]
    assert d.skipped == {"guest": 1}
    groups = {g.name: g for g in d.groups or []}
    assert list(groups["Outer"].user_member_external_ids) == [ada]
    assert list(groups["Outer"].group_member_reference_ids) == [inner]
    assert groups["Outer"].external_id == outer
    assert d.delta[DELTA_KEY].startswith(fake_graph.base_url + "/v1.0/users/delta?")
    # $select as bwdc sends it, and accountEnabled is asked for (not a default property).
    users_call = fake_graph.requests_to("/v1.0/users")[0]
    assert users_call.query["$select"] == "id,mail,userPrincipalName,displayName,accountEnabled"


def test_import_body_is_what_bwdc_sends(fake_graph: GraphFixture) -> None:
    a = fake_graph.add_user("a@example.com", id="11111111-0000-0000-0000-000000000001")
    b = fake_graph.add_user(
        "b@example.com", id="11111111-0000-0000-0000-000000000002", enabled=False
    )
    child = fake_graph.add_group("Child", [b], id="22222222-0000-0000-0000-000000000002")
    fake_graph.add_group("Parent", [a, child], id="22222222-0000-0000-0000-000000000001")
    sync = SyncSettings()
    d = normalize(EntraSource(fake_graph.settings(), sync).fetch(FetchRequest()))
    [body] = build_requests(d.users, d.groups, sync)
    assert json.dumps(body, separators=(",", ":")) == (
        '{"groups":['
        '{"name":"Child","externalId":"22222222-0000-0000-0000-000000000002",'
        '"memberExternalIds":["11111111-0000-0000-0000-000000000002"]},'
        '{"name":"Parent","externalId":"22222222-0000-0000-0000-000000000001",'
        '"memberExternalIds":["11111111-0000-0000-0000-000000000001",'
        '"11111111-0000-0000-0000-000000000002"]}],'
        '"members":[{"email":"a@example.com","externalId":"11111111-0000-0000-0000-000000000001",'
        '"deleted":false},{"email":"b@example.com","externalId":'
        '"11111111-0000-0000-0000-000000000002","deleted":false}],'
        '"overwriteExisting":false,"largeImport":false,"inviteUsersAfterProvisioning":true}'
    )


def test_delta_link_reports_soft_deleted_users_and_survives_expiry(
    fake_graph: GraphFixture,
) -> None:
    keep = fake_graph.add_user("keep@example.com")
    gone = fake_graph.add_user("gone@example.com")
    purged = fake_graph.add_user("purged@example.com")
    first = _source(fake_graph).fetch(FetchRequest())
    assert _emails(first.users) == ["keep@example.com", "gone@example.com", "purged@example.com"]
    link = first.delta[DELTA_KEY]

    fake_graph.delete_user(gone)
    fake_graph.delete_user(purged, permanently=True)
    second = _source(fake_graph).fetch(FetchRequest(delta={DELTA_KEY: link}))
    # Graph reports a removed user by id only: deleted, no email (bwdc drops it likewise).
    assert [(u.external_id, u.email, u.deleted) for u in second.users or []] == [
        (keep, "keep@example.com", False),
        (gone, None, True),
    ]
    assert normalize(second).users == [second.users[0]]  # type: ignore[index]
    assert second.delta[DELTA_KEY] != link
    assert fake_graph.requests_to("/v1.0/users/delta")[-1].query.get("$deltatoken")

    # An expired link (Graph keeps them ~7 days) is a full round, never an error.
    fake_graph.expire_delta_tokens()
    third = _source(fake_graph).fetch(FetchRequest(delta=second.delta))
    assert _emails(third.users) == ["keep@example.com"]
    assert third.delta[DELTA_KEY] and third.delta[DELTA_KEY] != second.delta[DELTA_KEY]
    statuses = [r.status for r in fake_graph.requests_to("/v1.0/users/delta")][-2:]
    assert statuses == [400, 200]

    # effectiveForce ignores the stored link.
    fake_graph.clear_requests()
    _source(fake_graph).fetch(FetchRequest(force=True, delta=third.delta))
    assert "$deltatoken" not in fake_graph.requests_to("/v1.0/users/delta")[0].query


def test_user_filters_include_exclude_and_groups(fake_graph: GraphFixture) -> None:
    u = [fake_graph.add_user(f"u{i}@example.com") for i in range(6)]
    nested = fake_graph.add_group("Nested", [u[2]])
    a = fake_graph.add_group("A", [u[0], u[1], nested])
    b = fake_graph.add_group("B", [u[1]])
    c = fake_graph.add_group("C", [u[2], u[3]])

    def emails(user_filter: str) -> list[str | None]:
        src = _source(fake_graph, groups=False, user_filter=user_filter)
        return _emails(src.fetch(FetchRequest()).users)

    assert emails("include: U0@example.com, u3@example.com") == ["u0@example.com", "u3@example.com"]
    assert emails("exclude:u0@example.com,u1@example.com") == [
        "u2@example.com",
        "u3@example.com",
        "u4@example.com",
        "u5@example.com",
    ]
    # includeGroup is transitive (Nested's u2 counts) and group ids are lower-cased.
    assert emails(f"includeGroup:{a.upper()}") == [
        "u0@example.com",
        "u1@example.com",
        "u2@example.com",
    ]
    assert emails(f"includeGroup:{a},{c}|excludeGroup:{b}|exclude:U3@example.com") == [
        "u0@example.com",
        "u2@example.com",
    ]
    # Secondary clauses only follow includeGroup.
    assert emails(f"excludeGroup:{a}|exclude:u4@example.com") == [
        "u3@example.com",
        "u4@example.com",
        "u5@example.com",
    ]
    calls = {r.path for r in fake_graph.requests}
    assert f"/v1.0/groups/{a}/transitiveMembers/microsoft.graph.user" in calls


def test_group_filters_scope_users_to_direct_members(fake_graph: GraphFixture) -> None:
    u = [fake_graph.add_user(f"u{i}@example.com") for i in range(4)]
    off = fake_graph.add_user("off@example.com", enabled=False)
    inner = fake_graph.add_group("Inner", [u[2]])
    fake_graph.add_group("Sales", [u[0], inner])
    fake_graph.add_group("IT", [u[1], off])
    fake_graph.add_group("Other", [u[3]])

    d = _source(fake_graph, group_filter="include:sales, it").fetch(FetchRequest())
    assert sorted(g.name or "" for g in d.groups or []) == ["IT", "Sales"]
    # §6.2: direct members of a returned group only — u2 (via Inner, not returned) is out,
    # and the disabled member stays because it is a direct member.
    assert _emails(d.users) == ["u0@example.com", "u1@example.com", "off@example.com"]

    d = _source(fake_graph, group_filter="exclude:IT,Sales,Inner", remove_disabled=True).fetch(
        FetchRequest()
    )
    assert [g.name for g in d.groups or []] == ["Other"]
    assert _emails(d.users) == ["u3@example.com", "off@example.com"]  # disabled kept


def test_administrative_unit_filters(fake_graph: GraphFixture) -> None:
    u = fake_graph.add_user("u@example.com")
    g1 = fake_graph.add_group("Paris", [u])
    fake_graph.add_group("Berlin", [u])
    unit = fake_graph.add_administrative_unit("France", [g1, u])
    with pytest.raises(EntraError) as info:
        _source(fake_graph, group_filter=f"includeAdministrativeUnit:{unit}").fetch(FetchRequest())
    assert info.value.status == 403 and info.value.code == "Authorization_RequestDenied"
    assert f"GET /v1.0/directory/administrativeUnits/{unit}/members" in str(info.value)

    fake_graph.apps[fake_graph.app_id].roles.add("AdministrativeUnit.Read.All")
    inc = _source(fake_graph, group_filter=f"includeAdministrativeUnit:{unit}").fetch(
        FetchRequest()
    )
    assert [g.name for g in inc.groups or []] == ["Paris"]
    exc = _source(fake_graph, group_filter=f"excludeAdministrativeUnit: {unit}").fetch(
        FetchRequest()
    )
    assert [g.name for g in exc.groups or []] == ["Berlin"]


def test_paging_follows_next_links_with_minimum_requests(fake_graph: GraphFixture) -> None:
    ids = [fake_graph.add_user(f"p{i}@example.com") for i in range(2100)]
    fake_graph.add_group("Big", ids[:1500])
    d = _source(fake_graph).fetch(FetchRequest())
    assert len(d.users or []) == 2100
    assert len(d.groups[0].user_member_external_ids) == 1500  # type: ignore[index]
    paths = [r.path for r in fake_graph.requests]
    assert paths.count("/v1.0/users") == 3  # ⌈2100 / 999⌉
    assert paths.count("/v1.0/users/delta") == 11  # ⌈2100 / 200⌉, Graph's delta page cap
    assert paths.count(f"/v1.0/groups/{d.groups[0].external_id}/members") == 2  # type: ignore[index]
    assert all(r.status == 200 for r in fake_graph.requests)


def test_throttling_honours_retry_after_and_is_bounded(
    fake_graph: GraphFixture, cloud_sleeps: RecordingPolicy
) -> None:
    fake_graph.add_user("a@example.com")
    fake_graph.throttle("/v1.0/users", times=2, status=429, retry_after=7)
    fake_graph.throttle("/v1.0/groups", times=1, status=503, retry_after=3)
    # One request at a time, so that the waits come in the order of the reads.
    d = _source(fake_graph, cloud_sleeps, max_concurrent_requests=1).fetch(FetchRequest())
    assert _emails(d.users) == ["a@example.com"]
    assert cloud_sleeps.slept == [7.0, 7.0, 3.0]

    fake_graph.throttle("/v1.0/groups", times=100, status=429, retry_after=1)
    with pytest.raises(EntraError) as info:
        _source(fake_graph, cloud_sleeps).fetch(FetchRequest())
    err = info.value
    assert err.status == 429 and err.code == "TooManyRequests"
    assert "Entra GET /v1.0/groups failed: 429 TooManyRequests" in str(err)
    assert "gave up after 7 attempts" in str(err)


def test_wrong_secret_names_the_token_request_not_the_secret(fake_graph: GraphFixture) -> None:
    settings = fake_graph.settings(client_secret="not-the-secret-XYZ")
    with pytest.raises(EntraError) as info:
        EntraSource(settings, SyncSettings()).fetch(FetchRequest())
    text = str(info.value)
    assert text.startswith(f"Entra POST /{fake_graph.tenant_id}/oauth2/v2.0/token failed:")
    assert "invalid_client: AADSTS7000215" in text and "Trace ID" not in text
    assert "not-the-secret-XYZ" not in text and fake_graph.secret not in text


def test_unknown_tenant(fake_graph: GraphFixture) -> None:
    settings = fake_graph.settings(tenant_id="00000000-0000-0000-0000-000000000000")
    with pytest.raises(EntraError, match=r"Unable to get authority configuration .*/00000000-"):
        EntraSource(settings, SyncSettings()).fetch(FetchRequest())


def test_certificate_credential(fake_graph: GraphFixture, tmp_path: Path) -> None:
    key = rsa_key_pem()
    cert = self_signed_pem(key, "bwsync-app")
    app = fake_graph.add_app(certificate_pem=cert)
    pem = tmp_path / "app.pem"
    pem.write_bytes(cert + key)
    fake_graph.add_user("a@example.com")
    settings = fake_graph.settings(
        client_id=app.client_id, client_secret=None, certificate_file=pem
    )
    assert _emails(EntraSource(settings, SyncSettings()).fetch(FetchRequest()).users) == [
        "a@example.com"
    ]
    # Another key under the registered certificate's name is refused by signature.
    forged = tmp_path / "forged.pem"
    forged.write_bytes(cert + rsa_key_pem())
    bad = fake_graph.settings(client_id=app.client_id, client_secret=None, certificate_file=forged)
    with pytest.raises(EntraError, match="AADSTS700027"):
        EntraSource(bad, SyncSettings()).fetch(FetchRequest())


def test_workload_identity_federated_token(
    fake_graph: GraphFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issuer = "https://oidc.prod-aks.azure.com/tenant/cluster/"
    subject = "system:serviceaccount:bwsync:bwsync"
    signer = rsa_key_pem()
    app = fake_graph.add_app(federated=(issuer, subject, public_key_pem(signer)))
    token_file = tmp_path / "azure-identity-token"

    def project(sub: str) -> None:
        now = int(time.time())
        claims = {
            "iss": issuer,
            "sub": sub,
            "aud": FEDERATED_AUDIENCE,
            "iat": now,
            "exp": now + 3600,
        }
        token_file.write_text(jwt.encode(claims, signer, algorithm="RS256"))

    project(subject)
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    fake_graph.add_user("a@example.com")
    settings = fake_graph.settings(client_id=app.client_id, client_secret=None)
    assert _emails(EntraSource(settings, SyncSettings()).fetch(FetchRequest()).users) == [
        "a@example.com"
    ]
    project("system:serviceaccount:other:other")
    with pytest.raises(EntraError, match="AADSTS700213"):
        EntraSource(settings, SyncSettings()).fetch(FetchRequest())


def test_national_cloud_scope_follows_the_cloud(
    loopback_tls: LoopbackTls, fake_graph: GraphFixture
) -> None:
    gov = FakeGraph(tls=loopback_tls.server_pair, resource="https://graph.microsoft.us").start()
    try:
        app = gov.add_app(secret="s")
        gov.add_user("a@agency.gov")
        base = fake_graph.settings()
        settings = base.model_copy(
            update={
                "tenant_id": gov.tenant_id,
                "client_id": app.client_id,
                "client_secret": base.client_secret.__class__("s"),
                "authority_url": gov.base_url,
                "graph_url": gov.base_url,
                "cloud": "usgov",
            }
        )
        assert _emails(EntraSource(settings, SyncSettings()).fetch(FetchRequest()).users) == [
            "a@agency.gov"
        ]
        assert gov.token_requests == [{"scope": "https://graph.microsoft.us/.default"}]
        # The global scope is refused by a usgov tenant, as Entra does.
        wrong = settings.model_copy(update={"cloud": "global"})
        with pytest.raises(EntraError, match="invalid_scope"):
            EntraSource(wrong, SyncSettings()).fetch(FetchRequest())
    finally:
        gov.stop()


def test_ca_file_is_used_for_token_and_graph_and_wins_over_requests_bundle(
    fake_graph: GraphFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_graph.add_user("a@example.com")
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a bundle")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("SSL_CERT_FILE", str(bogus))
    assert _emails(_source(fake_graph).fetch(FetchRequest()).users) == ["a@example.com"]

    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("SSL_CERT_FILE")
    untrusted = EntraSource(fake_graph.settings(ca_file=None), SyncSettings())
    with pytest.raises(EntraError, match="CERTIFICATE_VERIFY_FAILED") as info:
        untrusted.fetch(FetchRequest())
    # msal's tenant discovery is the first request to meet the untrusted certificate.
    assert "openid-configuration" in str(info.value)


def test_check_names_missing_permissions(fake_graph: GraphFixture) -> None:
    ok = _source(fake_graph).check()
    assert [r.ok for r in ok] == [True, True, True, True]

    app = fake_graph.add_app(secret="s2", roles=("User.Read.All",))
    settings = fake_graph.settings(client_id=app.client_id, client_secret="s2")
    results = EntraSource(
        settings, SyncSettings(group_filter="includeAdministrativeUnit:x")
    ).check()
    perms = next(r for r in results if r.name == "permissions")
    assert not perms.ok
    assert "Group.Read.All, AdministrativeUnit.Read.All" in perms.detail
    groups = next(r for r in results if r.name == "read groups")
    assert not groups.ok and "Authorization_RequestDenied" in groups.detail

    bad = EntraSource(fake_graph.settings(client_secret="wrong"), SyncSettings()).check()
    assert [(r.name, r.ok) for r in bad] == [("token", False)]
    assert "AADSTS7000215" in bad[0].detail


@pytest.mark.slow
def test_ten_thousand_user_tenant(fake_graph: GraphFixture) -> None:
    fake_graph.populate(10_000, 200)
    d = _source(fake_graph).fetch(FetchRequest())
    active = [u for u in fake_graph.users.values() if not u.deleted]
    skipped_guests = sum(1 for u in active if u.mail is None and "#" in u.upn)
    assert len(d.users or []) == len(active) - skipped_guests
    assert d.skipped["guest"] == skipped_guests
    assert len(d.groups or []) == 200
    assert sum(1 for u in d.users or [] if u.disabled) > 100
    n = normalize(d)
    assert len(n.users or []) == len(d.users or [])


def test_cli_sync_and_plan_end_to_end(
    fake_graph: GraphFixture,
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = fake_graph.add_user("a@example.com")
    fake_graph.add_group("Staff", [a])
    state = tmp_path / "state.json"
    for k, v in {
        "BWSYNC_SOURCE": "entra",
        "BWSYNC_ENTRA__TENANT_ID": fake_graph.tenant_id,
        "BWSYNC_ENTRA__CLIENT_ID": fake_graph.app_id,
        "BWSYNC_ENTRA__CLIENT_SECRET": fake_graph.secret,
        "BWSYNC_ENTRA__AUTHORITY_URL": fake_graph.base_url,
        "BWSYNC_ENTRA__GRAPH_URL": fake_graph.base_url,
        "BWSYNC_ENTRA__CA_FILE": str(fake_graph.ca_file),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_STATE__BACKEND": "file",
        "BWSYNC_STATE__PATH": str(state),
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(k, v)
    assert main(["check"]) == 0
    assert "ok    directory: permissions" in capsys.readouterr().out
    assert main(["sync"]) == 0
    assert fake_bitwarden.find_member(email="a@example.com") is not None
    saved = json.loads(state.read_text())
    assert saved["delta"][DELTA_KEY].startswith(fake_graph.base_url)
    assert fake_graph.secret not in state.read_text()
    # The next run starts from the saved delta link.
    fake_graph.clear_requests()
    assert main(["sync"]) == 0
    assert fake_graph.requests_to("/v1.0/users/delta")[0].query.get("$deltatoken")
