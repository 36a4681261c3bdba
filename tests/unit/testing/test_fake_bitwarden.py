"""The Bitwarden stand-in held to the contract (reference/bitwarden-public-api.md, §n), over
real HTTP with httpx, as any client would see it."""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from tests.fixtures.bitwarden import FakeFactory

from bwsync.model import (
    STATUS_ACCEPTED,
    STATUS_CONFIRMED,
    STATUS_INVITED,
    STATUS_REVOKED,
    STATUS_STAGED,
    TYPE_OWNER,
    TYPE_USER,
)
from bwsync.testing.fake_bitwarden import (
    MODEL_STATE_INVALID,
    OVERWRITE_NO_MP,
    TOO_MUCH_DATA,
    UNHANDLED,
    FakeBitwarden,
    _new_ids,
    _OfficialImportModel,
    _usual_emails,
    _valid_email,
)

MEMBER_KEYS = {
    "object", "id", "userId", "name", "email", "twoFactorEnabled", "status", "type",
    "externalId", "permissions", "collections", "resetPasswordEnrolled", "ssoExternalId",
}  # fmt: skip


class Api:
    """A bare httpx client with a token for the stand-in, to poke it as a client would."""

    def __init__(self, fake: FakeBitwarden) -> None:
        self.fake = fake
        self.http = httpx.Client(base_url=fake.base_url, timeout=10, trust_env=False)
        self.token = ""

    def get_token(self, **form: str) -> httpx.Response:
        data = {
            "grant_type": "client_credentials",
            "client_id": self.fake.client_id,
            "client_secret": self.fake.client_secret,
            "scope": "api.organization",
            "deviceType": "8",
            "deviceIdentifier": "d3b07384-d113-4ec6-a0a2-9b2f0c4e5e1a",
            "deviceName": "linux",
        }
        data.update(form)
        data = {k: v for k, v in data.items() if v != "<omit>"}
        return self.http.post("/identity/connect/token", data=data)

    def login(self) -> None:
        r = self.get_token()
        assert r.status_code == 200, r.text
        self.token = r.json()["access_token"]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def imp(
        self, body: Any, *, raw: bytes | None = None, ctype: str = "application/json"
    ) -> httpx.Response:
        content = raw if raw is not None else orjson.dumps(body)
        return self.http.post(
            "/api/public/organization/import",
            content=content,
            headers={**self.headers(), "Content-Type": ctype},
        )

    def get(self, path: str) -> httpx.Response:
        return self.http.get("/api/public" + path, headers=self.headers())

    def post(self, path: str) -> httpx.Response:
        return self.http.post("/api/public" + path, headers=self.headers())


@pytest.fixture
def api(fake_bitwarden: FakeBitwarden) -> Iterator[Api]:
    a = Api(fake_bitwarden)
    a.login()
    yield a
    a.http.close()


@pytest.fixture
def vw(fake_vaultwarden: FakeBitwarden) -> Iterator[Api]:
    a = Api(fake_vaultwarden)
    a.login()
    yield a
    a.http.close()


def body(members: list[dict[str, Any]] | None = None, groups: list[dict[str, Any]] | None = None,
         *, overwrite: bool = False, **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {
        "groups": groups or [],
        "members": members or [],
        "overwriteExisting": overwrite,
        **extra,
    }


def m(ext: str, email: str | None = None, *, deleted: bool = False) -> dict[str, Any]:
    return {"email": email if email is not None else f"{ext}@example.com", "externalId": ext,
            "deleted": deleted}  # fmt: skip


def g(ext: str, name: str | None = None, members: list[str] | None = None) -> dict[str, Any]:
    return {"name": name or ext.upper(), "externalId": ext, "memberExternalIds": members or []}


def assert_model_error(r: httpx.Response, errors: dict[str, list[str]]) -> None:
    assert r.status_code == 400
    assert r.json() == {"object": "error", "message": MODEL_STATE_INVALID, "errors": errors}


# --------------------------------------------------------------------------------------------
# §1, §2: URLs and identity


def test_serves_identity_and_api_under_one_base_url_and_without_prefix(
    fake_bitwarden: FakeBitwarden,
) -> None:
    api = Api(fake_bitwarden)
    try:
        assert api.get_token().status_code == 200
        r = api.http.post("/connect/token", data={
            "grant_type": "client_credentials", "client_id": fake_bitwarden.client_id,
            "client_secret": fake_bitwarden.client_secret})  # fmt: skip
        assert r.status_code == 200
        token = r.json()["access_token"]
        for path in ("/api/public/members", "/public/members"):
            assert (
                api.http.get(path, headers={"Authorization": f"Bearer {token}"}).status_code == 200
            )
    finally:
        api.http.close()


def test_token_success_shape_and_jwt_claims(fake_bitwarden: FakeBitwarden, api: Api) -> None:
    r = api.get_token()
    data = r.json()
    assert r.status_code == 200
    assert set(data) == {"access_token", "expires_in", "token_type", "scope"}
    assert data["expires_in"] == 3600
    assert data["token_type"] == "Bearer"
    assert data["scope"] == "api.organization"
    header, payload, _sig = data["access_token"].split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert orjson.loads(base64.urlsafe_b64decode(header + "=="))["typ"] == "at+jwt"
    assert claims["client_id"] == fake_bitwarden.client_id
    assert claims["sub"] == fake_bitwarden.org_id
    assert claims["exp"] - claims["iat"] == 3600
    assert "refresh_token" not in data


def test_opaque_tokens_and_configurable_lifetime(fake_bitwarden_factory: FakeFactory) -> None:
    fake = fake_bitwarden_factory(jwt_tokens=False, token_lifetime=120)
    api = Api(fake)
    try:
        data = api.get_token().json()
        assert "." not in data["access_token"]
        assert data["expires_in"] == 120
    finally:
        api.http.close()


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"client_secret": "wrong"}, "invalid_client"),
        ({"client_id": "organization"}, "invalid_client"),
        ({"client_id": "organization.not-a-guid"}, "invalid_client"),
        ({"client_id": "organization.0b7f8f0e-8d0a-4f63-9a55-111111111111"}, "invalid_client"),
        ({"client_id": "user.0b7f8f0e-8d0a-4f63-9a55-111111111111"}, "invalid_client"),
        ({"grant_type": "password"}, "unauthorized_client"),
        ({"grant_type": "<omit>"}, "unsupported_grant_type"),
        ({"grant_type": "magic"}, "unsupported_grant_type"),
        ({"scope": "api"}, "invalid_scope"),
    ],
)
def test_token_errors_are_oauth_400(api: Api, form: dict[str, str], error: str) -> None:
    r = api.get_token(**form)
    assert r.status_code == 400
    assert r.json() == {"error": error}


def test_token_scope_may_be_omitted_and_device_fields_are_ignored(api: Api) -> None:
    r = api.get_token(scope="<omit>", deviceType="<omit>", deviceIdentifier="<omit>",
                      deviceName="<omit>")  # fmt: skip
    assert r.status_code == 200


def test_token_endpoint_is_form_only(fake_bitwarden: FakeBitwarden, api: Api) -> None:
    r = api.http.post("/identity/connect/token", json={"client_id": fake_bitwarden.client_id})
    assert (r.status_code, r.json()) == (400, {"error": "invalid_request"})
    assert api.http.get("/identity/connect/token").json() == {"error": "invalid_request"}


def test_token_accepts_basic_client_authentication(fake_bitwarden: FakeBitwarden, api: Api) -> None:
    r = api.http.post(
        "/identity/connect/token",
        data={"grant_type": "client_credentials", "scope": "api.organization"},
        auth=(fake_bitwarden.client_id, fake_bitwarden.client_secret),
    )
    assert r.status_code == 200


def test_disabled_api_is_invalid_client(fake_bitwarden_factory: FakeFactory) -> None:
    api = Api(fake_bitwarden_factory(api_enabled=False))
    try:
        assert api.get_token().json() == {"error": "invalid_client"}
    finally:
        api.http.close()


@pytest.mark.parametrize("authorization", [None, "Bearer nope", "Basic abc"])
def test_api_without_valid_bearer_is_401_empty(api: Api, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    r = api.http.get("/api/public/members", headers=headers)
    assert r.status_code == 401
    assert r.content == b""
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_expired_token_is_401_and_a_new_one_works(fake_bitwarden: FakeBitwarden, api: Api) -> None:
    assert api.get("/members").status_code == 200
    fake_bitwarden.expire_tokens()
    r = api.get("/members")
    assert (r.status_code, r.content) == (401, b"")
    assert "invalid_token" in r.headers["WWW-Authenticate"]
    api.login()
    assert api.get("/members").status_code == 200
    assert fake_bitwarden.tokens_issued == 2


# --------------------------------------------------------------------------------------------
# §3.1, §3.6: request validation


def test_empty_body_is_model_state_error(api: Api) -> None:
    assert_model_error(api.imp(None, raw=b""), {"": ["Body is empty."]})


def test_malformed_json_is_keyed_by_json_path(api: Api) -> None:
    r = api.imp(None, raw=b"{not json")
    assert r.status_code == 400
    assert r.json()["message"] == MODEL_STATE_INVALID
    assert list(r.json()["errors"]) == ["$"]


def test_wrong_json_type_is_keyed_by_its_path(api: Api) -> None:
    r = api.imp(body([{"email": "a@x.com", "externalId": "a", "deleted": None}]))
    assert r.status_code == 400
    assert list(r.json()["errors"]) == ["$.members[0].deleted"]
    r = api.imp({"groups": {}, "members": []})
    assert list(r.json()["errors"]) == ["$.groups"]


def test_non_json_content_type_is_415(api: Api) -> None:
    assert api.imp(body(), ctype="text/plain").status_code == 415


def test_field_validation_table(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    r = api.imp(
        {
            "groups": [
                {"name": " ", "externalId": "", "memberExternalIds": []},
                {"name": "n" * 101, "externalId": "x" * 301, "memberExternalIds": []},
                {"name": "n" * 100, "externalId": "x" * 300, "memberExternalIds": []},
            ],
            "members": [
                {"email": "no-at-sign", "externalId": "a"},
                {"email": "a" * 251 + "@x.com", "externalId": "b"},
                {"email": None, "externalId": "c"},
                {"email": None, "externalId": "d", "deleted": True},
                {"email": "e@x.com", "externalId": "   "},
                {"email": "@x.com", "externalId": "f"},
                {"email": "g@x.com", "externalId": "g" * 301},
            ],
        }
    )
    assert_model_error(
        r,
        {
            "Groups[0].Name": ["The Name field is required."],
            "Groups[0].ExternalId": ["The ExternalId field is required."],
            "Groups[1].Name": ["The field Name must be a string with a maximum length of 100."],
            "Groups[1].ExternalId": [
                "The field ExternalId must be a string with a maximum length of 300."
            ],
            "Members[0].Email": ["The Email field is not a valid e-mail address."],
            "Members[1].Email": ["The field Email must be a string with a maximum length of 256."],
            "Members[2].Email": ["Email is required for enabled members."],
            "Members[4].ExternalId": ["The ExternalId field is required."],
            "Members[5].Email": ["The Email field is not a valid e-mail address."],
            "Members[6].ExternalId": [
                "The field ExternalId must be a string with a maximum length of 300."
            ],
            "OverwriteExisting": ["The OverwriteExisting field is required."],
        },
    )
    assert fake_bitwarden.members == []


def test_length_limits_hold_for_entries_in_the_usual_shape(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    """Entries as clients send them (camelCase, all three keys) take the one-pass check: the
    limits must hold there too, at the boundary (256 characters of email, 300 of externalId)."""
    ok_email = "a" * 250 + "@x.com"  # 256
    r = api.imp(
        body(
            [
                {"email": ok_email, "externalId": "x" * 300, "deleted": False},
                {"email": "b" * 251 + "@x.com", "externalId": "b", "deleted": False},
                {"email": "c@x.com", "externalId": "c" * 301, "deleted": False},
            ]
        )
    )
    assert r.status_code == 400
    assert r.json()["errors"] == {
        "Members[1].Email": ["The field Email must be a string with a maximum length of 256."],
        "Members[2].ExternalId": [
            "The field ExternalId must be a string with a maximum length of 300."
        ],
    }
    assert fake_bitwarden.members == []


@pytest.mark.parametrize("escaped", [False, True], ids=["utf-8", "json-escaped"])
def test_lengths_count_utf16_units_as_dotnet_does(
    api: Api, fake_bitwarden: FakeBitwarden, escaped: bool
) -> None:
    """.NET's string length counts UTF-16 code units: an emoji is two. 150 of them make an
    externalId of exactly 300; 151 one over; 51 a group name over 100 (§3.1)."""
    members = [
        {"email": "a@x.com", "externalId": "\U0001f600" * 150, "deleted": False},
        {"email": "b@x.com", "externalId": "\U0001f600" * 151, "deleted": False},
        {"email": "\U0001f600" * 126 + "@x.com", "externalId": "c", "deleted": False},
    ]
    groups = [{"name": "\U0001f600" * 51, "externalId": "g", "memberExternalIds": []}]
    text = orjson.dumps(body(members, groups))
    if escaped:  # what json.dumps writes: surrogate pairs as \ud83d\ude00
        text = json.dumps(body(members, groups)).encode()
        assert text.isascii()
    r = api.imp(None, raw=text)
    assert r.status_code == 400
    assert r.json()["errors"] == {
        "Groups[0].Name": ["The field Name must be a string with a maximum length of 100."],
        "Members[1].ExternalId": [
            "The field ExternalId must be a string with a maximum length of 300."
        ],
        "Members[2].Email": ["The field Email must be a string with a maximum length of 256."],
    }
    assert fake_bitwarden.members == []
    ok = body([members[0]], [{"name": "\U0001f600" * 50, "externalId": "g"}])
    ok["groups"][0]["memberExternalIds"] = ["\U0001f600" * 150]
    assert api.imp(ok).status_code == 200
    assert [mm.external_id for mm in fake_bitwarden.members] == ["\U0001f600" * 150]


def test_property_names_are_case_insensitive_and_ids_permissive(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    r = api.imp(
        {
            "Groups": [{"NAME": "Eng", "ExternalID": 7, "MemberExternalIds": [42, "b"]}],
            "MEMBERS": [
                {"Email": "A@X.com", "ExternalId": 42},
                {"email": "b@x.com", "externalId": "b"},
            ],
            "OverwriteExisting": False,
        }
    )
    assert r.status_code == 200, r.text
    assert fake_bitwarden.find_member(external_id="42") is not None
    assert fake_bitwarden.find_member(external_id="42").email == "a@x.com"  # type: ignore[union-attr]
    assert fake_bitwarden.group_member_external_ids("7") == {"42", "b"}


@pytest.mark.parametrize("missing", ["groups", "members"])
def test_missing_arrays_crash_the_server(
    api: Api, fake_bitwarden: FakeBitwarden, missing: str
) -> None:
    b = body([m("a")], [g("g")])
    del b[missing]
    r = api.imp(b)
    assert (r.status_code, r.json()) == (
        500,
        {"object": "error", "message": UNHANDLED, "errors": None},
    )
    assert fake_bitwarden.members == []


def test_null_member_external_ids_crash_the_server(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    r = api.imp(body([m("a")], [{"name": "G", "externalId": "g", "memberExternalIds": None}]))
    assert r.status_code == 500
    assert fake_bitwarden.members == []


# --------------------------------------------------------------------------------------------
# §3.2: size limits


def test_cloud_cap_counts_active_members(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    many = [m(f"u{i}") for i in range(2001)]
    r = api.imp(body(many))
    assert r.status_code == 400
    assert r.json() == {"object": "error", "message": TOO_MUCH_DATA, "errors": None}
    assert fake_bitwarden.members == []
    # exactly 2000 active is allowed; deleted entries do not count
    assert api.imp(body([*many[:2000], m("gone", deleted=True)])).status_code == 200
    assert len(fake_bitwarden.members) == 2000


def test_cloud_cap_counts_groups_and_large_import_lifts_it(api: Api) -> None:
    groups = [g(f"g{i}") for i in range(2001)]
    assert api.imp(body([], groups)).json()["message"] == TOO_MUCH_DATA
    assert api.imp(body([], groups, largeImport=True)).status_code == 200


def test_self_hosted_has_no_cap(fake_bitwarden_self_hosted: FakeBitwarden) -> None:
    api = Api(fake_bitwarden_self_hosted)
    try:
        api.login()
        assert api.imp(body([m(f"u{i}") for i in range(2001)])).status_code == 200
    finally:
        api.http.close()


# --------------------------------------------------------------------------------------------
# §3.3, §3.4: the import algorithm


def test_new_members_are_invited_users_with_lower_cased_email(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    r = api.imp(body([m("ann", "Ann@Example.COM")]))
    assert (r.status_code, r.content) == (200, b"")
    (ann,) = fake_bitwarden.members
    assert (ann.email, ann.external_id, ann.status, ann.type) == (
        "ann@example.com", "ann", STATUS_INVITED, TYPE_USER)  # fmt: skip
    assert ann.user_id is None
    assert fake_bitwarden.events == [("OrganizationUser_Invited", ann.id)]


def test_staged_only_with_the_server_flag(fake_bitwarden_factory: FakeFactory) -> None:
    for flag, expected in ((True, STATUS_STAGED), (False, STATUS_INVITED)):
        fake = fake_bitwarden_factory(staged_status=flag)
        api = Api(fake)
        try:
            api.login()
            assert api.imp(body([m("a")], inviteUsersAfterProvisioning=False)).status_code == 200
            assert fake.members[0].status == expected
        finally:
            api.http.close()


def test_existing_email_under_another_external_id_is_skipped(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_member("ann@example.com", external_id="old-ann")
    assert (
        api.imp(body([m("new-ann", "ann@example.com")], [g("g", members=["new-ann"])])).status_code
        == 200
    )
    (ann,) = fake_bitwarden.members
    assert ann.external_id == "old-ann"
    assert fake_bitwarden.group_member_emails("g") == set()


def test_member_without_external_id_is_linked_by_email(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    manual = fake_bitwarden.add_member("ann@example.com")
    assert api.imp(body([m("ann")], [g("g", members=["ann"])])).status_code == 200
    linked = fake_bitwarden.member(manual.id)
    assert linked is not None
    assert linked.external_id == "ann"
    assert linked.status == STATUS_CONFIRMED
    assert len(fake_bitwarden.members) == 1
    assert fake_bitwarden.group_member_emails("g") == {"ann@example.com"}


def test_revoked_members_are_not_restored_and_nothing_else_changes(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_member("old@example.com", external_id="ann", status=STATUS_REVOKED)
    assert api.imp(body([m("ann", "new@example.com")])).status_code == 200
    (ann,) = fake_bitwarden.members
    assert (ann.status, ann.email) == (STATUS_REVOKED, "old@example.com")


def test_deleted_entries_remove_non_owners_only(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.add_owner("boss@example.com", external_id="boss")
    gone = fake_bitwarden.add_member("gone@example.com", external_id="gone", status=STATUS_INVITED)
    fake_bitwarden.add_member("kept@example.com", external_id="kept")
    fake_bitwarden.add_group("G", external_id="g", members=[gone])
    r = api.imp(body([m("boss", deleted=True), m("gone", deleted=True), m("unknown", deleted=True),
                      m("kept", deleted=True), m("kept")]))  # fmt: skip
    assert r.status_code == 200
    assert {x.external_id for x in fake_bitwarden.members} == {"boss", "kept"}
    assert fake_bitwarden.group_member_emails("g") == set()
    assert ("OrganizationUser_Removed", gone.id) in fake_bitwarden.events


def test_overwrite_removes_unlisted_synced_members(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.add_owner("boss@example.com", external_id="boss")
    fake_bitwarden.add_member("manual@example.com")
    fake_bitwarden.add_member("a@example.com", external_id="a")
    fake_bitwarden.add_member("b@example.com", external_id="b")
    assert api.imp(body([m("a")], overwrite=True)).status_code == 200
    assert {x.email for x in fake_bitwarden.members} == {
        "boss@example.com", "manual@example.com", "a@example.com"}  # fmt: skip
    assert api.imp(body([], overwrite=True)).status_code == 200
    assert {x.email for x in fake_bitwarden.members} == {"boss@example.com", "manual@example.com"}


@pytest.mark.parametrize(
    "seed",
    [
        {"status": STATUS_INVITED},
        {"status": STATUS_STAGED},
        {"master_password": False},
        {"status": STATUS_REVOKED, "linked": False},
    ],
)
def test_overwrite_guard_refuses_when_a_candidate_has_no_master_password(
    api: Api, fake_bitwarden: FakeBitwarden, seed: dict[str, Any]
) -> None:
    fake_bitwarden.add_member("nomp@example.com", external_id="nomp", **seed)
    fake_bitwarden.add_member("x@example.com", external_id="x")
    fake_bitwarden.add_member("y@example.com", external_id="y")
    r = api.imp(body([m("x", deleted=True)], overwrite=True))
    assert r.status_code == 400
    assert r.json() == {"object": "error", "message": OVERWRITE_NO_MP, "errors": None}
    # not transactional: the explicit removal (step 3) already happened, step 4 did nothing
    assert {x.external_id for x in fake_bitwarden.members} == {"nomp", "y"}


def test_duplicate_active_emails_crash_after_removals(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_member("gone@example.com", external_id="gone")
    r = api.imp(body([m("gone", deleted=True), m("a", "same@x.com"), m("b", "SAME@x.com")]))
    assert r.status_code == 500
    assert r.json()["message"] == UNHANDLED
    assert fake_bitwarden.members == []


def test_duplicated_external_id_in_the_org_breaks_every_import(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    assert api.imp(body([m("dup", "one@x.com"), m("dup", "two@x.com")])).status_code == 200
    assert len(fake_bitwarden.members) == 2  # both invited with the same externalId
    r = api.imp(body([m("other")]))
    assert r.status_code == 500
    assert len(fake_bitwarden.members) == 2


def test_groups_created_renamed_and_membership_replaced(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    manual_member = fake_bitwarden.add_member("manual@example.com")
    a = fake_bitwarden.add_member("a@example.com", external_id="a")
    fake_bitwarden.add_group("Old name", external_id="eng", members=[manual_member, a])
    fake_bitwarden.add_group("Sales", external_id=None)  # manual group, same name as below
    fake_bitwarden.add_group("Untouched", external_id="other", members=[a])
    r = api.imp(
        body(
            [m("a"), m("b")], [g("eng", "Engineering", ["b", "nobody"]), g("sales", "Sales", ["a"])]
        )
    )
    assert r.status_code == 200
    eng = fake_bitwarden.find_group(external_id="eng")
    assert eng is not None
    assert eng.name == "Engineering"
    assert fake_bitwarden.group_member_external_ids("eng") == {"b"}
    assert fake_bitwarden.group_member_external_ids("sales") == {"a"}
    assert len([x for x in fake_bitwarden.groups if x.name == "Sales"]) == 2
    assert fake_bitwarden.group_member_external_ids("other") == {"a"}
    # groups are never deleted, not even with overwrite
    assert api.imp(body([m("a"), m("b")], [], overwrite=True)).status_code == 200
    assert len(fake_bitwarden.groups) == 4


def test_membership_uses_members_linked_before_this_request(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    """bwdc's batches rely on this: users first, groups in a later request (§3.2)."""
    assert api.imp(body([m("a"), m("b")])).status_code == 200
    assert api.imp(body([], [g("g", members=["a", "b"])])).status_code == 200
    assert fake_bitwarden.group_member_external_ids("g") == {"a", "b"}


def test_duplicate_group_external_ids_crash_after_members(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    r = api.imp(body([m("a")], [g("g"), g("g", "Other")]))
    assert r.status_code == 500
    assert len(fake_bitwarden.members) == 1
    assert fake_bitwarden.groups == []


def test_plan_without_groups_refuses_groups_after_members(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.use_groups = False
    r = api.imp(body([m("a")], [g("g")]))
    assert r.json() == {
        "object": "error",
        "message": "Organization cannot use groups.",
        "errors": None,
    }
    assert len(fake_bitwarden.members) == 1
    assert api.imp(body([m("b")])).status_code == 200


def test_plan_without_directory_sync(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.use_directory = False
    r = api.imp(body([m("a")]))
    assert r.json()["message"] == "Organization cannot use directory syncing."
    assert fake_bitwarden.members == []


def test_seat_limit(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.seats = 2
    fake_bitwarden.add_owner("boss@example.com")
    assert api.imp(body([m("a"), m("b")])).json()["message"] == "Seat limit has been reached."
    assert api.imp(body([m("a")])).status_code == 200


def test_confirmed_owner_rule_when_enabled(fake_bitwarden_factory: FakeFactory) -> None:
    fake = fake_bitwarden_factory(require_confirmed_owner=True)
    api = Api(fake)
    try:
        api.login()
        r = api.imp(body([m("a")]))
        assert r.json()["message"] == "Organization must have at least one confirmed owner."
        fake.add_owner("boss@example.com")
        assert api.imp(body([m("a")])).status_code == 200
    finally:
        api.http.close()


# --------------------------------------------------------------------------------------------
# §5: read endpoints, revoke and restore


def test_member_shapes(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    owner = fake_bitwarden.add_owner("boss@example.com", name="Boss")
    invited = fake_bitwarden.add_member("new@example.com", external_id="n", status=STATUS_INVITED)
    r = api.get("/members")
    data = r.json()
    assert data["object"] == "list"
    assert [x["id"] for x in data["data"]] == [owner.id, invited.id]
    first, second = data["data"]
    assert set(first) == MEMBER_KEYS
    assert first["collections"] is None  # the list endpoint passes no collections
    assert (first["type"], first["status"], first["name"], first["externalId"]) == (
        TYPE_OWNER, STATUS_CONFIRMED, "Boss", None)  # fmt: skip
    assert first["userId"] is not None
    assert (second["userId"], second["name"], second["status"]) == (None, None, STATUS_INVITED)
    one = api.get(f"/members/{invited.id}").json()
    assert one == {**second, "collections": []}
    assert api.get(f"/members/{invited.id.upper()}").status_code == 200


def test_group_shapes_and_membership_ids(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    a = fake_bitwarden.add_member("a@example.com", external_id="a")
    grp = fake_bitwarden.add_group("Eng", external_id="eng", members=[a])
    fake_bitwarden.add_group("Manual")
    data = api.get("/groups").json()
    assert data["object"] == "list"
    assert data["data"][0] == {"object": "group", "id": grp.id, "name": "Eng", "externalId": "eng",
                               "collections": []}  # fmt: skip
    assert data["data"][1]["externalId"] is None
    assert api.get(f"/groups/{grp.id}").json() == data["data"][0]
    assert api.get(f"/groups/{grp.id}/member-ids").json() == [a.id]
    assert api.get(f"/members/{a.id}/group-ids").json() == [grp.id]


@pytest.mark.parametrize(
    "path",
    ["/members/{x}", "/members/{x}/group-ids", "/groups/{x}", "/groups/{x}/member-ids",
     "/members/not-a-guid", "/nothing-here"],
)  # fmt: skip
def test_unknown_ids_and_paths_are_404_empty(api: Api, path: str) -> None:
    r = api.get(path.format(x="0b7f8f0e-8d0a-4f63-9a55-111111111111"))
    assert (r.status_code, r.content) == (404, b"")


def test_revoke_and_restore(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    a = fake_bitwarden.add_member("a@example.com", external_id="a")
    inv = fake_bitwarden.add_member("i@example.com", external_id="i", status=STATUS_INVITED)
    for member, prior in ((a, STATUS_CONFIRMED), (inv, STATUS_INVITED)):
        r = api.post(f"/members/{member.id}/revoke")
        assert (r.status_code, r.content) == (200, b"")
        assert fake_bitwarden.member(member.id).status == STATUS_REVOKED  # type: ignore[union-attr]
        r = api.post(f"/members/{member.id}/revoke")
        assert r.json() == {"object": "error", "message": "Already revoked.", "errors": None}
        assert api.post(f"/members/{member.id}/restore").status_code == 200
        assert fake_bitwarden.member(member.id).status == prior  # type: ignore[union-attr]
        assert api.post(f"/members/{member.id}/restore").json()["message"] == "Already active."
    assert ("OrganizationUser_Revoked", a.id) in fake_bitwarden.events
    assert api.post("/members/0b7f8f0e-8d0a-4f63-9a55-111111111111/revoke").status_code == 404


def test_owners_can_be_revoked_but_not_the_last_confirmed_one(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    one = fake_bitwarden.add_owner("one@example.com")
    two = fake_bitwarden.add_owner("two@example.com")
    assert api.post(f"/members/{one.id}/revoke").status_code == 200
    r = api.post(f"/members/{two.id}/revoke")
    assert r.status_code == 400
    assert r.json()["message"] == "Organization must have at least one confirmed owner."


# --------------------------------------------------------------------------------------------
# §4: faults


def test_throttle_sends_retry_after_and_the_internal_error_body(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.throttle("list_members", times=2, retry_after=7)
    for _ in range(2):
        r = api.get("/members")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "7"
        assert r.json() == {
            "object": "error",
            "message": "Slow down! Too many requests. Try again in 7s.",
            "validationErrors": None,
            "exceptionMessage": None,
            "exceptionStackTrace": None,
            "innerExceptionMessage": None,
        }
    assert api.get("/groups").status_code == 200  # other endpoints unaffected
    assert api.get("/members").status_code == 200


def test_token_endpoint_can_be_throttled(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.throttle("token", retry_after=60)
    assert api.get_token().status_code == 429
    assert api.get_token().status_code == 200


def test_server_errors_until_cleared(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.server_error("*", times=None, status=503)
    for _ in range(3):
        r = api.get("/groups")
        assert r.status_code == 503
        assert r.json()["message"] == UNHANDLED
    fake_bitwarden.clear_faults()
    assert api.get("/groups").status_code == 200


def test_fail_with_custom_body(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.fail("import", status=502, body=b"<html>bad gateway</html>")
    r = api.imp(body())
    assert (r.status_code, r.content) == (502, b"<html>bad gateway</html>")


def test_slow_and_disconnect(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.slow("list_groups", 0.3, times=1)
    started = time.monotonic()
    assert api.get("/groups").status_code == 200
    assert time.monotonic() - started >= 0.3
    fake_bitwarden.disconnect("list_groups")
    with pytest.raises(httpx.RemoteProtocolError):
        api.get("/groups")
    assert api.get("/groups").status_code == 200
    assert [r.status for r in fake_bitwarden.requests_to("list_groups")] == [200, 0, 200]


def test_unknown_fault_endpoint_is_refused(fake_bitwarden: FakeBitwarden) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        fake_bitwarden.throttle("imports")


def test_requests_are_recorded_parsed(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.clear_requests()
    api.imp(body([m("a")]))
    (rec,) = fake_bitwarden.requests
    assert (rec.method, rec.path, rec.endpoint, rec.status) == (
        "POST", "/api/public/organization/import", "import", 200)  # fmt: skip
    assert rec.body == body([m("a")])
    assert rec.headers["content-type"] == "application/json"


# --------------------------------------------------------------------------------------------
# §6: Vaultwarden


VW_ERROR_KEYS = {
    "message", "error", "error_description", "validationErrors", "errorModel",
    "exceptionMessage", "exceptionStackTrace", "innerExceptionMessage", "object",
}  # fmt: skip


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"deviceIdentifier": "<omit>"}, "device_identifier cannot be blank"),
        ({"deviceName": "<omit>"}, "device_name cannot be blank"),
        ({"deviceType": "<omit>"}, "device_type cannot be blank"),
        ({"scope": "<omit>"}, "scope cannot be blank"),
        ({"scope": "api"}, "Scope not supported"),
        ({"client_id": "organization.nope"}, "Malformed client_id"),
        ({"client_id": "organization.0b7f8f0e-8d0a-4f63-9a55-111111111111"}, "Invalid client_id"),
        ({"client_secret": "wrong"}, "Incorrect client_secret"),
    ],
)
def test_vw_token_errors(vw: Api, form: dict[str, str], message: str) -> None:
    r = vw.get_token(**form)
    assert r.status_code == 400
    data = r.json()
    assert set(data) == VW_ERROR_KEYS
    assert data["message"] == message
    assert data["validationErrors"] == {"": [message]}
    assert data["errorModel"] == {"message": message, "object": "error"}


def test_vw_token_accepts_snake_case_device_fields(vw: Api) -> None:
    r = vw.get_token(deviceType="<omit>", deviceIdentifier="<omit>", deviceName="<omit>",
                     device_type="8", device_identifier="x", device_name="linux")  # fmt: skip
    assert r.status_code == 200
    assert r.json()["expires_in"] == 3600


def test_vw_has_no_list_endpoints_and_401_is_rocket_json(vw: Api) -> None:
    for path in ("/members", "/groups", "/members/x/revoke"):
        r = vw.get(path)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == 404
    r = vw.http.post("/api/public/organization/import", json=body())
    assert r.status_code == 401
    assert r.json()["error"]["code"] == 401


@pytest.mark.parametrize(
    "bad",
    [
        {"groups": [], "members": [{"email": "a@x.com", "externalId": "a"}],
         "overwriteExisting": False},
        {"groups": [], "members": [], "OverwriteExisting": False},
        {"groups": [], "members": [{"email": None, "externalId": "a", "deleted": True}],
         "overwriteExisting": False},
        {"groups": [{"name": "G", "externalId": "g", "memberExternalIds": [1]}], "members": [],
         "overwriteExisting": False},
        {"groups": [], "members": [{"email": "a@x.com", "externalId": 1, "deleted": False}],
         "overwriteExisting": False},
    ],
)  # fmt: skip
def test_vw_import_is_strict(vw: Api, bad: dict[str, Any]) -> None:
    r = vw.imp(bad)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == 422


def test_vw_malformed_json_is_400(vw: Api) -> None:
    assert vw.imp(None, raw=b"{").status_code == 400


def test_vw_members_matched_by_email_revoked_and_restored(
    vw: Api, fake_vaultwarden: FakeBitwarden
) -> None:
    owner = fake_vaultwarden.add_owner("boss@example.com")
    a = fake_vaultwarden.add_member("a@example.com", external_id="old-a")
    assert vw.imp(body([m("new-a", "A@example.com"), m("b")])).status_code == 200
    assert fake_vaultwarden.member(a.id).external_id == "new-a"  # type: ignore[union-attr]
    b = fake_vaultwarden.find_member(email="b@example.com")
    assert b is not None
    assert b.status == STATUS_INVITED
    # deleted => revoked (not removed); the last confirmed owner is never revoked
    r = vw.imp(
        body(
            [m("new-a", "a@example.com", deleted=True), m("boss", "boss@example.com", deleted=True)]
        )
    )
    assert r.status_code == 200
    assert fake_vaultwarden.member(a.id).status == STATUS_REVOKED  # type: ignore[union-attr]
    assert fake_vaultwarden.member(owner.id).status == STATUS_CONFIRMED  # type: ignore[union-attr]
    # re-appearing => restored
    assert vw.imp(body([m("new-a", "a@example.com")])).status_code == 200
    assert fake_vaultwarden.member(a.id).status == STATUS_CONFIRMED  # type: ignore[union-attr]


def test_vw_other_owners_can_be_revoked(vw: Api, fake_vaultwarden: FakeBitwarden) -> None:
    fake_vaultwarden.add_owner("one@example.com")
    two = fake_vaultwarden.add_owner("two@example.com")
    assert vw.imp(body([m("two", "two@example.com", deleted=True)])).status_code == 200
    assert fake_vaultwarden.member(two.id).status == STATUS_REVOKED  # type: ignore[union-attr]


def test_vw_groups_only_when_enabled(fake_bitwarden_factory: FakeFactory) -> None:
    fake = fake_bitwarden_factory(vaultwarden=True)  # ORG_GROUPS_ENABLED defaults to false
    api = Api(fake)
    try:
        api.login()
        assert api.imp(body([m("a")], [g("g", members=["a"])])).status_code == 200
        assert fake.groups == []
    finally:
        api.http.close()


def test_vw_groups_keep_names_and_replace_membership(
    vw: Api, fake_vaultwarden: FakeBitwarden
) -> None:
    a = fake_vaultwarden.add_member("a@example.com", external_id="a")
    manual = fake_vaultwarden.add_member("manual@example.com")
    fake_vaultwarden.add_group("Old", external_id="g", members=[a, manual])
    assert vw.imp(body([m("a"), m("b")], [g("g", "New", ["b", "zzz"])])).status_code == 200
    grp = fake_vaultwarden.find_group(external_id="g")
    assert grp is not None
    assert grp.name == "Old"
    assert fake_vaultwarden.group_member_external_ids("g") == {"b"}


def test_vw_overwrite_deletes_unlisted_after_adds_without_mp_guard(
    vw: Api, fake_vaultwarden: FakeBitwarden
) -> None:
    fake_vaultwarden.add_owner("boss@example.com", external_id="boss")
    fake_vaultwarden.add_member("inv@example.com", external_id="inv", status=STATUS_INVITED)
    fake_vaultwarden.add_member("manual@example.com")
    fake_vaultwarden.add_member("rev@example.com", external_id="rev")
    r = vw.imp(body([m("rev", "rev@example.com", deleted=True), m("new")], overwrite=True))
    assert r.status_code == 200
    left = {x.email: x.status for x in fake_vaultwarden.members}
    assert left == {
        "boss@example.com": STATUS_CONFIRMED,  # last confirmed owner protected
        "manual@example.com": STATUS_CONFIRMED,  # no externalId: untouched
        "rev@example.com": STATUS_REVOKED,  # listed as deleted: stays, revoked
        "new@example.com": STATUS_INVITED,
    }


def test_vw_rewrites_the_external_id_of_a_revoked_member(
    vw: Api, fake_vaultwarden: FakeBitwarden
) -> None:
    a = fake_vaultwarden.add_member("a@example.com", external_id="a", status=STATUS_REVOKED)
    assert vw.imp(body([m("a2", "a@example.com", deleted=True)])).status_code == 200
    assert fake_vaultwarden.member(a.id) == dataclasses.replace(a, external_id="a2")


def test_vw_duplicate_emails_do_not_crash(vw: Api, fake_vaultwarden: FakeBitwarden) -> None:
    assert vw.imp(body([m("a", "same@x.com"), m("b", "same@x.com")])).status_code == 200
    (only,) = fake_vaultwarden.members
    assert only.external_id == "b"


# --------------------------------------------------------------------------------------------
# command line


def test_command_line_serves_and_prints_the_base_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bwsync.testing.fake_bitwarden", "--port", "0", "--vaultwarden"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        creds = dict(proc.stdout.readline().strip().split("=", 1) for _ in range(3))
        assert base.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=base, trust_env=False, timeout=10) as http:
            r = http.post("/identity/connect/token", data={
                "grant_type": "client_credentials", "scope": "api.organization",
                "client_id": creds["BWSYNC_BITWARDEN__CLIENT_ID"],
                "client_secret": creds["BWSYNC_BITWARDEN__CLIENT_SECRET"],
                "deviceType": "8", "deviceIdentifier": "x", "deviceName": "linux"})  # fmt: skip
            assert r.status_code == 200
            assert http.get("/api/public/members").status_code == 404  # Vaultwarden
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_duplicated_group_external_id_in_the_org_crashes_group_step(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    fake_bitwarden.add_group("One", external_id="dup")
    fake_bitwarden.add_group("Two", external_id="dup")
    r = api.imp(body([m("a")], [g("new")]))
    assert r.status_code == 500
    assert len(fake_bitwarden.members) == 1  # members were processed first
    assert fake_bitwarden.find_group(external_id="new") is None
    assert api.imp(body([m("b")])).status_code == 200  # no groups in the request: fine


def test_large_imports_stay_fast(fake_bitwarden_self_hosted: FakeBitwarden) -> None:
    api = Api(fake_bitwarden_self_hosted)
    try:
        api.login()
        members = [m(f"u{i}") for i in range(20_000)]
        groups = [g(f"g{j}", members=[f"u{i}" for i in range(j, 20_000, 50)]) for j in range(50)]
        started = time.monotonic()
        assert api.imp(body(members, groups)).status_code == 200
        assert api.imp(body(members, groups)).status_code == 200
        assert time.monotonic() - started < 20
        assert len(fake_bitwarden_self_hosted.group_member_external_ids("g0")) == 400
        assert len(api.get("/members").json()["data"]) == 20_000
    finally:
        api.http.close()


# --------------------------------------------------------------------------------------------
# the stand-in's indexes (externalId, email, group membership) behave like the scans they replace


def test_removed_member_frees_email_and_external_id_within_one_import(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    old = fake_bitwarden.add_member("ann@example.com", external_id="old-ann")
    fake_bitwarden.add_group("G", external_id="g", members=[old])
    members = [m("old-ann", "ann@example.com", deleted=True), m("new-ann", "ann@example.com")]
    r = api.imp(body(members, [g("g", members=["old-ann", "new-ann"])]))
    assert r.status_code == 200
    (ann,) = fake_bitwarden.members
    assert (ann.external_id, ann.status) == ("new-ann", STATUS_INVITED)
    assert ann.id != old.id
    assert fake_bitwarden.group_member_external_ids("g") == {"new-ann"}
    assert fake_bitwarden.events[:2] == [
        ("OrganizationUser_Removed", old.id), ("OrganizationUser_Invited", ann.id)]  # fmt: skip
    # and the removed member's externalId is free again
    assert api.imp(body([m("old-ann", "other@example.com")])).status_code == 200
    assert fake_bitwarden.find_member(external_id="old-ann") is not None


def test_seeded_duplicate_external_ids_break_imports_until_one_goes(
    fake_bitwarden: FakeBitwarden, api: Api
) -> None:
    one = fake_bitwarden.add_member("one@example.com", external_id="dup")
    fake_bitwarden.add_member("two@example.com", external_id="dup")
    fake_bitwarden.add_member("blank1@example.com", external_id=" ")  # blank: not "external"
    fake_bitwarden.add_member("blank2@example.com", external_id=" ")
    assert api.imp(body([m("a")])).status_code == 500
    assert api.imp(body([])).status_code == 500
    # replacing the seeded membership (same id) re-indexes it: the duplicate is gone
    fake_bitwarden.add_member("one@example.com", external_id="one", member_id=one.id)
    assert api.imp(body([m("a")], [g("g", members=["dup", "one", " "])])).status_code == 200
    assert fake_bitwarden.members[0].email == "one@example.com"  # kept its place
    assert fake_bitwarden.group_member_emails("g") == {"one@example.com", "two@example.com"}


def test_blank_external_ids_are_linked_by_email(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    blank = fake_bitwarden.add_member("ann@example.com", external_id="  ")
    assert api.imp(body([m("ann")], [g("g", members=["ann", "  "])])).status_code == 200
    assert fake_bitwarden.member(blank.id).external_id == "ann"  # type: ignore[union-attr]
    assert fake_bitwarden.group_member_emails("g") == {"ann@example.com"}
    assert len(fake_bitwarden.members) == 1


def test_shared_external_id_in_one_request_goes_to_the_later_member(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    """Two unlinked members adopt the same externalId (two entries, two emails): the group
    gets the one a scan of the organization meets last, whatever the request order."""
    first = fake_bitwarden.add_member("a@example.com")
    later = fake_bitwarden.add_member("b@example.com")
    r = api.imp(body([m("x", "b@example.com"), m("x", "a@example.com")], [g("g", members=["x"])]))
    assert r.status_code == 200
    assert fake_bitwarden.group_member_emails("g") == {"b@example.com"}
    assert {x.id: x.external_id for x in fake_bitwarden.members} == {first.id: "x", later.id: "x"}
    assert api.imp(body([m("y")])).status_code == 500  # the org now holds a duplicate


def test_members_seeded_after_an_import_are_seen_by_the_next(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    assert api.imp(body([m("a")])).status_code == 200
    b = fake_bitwarden.add_member("b@example.com", external_id="b")
    fake_bitwarden.add_member("c@example.com")
    r = api.imp(body([m("b"), m("other-c", "C@example.com")], [g("g", members=["a", "b"])]))
    assert r.status_code == 200
    assert fake_bitwarden.group_member_external_ids("g") == {"a", "b"}
    assert api.get(f"/members/{b.id}/group-ids").json() == [fake_bitwarden.groups[0].id]
    assert fake_bitwarden.find_member(email="c@example.com").external_id == "other-c"  # type: ignore[union-attr]
    fake_bitwarden.reset()
    api.login()
    assert api.imp(body([m("a")], [g("g", members=["a"])])).status_code == 200
    assert [x.external_id for x in fake_bitwarden.members] == ["a"]
    assert fake_bitwarden.group_member_external_ids("g") == {"a"}


def test_removal_drops_one_mention_per_group(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    a = fake_bitwarden.add_member("a@example.com", external_id="a")
    b = fake_bitwarden.add_member("b@example.com", external_id="b")
    one = fake_bitwarden.add_group("One", members=[a, b, a])  # a seeded group may list twice
    two = fake_bitwarden.add_group("Two", members=[b, a])
    fake_bitwarden.add_group("Three", members=[b])
    assert api.get(f"/members/{a.id}/group-ids").json() == [one.id, two.id]
    assert api.imp(body([m("a", deleted=True)])).status_code == 200
    assert [x.member_ids for x in fake_bitwarden.groups] == [[b.id, a.id], [b.id], [b.id]]
    assert api.get(f"/groups/{one.id}/member-ids").json() == [b.id]  # a is gone from the org


def test_member_and_group_ids_not_in_canonical_form(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    """Seeded ids are matched as ASP.NET binds a Guid (case, dashes), even when stored oddly."""
    odd = fake_bitwarden.add_member("a@example.com", member_id="ABCDEF00000040008000000000000001")
    grp = fake_bitwarden.add_group("G", group_id="ABCDEF00-0000-4000-8000-0000000000AA",
                                   members=[odd])  # fmt: skip
    assert api.get("/members/abcdef00-0000-4000-8000-000000000001").json()["id"] == odd.id
    assert api.get(f"/members/{odd.id}/group-ids").json() == [grp.id]
    assert api.get("/groups/abcdef000000400080000000000000aa").json()["id"] == grp.id
    assert api.post("/members/abcdef00-0000-4000-8000-000000000001/revoke").status_code == 200
    assert api.get("/members/abcdef00-0000-4000-8000-000000000002").status_code == 404


def test_vw_matches_the_first_member_with_an_email(
    vw: Api, fake_vaultwarden: FakeBitwarden
) -> None:
    first = fake_vaultwarden.add_member("same@example.com", external_id="one")
    fake_vaultwarden.add_member("SAME@example.com", external_id="two")
    fake_vaultwarden.add_member("x@example.com", external_id="x")
    assert vw.imp(body([m("x", "same@example.com")], [g("g", members=["x"])])).status_code == 200
    assert fake_vaultwarden.member(first.id).external_id == "x"  # type: ignore[union-attr]
    # two members now share "x": the group gets the earlier one
    assert fake_vaultwarden.group_member_emails("g") == {"same@example.com"}
    assert fake_vaultwarden.group_member_external_ids("g") == {"x"}
    (grp,) = fake_vaultwarden.groups
    assert grp.member_ids == [first.id]


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cloud_rate_limits_on_identity(fake_bitwarden_factory: FakeFactory) -> None:
    clock = FakeClock()
    api = Api(fake_bitwarden_factory(rate_limits=True, clock=clock))
    try:
        assert [api.get_token().status_code for _ in range(6)] == [200] * 5 + [429]
        r = api.get_token()
        assert r.headers["Retry-After"] == "1"
        assert r.json()["message"] == "Slow down! Too many requests. Try again in 1s."
        clock.now += 1
        assert [api.get_token().status_code for _ in range(6)] == [200] * 5 + [429]
        clock.now += 10
        r = api.get_token()  # 10 per minute on the token endpoint
        assert r.status_code == 429
        assert r.json()["message"] == "Slow down! Too many requests. Try again in 1m."
        assert r.headers["Retry-After"] == "49"
        clock.now += 49
        assert api.get_token().status_code == 200
    finally:
        api.http.close()


def test_cloud_rate_limits_on_the_api(fake_bitwarden_factory: FakeFactory) -> None:
    clock = FakeClock()
    api = Api(fake_bitwarden_factory(rate_limits=True, clock=clock))
    try:
        api.login()
        assert [api.imp(body()).status_code for _ in range(6)] == [200] * 5 + [429]
        assert [api.get("/groups").status_code for _ in range(201)] == [200] * 200 + [429]
    finally:
        api.http.close()


def test_expiry_follows_the_injected_clock(fake_bitwarden_factory: FakeFactory) -> None:
    clock = FakeClock()
    api = Api(fake_bitwarden_factory(clock=clock))
    try:
        api.login()
        clock.now += 3599
        assert api.get("/members").status_code == 200
        clock.now += 1
        assert api.get("/members").status_code == 401
    finally:
        api.http.close()


def test_self_hosted_ignores_rate_limits(fake_bitwarden_factory: FakeFactory) -> None:
    api = Api(fake_bitwarden_factory(rate_limits=True, self_hosted=True))
    try:
        assert all(api.get_token().status_code == 200 for _ in range(12))
    finally:
        api.http.close()


def test_stop_does_not_wait_for_idle_keep_alive_clients(
    fake_bitwarden_factory: FakeFactory,
) -> None:
    fake = fake_bitwarden_factory()
    with httpx.Client(base_url=fake.base_url, trust_env=False, timeout=5) as http:
        assert http.get("/api/public/members").status_code == 401  # connection kept alive
        started = time.monotonic()
        fake.stop()
        assert time.monotonic() - started < 2
        with pytest.raises(httpx.TransportError):
            http.get("/api/public/members")


def test_known_path_with_another_method_is_405(api: Api) -> None:
    r = api.get("/organization/import")
    assert (r.status_code, r.content, r.headers["Allow"]) == (405, b"", "POST")
    r = api.http.delete("/api/public/members", headers=api.headers())
    assert r.status_code == 405


@pytest.mark.parametrize(
    "client_id", ["organization.not-a-guid", "user.2f1e6d5c-4b3a-4c2d-9e8f-7a6b5c4d3e2f"]
)
def test_malformed_configured_client_id_is_refused(client_id: str) -> None:
    with pytest.raises(ValueError, match=r"organization|GUID|hexadecimal"):
        FakeBitwarden(client_id=client_id)


def test_fixed_credentials(fake_bitwarden_factory: FakeFactory) -> None:
    fake = fake_bitwarden_factory(
        client_id="organization.2F1E6D5C-4B3A-4C2D-9E8F-7A6B5C4D3E2F", client_secret="fixed"
    )
    assert fake.org_id == "2f1e6d5c-4b3a-4c2d-9e8f-7a6b5c4d3e2f"
    api = Api(fake)
    try:
        assert api.get_token().status_code == 200
        r = api.get_token(client_id="organization.2f1e6d5c4b3a4c2d9e8f7a6b5c4d3e2f")
        assert r.status_code == 200  # the GUID part is parsed, not compared as text
    finally:
        api.http.close()


def test_vw_without_mail_existing_accounts_are_accepted(
    fake_bitwarden_factory: FakeFactory,
) -> None:
    fake = fake_bitwarden_factory(vaultwarden=True, mail_enabled=False)
    fake.add_account("has-account@example.com")
    fake.add_account("no-password@example.com", master_password=False)
    api = Api(fake)
    try:
        api.login()
        r = api.imp(
            body([m("a", "has-account@example.com"), m("b", "no-password@example.com"), m("c")])
        )
        assert r.status_code == 200
        status = {x.external_id: x.status for x in fake.members}
        assert status == {"a": STATUS_ACCEPTED, "b": STATUS_INVITED, "c": STATUS_INVITED}
    finally:
        api.http.close()


def test_fault_default_bodies_follow_the_server(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.fail("token", status=400)
    assert api.get_token().json() == {"error": "invalid_client"}
    fake_bitwarden.fail("list_groups", status=401)
    r = api.get("/groups")
    assert (r.status_code, r.content) == (401, b"")
    assert "invalid_token" in r.headers["WWW-Authenticate"]


def test_vw_fault_default_bodies(vw: Api, fake_vaultwarden: FakeBitwarden) -> None:
    fake_vaultwarden.fail("token", status=400)
    assert vw.get_token().json()["message"] == "Invalid client_id"
    fake_vaultwarden.fail("import", status=401)
    assert vw.imp(body()).json()["error"]["code"] == 401


# --------------------------------------------------------------------------------------------
# fast paths give what the general ones give (random requests, compared through the API)

_POOL_EMAILS = ["ann@example.com", "Ann@Example.COM", "bob@x.org", "cy@z", "İx@t.com", "ix@t.com",
                "dee@q.com", "eve@e.e"]  # fmt: skip
_POOL_EXTS = ["u1", "u2", "u3", "u4", "u5", "u6"]


def _random_entry(rng: random.Random, *, bad: float) -> dict[str, Any]:
    email: Any = rng.choice(_POOL_EMAILS)
    ext: Any = rng.choice(_POOL_EXTS)
    if rng.random() < bad:
        email = rng.choice(
            ["no-at", "@lead.com", "trail@", "two@@x", " ", None, "a" * 251 + "@b.c"]
        )
    if rng.random() < bad:
        ext = rng.choice([" ", "", None, "x" * 301, 7])
    entry = {"email": email, "externalId": ext, "deleted": rng.random() < 0.2}
    if rng.random() < bad:
        del entry["deleted"]
    return entry


def _random_import(rng: random.Random, *, bad: float) -> dict[str, Any]:
    members = [_random_entry(rng, bad=bad) for _ in range(rng.randrange(5))]
    groups = [g(f"g{rng.randrange(3)}", members=rng.sample(_POOL_EXTS, 2)) for _ in range(2)]
    return body(members, groups[: rng.randrange(3)], overwrite=rng.random() < 0.1)


def _recased(doc: dict[str, Any]) -> dict[str, Any]:
    """The same request with other property names, which ASP.NET binds alike."""
    members = [{k.upper(): v for k, v in entry.items()} for entry in doc["members"]]
    return {**doc, "members": members}


def _outcome(fake: FakeBitwarden, r: httpx.Response) -> tuple[Any, ...]:
    members = [(x.email, x.external_id, x.status, x.type) for x in fake.members]
    groups = sorted((x.external_id or "", sorted(fake.group_member_external_ids(x.id)))
                    for x in fake.groups)  # fmt: skip
    return r.status_code, r.content, members, groups, [e for e, _ in fake.events]


def test_member_entries_bind_alike_whatever_their_shape(
    fake_bitwarden_factory: FakeFactory,
) -> None:
    # Entries in the shape clients send are checked in one pass; others go the general way.
    fakes = [fake_bitwarden_factory(), fake_bitwarden_factory()]
    apis = [Api(f) for f in fakes]
    try:
        for a in apis:
            a.login()
        rng = random.Random(7)  # noqa: S311 - reproducible requests, not secrets
        for _ in range(150):
            doc = _random_import(rng, bad=0.15)
            one = _outcome(fakes[0], apis[0].imp(doc))
            assert one == _outcome(fakes[1], apis[1].imp(_recased(doc))), doc
    finally:
        for a in apis:
            a.http.close()


def test_imported_members_are_indexed_like_seeded_ones(fake_bitwarden_factory: FakeFactory) -> None:
    # An import adds its new members in bulk; a stand-in seeded with the same members one by
    # one must answer the next import alike (same lookups by externalId and email).
    imported, seeded = fake_bitwarden_factory(), fake_bitwarden_factory()
    apis = Api(imported), Api(seeded)
    try:
        apis[0].login()
        rng = random.Random(11)  # noqa: S311 - reproducible requests, not secrets
        for _ in range(60):
            apis[0].imp(_random_import(rng, bad=0.02))
            seeded.reset()
            for x in imported.members:
                seeded.add_member(x.email, external_id=x.external_id, status=x.status,
                                  type=x.type, member_id=x.id)  # fmt: skip
            for x in imported.groups:
                seeded.add_group(x.name, external_id=x.external_id, members=x.member_ids,
                                 group_id=x.id)  # fmt: skip
            apis[1].login()
            doc, before = _random_import(rng, bad=0.02), len(imported.events)
            r0, r1 = apis[0].imp(doc), apis[1].imp(doc)
            outcomes = _outcome(imported, r0), _outcome(seeded, r1)
            assert outcomes[0][:4] == outcomes[1][:4], doc
            assert outcomes[0][4][before:] == outcomes[1][4], doc
    finally:
        for a in apis:
            a.http.close()


def _vw_seed(fake: FakeBitwarden) -> None:
    """An organization with the awkward cases: two owners, an email and an externalId held
    twice, a revoked member, one without externalId, an account that is not a member."""
    fake.add_owner("ann@example.com", external_id="u1")
    fake.add_owner("bob@x.org")
    fake.add_member("Ann@Example.COM", external_id="u2")
    fake.add_member("cy@z", external_id="u2", status=STATUS_REVOKED)
    fake.add_member("dee@q.com")
    fake.add_account("eve@e.e")
    fake.add_group("Old", external_id="g0")


def _random_vw_import(rng: random.Random) -> dict[str, Any]:
    exts = [*_POOL_EXTS, "", " "]
    members = [
        {"email": rng.choice(_POOL_EMAILS), "externalId": rng.choice(exts),
         "deleted": rng.random() < 0.3}
        for _ in range(rng.randrange(6))
    ]  # fmt: skip
    groups = [
        g(rng.choice(["g0", "g1", "g2", ""]), rng.choice(["A", "B"]),
          rng.sample([*exts, "zzz"], rng.randrange(4)))
        for _ in range(rng.randrange(3))
    ]  # fmt: skip
    return body(members, groups, overwrite=rng.random() < 0.15)


def _vw_outcome(fake: FakeBitwarden, r: httpx.Response) -> tuple[Any, ...]:
    members = fake.members
    rank = {x.id: n for n, x in enumerate(members)}
    groups = [(x.name, x.external_id, [rank.get(i) for i in x.member_ids]) for x in fake.groups]
    return (
        r.status_code,
        r.content,
        [(x.email, x.external_id, x.status, x.type, x.user_id is None, x.has_master_password)
         for x in members],
        groups,
        [e for e, _ in fake.events],
    )  # fmt: skip


@pytest.mark.parametrize("mail", [True, False])
def test_vw_imports_act_alike_with_or_without_a_repeated_email(
    fake_bitwarden_factory: FakeFactory, mail: bool
) -> None:
    # Members of a request whose emails are all distinct are handled in one pass and added in
    # bulk; a repeated email sends the request entry by entry. Repeating an entry right after
    # itself changes nothing (each entry's effect is idempotent), so both must end alike.
    fakes = [fake_bitwarden_factory(vaultwarden=True, groups_enabled=True, mail_enabled=mail)
             for _ in range(2)]  # fmt: skip
    apis = [Api(f) for f in fakes]
    try:
        for f, a in zip(fakes, apis, strict=True):
            _vw_seed(f)
            a.login()
        rng = random.Random(5)  # noqa: S311 - reproducible requests, not secrets
        for _ in range(150):
            doc = _random_vw_import(rng)
            twice = [*doc["members"]]
            if twice:
                i = rng.randrange(len(twice))
                twice.insert(i, twice[i])
            one = _vw_outcome(fakes[0], apis[0].imp(doc))
            assert one == _vw_outcome(fakes[1], apis[1].imp({**doc, "members": twice})), doc
    finally:
        for a in apis:
            a.http.close()


def _serde_accepts(doc: Any) -> bool:
    """Vaultwarden's import model as serde binds it (§6.2), written plainly."""

    def has(obj: Any, key: str, kind: type) -> bool:
        return isinstance(obj, dict) and key in obj and isinstance(obj[key], kind)

    return (
        has(doc, "groups", list)
        and all(has(x, "name", str) and has(x, "externalId", str)
                and has(x, "memberExternalIds", list)
                and all(isinstance(v, str) for v in x["memberExternalIds"])
                for x in doc["groups"])
        and has(doc, "members", list)
        and all(has(x, "email", str) and has(x, "externalId", str) and has(x, "deleted", bool)
                for x in doc["members"])
        and has(doc, "overwriteExisting", bool)
    )  # fmt: skip


def _spoiled(rng: random.Random, doc: dict[str, Any]) -> Any:
    """``doc`` with one random change that serde may or may not accept."""
    targets: list[Any] = [doc, *doc["members"], *doc["groups"]]
    obj = rng.choice(targets)
    key = rng.choice([*obj, "extra"])
    how = rng.randrange(4)
    if how == 0:
        obj.pop(key, None)
    elif how == 1:
        obj[key] = rng.choice([None, 1, 1.5, True, "s", [], ["s"], [1], {}])
    elif how == 2 and doc["members"]:
        doc["members"][rng.randrange(len(doc["members"]))] = rng.choice([None, "m", [], 1])
    elif how == 3 and doc["groups"]:
        doc["groups"][0]["memberExternalIds"].append(rng.choice([None, 1, True, "s"]))
    return doc


def test_vw_import_binds_like_serde(vw: Api) -> None:
    rng = random.Random(3)  # noqa: S311 - reproducible requests, not secrets
    for _ in range(300):
        doc = _spoiled(rng, _random_vw_import(rng))
        r = vw.imp(doc)
        assert r.status_code == (200 if _serde_accepts(doc) else 422), doc


def test_new_ids_are_consecutive_guids_across_blocks() -> None:
    # ids are built 4,096 at a time from a table of tails: same strings as formatting each.
    for n in (0, 1, 4095, 4097, 10_000):
        ids = _new_ids(n)
        assert len(ids) == n
        if ids:
            first = int(ids[0][-12:], 16)
            assert [int(x[-12:], 16) for x in ids] == list(range(first, first + n))
            assert {x[:-12] for x in ids} == {ids[0][:-12]}
            assert all(str(uuid.UUID(x)) == x and uuid.UUID(x).version == 4 for x in ids)


# --------------------------------------------------------------------------------------------
# msgspec reads the usual import body and writes the member list: as the general way would


_TRICKY_EMAILS = ["ann@example.com", "Ann@Example.COM", "İx@t.com", "ΣΑΣ@g.gr", "😀@e.mo",
                  "ǅ@dz.com", "o'neil@ie.ie", "a\\b@c.d", 'q"t@x.y', "a" * 250 + "@b.com",
                  "😀" * 250 + "@b.com", "no-at", "@lead", "trail@", "a@b@c", "a\n@b",
                  "a\nb@c"]  # fmt: skip
_TRICKY_EXTS = ["u1", "u2", "cn=A,dc=x", "é", "😀" * 300, "x" * 300, "x" * 301, " ", "\u3000",
                "a\tb"]  # fmt: skip
_BYTES = [b"\x00", b"\x1f", b"\x7f", b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
          b"\xef\xbb\xbf", b"\\ud800", b"\\udc00", b"\\ud83d\\ude00", b"\\u0040", b"\\u0000",
          b"\\/", b"\\x", b"\\", b'"', b"\n", b"\x0c", b" ", b",", b":", b"[", b"}", b"1", b"1e999",
          b"NaN", b"null", b"tru", b'"Email":"a@b",', b'"email":"z@z",', b'"extra":1,']  # fmt: skip


def _usual_body(rng: random.Random) -> bytes:
    """An import body in the shape clients send, its strings written either way JSON allows."""
    members = [
        {"email": rng.choice(_TRICKY_EMAILS[:11]), "externalId": rng.choice(_TRICKY_EXTS[:6]),
         "deleted": rng.random() < 0.2}
        for _ in range(rng.randrange(6))
    ]  # fmt: skip
    groups = [
        {"name": rng.choice(["Eng", "Σales", "n" * 100]), "externalId": rng.choice(["g0", "g1"]),
         "memberExternalIds": rng.sample(_TRICKY_EXTS[:6], rng.randrange(4))}
        for _ in range(rng.randrange(3))
    ]  # fmt: skip
    doc: dict[str, Any] = {"groups": groups, "members": members, "overwriteExisting": False}
    if rng.random() < 0.5:
        doc["largeImport"] = rng.random() < 0.5
    if rng.random() < 0.3:
        doc["inviteUsersAfterProvisioning"] = rng.random() < 0.5
    text = json.dumps(doc, ensure_ascii=rng.random() < 0.5)  # \uXXXX escapes, or UTF-8
    return text.encode("utf-8", "surrogatepass")


def _spoiled_bytes(rng: random.Random, raw: bytes) -> bytes:
    """``raw`` with a few bytes replaced, inserted, deleted or repeated."""
    b = bytearray(raw)
    for _ in range(rng.randrange(1, 4)):
        i = rng.randrange(len(b) + 1)
        how = rng.randrange(4)
        if how == 0 and i < len(b):
            b[i] = rng.randrange(256)
        elif how == 1:
            b[i:i] = rng.choice(_BYTES)
        elif how == 2:
            del b[i : i + rng.randrange(1, 4)]
        else:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randrange(1, 40)]
    return bytes(b)


def _bound(model: _OfficialImportModel) -> tuple[Any, ...]:
    return (
        [(x.name, x.external_id, list(x.member_external_ids or ())) for x in model.groups or ()],
        [(x.email, x.external_id, x.deleted) for x in model.members or ()],
        model.overwrite_existing, model.large_import, model.invite_users_after_provisioning,
        model.emails, model.external_ids, model.removed,
    )  # fmt: skip


def test_bodies_msgspec_accepts_bind_alike_the_general_way() -> None:
    # A body in the usual shape is decoded by msgspec; anything it accepts must be accepted by
    # the general way too (orjson, case-insensitive binding, validation: _from_any raises
    # otherwise), to the same model: JSON syntax (UTF-8, escapes, surrogates, control
    # characters), repeated properties, lengths at their limits, addresses.
    rng = random.Random(13)  # noqa: S311 - reproducible requests, not secrets
    accepted = refused = 0
    for _ in range(1500):
        raw = _usual_body(rng)
        for r in (raw, _spoiled_bytes(rng, raw), _spoiled_bytes(rng, _spoiled_bytes(rng, raw))):
            usual = _OfficialImportModel._from_wire(r)
            if usual is None:
                refused += 1
                continue
            accepted += 1
            assert _bound(usual) == _bound(_OfficialImportModel._from_any(r)), r
    # A third of the bodies hold an emoji, which sends them the general way (_beyond_bmp).
    assert accepted > 500
    assert refused > 1000


def test_addresses_checked_together_as_one_by_one() -> None:
    # _usual_emails checks (and lower-cases) all addresses in a few C calls: it may refuse a
    # valid list only when an address holds a line feed.
    rng = random.Random(5)  # noqa: S311 - reproducible data, not secrets
    alphabet = ["a", "@", "@", "\n", "B", "Σ", "İ", ".", "ǅ"]
    for _ in range(20_000):
        emails = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(5)))
                  for _ in range(rng.randrange(4))]  # fmt: skip
        valid = all(_valid_email(e) for e in emails)
        got = _usual_emails(emails)
        if got is None:
            assert not valid or any("\n" in e for e in emails), emails
        else:
            assert valid, emails
            assert got == [e.lower() for e in emails], emails


class _Kind(enum.IntEnum):
    USER = TYPE_USER


def test_member_list_is_encoded_as_orjson_encodes_it(
    fake_bitwarden: FakeBitwarden, api: Api
) -> None:
    # msgspec writes the list, byte for byte what orjson writes for the members' as_json,
    # whatever their strings hold; values of other types (seeding allows them) go to orjson.
    def as_orjson() -> bytes:
        data = [x.as_json(collections=None) for x in fake_bitwarden.members]
        return orjson.dumps({"object": "list", "data": data, "continuationToken": None})

    rng = random.Random(17)  # noqa: S311 - reproducible data, not secrets
    odd = ['q"t', "b\\s", "\x00\x1f\x7f", "\u2028\u2029", "😀", "İ", "é", "</script>", "", " "]
    for i in range(40):
        ext = rng.choice([f"{rng.choice(odd)}{i}", None])
        status, kind = rng.choice([-1, 0, 1, 2, 3]), rng.choice([0, 1, 2, 4])
        fake_bitwarden.add_member(f"{rng.choice(odd)}{i}@x.y", external_id=ext, status=status,
                                  type=kind, name=rng.choice([*odd, None]),
                                  two_factor=rng.random() < 0.5)  # fmt: skip
    assert api.imp(body([m(f"n{i}{rng.choice(odd)}") for i in range(20)])).status_code == 200
    assert fake_bitwarden._plain_members  # msgspec's way
    r = api.get("/members")
    assert r.status_code == 200
    assert r.content == as_orjson()
    for exotic in ({"type": _Kind.USER}, {"status": 2**64 - 1}, {"two_factor": 1}):
        fake_bitwarden.add_member(f"x{len(fake_bitwarden.members)}@y.z", **exotic)
        assert not fake_bitwarden._plain_members  # orjson's way, as before
        assert api.get("/members").content == as_orjson()


def test_group_membership_is_resolved_again_when_members_change(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    # The same groups sent again resolve alike unless a member came or went: then anew.
    assert api.imp(body([m("a"), m("b")], [g("eng", members=["a", "b", "c"])])).status_code == 200
    groups_only = body([], [g("eng", members=["a", "b", "c"])])
    eng = fake_bitwarden.find_group(external_id="eng")
    assert eng is not None
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "b"}
    fake_bitwarden.remove_member(fake_bitwarden.find_member(external_id="b"))  # type: ignore[arg-type]
    fake_bitwarden.add_member("c@example.com", external_id="c")
    assert api.imp(groups_only).status_code == 200
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "c"}
    assert api.imp(groups_only).status_code == 200  # nothing changed: nothing to do
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "c"}
    assert fake_bitwarden.events[-1] == ("Group_Updated", eng.id)
    fake_bitwarden.add_group("ENG", external_id="eng", members=[], group_id=eng.id)  # by hand
    assert api.imp(groups_only).status_code == 200
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "c"}
    assert api.imp(body([m("d")], [g("eng", members=["a", "d"])])).status_code == 200
    assert fake_bitwarden.group_member_external_ids(eng) == {"a", "d"}
