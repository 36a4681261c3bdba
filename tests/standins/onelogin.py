"""A stand-in for OneLogin's API (token v2, users and roles v1), over HTTPS on loopback.

Written from OneLogin's published contract, so the real ``OneLoginSource`` runs unmodified:

* ``POST /auth/oauth2/v2/token`` — client id and secret as HTTP Basic, as
  ``Authorization: client_id:<id>, client_secret:<secret>``, or in a form body;
  ``{"grant_type": "client_credentials"}``. Wrong credentials: 401 ``Authentication Failure``.
  The answer is ``{access_token, created_at, expires_in, refresh_token, token_type, account_id}``;
  tokens expire (``token_lifetime``).
* ``GET /api/1/users`` and ``/api/1/roles`` with ``Authorization: bearer:<token>``; the v1
  envelope ``{status: {error, code, type, message}, pagination: {before_cursor, after_cursor,
  previous_link, next_link}, data: [...]}``; 50 per page, the documented maximum for users and
  roles (``limit`` may ask for fewer; a larger one gets 50: what OneLogin does with it is not
  documented); cursors only, no page numbers (v1 documents none); query parameters search on
  fields with ``*`` wildcards (``email=*@example.com``, ``name=Sales``).
  A credential created with the "Authentication only" scope gets 401 on both.
* Rate limit per account: ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` (seconds to the
  next window) on every answer, 429 once spent.
* Faults: ``fail(path_prefix, status=, times=)``.

``onelogin_directory`` makes a directory of realistic shape: statuses 0–5 and 7, usernames
that are not emails with an empty email, users in many roles, empty roles.
"""

from __future__ import annotations

import base64
import fnmatch
import math
import random
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from tests.standins.okta import RateWindow, Reply, TlsServer
from tests.standins.tls import TlsFiles

PAGE = 50


def _status(code: int, kind: str, message: str) -> dict[str, Any]:
    return {"status": {"error": code != 200, "code": code, "type": kind, "message": message}}


def onelogin_user(
    uid: int,
    email: str,
    username: str,
    status: int = 1,
    roles: list[int] | None = None,
) -> dict[str, Any]:
    """A v1 user object (the fields the API returns, including the ones bwsync ignores)."""
    return {
        "id": uid,
        "external_id": None,
        "email": email,
        "username": username,
        "firstname": username.split("@", maxsplit=1)[0].split(".", maxsplit=1)[0].title(),
        "lastname": "Test",
        "distinguished_name": None,
        "phone": "",
        "company": "Example",
        "department": "",
        "title": "",
        "status": status,
        "state": 1,
        "member_of": "",
        "samaccountname": None,
        "userprincipalname": None,
        "group_id": None,
        "role_id": list(roles or []),
        "custom_attributes": {},
        "openid_name": username,
        "locale_code": None,
        "comment": "",
        "directory_id": None,
        "manager_ad_id": None,
        "manager_user_id": None,
        "trusted_idp_id": None,
        "created_at": "2023-03-01T10:00:00.000Z",
        "updated_at": "2025-06-01T10:00:00.000Z",
        "activated_at": "2023-03-01T10:05:00.000Z" if status else None,
        "last_login": "2025-11-01T08:00:00.000Z" if status == 1 else None,
        "password_changed_at": None,
        "invitation_sent_at": None,
        "invalid_login_attempts": 0,
        "locked_until": None,
    }


@dataclass(slots=True)
class OneLoginDirectory:
    users: list[dict[str, Any]] = field(default_factory=list)
    roles: list[dict[str, Any]] = field(default_factory=list)

    def add_user(
        self,
        uid: int,
        email: str,
        username: str | None = None,
        status: int = 1,
        roles: list[int] | None = None,
    ) -> None:
        self.users.append(onelogin_user(uid, email, username or email, status, roles))

    def add_role(self, rid: int, name: str) -> None:
        self.roles.append({"id": rid, "name": name})


def onelogin_directory(users: int, roles: int, seed: int = 11) -> OneLoginDirectory:
    """Realistic shape: mostly active; suspended (2), locked (3), unactivated (0), password
    expired (4), awaiting reset (5), pending (7); every 40th user has only a plain username
    and no email; every 20th role is empty; ten users hold every role. Deterministic."""
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible on purpose
    d = OneLoginDirectory()
    role_ids = [300_000 + r for r in range(roles)]
    usable = [rid for n, rid in enumerate(role_ids) if n % 20 != 19]
    statuses, weights = (1, 2, 3, 0, 4, 5, 7), (90, 3, 2, 2, 1, 1, 1)
    for n in range(users):
        uid = 40_000_000 + n
        if n < 10:
            held = list(usable)
        else:
            held = rng.sample(usable, min(len(usable), rng.choice((1, 2, 3))))
        if n % 40 == 39:
            email, username = "", f"user{n:06d}"
        else:
            email = f"User{n:06d}@Example.com"
            username = email if n % 3 else f"user{n:06d}"
        status = rng.choices(statuses, weights)[0]
        d.users.append(onelogin_user(uid, email, username, status, sorted(held)))
    for n, rid in enumerate(role_ids):
        d.add_role(rid, f"Role {n:04d}")
    return d


@dataclass(slots=True)
class _Token:
    scope: str
    expires: float


class FakeOneLogin(TlsServer):
    """OneLogin account stand-in: ``directory`` (``OneLoginDirectory``), one API credential
    ``client_id``/``client_secret`` of scope ``credential_scope`` ("read_users" or
    "authentication_only")."""

    def __init__(
        self,
        tls: TlsFiles,
        directory: OneLoginDirectory | None = None,
        *,
        client_id: str = "0123456789abcdef0123456789abcdef",
        client_secret: str = "fedcba9876543210fedcba9876543210fedcba98",  # noqa: S107 - fake
        credential_scope: str = "read_users",
        rate_limit: int | None = None,
        rate_window: float = 3600.0,
        token_lifetime: float = 36000.0,
        port: int = 0,
    ) -> None:
        super().__init__(tls, port=port)
        self.directory = directory or OneLoginDirectory()
        self.client_id = client_id
        self.client_secret = client_secret
        self.credential_scope = credential_scope
        self.rate = RateWindow(rate_limit, rate_window) if rate_limit else None
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, _Token] = {}
        self.page_size = PAGE

    def expire_tokens(self) -> None:
        for token in self.tokens.values():
            token.expires = 0.0

    def route(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and path == "/auth/oauth2/v2/token":
            return self._token(headers, body)
        if method == "GET" and path in ("/api/1/users", "/api/1/roles"):
            rate = self._rate()
            try:
                self._authorize(headers.get("Authorization"))
                status, data, extra = self._list(path, query)
            except Reply as reply:
                reply.headers.update(rate)
                raise
            extra.update(rate)
            return status, data, extra
        raise Reply(404, _status(404, "not found", "No Route Exists"))

    def _rate(self) -> dict[str, str]:
        if self.rate is None:
            return {}
        allowed, remaining, reset = self.rate.take("account")
        headers = {
            "X-RateLimit-Limit": str(self.rate.limit),
            "X-RateLimit-Remaining": str(max(remaining, 0)),
            "X-RateLimit-Reset": str(max(math.ceil(reset - time.time()), 0)),
        }
        if not allowed:
            raise Reply(429, _status(429, "Too Many Requests", "Rate limit exceeded"), headers)
        return headers

    def _credentials(self, headers: Any, body: bytes) -> tuple[str | None, str | None]:
        auth = headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                pair = base64.b64decode(auth[6:]).decode()
            except ValueError:
                return None, None
            cid, _, secret = pair.partition(":")
            return cid, secret
        if auth.startswith("client_id:"):
            fields = dict(part.strip().split(":", 1) for part in auth.split(",") if ":" in part)
            return fields.get("client_id"), fields.get("client_secret")
        if "x-www-form-urlencoded" in (headers.get("Content-Type") or ""):
            form = dict(parse_qsl(body.decode()))
            return form.get("client_id"), form.get("client_secret")
        return None, None

    def _token(self, headers: Any, body: bytes) -> tuple[int, Any, dict[str, str]]:
        content_type = headers.get("Content-Type") or ""
        if "application/json" in content_type:
            try:
                grant = orjson.loads(body).get("grant_type")
            except (orjson.JSONDecodeError, AttributeError):
                grant = None
        elif "x-www-form-urlencoded" in content_type:
            grant = dict(parse_qsl(body.decode())).get("grant_type")
        else:
            raise Reply(
                400,
                _status(
                    400, "bad request", "Content Type is not specified or specified incorrectly."
                ),
            )
        if grant != "client_credentials":
            raise Reply(400, _status(400, "bad request", "grant_type is incorrect/absent"))
        cid, secret = self._credentials(headers, body)
        if cid != self.client_id or secret != self.client_secret:
            raise Reply(401, _status(401, "Unauthorized", "Authentication Failure"))
        token = secrets.token_hex(32)
        self.tokens[token] = _Token(self.credential_scope, time.time() + self.token_lifetime)
        return (
            200,
            {
                "access_token": token,
                "created_at": "2026-11-25T10:00:00.000Z",
                "expires_in": int(self.token_lifetime),
                "refresh_token": secrets.token_hex(32),
                "token_type": "bearer",
                "account_id": 555555,
            },
            {},
        )

    def _authorize(self, authorization: str | None) -> None:
        value = authorization or ""
        if not value.lower().startswith("bearer:"):
            raise Reply(401, _status(401, "Unauthorized", "Authentication Failure"))
        token = self.tokens.get(value[len("bearer:") :].strip())
        if token is None or token.expires <= time.time():
            raise Reply(401, _status(401, "Unauthorized", "Authentication Failure"))
        if token.scope == "authentication_only":
            raise Reply(401, _status(401, "Unauthorized", "Authentication Failure"))

    def _list(self, path: str, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        items = self.directory.users if path.endswith("users") else self.directory.roles
        searches = {
            k: v
            for k, v in query.items()
            if k not in ("after_cursor", "before_cursor", "limit", "fields", "sort")
        }
        for key, pattern in searches.items():
            items = [i for i in items if _matches(i.get(key), pattern)]
        try:
            limit = min(int(query.get("limit", self.page_size)), self.page_size)
        except ValueError:
            raise Reply(400, _status(400, "bad request", "limit must be a number")) from None
        start = 0
        cursor = query.get("after_cursor")
        if cursor:
            try:
                start = int(base64.urlsafe_b64decode(cursor + "==").decode().split(":")[1])
            except (ValueError, IndexError):
                raise Reply(400, _status(400, "bad request", "Invalid cursor")) from None
        page = items[start : start + max(limit, 1)]
        after = None
        next_link = None
        if start + len(page) < len(items):
            after = base64.urlsafe_b64encode(f"id:{start + len(page)}".encode()).decode()
            rest = {k: v for k, v in query.items() if k != "after_cursor"}
            next_link = f"{self.url}{path}?{urlencode({**rest, 'after_cursor': after})}"
        body = {
            **_status(200, "success", "Success"),
            "pagination": {
                "before_cursor": None,
                "after_cursor": after,
                "previous_link": None,
                "next_link": next_link,
            },
            "data": page,
        }
        return 200, body, {}


def _matches(value: Any, pattern: str) -> bool:
    if value is None:
        return False
    if isinstance(value, list):
        return any(_matches(v, pattern) for v in value)
    return fnmatch.fnmatchcase(str(value).lower(), pattern.lower())
