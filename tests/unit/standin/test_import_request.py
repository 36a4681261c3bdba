"""``bwsync.standin.import_request``: the import body bound and validated as the server's
ASP.NET model binding and DataAnnotations do (§3.1, §3.6), and the fast way through msgspec
binding exactly as the general way."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from bwsync.standin.http import UNHANDLED
from bwsync.standin.import_request import (
    MODEL_STATE_INVALID,
    OfficialImportModel,
    _usual_emails,
    _valid_email,
)
from tests.fixtures.bitwarden import FakeFactory
from tests.standins.bitwarden import FakeBitwarden
from tests.unit.standin.client import Api, assert_model_error, body, g, m, outcome, random_import


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


def _recased(doc: dict[str, Any]) -> dict[str, Any]:
    """The same request with other property names, which ASP.NET binds alike."""
    members = [{k.upper(): v for k, v in entry.items()} for entry in doc["members"]]
    return {**doc, "members": members}


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
            doc = random_import(rng, bad=0.15)
            one = outcome(fakes[0], apis[0].imp(doc))
            assert one == outcome(fakes[1], apis[1].imp(_recased(doc))), doc
    finally:
        for a in apis:
            a.http.close()


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


def _bound(model: OfficialImportModel) -> tuple[Any, ...]:
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
            usual = OfficialImportModel._from_wire(r)
            if usual is None:
                refused += 1
                continue
            accepted += 1
            assert _bound(usual) == _bound(OfficialImportModel._from_any(r)), r
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
