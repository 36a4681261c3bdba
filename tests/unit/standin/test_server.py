"""``bwsync.standin.server``: the token endpoint, bearer tokens, the read endpoints, revoke and
restore, the group writes, routing and the request log, held to the contract
(reference/bitwarden-public-api.md, §n) over real HTTP with httpx, as any client would see
them."""

from __future__ import annotations

import base64
import enum
import random
import threading

import httpx
import orjson
import pytest

from bwsync.model import STATUS_CONFIRMED, STATUS_INVITED, STATUS_REVOKED, TYPE_OWNER, TYPE_USER
from tests.fixtures.bitwarden import FakeFactory
from tests.fixtures.clock import FakeClock
from tests.standins.bitwarden import FakeBitwarden
from tests.unit.standin.client import (
    MEMBER_KEYS,
    Api,
    assert_model_error,
    body,
    g,
    m,
)

#: How long the test lets a hung stop() hang before failing (a broken stop() never returns).
STOP_PATIENCE = 60.0


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


def test_requests_are_recorded_parsed(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    fake_bitwarden.clear_requests()
    api.imp(body([m("a")]))
    (rec,) = fake_bitwarden.requests
    assert (rec.method, rec.path, rec.endpoint, rec.status) == (
        "POST", "/api/public/organization/import", "import", 200)  # fmt: skip
    assert rec.body == body([m("a")])
    assert rec.headers["content-type"] == "application/json"


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


def test_stop_does_not_wait_for_idle_keep_alive_clients(
    fake_bitwarden_factory: FakeFactory,
) -> None:
    """Waiting for the idle client would never end (it keeps its connection until closed):
    stop() returning at all, while the connection is still open, is the check. The join's
    patience only turns that hang into a failure; it bounds no speed."""
    fake = fake_bitwarden_factory()
    with httpx.Client(base_url=fake.base_url, trust_env=False, timeout=5) as http:
        assert http.get("/api/public/members").status_code == 401  # connection kept alive
        stopper = threading.Thread(target=fake.stop, daemon=True)
        stopper.start()
        stopper.join(STOP_PATIENCE)
        assert not stopper.is_alive(), "stop() waits for an idle keep-alive client"
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


# ---- group writes: PUT /public/groups/{id}/member-ids, DELETE /public/groups/{id} -----------


def _synced_group(api: Api, fake: FakeBitwarden) -> tuple[str, list[str]]:
    """A group the import made, with a, b and c, and its member ids."""
    r = api.imp(body([m("a"), m("b"), m("c"), m("d")], [g("eng", "Eng", ["a", "b", "c"])]))
    assert r.status_code == 200
    group = fake.find_group(external_id="eng")
    assert group is not None
    ids = {x.external_id: x.id for x in fake.members}
    return group.id, [ids["a"], ids["b"], ids["c"], ids["d"]]


def test_put_member_ids_replaces_the_membership(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    gid, (a, b, c, d) = _synced_group(api, fake_bitwarden)
    fake_bitwarden.grant_collection(gid, "c0ffee00-0000-4000-8000-000000000001")
    events = len(fake_bitwarden.events)
    r = api.put(f"/groups/{gid}/member-ids", {"memberIds": [d, b]})
    assert (r.status_code, r.content) == (200, b"")
    assert api.get(f"/groups/{gid}/member-ids").json() == [b, d]  # kept first, then added
    r = api.put(f"/groups/{gid.upper()}/member-ids", {"MEMBERIDS": [a.upper()]})  # any casing
    assert r.status_code == 200
    assert api.get(f"/groups/{gid}/member-ids").json() == [a]
    # ids of nobody in the organization are dropped without a word
    r = api.put(
        f"/groups/{gid}/member-ids", {"memberIds": [c, "0b7f8f0e-8d0a-4f63-9a55-111111111111"]}
    )
    assert r.status_code == 200
    assert api.get(f"/groups/{gid}/member-ids").json() == [c]
    assert api.get(f"/members/{c}/group-ids").json() == [gid]
    # the group stays, with its name, externalId and collection grants; nothing is logged
    (group,) = api.get("/groups").json()["data"]
    assert (group["name"], group["externalId"]) == ("Eng", "eng")
    assert [x["id"] for x in group["collections"]] == ["c0ffee00-0000-4000-8000-000000000001"]
    assert len(fake_bitwarden.events) == events


@pytest.mark.parametrize("empty", [{"memberIds": []}, {"memberIds": None}, {}])
def test_put_member_ids_without_ids_empties_the_group(
    api: Api, fake_bitwarden: FakeBitwarden, empty: dict[str, object]
) -> None:
    gid, ids = _synced_group(api, fake_bitwarden)
    assert api.put(f"/groups/{gid}/member-ids", empty).status_code == 200
    assert api.get(f"/groups/{gid}/member-ids").json() == []
    assert all(api.get(f"/members/{i}/group-ids").json() == [] for i in ids)
    assert fake_bitwarden.find_group(external_id="eng") is not None


def test_put_member_ids_model_errors(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    gid, (a, *_) = _synced_group(api, fake_bitwarden)
    path = f"/groups/{gid}/member-ids"
    assert_model_error(api.put(path, raw=b""), {"": ["Body is empty."]})
    r = api.put(path, raw=b"{nope")
    assert r.status_code == 400 and list(r.json()["errors"]) == ["$"]
    model = "Bit.Api.AdminConsole.Public.Models.Request.UpdateMemberIdsRequestModel"
    assert_model_error(
        api.put(path, [a]), {"$": [f"The JSON value could not be converted to {model}. Path: $"]}
    )
    listed = "System.Collections.Generic.IEnumerable`1[System.Guid]"
    assert_model_error(
        api.put(path, {"memberIds": a}),
        {"$.memberIds": [f"The JSON value could not be converted to {listed}. Path: $.memberIds"]},
    )
    for bad in ("not-a-guid", 7, None, "{" + a + "}", a.replace("-", "")):
        assert_model_error(
            api.put(path, {"memberIds": [a, bad]}),
            {
                "$.memberIds[1]": [
                    "The JSON value could not be converted to System.Guid. Path: $.memberIds[1]"
                ]
            },
        )
    # binding comes first: a bad body is 400 for an unknown group too
    r = api.put("/groups/0b7f8f0e-8d0a-4f63-9a55-111111111111/member-ids", raw=b"")
    assert r.status_code == 400
    assert api.put(path, raw=b'{"memberIds": []}', ctype="text/plain").status_code == 415
    assert len(fake_bitwarden.group_member_emails(gid)) == 3  # nothing changed


def test_put_member_ids_inserting_one_member_twice_breaks_the_primary_key(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    gid, (a, _b, _c, d) = _synced_group(api, fake_bitwarden)
    assert api.put(f"/groups/{gid}/member-ids", {"memberIds": [a, a]}).status_code == 200
    r = api.put(f"/groups/{gid}/member-ids", {"memberIds": [d, d]})
    assert r.status_code == 500
    assert r.json()["message"] == "An unhandled server error has occurred."


def test_delete_group_takes_memberships_and_grants_with_it(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    gid, ids = _synced_group(api, fake_bitwarden)
    fake_bitwarden.grant_collection("eng", "c0ffee00-0000-4000-8000-000000000001")
    hand = fake_bitwarden.add_group("By hand", members=ids[:1])
    r = api.delete(f"/groups/{gid}")
    assert (r.status_code, r.content) == (200, b"")
    assert [x["id"] for x in api.get("/groups").json()["data"]] == [hand.id]
    assert api.get(f"/groups/{gid}").status_code == 404
    assert api.get(f"/members/{ids[0]}/group-ids").json() == [hand.id]
    assert api.get(f"/members/{ids[1]}/group-ids").json() == []
    assert api.delete(f"/groups/{gid}").status_code == 404
    # the import creates the group anew: a new id, no grants
    api.imp(body([m("a")], [g("eng", "Eng", ["a"])]))
    again = fake_bitwarden.find_group(external_id="eng")
    assert again is not None and again.id != gid and again.collections == []


# ---- PUT /public/groups/{id}: name and externalId, grants kept without collections ---------

C1, C2 = "c0ffee00-0000-4000-8000-000000000001", "c0ffee00-0000-4000-8000-000000000002"


def test_put_group_without_collections_keeps_the_grants(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    gid, ids = _synced_group(api, fake_bitwarden)
    fake_bitwarden.grant_collection(gid, C1)
    events = len(fake_bitwarden.events)
    r = api.put(f"/groups/{gid}", {"name": "Engineering", "externalId": "uuid-1"})
    assert r.status_code == 200
    assert r.json() == {
        "object": "group",
        "id": gid,
        "name": "Engineering",
        "externalId": "uuid-1",
        "collections": None,
    }
    (group,) = api.get("/groups").json()["data"]
    assert (group["name"], group["externalId"]) == ("Engineering", "uuid-1")
    assert [c["id"] for c in group["collections"]] == [C1]  # kept
    assert api.get(f"/groups/{gid}/member-ids").json() == ids[:3]  # members untouched
    assert fake_bitwarden.events[events:] == [("Group_Updated", gid)]
    # "collections": null is the same as none; a missing externalId clears it
    r = api.put(f"/groups/{gid}", {"NAME": "Eng", "collections": None})
    assert r.status_code == 200 and r.json()["externalId"] is None
    assert fake_bitwarden.find_group(name="Eng").collections == [  # type: ignore[union-attr]
        {"id": C1, "readOnly": False, "hidePasswords": False, "manage": False}
    ]


def test_put_group_with_collections_replaces_the_grants(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    gid, _ = _synced_group(api, fake_bitwarden)
    fake_bitwarden.grant_collection(gid, C1)
    fake_bitwarden.add_collection(C2)
    grant = {"id": C2.upper(), "readOnly": True, "hidePasswords": True}
    r = api.put(f"/groups/{gid}", {"name": "Eng", "externalId": "eng", "collections": [grant]})
    assert r.status_code == 200
    want = [{"id": C2, "readOnly": True, "hidePasswords": True, "manage": False}]
    assert r.json()["collections"] == want
    assert fake_bitwarden.find_group(external_id="eng").collections == want  # type: ignore[union-attr]
    r = api.put(f"/groups/{gid}", {"name": "Eng", "externalId": "eng", "collections": []})
    assert r.status_code == 200 and r.json()["collections"] == []
    assert fake_bitwarden.find_group(external_id="eng").collections == []  # type: ignore[union-attr]


def test_put_group_errors_in_the_servers_order(api: Api, fake_bitwarden: FakeBitwarden) -> None:
    gid, _ = _synced_group(api, fake_bitwarden)
    path = f"/groups/{gid}"
    assert_model_error(api.put(path, raw=b""), {"": ["Body is empty."]})
    assert_model_error(
        api.put(path, {"externalId": "x"}), {"Name": ["The Name field is required."]}
    )
    assert_model_error(api.put(path, {"name": "  "}), {"Name": ["The Name field is required."]})
    assert_model_error(
        api.put(path, {"name": "n" * 101, "externalId": "x" * 301}),
        {
            "Name": ["The field Name must be a string with a maximum length of 100."],
            "ExternalId": ["The field ExternalId must be a string with a maximum length of 300."],
        },
    )
    assert_model_error(
        api.put(path, {"name": "Eng", "externalId": 7}),
        {
            "$.externalId": [
                "The JSON value could not be converted to System.String. Path: $.externalId"
            ]
        },
    )
    assert_model_error(
        api.put(path, {"name": "Eng", "collections": [{"hidePasswords": True}]}),
        {
            "Collections[0].Id": ["The Id field is required."],
            "Collections[0].ReadOnly": ["The ReadOnly field is required."],
        },
    )
    nullable_guid = "System.Nullable`1[System.Guid]"
    assert_model_error(
        api.put(path, {"name": "Eng", "collections": [{"id": "nope", "readOnly": True}]}),
        {
            "$.collections[0].id": [
                f"The JSON value could not be converted to {nullable_guid}. "
                "Path: $.collections[0].id"
            ]
        },
    )
    unknown = "0b7f8f0e-8d0a-4f63-9a55-111111111111"
    # binding before the group: 400 for an unknown group too; then 404 empty
    assert api.put(f"/groups/{unknown}", raw=b"").status_code == 400
    r = api.put(f"/groups/{unknown}", {"name": "Eng"})
    assert (r.status_code, r.content) == (404, b"")
    assert api.put(path, raw=b'{"name": "Eng"}', ctype="text/plain").status_code == 415
    # a collection the organization does not have; manage with read-only
    r = api.put(path, {"name": "Eng", "collections": [{"id": unknown, "readOnly": False}]})
    assert r.status_code == 404 and r.json()["message"] == "Resource not found."
    fake_bitwarden.add_collection(C1)
    both = {"id": C1, "readOnly": True, "manage": True}
    r = api.put(path, {"name": "Eng", "collections": [both]})
    assert r.status_code == 400 and r.json()["message"].startswith("The Manage property is")
    fake_bitwarden.use_groups = False
    r = api.put(path, {"name": "Eng"})
    assert r.status_code == 400 and r.json()["message"] == "This organization cannot use groups."
    group = fake_bitwarden.find_group(external_id="eng")
    assert group is not None and group.name == "Eng" and group.collections == []  # unchanged


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/groups/{x}/member-ids"),
        ("PUT", "/groups/{x}"),
        ("DELETE", "/groups/{x}"),
        ("DELETE", "/groups/not-a-guid"),
    ],
)
def test_group_writes_unknown_group_is_404_and_no_token_401(
    api: Api, method: str, path: str
) -> None:
    url = "/api/public" + path.format(x="0b7f8f0e-8d0a-4f63-9a55-111111111111")
    content = orjson.dumps({"memberIds": [], "name": "n"}) if method == "PUT" else None
    headers = {"Content-Type": "application/json"}
    r = api.http.request(method, url, content=content, headers={**headers, **api.headers()})
    assert (r.status_code, r.content) == (404, b"")
    r = api.http.request(method, url, content=content, headers=headers)
    assert r.status_code == 401


def test_group_writes_are_recorded_under_their_names(
    api: Api, fake_bitwarden: FakeBitwarden
) -> None:
    gid, _ = _synced_group(api, fake_bitwarden)
    fake_bitwarden.clear_requests()
    api.put(f"/groups/{gid}/member-ids", {"memberIds": []})
    api.put(f"/groups/{gid}", {"name": "Eng", "externalId": "eng"})
    api.delete(f"/groups/{gid}")
    assert [(r.method, r.endpoint, r.status) for r in fake_bitwarden.requests] == [
        ("PUT", "set_group_member_ids", 200),
        ("PUT", "update_group", 200),
        ("DELETE", "delete_group", 200),
    ]
    assert len(fake_bitwarden.writes()) == 3
