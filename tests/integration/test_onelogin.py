"""OneLoginSource against the OneLogin stand-in over HTTPS on loopback."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from bwsync.cli import main
from bwsync.config import OktaSettings, OneLoginSettings, SyncSettings
from bwsync.errors import OneLoginError
from bwsync.http.retry import RetryPolicy
from bwsync.normalize import normalize
from bwsync.payload import build_payload
from bwsync.sources.base import FetchRequest
from bwsync.sources.onelogin import OneLoginSource
from tests.fixtures.clock import FakeClock
from tests.fixtures.okta_onelogin import OktaFactory, OneLoginFactory
from tests.standins.bitwarden import FakeBitwarden
from tests.standins.onelogin import FakeOneLogin, onelogin_directory
from tests.standins.tls import TlsFiles

Settings = Callable[..., OneLoginSettings]


def _fetch(settings: OneLoginSettings, sync: SyncSettings | None = None) -> OneLoginSource:
    return OneLoginSource(settings, sync or SyncSettings(), policy=FakeClock().policy())


def test_users_and_roles(fake_onelogin: FakeOneLogin, onelogin_settings: Settings) -> None:
    d = _fetch(onelogin_settings(fake_onelogin)).fetch(FetchRequest())
    users = {u.external_id: u for u in d.users or []}
    # 105 has only a plain username and no suffix configured; 107 has nothing usable.
    assert list(users) == ["101", "102", "103", "104", "106"]
    assert users["102"].email == "bob@example.com"
    assert users["106"].email == "kim@example.com"  # username used when email is invalid
    assert users["103"].disabled and not users["104"].disabled  # suspended vs locked
    assert d.skipped["no_email"] == 2
    roles = {g.external_id: g for g in d.groups or []}
    # Members are every user the query returned, also those dropped for their email (bwdc).
    assert list(roles["501"].user_member_external_ids) == ["101", "102", "103", "105"]
    assert list(roles["502"].user_member_external_ids) == ["101", "104", "107"]
    assert roles["503"].user_member_external_ids == {}
    auth = {r.authorization for r in fake_onelogin.requests_to("/api/1/")}
    assert all(a and a.startswith("bearer:") for a in auth)


def test_import_body_sends_numeric_ids_as_strings(
    fake_onelogin: FakeOneLogin, onelogin_settings: Settings
) -> None:
    sync = SyncSettings()
    settings = onelogin_settings(
        fake_onelogin, use_email_prefix_suffix=True, email_suffix="@corp.example.com"
    )
    d = normalize(_fetch(settings, sync).fetch(FetchRequest()))
    payload = build_payload(
        d.users, d.groups, sync, api_url="https://api.bitwarden.com", org_id="o"
    )
    raw = payload.requests[0].body
    # Strings, not bwdc's numbers: Vaultwarden refuses numbers (HTTP 422).
    assert b'"externalId":"101",' in raw
    assert b'"memberExternalIds":["101","102","103","105"]' in raw
    body = orjson.loads(raw)
    pat = {"email": "pat@corp.example.com", "externalId": "105", "deleted": False}
    assert pat in body["members"]
    assert body["groups"][0] == {
        "name": "Engineering",
        "externalId": "501",
        "memberExternalIds": ["101", "102", "103", "105"],
    }


def test_queries_and_set_filters(fake_onelogin: FakeOneLogin, onelogin_settings: Settings) -> None:
    sync = SyncSettings(user_filter="exclude:ann@example.com|email=*@example.com",
                        group_filter="include:ops")  # fmt: skip
    d = _fetch(onelogin_settings(fake_onelogin), sync).fetch(FetchRequest())
    assert [g.name for g in d.groups or []] == ["Ops"]
    # Query: users whose email ends in @example.com; set: not ann; §6.2: direct Ops members.
    assert [u.external_id for u in d.users or []] == ["104"]
    assert fake_onelogin.requests_to("/api/1/users")[0].path == "/api/1/users"


def test_users_off_leaves_roles_without_members(
    fake_onelogin: FakeOneLogin, onelogin_settings: Settings
) -> None:
    d = _fetch(onelogin_settings(fake_onelogin), SyncSettings(users=False)).fetch(FetchRequest())
    assert d.users is None
    assert all(g.user_member_external_ids == {} for g in d.groups or [])


def test_paging_and_ten_thousand_users(
    fake_onelogin_factory: OneLoginFactory, onelogin_settings: Settings
) -> None:
    fake = fake_onelogin_factory(onelogin_directory(10_000, 120))
    start = time.perf_counter()
    d = _fetch(onelogin_settings(fake, use_email_prefix_suffix=True, email_suffix="@x.example"))
    directory = d.fetch(FetchRequest())
    assert len(directory.users or []) == 10_000
    assert len(directory.groups or []) == 120
    assert len(fake.requests_to("/api/1/users")) == 200  # 50 a page
    assert len(fake.requests_to("/api/1/roles")) == 3
    assert sum(1 for u in directory.users or [] if u.disabled) == sum(
        1 for u in fake.directory.users if u["status"] == 2
    )
    assert time.perf_counter() - start < 30


def test_an_http_error_mid_paging_fails_the_run(
    fake_onelogin_factory: OneLoginFactory, onelogin_settings: Settings
) -> None:
    fake = fake_onelogin_factory(onelogin_directory(120, 3))
    calls = {"n": 0}
    original = fake.route

    def route(method: str, path: str, *args: Any) -> Any:
        if path == "/api/1/users":
            calls["n"] += 1
            if calls["n"] == 2:
                from tests.standins.okta import Reply

                raise Reply(400, {"status": {"error": True, "code": 400, "type": "bad request",
                                             "message": "Invalid cursor"}})  # fmt: skip
        return original(method, path, *args)

    fake.route = route  # type: ignore[method-assign,assignment]
    with pytest.raises(
        OneLoginError, match=r"GET /api/1/users failed: HTTP 400 bad request Invalid"
    ):
        _fetch(onelogin_settings(fake)).fetch(FetchRequest())


def test_server_errors_retry_then_fail(
    fake_onelogin: FakeOneLogin, onelogin_settings: Settings
) -> None:
    fake_onelogin.fail("/api/1/roles", status=502, times=2)
    assert len(_fetch(onelogin_settings(fake_onelogin)).fetch(FetchRequest()).groups or []) == 3
    fake_onelogin.fail("/api/1/roles", status=500, times=20)
    with pytest.raises(OneLoginError, match=r"GET /api/1/roles failed: HTTP 500"):
        _fetch(onelogin_settings(fake_onelogin)).fetch(FetchRequest())


def test_rate_limit_paces_and_429_waits(
    fake_onelogin_factory: OneLoginFactory, onelogin_settings: Settings
) -> None:
    fake = fake_onelogin_factory(onelogin_directory(200, 3), rate_limit=3, rate_window=1.0)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    # One request at a time: a budget of 3 a second leaves no room for requests in flight.
    one = SyncSettings(max_concurrent_requests=1)
    source = OneLoginSource(onelogin_settings(fake), one, policy=RetryPolicy(sleep=sleep))
    d = source.fetch(FetchRequest())
    assert len(d.users or []) == 195
    assert slept and [r.status for r in fake.requests].count(429) == 0
    fake.fail(
        "/api/1/roles",
        status=429,
        body={"status": {"error": True, "code": 429, "type": "Too Many Requests", "message": ""}},
        headers={
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1",
        },
    )
    slept.clear()
    OneLoginSource(onelogin_settings(fake), one, policy=RetryPolicy(sleep=sleep)).fetch(
        FetchRequest()
    )
    assert 1.0 <= max(slept) <= 2.5


def test_expired_token_renewed(fake_onelogin: FakeOneLogin, onelogin_settings: Settings) -> None:
    source = _fetch(onelogin_settings(fake_onelogin))
    source._authorize()
    fake_onelogin.expire_tokens()
    assert len(source.fetch(FetchRequest()).users or []) == 5
    assert len(fake_onelogin.requests_to("/auth/oauth2/v2/token")) == 2


def test_check(fake_onelogin_factory: OneLoginFactory, onelogin_settings: Settings) -> None:
    fake = fake_onelogin_factory()
    assert all(r.ok for r in _fetch(onelogin_settings(fake)).check())
    results = _fetch(onelogin_settings(fake, client_secret="wrong-secret")).check()
    assert [r.name for r in results] == ["token"] and not results[0].ok
    assert "Authentication Failure" in results[0].detail and "wrong-secret" not in results[0].detail
    limited = fake_onelogin_factory(credential_scope="authentication_only")
    results = _fetch(onelogin_settings(limited)).check()
    assert results[0].ok and not results[1].ok and "'Read users' scope" in results[1].detail


def test_ca_file_applies_to_the_token_request(
    fake_onelogin: FakeOneLogin, onelogin_settings: Settings
) -> None:
    with pytest.raises(OneLoginError, match=r"POST /auth/oauth2/v2/token failed: ConnectError"):
        _fetch(onelogin_settings(fake_onelogin, ca_file=None)).fetch(FetchRequest())


def test_bwsync_sync_end_to_end(
    fake_onelogin: FakeOneLogin,
    fake_bitwarden_self_hosted: FakeBitwarden,
    standin_tls: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bw = fake_bitwarden_self_hosted
    for k, v in {
        "BWSYNC_SOURCE": "onelogin",
        "BWSYNC_ONELOGIN__CLIENT_ID": fake_onelogin.client_id,
        "BWSYNC_ONELOGIN__CLIENT_SECRET": fake_onelogin.client_secret,
        "BWSYNC_ONELOGIN__API_URL": fake_onelogin.url,
        "BWSYNC_ONELOGIN__CA_FILE": str(standin_tls.ca_file),
        "BWSYNC_BITWARDEN__SERVER": bw.base_url,
        "BWSYNC_BITWARDEN__CLIENT_ID": bw.client_id,
        "BWSYNC_BITWARDEN__CLIENT_SECRET": bw.client_secret,
        "BWSYNC_STATE__BACKEND": "none",
        "BWSYNC_LOG__FORMAT": "json",
    }.items():
        monkeypatch.setenv(k, v)
    assert main(["check"]) == 0
    assert main(["sync"]) == 0
    body = bw.requests_to("import")[0].body
    assert [m["externalId"] for m in body["members"]] == ["101", "102", "103", "104", "106"]
    assert body["groups"][1] == {
        "name": "Ops",
        "externalId": "502",
        "memberExternalIds": ["101", "104", "107"],
    }
    assert fake_onelogin.client_secret not in capsys.readouterr().err


def test_same_directory_reads_the_same_through_okta_onelogin_and_a_file(
    fake_okta_factory: OktaFactory,
    okta_settings: Callable[..., OktaSettings],
    fake_onelogin_factory: OneLoginFactory,
    onelogin_settings: Settings,
    tmp_path: Path,
) -> None:
    """The sources' contract: one logical directory, the same users, flags and memberships."""
    from bwsync.config import FileSettings
    from bwsync.sources.file import FileSource
    from bwsync.sources.okta import OktaSource
    from tests.standins.okta import OktaDirectory
    from tests.standins.onelogin import OneLoginDirectory

    okta_dir = OktaDirectory()
    okta_dir.add_user("00u_ada", "Ada@Example.com")
    okta_dir.add_user("00u_bob", "bob@example.com", "SUSPENDED")
    okta_dir.add_user("00u_cy", "cy@example.com", "DEPROVISIONED")
    okta_dir.add_group("00g_staff", "Staff", ["00u_ada", "00u_bob"])
    okta_dir.add_group("00g_inner", "Inner", ["00u_bob"])
    onelogin_dir = OneLoginDirectory()
    onelogin_dir.add_user(1, "Ada@Example.com", roles=[10])
    onelogin_dir.add_user(2, "bob@example.com", status=2, roles=[10, 11])
    onelogin_dir.add_role(10, "Staff")
    onelogin_dir.add_role(11, "Inner")
    directory_file = tmp_path / "directory.json"
    directory_file.write_bytes(
        orjson.dumps(
            {
                "users": [
                    {"id": "ada", "email": "ada@example.com"},
                    {"id": "bob", "email": "bob@example.com", "disabled": True},
                ],
                "groups": [
                    {"id": "s", "name": "Staff", "members": ["ada", "bob"]},
                    {"id": "i", "name": "Inner", "members": ["bob"]},
                ],
            }
        )
    )
    sync = SyncSettings(user_filter="exclude:admin@example.com")

    def shape(d: Any) -> tuple[list[tuple[Any, ...]], dict[str, list[str]]]:
        d = normalize(d)
        email = {u.external_id: u.email for u in d.users if not u.deleted}
        users = sorted((u.email, u.disabled, u.deleted) for u in d.users if not u.deleted)
        groups = {
            g.name: sorted(email[m] for m in g.user_member_external_ids if m in email)
            for g in d.groups
        }
        return users, groups

    okta = fake_okta_factory(okta_dir)
    onelogin = fake_onelogin_factory(onelogin_dir)
    shapes = [
        shape(OktaSource(okta_settings(okta), sync).fetch(FetchRequest())),
        shape(_fetch(onelogin_settings(onelogin), sync).fetch(FetchRequest())),
        shape(FileSource(FileSettings(path=directory_file), sync).fetch(FetchRequest())),
    ]
    expected = (
        [("ada@example.com", False, False), ("bob@example.com", True, False)],
        {"Staff": ["ada@example.com", "bob@example.com"], "Inner": ["bob@example.com"]},
    )
    assert shapes == [expected, expected, expected]
