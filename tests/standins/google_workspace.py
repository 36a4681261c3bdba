"""A stand-in for Google's OAuth 2.0 token endpoint and the Admin SDK Directory API (v1), for the
Google source's tests and benchmark, over HTTPS on loopback, so the real google-auth and httpx
code runs unmodified.

Written from Google's published contracts; what it checks, as the real services do:

* ``POST /token`` with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``: the
  assertion's RS256 signature against the registered service account's public key (``kid`` =
  ``private_key_id``), ``iss`` = the account's ``client_email``, ``aud`` = Google's token URI, a
  lifetime of at most one hour, the ``scope`` claim; with ``sub`` (domain-wide delegation),
  every requested scope must be delegated to the account's client id (else 401
  ``unauthorized_client``) and ``sub`` must be a user of the customer (else 400
  ``invalid_grant`` "Invalid email or User ID"). The access token carries the granted scopes.
* ``GET /admin/directory/v1/users`` (``customer`` or ``domain`` required; ``maxResults`` 1–500,
  ``pageToken``, ``query``, ``showDeleted``), ``/groups`` (``maxResults`` 1–200), and
  ``/groups/{groupKey}/members`` (1–200): each needs its scope (403 ``insufficientPermissions``)
  and an administrator as ``sub`` (403 ``forbidden``); an empty list has no ``users`` /
  ``groups`` / ``members`` key at all. Quota errors on demand: ``throttle(…, status=403)``
  answers ``rateLimitExceeded``, ``status=429`` ``RESOURCE_EXHAUSTED``.

Directory content: ``add_user``, ``add_group``, ``add_member``, ``delete_user``,
``populate(n_users, n_groups)`` (suspended, archived, deleted users, users without ``emails``,
a secondary domain, nested groups, a ``CUSTOMER`` member).
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization

from tests.standins.http_server import FakeHttpsServer, Reply, Request

SCOPE_USER = "https://www.googleapis.com/auth/admin.directory.user.readonly"
SCOPE_GROUP = "https://www.googleapis.com/auth/admin.directory.group.readonly"
SCOPE_MEMBER = "https://www.googleapis.com/auth/admin.directory.group.member.readonly"
READ_SCOPES = (SCOPE_USER, SCOPE_GROUP, SCOPE_MEMBER)
_W = "https://www.googleapis.com/auth/"
USERS_OK = {SCOPE_USER, _W + "admin.directory.user", _W + "cloud-platform"}
GROUPS_OK = {SCOPE_GROUP, _W + "admin.directory.group", _W + "cloud-platform"}
MEMBERS_OK = GROUPS_OK | {SCOPE_MEMBER, _W + "admin.directory.group.member"}
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
LEGACY_TOKEN_AUDIENCE = "https://accounts.google.com/o/oauth2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
API = "/admin/directory/v1"


@dataclass(slots=True)
class FakeServiceAccount:
    client_email: str
    client_id: str
    key_id: str
    public_key: Any
    delegated: set[str] = field(default_factory=set)


@dataclass(slots=True)
class GUser:
    id: str
    primary_email: str
    given: str
    family: str
    emails: bool = True
    suspended: bool = False
    archived: bool = False
    is_admin: bool = False
    deleted: bool = False
    org_unit: str = "/"


@dataclass(slots=True)
class GGroup:
    id: str
    email: str
    name: str
    members: list[dict[str, Any]] = field(default_factory=list)


def _google_error(status: int, message: str, reason: str, state: str | None = None) -> Reply:
    err: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
    }
    if state:
        err["status"] = state
    return Reply(status, {"error": err})


def _oauth_error(status: int, error: str, description: str) -> Reply:
    return Reply(status, {"error": error, "error_description": description})


class FakeGoogle(FakeHttpsServer):
    """Token endpoint + Admin SDK Directory for one Workspace customer."""

    service = "google"

    def __init__(
        self,
        *,
        customer_id: str = "C01abc23d",
        domain: str = "example.com",
        secondary_domains: tuple[str, ...] = ("example.org",),
        admin_email: str | None = None,
        tls: tuple[str, str] | None = None,
        token_lifetime: int = 3599,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(tls=tls, host=host, port=port)
        self.customer_id = customer_id
        self.domain = domain
        self.domains = (domain, *secondary_domains)
        self.token_lifetime = token_lifetime
        self.accounts: dict[str, FakeServiceAccount] = {}
        self.users: dict[str, GUser] = {}
        self.groups: dict[str, GGroup] = {}
        self._tokens: dict[str, tuple[str | None, set[str], float]] = {}
        self._pages: dict[str, tuple[list[dict[str, Any]], int, int, str]] = {}
        self._ids = itertools.count(100000000000000000000)
        self._data_lock = threading.RLock()
        self.tokens_issued = 0
        self.token_scopes: list[list[str]] = []
        self.max_page: int | None = None
        """At most this many entries a page, whatever ``maxResults`` asks (it is a maximum:
        the API may return fewer and a ``nextPageToken``); set it to page a small customer."""
        self.admin_email = admin_email or f"admin@{domain}"
        self.admin_id = self.add_user(self.admin_email, is_admin=True)

    # -- configuration ---------------------------------------------------------------------
    def add_service_account(
        self, info: dict[str, Any], *, delegated: tuple[str, ...] = READ_SCOPES
    ) -> FakeServiceAccount:
        """Register the account of a JSON key (``info``) and delegate ``delegated`` scopes to
        its client id (Admin console → Security → API controls → Domain-wide delegation)."""
        key = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
        account = FakeServiceAccount(
            info["client_email"],
            info["client_id"],
            info["private_key_id"],
            key.public_key(),
            set(delegated),
        )
        self.accounts[account.client_email] = account
        return account

    def _new_id(self) -> str:
        return str(next(self._ids))

    def add_user(
        self,
        email: str,
        *,
        given: str = "Given",
        family: str = "Family",
        suspended: bool = False,
        archived: bool = False,
        is_admin: bool = False,
        emails: bool = True,
        org_unit: str = "/",
    ) -> str:
        with self._data_lock:
            user = GUser(
                self._new_id(),
                email,
                given,
                family,
                emails=emails,
                suspended=suspended,
                archived=archived,
                is_admin=is_admin,
                org_unit=org_unit,
            )
            self.users[user.id] = user
            return user.id

    def delete_user(self, user_id: str) -> None:
        """Deleted users stay listable with ``showDeleted=true`` (about 20 days in Google)."""
        with self._data_lock:
            self.users[user_id].deleted = True
            for group in self.groups.values():
                group.members = [m for m in group.members if m.get("id") != user_id]

    def add_group(self, name: str, email: str | None = None) -> str:
        with self._data_lock:
            gid = "0" + secrets.token_hex(7)
            slug = name.lower().replace(" ", "-")
            self.groups[gid] = GGroup(gid, email or f"{slug}@{self.domain}", name)
            return gid

    def add_member(self, group_id: str, member_id: str, *, status: str = "ACTIVE") -> None:
        """``member_id`` a user id, a group id, or the customer id (a ``CUSTOMER`` member:
        everyone in the organization)."""
        with self._data_lock:
            group = self.groups[group_id]
            if member_id in self.users:
                u = self.users[member_id]
                member = {"id": member_id, "email": u.primary_email, "type": "USER"}
            elif member_id in self.groups:
                g = self.groups[member_id]
                member = {"id": member_id, "email": g.email, "type": "GROUP"}
            elif member_id == self.customer_id:
                member = {"id": member_id, "type": "CUSTOMER"}
            else:
                raise KeyError(member_id)
            group.members.append(
                {
                    "kind": "admin#directory#member",
                    "etag": '"x"',
                    "role": "MEMBER",
                    "status": status,
                    **member,
                }
            )

    def populate(self, n_users: int, n_groups: int, *, seed: int = 1) -> None:
        """A customer of realistic shape, deterministic for ``seed``: ~2 % suspended, ~0.5 %
        archived, ~1 % deleted, a few without ``emails``, ~10 % on the secondary domain;
        groups of 5–80 members (~3 % of them ``SUSPENDED``), every tenth nesting two others,
        group 0 with a ``CUSTOMER`` member."""
        rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
        ids: list[str] = []
        for i in range(n_users):
            kind = rng.random()
            domain = self.domains[-1] if rng.random() < 0.1 else self.domain
            ids.append(
                self.add_user(
                    f"user{i}@{domain}",
                    given=f"User{i}",
                    family="Example",
                    suspended=0.03 < kind < 0.05,
                    archived=0.05 < kind < 0.055,
                    emails=not (0.06 < kind < 0.062),
                    org_unit="/Engineering" if i % 3 == 0 else "/Sales",
                )
            )
        group_ids: list[str] = []
        for g in range(n_groups):
            gid = self.add_group(f"Group {g:04d}")
            for uid in rng.sample(ids, min(len(ids), rng.randint(5, 80))):
                self.add_member(gid, uid, status="SUSPENDED" if rng.random() < 0.03 else "ACTIVE")
            if g % 10 == 9 and len(group_ids) >= 2:
                for nested in rng.sample(group_ids, 2):
                    self.add_member(gid, nested)
            group_ids.append(gid)
        if group_ids:
            self.add_member(group_ids[0], self.customer_id)
        for uid in rng.sample(ids, n_users // 100):
            self.delete_user(uid)

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    def throttle_body(self, status: int) -> Any:
        if status == 429:
            return _google_error(
                429,
                "Quota exceeded for quota metric 'Queries'.",
                "rateLimitExceeded",
                "RESOURCE_EXHAUSTED",
            ).body
        if status == 503:
            return _google_error(503, "The service is currently unavailable.", "backendError").body
        return {
            "error": {
                "code": 403,
                "message": "Rate Limit Exceeded",
                "errors": [
                    {
                        "message": "Rate Limit Exceeded",
                        "domain": "usageLimits",
                        "reason": "rateLimitExceeded",
                    }
                ],
            }
        }

    # -- routing -----------------------------------------------------------------------------
    def route(self, request: Request) -> Reply:
        if request.path == "/token" and request.method == "POST":
            return self._token(request)
        if request.path.startswith(API + "/") and request.method == "GET":
            return self._api(request)
        return _google_error(404, "Not Found", "notFound")

    # -- token endpoint ----------------------------------------------------------------------
    def _token(self, request: Request) -> Reply:
        form = request.form
        if form.get("grant_type") != JWT_BEARER:
            return _oauth_error(
                400, "unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", "")
            )
        assertion = form.get("assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
            )
        account = self.accounts.get(str(unverified.get("iss")))
        if account is None:
            return _oauth_error(401, "invalid_client", "The OAuth client was not found.")
        if header.get("kid") not in (None, account.key_id):
            return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        try:
            claims = jwt.decode(
                assertion,
                account.public_key,
                algorithms=["RS256"],
                # google-auth signs for Google's canonical token URI whatever ``token_uri``
                # says, and Google accepts that (and the legacy one).
                audience=[GOOGLE_TOKEN_AUDIENCE, LEGACY_TOKEN_AUDIENCE, self.token_uri],
                issuer=account.client_email,
                options={"require": ["exp", "iat", "aud", "iss"]},
                leeway=30,
            )
        except jwt.InvalidSignatureError:
            return _oauth_error(400, "invalid_grant", "Invalid JWT Signature.")
        except jwt.PyJWTError:
            return _oauth_error(
                400,
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
                "timeframe. Check your iat and exp values in the JWT claim.",
            )
        if int(claims["exp"]) - int(claims["iat"]) > 3600:
            return _oauth_error(
                400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes)."
            )
        scopes = str(claims.get("scope") or "").split()
        if not scopes:
            return _oauth_error(
                400, "invalid_scope", "Invalid OAuth scope or ID token audience provided."
            )
        self.token_scopes.append(scopes)
        subject = claims.get("sub")
        if subject is not None:
            if any(s not in account.delegated for s in scopes):
                return _oauth_error(
                    401,
                    "unauthorized_client",
                    "Client is unauthorized to retrieve access tokens using this method, or "
                    "client not authorized for any of the scopes requested.",
                )
            if not any(u.primary_email == subject and not u.deleted for u in self.users.values()):
                return _oauth_error(400, "invalid_grant", "Invalid email or User ID")
        token = "ya29." + secrets.token_urlsafe(48)
        with self._data_lock:
            self._tokens[token] = (subject, set(scopes), time.time() + self.token_lifetime)
        self.tokens_issued += 1
        return Reply(
            200,
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"},
        )

    # -- Admin SDK ---------------------------------------------------------------------------
    def _api(self, request: Request) -> Reply:
        token = request.bearer()
        grant = self._tokens.get(token or "")
        if grant is None or grant[2] < time.time():
            return _google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential.",
                "authError",
                "UNAUTHENTICATED",
            )
        subject, scopes, _ = grant
        parts = request.path[len(API) + 1 :].split("/")
        if parts == ["users"]:
            needed = USERS_OK
        elif parts == ["groups"]:
            needed = GROUPS_OK
        elif len(parts) == 3 and parts[0] == "groups" and parts[2] == "members":
            needed = MEMBERS_OK
        else:
            return _google_error(404, "Not Found", "notFound")
        if not scopes & needed:
            return _google_error(
                403,
                "Request had insufficient authentication scopes.",
                "insufficientPermissions",
                "PERMISSION_DENIED",
            )
        admin = next(
            (u for u in self.users.values() if u.primary_email == subject and not u.deleted), None
        )
        if admin is None or not admin.is_admin:
            return _google_error(403, "Not Authorized to access this resource/api", "forbidden")
        q = request.query
        limit = {"users": 500}.get(parts[0], 200)
        try:
            size = int(q.get("maxResults", "100"))
        except ValueError:
            return _google_error(400, "Invalid value for maxResults", "invalid")
        if not 1 <= size <= limit:
            return _google_error(
                400,
                f"Invalid value '{size}'. Values must be within the range: [1, {limit}]",
                "invalid",
            )
        size = min(size, self.max_page or size)
        key = "&".join(f"{k}={v}" for k, v in sorted(q.items()) if k != "pageToken") + request.path
        if "pageToken" in q:
            with self._data_lock:
                state = self._pages.pop(q["pageToken"], None)
            if state is None or state[3] != key:
                return _google_error(400, "Invalid page token", "invalid")
            items, offset, _, _ = state
            return self._page(
                parts[0] if parts[0] != "groups" or len(parts) == 1 else "members",
                items,
                offset,
                size,
                key,
            )
        with self._data_lock:
            if parts[0] == "users":
                result = self._list_users(q)
                kind = "users"
            elif len(parts) == 1:
                result = self._list_groups(q)
                kind = "groups"
            else:
                result = self._list_members(parts[1])
                kind = "members"
        if isinstance(result, Reply):
            return result
        return self._page(kind, result, 0, size, key)

    def _scope_check(self, q: dict[str, str]) -> Reply | None:
        customer = q.get("customer")
        domain = q.get("domain")
        if not customer and not domain:
            return _google_error(400, "Bad Request", "badRequest")
        if customer and customer not in ("my_customer", self.customer_id):
            return _google_error(400, "Bad Request", "badRequest")
        if domain and domain not in self.domains:
            return _google_error(403, "Not Authorized to access this resource/api", "forbidden")
        return None

    def _list_users(self, q: dict[str, str]) -> list[dict[str, Any]] | Reply:
        problem = self._scope_check(q)
        if problem:
            return problem
        deleted = q.get("showDeleted", "false") == "true"
        domain = q.get("domain")
        match = _query(q.get("query", ""), _USER_FIELDS)
        if isinstance(match, Reply):
            return match
        out = []
        for u in self.users.values():
            if u.deleted != deleted:
                continue
            if domain and not u.primary_email.endswith("@" + domain):
                continue
            obj = self._user_obj(u)
            if match(obj):
                out.append(obj)
        return out

    def _user_obj(self, u: GUser) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "kind": "admin#directory#user",
            "id": u.id,
            "etag": '"etag"',
            "primaryEmail": u.primary_email,
            "name": {
                "givenName": u.given,
                "familyName": u.family,
                "fullName": f"{u.given} {u.family}",
            },
            "isAdmin": u.is_admin,
            "isDelegatedAdmin": False,
            "lastLoginTime": "1970-01-01T00:00:00.000Z",
            "creationTime": "2024-01-01T00:00:00.000Z",
            "agreedToTerms": True,
            "suspended": u.suspended,
            "archived": u.archived,
            "changePasswordAtNextLogin": False,
            "ipWhitelisted": False,
            "customerId": self.customer_id,
            "orgUnitPath": u.org_unit,
            "isMailboxSetup": True,
            "includeInGlobalAddressList": True,
        }
        if u.emails:
            obj["emails"] = [{"address": u.primary_email, "primary": True}]
        if u.deleted:
            obj["deletionTime"] = "2026-01-01T00:00:00.000Z"
        return obj

    def _list_groups(self, q: dict[str, str]) -> list[dict[str, Any]] | Reply:
        problem = self._scope_check(q)
        if problem:
            return problem
        match = _query(q.get("query", ""), _GROUP_FIELDS)
        if isinstance(match, Reply):
            return match
        domain = q.get("domain")
        out = []
        for g in self.groups.values():
            if domain and not g.email.endswith("@" + domain):
                continue
            obj = {
                "kind": "admin#directory#group",
                "id": g.id,
                "etag": '"etag"',
                "email": g.email,
                "name": g.name,
                "directMembersCount": str(len(g.members)),
                "description": "",
                "adminCreated": True,
            }
            if match(obj):
                out.append(obj)
        return out

    def _list_members(self, key: str) -> list[dict[str, Any]] | Reply:
        group = self.groups.get(key) or next(
            (g for g in self.groups.values() if g.email == key), None
        )
        if group is None:
            return _google_error(404, "Resource Not Found: groupKey", "notFound")
        return [dict(m) for m in group.members]

    def _page(
        self, kind: str, items: list[dict[str, Any]], offset: int, size: int, key: str
    ) -> Reply:
        body: dict[str, Any] = {"kind": f"admin#directory#{kind}", "etag": '"etag"'}
        chunk = items[offset : offset + size]
        if chunk:
            body[kind] = chunk
        if offset + size < len(items):
            token = secrets.token_urlsafe(32)
            with self._data_lock:
                self._pages[token] = (items, offset + size, size, key)
            body["nextPageToken"] = token
        return Reply(200, body)


_USER_FIELDS = {
    "email": lambda o: o["primaryEmail"],
    "name": lambda o: o["name"]["fullName"],
    "givenname": lambda o: o["name"]["givenName"],
    "familyname": lambda o: o["name"]["familyName"],
    "orgunitpath": lambda o: o["orgUnitPath"],
    "issuspended": lambda o: str(o["suspended"]).lower(),
    "isarchived": lambda o: str(o["archived"]).lower(),
    "isadmin": lambda o: str(o["isAdmin"]).lower(),
}
_GROUP_FIELDS = {
    "email": lambda o: o["email"],
    "name": lambda o: o["name"],
}


def _query(text: str, fields: dict[str, Any]) -> Any:
    """A subset of the Directory API search syntax: space-separated ``field:value`` /
    ``field=value`` clauses (AND), values optionally quoted, a trailing ``*`` for a prefix."""
    clauses: list[tuple[Any, str, bool]] = []
    import shlex

    try:
        tokens = shlex.split(text)
    except ValueError:
        return _google_error(400, "Invalid Input", "invalid")
    for token in tokens:
        for op in ("=", ":"):
            name, sep, value = token.partition(op)
            if sep and name:
                break
        else:
            return _google_error(400, "Invalid Input", "invalid")
        getter = fields.get(name.strip().lower())
        if getter is None:
            return _google_error(400, "Invalid Input", "invalid")
        prefix = value.endswith("*")
        clauses.append((getter, value.rstrip("*").lower(), prefix))

    def match(obj: dict[str, Any]) -> bool:
        for getter, value, prefix in clauses:
            actual = str(getter(obj)).lower()
            if not (actual.startswith(value) if prefix else actual == value):
                return False
        return True

    return match
