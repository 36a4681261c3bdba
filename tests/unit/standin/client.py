"""A bare client of the Bitwarden stand-in and the request bodies its tests send, shared by the
tests of ``bwsync.standin`` and of the tests' extensions (``tests/standins/bitwarden``)."""

from __future__ import annotations

import random
from typing import Any

import httpx
import orjson

from bwsync.standin.import_request import MODEL_STATE_INVALID
from tests.standins.bitwarden import FakeBitwarden

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

    def put(
        self,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        ctype: str = "application/json",
    ) -> httpx.Response:
        content = raw if raw is not None else orjson.dumps(body)
        return self.http.put(
            "/api/public" + path, content=content, headers={**self.headers(), "Content-Type": ctype}
        )

    def delete(self, path: str) -> httpx.Response:
        return self.http.delete("/api/public" + path, headers=self.headers())


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


POOL_EMAILS = ["ann@example.com", "Ann@Example.COM", "bob@x.org", "cy@z", "İx@t.com", "ix@t.com",
                "dee@q.com", "eve@e.e"]  # fmt: skip


POOL_EXTS = ["u1", "u2", "u3", "u4", "u5", "u6"]


def _random_entry(rng: random.Random, *, bad: float) -> dict[str, Any]:
    email: Any = rng.choice(POOL_EMAILS)
    ext: Any = rng.choice(POOL_EXTS)
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


def random_import(rng: random.Random, *, bad: float) -> dict[str, Any]:
    members = [_random_entry(rng, bad=bad) for _ in range(rng.randrange(5))]
    groups = [g(f"g{rng.randrange(3)}", members=rng.sample(POOL_EXTS, 2)) for _ in range(2)]
    return body(members, groups[: rng.randrange(3)], overwrite=rng.random() < 0.1)


def outcome(fake: FakeBitwarden, r: httpx.Response) -> tuple[Any, ...]:
    members = [(x.email, x.external_id, x.status, x.type) for x in fake.members]
    groups = sorted((x.external_id or "", sorted(fake.group_member_external_ids(x.id)))
                    for x in fake.groups)  # fmt: skip
    return r.status_code, r.content, members, groups, [e for e, _ in fake.events]
