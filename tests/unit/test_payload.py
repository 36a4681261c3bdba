"""payload: bwdc's request bodies, batching and hash (reference §3.3, §4)."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bwsync.config import SyncSettings
from bwsync.errors import ConfigError
from bwsync.model import Group, User
from bwsync.payload import build_payload, build_requests, is_new_hash

API = "https://api.bitwarden.com"
ORG = "11111111-2222-3333-4444-555555555555"


def _users(n: int) -> list[User]:
    return [User(f"u{i}", f"u{i}", f"u{i}@x.com") for i in range(n)]


def _groups(n: int) -> list[Group]:
    return [Group(f"g{i}", f"g{i}", f"G{i}") for i in range(n)]


def test_single_request_exact_bytes() -> None:
    g = Group("cn=eng", "cn=eng", "Engineering")
    g.add_user("cn=ada")
    g.add_user("cn=alan")
    users = [
        User("cn=ada", "cn=ada", "ada@x.com"),
        User("cn=alan", "cn=alan", "alan@x.com", disabled=True),
        User("cn=old", "cn=old", "old@x.com", deleted=True),
    ]
    p = build_payload(users, [g], SyncSettings(invite_users=False), api_url=API, org_id=ORG)
    assert len(p.requests) == 1
    assert p.requests[0].body == (
        b'{"groups":[{"name":"Engineering","externalId":"cn=eng",'
        b'"memberExternalIds":["cn=ada","cn=alan"]}],'
        b'"members":[{"email":"ada@x.com","externalId":"cn=ada","deleted":false},'
        b'{"email":"alan@x.com","externalId":"cn=alan","deleted":false},'
        b'{"email":"old@x.com","externalId":"cn=old","deleted":true}],'
        b'"overwriteExisting":false,"largeImport":false,"inviteUsersAfterProvisioning":false}'
    )


def test_remove_disabled_sends_disabled_as_deleted() -> None:
    users = [User("a", "a", "a@x.com", disabled=True)]
    (req,) = build_requests(users, None, SyncSettings(remove_disabled=True))
    assert req["members"] == [{"email": "a@x.com", "externalId": "a", "deleted": True}]
    assert req["groups"] == []


def test_ids_are_json_strings() -> None:
    """Vaultwarden refuses a number (HTTP 422): sources hand over text, even OneLogin's ids."""
    g = Group("7", "7", "Role")
    g.add_user("42")
    p = build_payload([User("42", "42", "n@x.com")], [g], SyncSettings(), api_url=API, org_id=ORG)
    assert b'"externalId":"7","memberExternalIds":["42"]' in p.requests[0].body
    assert b'"externalId":"42",' in p.requests[0].body


def test_group_without_name_omits_the_key() -> None:
    (req,) = build_requests(None, [Group("g", "g", None)], SyncSettings())
    assert list(req["groups"][0]) == ["externalId", "memberExternalIds"]


def test_small_directory_is_one_request_even_with_large_import() -> None:
    reqs = build_requests(_users(1500), _groups(500), SyncSettings(large_import=True))
    assert len(reqs) == 1 and reqs[0]["largeImport"] is False


def test_batches_users_first_then_groups() -> None:
    reqs = build_requests(_users(11000), _groups(11000), SyncSettings(large_import=True))
    assert len(reqs) == 12
    assert [len(r["members"]) for r in reqs[:6]] == [2000] * 5 + [1000]
    assert all(r["groups"] == [] for r in reqs[:6])
    assert all(
        r["members"] == [] and r["largeImport"] and not r["overwriteExisting"] for r in reqs[6:]
    )
    reqs = build_requests(_users(11001), [], SyncSettings(large_import=True))
    assert [len(r["members"]) for r in reqs] == [2000] * 5 + [1001]
    reqs = build_requests(_users(10001), [], SyncSettings(large_import=True))
    assert len(reqs) == 6 and len(reqs[5]["members"]) == 1


def test_overwrite_with_batches_is_refused() -> None:
    with pytest.raises(ConfigError, match="OVERWRITE_EXISTING"):
        build_requests(_users(2001), [], SyncSettings(large_import=True, overwrite_existing=True))


def test_hash_is_bwdc_formula_and_legacy_accepted() -> None:
    p = build_payload(_users(2), _groups(1), SyncSettings(), api_url=API, org_id=ORG)
    body = p.requests[0].body
    assert p.hash == base64.b64encode(hashlib.sha256((API + ORG).encode() + body).digest()).decode()
    assert p.legacy_hash == base64.b64encode(hashlib.sha256(API.encode() + body).digest()).decode()
    assert not is_new_hash(p, p.hash)
    assert not is_new_hash(p, p.legacy_hash)
    assert is_new_hash(p, None)
    assert is_new_hash(p, "something else")


def test_batched_hash_covers_the_json_array() -> None:
    p = build_payload(_users(2001), [], SyncSettings(large_import=True), api_url=API, org_id=ORG)
    array = b"[" + b",".join(r.body for r in p.requests) + b"]"
    assert json.loads(array)[1]["members"][0]["email"] == "u2000@x.com"
    assert (
        p.hash == base64.b64encode(hashlib.sha256((API + ORG).encode() + array).digest()).decode()
    )
    assert p.legacy_hash == base64.b64encode(hashlib.sha256(API.encode() + array).digest()).decode()


def test_keep_and_remove_extensions() -> None:
    users = [User("a", "a", "a@x.com", deleted=True), User("b", "b", "b@x.com", deleted=True)]
    (req,) = build_requests(
        users, None, SyncSettings(), keep=frozenset({"a"}), remove=[("c@x.com", "c")]
    )
    assert req["members"] == [
        {"email": "b@x.com", "externalId": "b", "deleted": True},
        {"email": "c@x.com", "externalId": "c", "deleted": True},
    ]


# orjson's compact output must equal JavaScript's JSON.stringify, or hashes would not match
# bwdc's. Checked against the real thing: node, when the machine has it.
_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@settings(max_examples=20, deadline=None)
@given(
    st.lists(st.tuples(_text, _text, st.booleans(), st.integers(0, 2**53)), min_size=1, max_size=40)
)
def test_orjson_matches_javascript_json_stringify(rows: list[tuple[str, str, bool, int]]) -> None:
    users = [User(r[1], r[1] or str(r[3]), r[0], deleted=r[2]) for r in rows]
    g = Group(rows[0][3], rows[0][3], rows[0][0])
    for u in users:
        g.add_user(u.external_id)
    p = build_payload(users, [g], SyncSettings(), api_url=API, org_id=ORG)
    body = p.requests[0].body
    js = subprocess.run(
        [
            "node",
            "-e",
            "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>"
            "process.stdout.write(JSON.stringify(JSON.parse(s))))",
        ],
        input=body,
        capture_output=True,
        check=True,
    ).stdout
    assert js == body
    assert orjson.loads(js) == orjson.loads(body)
