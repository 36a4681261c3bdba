"""The Google source against the token endpoint + Admin SDK stand-in over loopback HTTPS: real
google-auth (JWT signed with the service account's key) and httpx, a throwaway CA as
``ca_file``. Each test states the §7.3 rule it holds the source to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bwsync.cli import main
from bwsync.config import SyncSettings
from bwsync.normalize import normalize
from bwsync.payload import build_requests
from bwsync.sources.base import FetchRequest
from bwsync.sources.google import SCOPES, GoogleError, GoogleSource
from tests.fixtures.cloud import GoogleFixture, RecordingPolicy
from tests.standins.bitwarden import FakeBitwarden
from tests.standins.google_workspace import SCOPE_GROUP, SCOPE_MEMBER, SCOPE_USER


def _source(
    fake: GoogleFixture, policy: RecordingPolicy | None = None, **sync: Any
) -> GoogleSource:
    return GoogleSource(fake.settings(), SyncSettings(**sync), policy=policy)


def _emails(users: list[Any] | None) -> list[str | None]:
    return [u.email for u in users or []]


def test_users_groups_members_and_the_bwdc_rules(fake_google: GoogleFixture) -> None:
    ada = fake_google.add_user("Ada@Example.com")
    sus = fake_google.add_user("sus@example.com", suspended=True)
    arc = fake_google.add_user("arc@example.com", archived=True)
    fake_google.add_user("noemails@example.com", emails=False)
    sec = fake_google.add_user("sec@example.org")  # secondary domain
    gone = fake_google.add_user("gone@example.com")
    fake_google.delete_user(gone)
    inner = fake_google.add_group("Inner")
    fake_google.add_member(inner, sec)
    outer = fake_google.add_group("Outer")
    fake_google.add_member(outer, ada)
    fake_google.add_member(outer, sus, status="SUSPENDED")  # not ACTIVE → not a member
    fake_google.add_member(outer, inner)
    everyone = fake_google.add_group("Everyone")
    fake_google.add_member(everyone, fake_google.customer_id)

    d = _source(fake_google).fetch(FetchRequest())
    users = [(u.external_id, u.email, u.disabled, u.deleted) for u in d.users or []]
    assert users == [
        (fake_google.admin_id, "admin@example.com", False, False),
        (ada, "ada@example.com", False, False),
        (sus, "sus@example.com", True, False),
        (arc, "arc@example.com", True, False),
        (sec, "sec@example.org", False, False),  # no domain set → every domain
        (gone, "gone@example.com", False, True),  # from the showDeleted list
    ]
    assert d.skipped == {"no_email": 1}
    assert d.delta == {}
    groups = {g.name: g for g in d.groups or []}
    assert list(groups["Outer"].user_member_external_ids) == [ada]
    assert list(groups["Outer"].group_member_reference_ids) == [inner]
    # CUSTOMER adds every fetched user, the deleted and disabled ones included.
    assert list(groups["Everyone"].user_member_external_ids) == [u[0] for u in users]
    calls = fake_google.requests_to("/admin/directory/v1/users")
    # Both lists are read, at the same time (their order is the payload's, not the wire's).
    assert sorted(c.query.get("showDeleted") or "" for c in calls) == ["", "true"]
    assert all(c.query["customer"] == "my_customer" and "domain" not in c.query for c in calls)
    assert fake_google.token_scopes == [list(SCOPES)]


def test_domain_limits_users_and_groups(fake_google: GoogleFixture) -> None:
    fake_google.add_user("a@example.com")
    fake_google.add_user("b@example.org")
    src = GoogleSource(fake_google.settings(domain="example.org"), SyncSettings())
    assert _emails(src.fetch(FetchRequest()).users) == ["b@example.org"]
    assert fake_google.requests_to("/admin/directory/v1/users")[0].query["domain"] == "example.org"


def test_import_body_is_what_bwdc_sends(fake_google: GoogleFixture) -> None:
    a = fake_google.add_user("a@example.com")
    b = fake_google.add_user("b@example.com", suspended=True)
    g = fake_google.add_group("Staff")
    fake_google.add_member(g, a)
    fake_google.add_member(g, b)
    sync = SyncSettings(remove_disabled=True, user_filter="exclude:admin@example.com")
    d = normalize(GoogleSource(fake_google.settings(), sync).fetch(FetchRequest()))
    [body] = build_requests(d.users, d.groups, sync)
    assert json.dumps(body, separators=(",", ":")) == (
        f'{{"groups":[{{"name":"Staff","externalId":"{g}","memberExternalIds":["{a}","{b}"]}}],'
        f'"members":[{{"email":"a@example.com","externalId":"{a}","deleted":false}},'
        f'{{"email":"b@example.com","externalId":"{b}","deleted":true}}],'
        '"overwriteExisting":false,"largeImport":false,"inviteUsersAfterProvisioning":true}'
    )


def test_filters_query_and_set_parts_and_group_scoping(fake_google: GoogleFixture) -> None:
    eng = [fake_google.add_user(f"e{i}@example.com", org_unit="/Engineering") for i in range(3)]
    fake_google.add_user("s0@example.com", org_unit="/Sales")
    src = _source(
        fake_google, groups=False, user_filter="exclude:e1@example.com|orgUnitPath=/Engineering"
    )
    assert _emails(src.fetch(FetchRequest()).users) == ["e0@example.com", "e2@example.com"]
    assert fake_google.requests_to("/admin/directory/v1/users")[0].query["query"] == (
        "orgUnitPath=/Engineering"
    )

    ga = fake_google.add_group("Integration Test Group A")
    fake_google.add_member(ga, eng[0])
    gb = fake_google.add_group("Integration Test Group B")
    fake_google.add_member(gb, eng[1])
    fake_google.add_group("Other")
    d = _source(
        fake_google, group_filter="include: Integration Test Group A, integration test group b"
    ).fetch(FetchRequest())
    assert sorted(g.name or "" for g in d.groups or []) == [
        "Integration Test Group A",
        "Integration Test Group B",
    ]
    assert _emails(d.users) == ["e0@example.com", "e1@example.com"]  # §6.2 scoping

    d = _source(fake_google, group_filter="|name:Integration*").fetch(FetchRequest())
    assert len(d.groups or []) == 2 and len(d.users or []) == 5  # a query alone does not scope


def test_paging_with_page_tokens_and_minimum_requests(fake_google: GoogleFixture) -> None:
    ids = [fake_google.add_user(f"p{i}@example.com") for i in range(1200)]
    groups = []
    for g in range(250):
        gid = fake_google.add_group(f"G{g}")
        groups.append(gid)
    for uid in ids[:450]:
        fake_google.add_member(groups[0], uid)
    d = _source(fake_google).fetch(FetchRequest())
    assert len(d.users or []) == 1201 and len(d.groups or []) == 250
    paths = [r.path for r in fake_google.requests]
    assert paths.count("/admin/directory/v1/users") == 3 + 1  # ⌈1201/500⌉ + the deleted list
    assert paths.count("/admin/directory/v1/groups") == 2  # ⌈250/200⌉
    assert paths.count(f"/admin/directory/v1/groups/{groups[0]}/members") == 3  # ⌈450/200⌉
    assert paths.count("/token") == 1


def test_quota_errors_back_off_and_retry(
    fake_google: GoogleFixture, cloud_sleeps: RecordingPolicy
) -> None:
    fake_google.throttle("/admin/directory/v1/users", times=1, status=403, retry_after=None)
    fake_google.throttle("/admin/directory/v1/groups", times=1, status=429, retry_after=4)
    fake_google.throttle("/token", times=1, status=503, retry_after=2)
    # One request at a time, so that the waits come in the order of the reads.
    d = _source(fake_google, cloud_sleeps, max_concurrent_requests=1).fetch(FetchRequest())
    assert _emails(d.users) == ["admin@example.com"]
    assert cloud_sleeps.slept == [2.0, 0.5, 4.0]  # Retry-After, else backoff


def test_other_errors_name_the_request_and_googles_reason(
    fake_google: GoogleFixture, cloud_sleeps: RecordingPolicy
) -> None:
    fake_google.throttle("/admin/directory/v1/groups", times=50, status=403, retry_after=None)
    with pytest.raises(GoogleError) as info:
        _source(fake_google, cloud_sleeps).fetch(FetchRequest())
    assert info.value.code == "rateLimitExceeded" and "gave up after 7 attempts" in str(info.value)

    src = GoogleSource(fake_google.settings(domain="elsewhere.com"), SyncSettings())
    with pytest.raises(GoogleError) as info:
        src.fetch(FetchRequest())
    assert str(info.value) == (
        "Google GET /admin/directory/v1/users failed: 403 forbidden: "
        "Not Authorized to access this resource/api"
    )


def test_token_errors(fake_google: GoogleFixture, tmp_path: Path) -> None:
    # sub must be a user of the customer.
    src = GoogleSource(fake_google.settings(admin_email="nobody@example.com"), SyncSettings())
    with pytest.raises(
        GoogleError, match="POST /token failed: invalid_grant: Invalid email or User ID"
    ):
        src.fetch(FetchRequest())
    # A key whose private part does not match the registered public key.
    other = dict(fake_google.info)
    from tests.fixtures.cloud import rsa_key_pem

    other["private_key"] = rsa_key_pem().decode()
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(other))
    src = GoogleSource(fake_google.settings(credentials_file=forged), SyncSettings())
    with pytest.raises(GoogleError, match="Invalid JWT Signature") as info:
        src.fetch(FetchRequest())
    assert "PRIVATE KEY" not in str(info.value)


def test_a_non_admin_cannot_read(fake_google: GoogleFixture) -> None:
    fake_google.add_user("joe@example.com")
    src = GoogleSource(fake_google.settings(admin_email="joe@example.com"), SyncSettings())
    with pytest.raises(GoogleError, match="403 forbidden"):
        src.fetch(FetchRequest())


def test_check_names_missing_scopes(fake_google: GoogleFixture) -> None:
    assert all(r.ok for r in _source(fake_google).check())
    fake_google.accounts[fake_google.info["client_email"]].delegated = {SCOPE_USER}
    results = _source(fake_google).check()
    scopes = results[-1]
    assert scopes.name == "scopes" and not scopes.ok
    assert f"missing scope(s): {SCOPE_GROUP}, {SCOPE_MEMBER}" in scopes.detail
    assert fake_google.info["client_id"] in scopes.detail

    fake_google.accounts[fake_google.info["client_email"]].delegated = set(SCOPES)
    fake_google.add_user("joe@example.com")
    results = GoogleSource(
        fake_google.settings(admin_email="joe@example.com"), SyncSettings()
    ).check()
    assert [(r.name, r.ok) for r in results] == [
        ("credentials", True),
        ("token", True),
        ("read users", False),
        ("read groups", False),
    ]
    assert "administrator" in results[2].detail

    missing = GoogleSource(
        fake_google.settings(credentials_file=Path("/nope.json")), SyncSettings()
    )
    [result] = missing.check()
    assert not result.ok and "cannot read /nope.json" in result.detail


def test_ca_file_applies_to_the_token_request(
    fake_google: GoogleFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("nothing")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bogus))
    monkeypatch.setenv("SSL_CERT_FILE", str(bogus))
    assert _emails(_source(fake_google).fetch(FetchRequest()).users) == ["admin@example.com"]
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.delenv("SSL_CERT_FILE")
    src = GoogleSource(fake_google.settings(ca_file=None), SyncSettings())
    with pytest.raises(
        GoogleError, match=r"POST /token failed: ConnectError: .*CERTIFICATE_VERIFY"
    ):
        src.fetch(FetchRequest())


@pytest.mark.slow
def test_ten_thousand_user_customer(fake_google: GoogleFixture) -> None:
    fake_google.populate(10_000, 200)
    d = _source(fake_google).fetch(FetchRequest())
    listed = list(fake_google.users.values())
    without = sum(1 for u in listed if not u.emails and not u.deleted)
    assert len(d.users or []) == len(listed) - without
    assert sum(1 for u in d.users or [] if u.deleted) == 100
    assert len(d.groups or []) == 200
    assert len(normalize(d).users or []) == len(d.users or [])


def test_cli_sync_end_to_end(
    fake_google: GoogleFixture,
    fake_bitwarden: FakeBitwarden,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a = fake_google.add_user("a@example.com")
    g = fake_google.add_group("Staff")
    fake_google.add_member(g, a)
    for k, v in {
        "BWSYNC_SOURCE": "google",
        "BWSYNC_GOOGLE__CREDENTIALS_FILE": str(fake_google.key_file),
        "BWSYNC_GOOGLE__ADMIN_EMAIL": fake_google.admin_email,
        "BWSYNC_GOOGLE__API_URL": fake_google.base_url,
        "BWSYNC_GOOGLE__CA_FILE": str(fake_google.ca_file),
        "BWSYNC_BITWARDEN__SERVER": fake_bitwarden.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": fake_bitwarden.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": fake_bitwarden.client_secret,
        "BWSYNC_STATE__BACKEND": "none",
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(k, v)
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "ok    directory: token" in out
    assert main(["sync"]) == 0
    assert fake_bitwarden.find_member(email="a@example.com") is not None
    assert fake_bitwarden.find_group(name="Staff") is not None


def test_same_directory_reads_the_same_through_entra_and_google(
    fake_google: GoogleFixture, fake_graph: Any
) -> None:
    """The sources' contract: one logical directory in either service, the same users, flags
    and (flattened) group memberships out."""
    from bwsync.sources.entra import EntraSource

    g_ada = fake_google.add_user("ada@example.com")
    g_bob = fake_google.add_user("bob@example.com", suspended=True)
    g_inner = fake_google.add_group("Inner")
    fake_google.add_member(g_inner, g_bob)
    g_staff = fake_google.add_group("Staff")
    fake_google.add_member(g_staff, g_ada)
    fake_google.add_member(g_staff, g_inner)
    e_ada = fake_graph.add_user("ada@example.com")
    e_bob = fake_graph.add_user("bob@example.com", enabled=False)
    e_inner = fake_graph.add_group("Inner", [e_bob])
    fake_graph.add_group("Staff", [e_ada, e_inner])
    sync = SyncSettings(user_filter="exclude:admin@example.com")

    def shape(d: Any) -> tuple[list[tuple[Any, ...]], dict[str, list[str]]]:
        d = normalize(d)
        email = {u.external_id: u.email for u in d.users}
        users = sorted((u.email, u.disabled, u.deleted) for u in d.users)
        groups = {
            g.name: sorted(email[m] for m in g.user_member_external_ids if m in email)
            for g in d.groups
        }
        return users, groups

    google = shape(GoogleSource(fake_google.settings(), sync).fetch(FetchRequest()))
    entra = shape(EntraSource(fake_graph.settings(), sync).fetch(FetchRequest()))
    assert (
        google
        == entra
        == (
            [("ada@example.com", False, False), ("bob@example.com", True, False)],
            {"Inner": ["bob@example.com"], "Staff": ["ada@example.com", "bob@example.com"]},
        )
    )
