"""``tests/standins/bitwarden/vaultwarden.py``: Vaultwarden mode held to Vaultwarden's rules
(§6; reference/vaultwarden.md), and ``python -m tests.standins.bitwarden --vaultwarden``."""

from __future__ import annotations

import dataclasses
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bwsync.model import STATUS_ACCEPTED, STATUS_CONFIRMED, STATUS_INVITED, STATUS_REVOKED
from tests.fixtures.bitwarden import FakeFactory
from tests.fixtures.clock import FakeClock
from tests.standins.bitwarden import FakeBitwarden
from tests.unit.standin.client import POOL_EMAILS, POOL_EXTS, Api, body, g, m

REPO = Path(__file__).resolve().parents[3]

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
    group = "0b7f8f0e-8d0a-4f63-9a55-111111111111"
    for r in (
        vw.put(f"/groups/{group}/member-ids", {"memberIds": []}),
        vw.put(f"/groups/{group}", {"name": "G", "externalId": "g"}),
        vw.delete(f"/groups/{group}"),
    ):
        assert r.status_code == 404  # no group endpoints: its catcher, as for every /public/*
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


def test_vw_fault_default_bodies(vw: Api, fake_vaultwarden: FakeBitwarden) -> None:
    fake_vaultwarden.fail("token", status=400)
    assert vw.get_token().json()["message"] == "Invalid client_id"
    fake_vaultwarden.fail("import", status=401)
    assert vw.imp(body()).json()["error"]["code"] == 401


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
    exts = [*POOL_EXTS, "", " "]
    members = [
        {"email": rng.choice(POOL_EMAILS), "externalId": rng.choice(exts),
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
        if not _serde_accepts(doc):
            assert r.status_code == 422, doc
        elif r.status_code == 400:  # bound, then a spoiled email refused (a new member's)
            assert r.json()["message"].endswith("is not a valid email address"), doc
        else:
            assert r.status_code == 200, doc


def test_command_line_serves_and_prints_the_base_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.standins.bitwarden", "--port", "0", "--vaultwarden"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,  # where the ``tests`` package is importable
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


# ---- reference/vaultwarden.md: refusals, the non-atomic import, the login limiter ----------


@pytest.mark.parametrize(
    "email",
    [
        "not-an-email",
        "john smith@example.com",
        "a" * 244 + "@example.com",  # 256 in all, the local part over 64
        "ann@192.168.0.1",
        "ann@ex/ample.com",
        "สมศักดิ์@example.com",  # U+0E4C is a mark, not alphabetic: char::is_alphanumeric
        '"jörg"@example.com',  # qtext: 0.2.9's is_utf8_non_ascii refuses ö
    ],
)
def test_vw_refuses_an_invalid_new_email_with_400(vw: Api, email: str) -> None:
    r = vw.imp(body([m("x", email)]))
    assert r.status_code == 400
    data = r.json()
    assert set(data) == VW_ERROR_KEYS
    assert data["message"] == f"User email {email} is not a valid email address"


def test_vw_takes_alphabetic_marks(vw: Api, fake_vaultwarden: FakeBitwarden) -> None:
    """Devanagari vowel signs are marks with the Alphabetic property: Rust takes them."""
    r = vw.imp(body([m("ram", "राम@example.com"), m("idn", "ram@भारत.com")]))
    assert r.status_code == 200
    assert {x.email for x in fake_vaultwarden.members} >= {"राम@example.com", "ram@भारत.com"}


def test_vw_an_invalid_email_of_a_member_or_account_is_not_checked(
    vw: Api, fake_vaultwarden: FakeBitwarden
) -> None:
    """Only a new account is saved, and so checked: an existing member, an existing account
    or a deleted entry goes through."""
    fake_vaultwarden.add_member("odd one@example.com", external_id="odd")
    fake_vaultwarden.add_account("other odd@example.com")
    r = vw.imp(
        body([m("odd", "odd one@example.com"), m("o2", "other odd@example.com"),
              m("gone", "not-an-email", deleted=True)])
    )  # fmt: skip
    assert r.status_code == 200
    assert fake_vaultwarden.find_member(email="other odd@example.com") is not None


def test_vw_import_is_not_atomic(vw: Api, fake_vaultwarden: FakeBitwarden) -> None:
    """Applied in order, stopped at the first invalid entry: the members before it invited
    (and revoked), none after it, groups not updated, overwrite not run."""
    fake_vaultwarden.groups_enabled = True
    old = fake_vaultwarden.add_member("old@example.com", external_id="old")
    gone = fake_vaultwarden.add_member("gone@example.com", external_id="gone")
    r = vw.imp(
        body(
            [m("a"), m("gone", deleted=True), m("bad", "not-an-email"), m("c")],
            [g("g", "G", ["a", "c"])],
            overwrite=True,
        )
    )
    assert r.status_code == 400
    emails = {x.email: x.status for x in fake_vaultwarden.members}
    assert emails == {
        "old@example.com": STATUS_CONFIRMED,  # overwrite did not run
        "gone@example.com": STATUS_REVOKED,
        "a@example.com": STATUS_INVITED,
    }
    assert fake_vaultwarden.groups == []
    assert fake_vaultwarden.member(old.id) is not None and fake_vaultwarden.member(gone.id)
    # the next run shows the next bad entry
    r = vw.imp(body([m("a"), m("c", "c@example"), m("bad2", "x y@example.com")]))
    assert r.json()["message"] == "User email x y@example.com is not a valid email address"
    assert fake_vaultwarden.find_member(email="c@example") is not None


def test_vw_login_rate_limit(fake_bitwarden_factory: FakeFactory) -> None:
    """A burst of 10 token requests, then one per 60 s of the stand-in's clock; over it 429
    "Too many login requests" without Retry-After, wrong secrets counted too."""
    clock = FakeClock(1000.0)
    fake = fake_bitwarden_factory(vaultwarden=True, clock=clock)
    api = Api(fake)
    try:
        codes = [api.get_token(client_secret="wrong").status_code for _ in range(3)]
        codes += [api.get_token().status_code for _ in range(8)]
        assert codes == [400] * 3 + [200] * 7 + [429]
        r = api.get_token()
        assert r.status_code == 429 and "Retry-After" not in r.headers
        assert r.json()["message"] == "Too many login requests"
        clock.now += 59
        assert api.get_token().status_code == 429
        clock.now += 1
        assert api.get_token().status_code == 200  # one more a minute
        assert api.get_token().status_code == 429
        clock.now += 600
        assert [api.get_token().status_code for _ in range(11)] == [200] * 10 + [429]
    finally:
        api.http.close()


def test_vw_wrong_base_path_is_404_at_the_token_endpoint(vw: Api) -> None:
    r = vw.http.post("/vault/identity/connect/token", data={"grant_type": "client_credentials"})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == 404
