"""A stand-in for the Microsoft identity platform (token endpoint) and Microsoft Graph v1.0, for
the Entra source's tests and benchmark, served over HTTPS on loopback so that the real msal and
httpx code runs unmodified.

Written from Microsoft's published contracts; what it checks, as the real services do:

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` — msal's tenant discovery.
* ``POST /{tenant}/oauth2/v2.0/token`` — ``grant_type=client_credentials``; the scope must be
  ``<graph resource>/.default``; the client authenticates with its secret, or with a JWT
  ``client_assertion`` that is either signed by the app's registered certificate (``x5t#S256``
  or ``x5t`` header; ``aud`` = the token endpoint, ``iss`` = ``sub`` = client id, not expired)
  or is a federated token from a registered issuer/subject with ``aud`` =
  ``api://AzureADTokenExchange`` (AKS workload identity). Errors are ``AADSTS…`` JSON bodies.
  The access token is a JWT whose ``roles`` claim lists the app's application permissions.
* Graph: bearer token checked (signature, audience, expiry), each endpoint's application
  permissions enforced (403 ``Authorization_RequestDenied``), ``$select`` validated and applied
  (without it the default property set, which lacks ``accountEnabled``), ``$top`` bounds
  (1–999), ``@odata.nextLink`` with opaque ``$skiptoken`` continuation, ``/users/delta`` with
  ``$deltatoken`` (unknown/expired → 400 ``syncStateNotFound``; ``@removed`` entries carry only
  ``id``), ``/groups/{id}/members`` and ``transitiveMembers`` (with the
  ``/microsoft.graph.user`` cast), administrative-unit members. 429/503 on demand via
  ``throttle``.

Directory content: ``add_user``, ``add_group``, ``add_administrative_unit``, ``delete_user``
(soft; ``permanently=True`` purges), ``populate(n_users, n_groups)`` for a tenant of realistic
shape (nested groups, guests, disabled users, users without mail, soft-deleted users).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.standins.http_server import FakeHttpsServer, Reply, Request

GRAPH_GLOBAL = "https://graph.microsoft.com"
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

USER_PROPERTIES = {
    "id",
    "mail",
    "userPrincipalName",
    "displayName",
    "accountEnabled",
    "userType",
    "givenName",
    "surname",
    "jobTitle",
    "businessPhones",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
}
USER_DEFAULT = [
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
]
GROUP_PROPERTIES = {"id", "displayName", "description", "mail", "mailEnabled", "securityEnabled"}
GROUP_DEFAULT = ["id", "displayName", "description", "mail", "mailEnabled", "securityEnabled"]

READ_USERS = {
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
READ_GROUPS = {
    "Group.Read.All",
    "GroupMember.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
READ_AUS = {"AdministrativeUnit.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"}

USER_TYPE = "#microsoft.graph.user"
GROUP_TYPE = "#microsoft.graph.group"
DELTA_PAGE_MAX = 200
"""Graph caps delta pages of directory objects well below ``$top``'s 999."""


@dataclass(slots=True)
class FakeApp:
    client_id: str
    secret: str | None = None
    certificate: x509.Certificate | None = None
    federated: list[tuple[str, str, Any]] = field(default_factory=list)
    """(issuer, subject, public key) of trusted federated credentials."""
    roles: set[str] = field(default_factory=set)


@dataclass(slots=True)
class FakeUser:
    id: str
    upn: str
    mail: str | None
    display_name: str
    account_enabled: bool = True
    user_type: str = "Member"
    deleted: bool = False
    purged: bool = False
    changed: int = 0


@dataclass(slots=True)
class FakeGroup:
    id: str
    display_name: str
    members: list[str] = field(default_factory=list)


@dataclass(slots=True)
class FakeUnit:
    id: str
    display_name: str
    members: list[str] = field(default_factory=list)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _graph_error(status: int, code: str, message: str) -> Reply:
    return Reply(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": "x"},
            }
        },
    )


def _aad_error(status: int, error: str, code: int, text: str) -> Reply:
    return Reply(
        status,
        {
            "error": error,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {uuid.uuid4()}\r\n"
            f"Correlation ID: {uuid.uuid4()}\r\nTimestamp: 2026-01-01 00:00:00Z",
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        },
    )


class FakeGraph(FakeHttpsServer):
    """Identity platform + Graph for one tenant. See the module docstring."""

    service = "graph"

    def __init__(
        self,
        *,
        tenant_id: str | None = None,
        resource: str = GRAPH_GLOBAL,
        tls: tuple[str, str] | None = None,
        token_lifetime: int = 3599,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(tls=tls, host=host, port=port)
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.resource = resource.rstrip("/")
        self.token_lifetime = token_lifetime
        self._signing_key = secrets.token_bytes(32)
        self.apps: dict[str, FakeApp] = {}
        self.users: dict[str, FakeUser] = {}
        self.groups: dict[str, FakeGroup] = {}
        self.units: dict[str, FakeUnit] = {}
        self._seq = itertools.count(1)
        self._now_seq = 0
        self._pages: dict[str, tuple[list[dict[str, Any]], int, int, str, str]] = {}
        """skiptoken → (items, offset, page size, path, next kind) of a paged listing."""
        self._delta_tokens: dict[str, tuple[int, list[str] | None]] = {}
        self._data_lock = threading.RLock()
        self.tokens_issued = 0
        self.token_requests: list[dict[str, str]] = []
        self.max_page: int | None = None
        """Server-side paging: Graph may answer with fewer objects than ``$top`` asks for
        (paging.md), so a client must follow ``@odata.nextLink`` whatever it asked; set this to
        page a small tenant."""

    # -- configuration ---------------------------------------------------------------------
    def add_app(
        self,
        client_id: str | None = None,
        *,
        secret: str | None = None,
        certificate_pem: bytes | None = None,
        federated: tuple[str, str, bytes] | None = None,
        roles: tuple[str, ...] = ("User.Read.All", "Group.Read.All"),
    ) -> FakeApp:
        """Register an app with a secret, a certificate (PEM) and/or a federated credential
        ``(issuer, subject, issuer public key PEM)``, granted ``roles``."""
        app = FakeApp(client_id or str(uuid.uuid4()), secret=secret, roles=set(roles))
        if certificate_pem:
            app.certificate = x509.load_pem_x509_certificate(certificate_pem)
        if federated:
            issuer, subject, key_pem = federated
            app.federated.append((issuer, subject, serialization.load_pem_public_key(key_pem)))
        self.apps[app.client_id] = app
        return app

    def _touch(self) -> int:
        self._now_seq = next(self._seq)
        return self._now_seq

    def add_user(
        self,
        upn: str,
        *,
        mail: str | None = "",
        enabled: bool = True,
        guest: bool = False,
        display_name: str | None = None,
        id: str | None = None,
    ) -> str:
        """A user; ``mail=""`` (default) means the same as the UPN, ``None`` no mail."""
        with self._data_lock:
            user = FakeUser(
                id=id or str(uuid.uuid4()),
                upn=upn,
                mail=upn if mail == "" else mail,
                display_name=display_name or upn.split("@", maxsplit=1)[0],
                account_enabled=enabled,
                user_type="Guest" if guest else "Member",
                changed=self._touch(),
            )
            self.users[user.id] = user
            return user.id

    def update_user(self, user_id: str, **changes: Any) -> None:
        with self._data_lock:
            user = self.users[user_id]
            for key, value in changes.items():
                setattr(user, key, value)
            user.changed = self._touch()

    def delete_user(self, user_id: str, *, permanently: bool = False) -> None:
        """Soft-delete (recycle bin; delta reports ``reason: changed``) or purge (``deleted``).
        The user leaves every group either way, as in Entra."""
        with self._data_lock:
            user = self.users[user_id]
            user.deleted = True
            user.purged = permanently
            user.changed = self._touch()
            for group in self.groups.values():
                if user_id in group.members:
                    group.members.remove(user_id)

    def add_group(
        self, name: str, members: list[str] | None = None, *, id: str | None = None
    ) -> str:
        with self._data_lock:
            group = FakeGroup(id or str(uuid.uuid4()), name, list(members or []))
            self.groups[group.id] = group
            return group.id

    def add_members(self, group_id: str, *member_ids: str) -> None:
        with self._data_lock:
            self.groups[group_id].members.extend(member_ids)

    def add_administrative_unit(self, name: str, members: list[str]) -> str:
        with self._data_lock:
            unit = FakeUnit(str(uuid.uuid4()), name, list(members))
            self.units[unit.id] = unit
            return unit.id

    def expire_delta_tokens(self) -> None:
        """Every delta link handed out so far becomes invalid (Graph keeps them ~7 days)."""
        with self._data_lock:
            self._delta_tokens.clear()

    def populate(
        self, n_users: int, n_groups: int, *, seed: int = 1, domain: str = "example.com"
    ) -> None:
        """A tenant of realistic shape, deterministic for ``seed``:

        ~2 % disabled, ~1 % guests (half with a mail address, half with only their ``#EXT#``
        UPN), ~1 % without mail (their UPN on ``<tenant>.onmicrosoft.com`` is used), ~1 %
        soft-deleted; groups of 5–80 direct members, every tenth group nesting two others."""
        rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
        ids: list[str] = []
        for i in range(n_users):
            kind = rng.random()
            if kind < 0.005:
                ids.append(
                    self.add_user(
                        f"guest{i}_partner.org#EXT#@contoso.onmicrosoft.com", mail=None, guest=True
                    )
                )
            elif kind < 0.01:
                ids.append(
                    self.add_user(
                        f"guest{i}_partner.org#EXT#@contoso.onmicrosoft.com",
                        mail=f"guest{i}@partner.org",
                        guest=True,
                    )
                )
            elif kind < 0.02:
                ids.append(self.add_user(f"svc{i}@contoso.onmicrosoft.com", mail=None))
            else:
                ids.append(
                    self.add_user(
                        f"user{i}@{domain}", mail=f"User{i}@{domain}", enabled=kind > 0.04
                    )
                )
        group_ids: list[str] = []
        for g in range(n_groups):
            members = rng.sample(ids, min(len(ids), rng.randint(5, 80)))
            gid = self.add_group(f"Group {g:04d}", members)
            if g % 10 == 9 and len(group_ids) >= 2:
                self.add_members(gid, *rng.sample(group_ids, 2))
            group_ids.append(gid)
        for uid in rng.sample(ids, n_users // 100):
            self.delete_user(uid)

    # -- helpers -----------------------------------------------------------------------------
    @property
    def authority_url(self) -> str:
        """Use as ``BWSYNC_ENTRA__AUTHORITY_URL``."""
        return self.base_url

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token"

    def throttle_body(self, status: int) -> Any:
        if status == 503:
            return {"error": {"code": "serviceNotAvailable", "message": "Service unavailable"}}
        return {
            "error": {
                "code": "TooManyRequests",
                "message": "Too many requests, please retry after some time.",
            }
        }

    # -- routing -----------------------------------------------------------------------------
    def route(self, request: Request) -> Reply:
        path = request.path
        prefix = f"/{self.tenant_id}"
        if path.startswith(prefix + "/"):
            rest = path[len(prefix) :]
            if rest == "/v2.0/.well-known/openid-configuration" and request.method == "GET":
                return self._openid()
            if rest == "/oauth2/v2.0/token" and request.method == "POST":
                return self._token(request)
        if path.startswith("/v1.0/"):
            return self._graph(request)
        if path.endswith("/oauth2/v2.0/token") or path.endswith("/openid-configuration"):
            tenant = path.split("/")[1]
            return _aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        return _graph_error(400, "BadRequest", f"Invalid request: {request.method} {path}")

    def _openid(self) -> Reply:
        base = f"{self.base_url}/{self.tenant_id}"
        return Reply(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "tenant_region_scope": "EU",
            },
        )

    # -- token endpoint ----------------------------------------------------------------------
    def _token(self, request: Request) -> Reply:
        form = request.form
        self.token_requests.append({k: v for k, v in form.items() if k == "scope"})
        if form.get("grant_type") != "client_credentials":
            return _aad_error(
                400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
            )
        client_id = form.get("client_id", "")
        app = self.apps.get(client_id)
        if app is None:
            return _aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'.",
            )
        scopes = form.get("scope", "").split()
        wanted = f"{self.resource}/.default"
        if wanted not in scopes:
            return _aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {' '.join(scopes)} is not valid. Client credential "
                "flows must have a scope value with /.default suffixed to the resource "
                "identifier (application ID URI).",
            )
        problem = self._client_auth(app, form)
        if problem is not None:
            return problem
        now = int(time.time())
        claims = {
            "aud": self.resource,
            "iss": f"https://sts.windows.net/{self.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + self.token_lifetime,
            "appid": app.client_id,
            "tid": self.tenant_id,
            "idtyp": "app",
            "roles": sorted(app.roles),
        }
        self.tokens_issued += 1
        token = jwt.encode(claims, self._signing_key, algorithm="HS256")
        return Reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime,
                "ext_expires_in": self.token_lifetime,
                "access_token": token,
            },
        )

    def _client_auth(self, app: FakeApp, form: dict[str, str]) -> Reply | None:
        if "client_secret" in form:
            if app.secret is None or not secrets.compare_digest(form["client_secret"], app.secret):
                return _aad_error(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request "
                    "is the client secret value, not the client secret ID.",
                )
            return None
        assertion = form.get("client_assertion")
        if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            return _aad_error(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return _aad_error(401, "invalid_client", 50027, "JWT token is invalid or malformed.")
        if unverified.get("aud") == FEDERATED_AUDIENCE:
            return self._federated(app, assertion, unverified)
        if app.certificate is None:
            return _aad_error(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation: no certificate registered.",
            )
        der = app.certificate.public_bytes(serialization.Encoding.DER)
        thumbs = {
            "x5t#S256": _b64url(hashlib.sha256(der).digest()),
            "x5t": _b64url(hashlib.sha1(der).digest()),  # noqa: S324 - the protocol's legacy thumbprint
        }
        if not any(str(header.get(k, "")).rstrip("=") == v for k, v in thumbs.items()):
            return _aad_error(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not "
                "registered on application.",
            )
        try:
            claims = jwt.decode(
                assertion,
                app.certificate.public_key(),  # type: ignore[arg-type]
                algorithms=["PS256", "RS256"],
                audience=self.token_endpoint,
                issuer=app.client_id,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return _aad_error(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation: {exc}",
            )
        if claims.get("sub") != app.client_id:
            return _aad_error(401, "invalid_client", 700023, "Invalid subject in client assertion.")
        return None

    def _federated(self, app: FakeApp, assertion: str, unverified: dict[str, Any]) -> Reply | None:
        for issuer, subject, key in app.federated:
            if unverified.get("iss") != issuer:
                continue
            try:
                claims = jwt.decode(
                    assertion,
                    key,
                    algorithms=["RS256"],
                    audience=FEDERATED_AUDIENCE,
                    issuer=issuer,
                    options={"require": ["exp", "sub"]},
                )
            except jwt.ExpiredSignatureError:
                return _aad_error(
                    400,
                    "invalid_client",
                    700024,
                    "Client assertion is not within its valid time range.",
                )
            except jwt.PyJWTError as exc:
                return _aad_error(400, "invalid_client", 700211, f"Invalid federated token: {exc}")
            if claims.get("sub") != subject:
                return _aad_error(
                    400,
                    "invalid_client",
                    700213,
                    f"No matching federated identity record found for presented assertion "
                    f"subject '{claims.get('sub')}'.",
                )
            return None
        return _aad_error(
            400,
            "invalid_client",
            700211,
            f"No matching federated identity record found for presented assertion issuer "
            f"'{unverified.get('iss')}'.",
        )

    # -- Graph -------------------------------------------------------------------------------
    def _roles(self, request: Request) -> set[str] | Reply:
        token = request.bearer()
        if token is None:
            return _graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = jwt.decode(
                token, self._signing_key, algorithms=["HS256"], audience=self.resource
            )
        except jwt.ExpiredSignatureError:
            return _graph_error(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            )
        except jwt.PyJWTError:
            return _graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience.",
            )
        return set(claims.get("roles") or [])

    def _graph(self, request: Request) -> Reply:
        roles = self._roles(request)
        if isinstance(roles, Reply):
            return roles
        if request.method != "GET":
            return _graph_error(405, "Request_BadRequest", "Only GET is served by this stand-in.")
        q = request.query
        skiptoken = q.get("$skiptoken")
        if skiptoken is not None and "/delta" not in request.path:
            return self._next_page(request.path, skiptoken)
        parts = request.path.split("/")[2:]  # after /v1.0/
        denied = _graph_error(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )
        with self._data_lock:
            if parts == ["users"]:
                if not roles & READ_USERS:
                    return denied
                users = [u for u in self.users.values() if not u.deleted]
                return self._list(request, [self._user_obj(u) for u in users], "user", None)
            if parts == ["users", "delta"]:
                if not roles & READ_USERS:
                    return denied
                return self._delta(request)
            if parts == ["groups"]:
                if not roles & READ_GROUPS:
                    return denied
                items = [self._group_obj(g) for g in self.groups.values()]
                return self._list(request, items, "group", None)
            if (
                len(parts) in (3, 4)
                and parts[0] == "groups"
                and parts[2]
                in (
                    "members",
                    "transitiveMembers",
                )
            ):
                if not roles & READ_GROUPS:
                    return denied
                group = self.groups.get(parts[1])
                if group is None:
                    return _graph_error(
                        404,
                        "Request_ResourceNotFound",
                        f"Resource '{parts[1]}' does not exist or one of its queried "
                        "reference-property objects are not present.",
                    )
                ids = group.members if parts[2] == "members" else self._transitive(group.id)
                cast = parts[3] if len(parts) == 4 else None
                if cast not in (None, "microsoft.graph.user", "microsoft.graph.group"):
                    return _graph_error(
                        400, "Request_UnsupportedQuery", f"Unsupported member type cast {cast}."
                    )
                return self._members(request, ids, cast)
            if (
                len(parts) == 4
                and parts[:2] == ["directory", "administrativeUnits"]
                and parts[3] == "members"
            ):
                if not roles & READ_AUS:
                    return denied
                unit = self.units.get(parts[2])
                if unit is None:
                    return _graph_error(
                        404, "Request_ResourceNotFound", f"Resource '{parts[2]}' does not exist."
                    )
                return self._members(request, unit.members, None)
        return _graph_error(400, "BadRequest", f"Resource not found for the segment '{parts[0]}'.")

    def _user_obj(self, user: FakeUser) -> dict[str, Any]:
        return {
            "id": user.id,
            "businessPhones": [],
            "displayName": user.display_name,
            "givenName": None,
            "jobTitle": None,
            "mail": user.mail,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": None,
            "userPrincipalName": user.upn,
            "accountEnabled": user.account_enabled,
            "userType": user.user_type,
        }

    def _group_obj(self, group: FakeGroup) -> dict[str, Any]:
        return {
            "id": group.id,
            "displayName": group.display_name,
            "description": None,
            "mail": None,
            "mailEnabled": False,
            "securityEnabled": True,
        }

    def _select(self, request: Request, kind: str) -> tuple[list[str] | None, Reply | None]:
        raw = request.query.get("$select")
        if raw is None:
            return None, None
        fields = [f.strip() for f in raw.split(",") if f.strip()]
        allowed = USER_PROPERTIES if kind == "user" else GROUP_PROPERTIES
        for name in fields:
            if name not in allowed:
                return None, _graph_error(
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{name}' on type 'microsoft.graph.{kind}'.",
                )
        return fields, None

    @staticmethod
    def _project(
        obj: dict[str, Any], fields: list[str] | None, default: list[str]
    ) -> dict[str, Any]:
        keep = fields if fields is not None else default
        out = {k: obj[k] for k in keep if k in obj}
        out["id"] = obj["id"]
        return out

    def _top(self, request: Request, default: int = 100) -> int | Reply:
        raw = request.query.get("$top")
        if raw is None:
            return default
        try:
            top = int(raw)
        except ValueError:
            return _graph_error(400, "Request_BadRequest", f"Invalid $top value '{raw}'.")
        if not 1 <= top <= 999:
            return _graph_error(
                400, "Request_UnsupportedQuery", "Invalid page size specified: must be 1..999."
            )
        return top

    def _list(
        self, request: Request, objs: list[dict[str, Any]], kind: str, cast: str | None
    ) -> Reply:
        fields, problem = self._select(request, kind)
        if problem:
            return problem
        top = self._top(request)
        if isinstance(top, Reply):
            return top
        default = USER_DEFAULT if kind == "user" else GROUP_DEFAULT
        items = [self._project(o, fields, default) for o in objs]
        return self._page(request.path, items, 0, top)

    def _members(self, request: Request, ids: list[str], cast: str | None) -> Reply:
        raw = request.query.get("$select")
        fields = [f.strip() for f in raw.split(",")] if raw else None
        for name in fields or []:
            if name not in USER_PROPERTIES | GROUP_PROPERTIES:
                return _graph_error(
                    400,
                    "Request_BadRequest",
                    f"Could not find a property named '{name}' on type "
                    "'microsoft.graph.directoryObject'.",
                )
        top = self._top(request)
        if isinstance(top, Reply):
            return top
        items: list[dict[str, Any]] = []
        for member_id in ids:
            if member_id in self.users and not self.users[member_id].deleted:
                if cast == "microsoft.graph.group":
                    continue
                obj = self._project(self._user_obj(self.users[member_id]), fields, USER_DEFAULT)
                items.append({"@odata.type": USER_TYPE, **obj})
            elif member_id in self.groups:
                if cast == "microsoft.graph.user":
                    continue
                obj = self._project(self._group_obj(self.groups[member_id]), fields, GROUP_DEFAULT)
                items.append({"@odata.type": GROUP_TYPE, **obj})
        return self._page(request.path, items, 0, top)

    def _transitive(self, group_id: str) -> list[str]:
        seen_groups = {group_id}
        out: dict[str, None] = {}
        stack = [group_id]
        while stack:
            for member in self.groups[stack.pop(0)].members:
                if member in self.groups:
                    if member not in seen_groups:
                        seen_groups.add(member)
                        out[member] = None
                        stack.append(member)
                else:
                    out[member] = None
        return list(out)

    def _page(self, path: str, items: list[dict[str, Any]], offset: int, size: int) -> Reply:
        size = min(size, self.max_page or size)
        chunk = items[offset : offset + size]
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}/v1.0/$metadata#{path}"}
        if offset + size < len(items):
            token = secrets.token_urlsafe(24)
            self._pages[token] = (items, offset + size, size, path, "list")
            body["@odata.nextLink"] = f"{self.base_url}{path}?$skiptoken={token}"
        body["value"] = chunk
        return Reply(200, body)

    def _next_page(self, path: str, token: str) -> Reply:
        with self._data_lock:
            state = self._pages.pop(token, None)
        if state is None or state[3] != path:
            return _graph_error(
                400,
                "Directory_ExpiredPageToken",
                "The specified page token value has expired and can no longer be included in "
                "your request.",
            )
        items, offset, size, _, _ = state
        return self._page(path, items, offset, size)

    # -- delta -------------------------------------------------------------------------------
    def _delta(self, request: Request) -> Reply:
        q = request.query
        prefer = request.headers.get("prefer", "")
        size = 100
        for part in prefer.split(","):
            name, _, value = part.strip().partition("=")
            if name == "odata.maxpagesize" and value.isdigit():
                size = max(1, min(DELTA_PAGE_MAX, int(value)))
        if "$skiptoken" in q:
            state = self._pages.pop(q["$skiptoken"], None)
            if state is None:
                return _graph_error(
                    400, "syncStateNotFound", "The sync state generation is not found."
                )
            pending, offset, _, _, marker = state
            return self._delta_page(pending, offset, size, marker)
        if "$top" in q:
            return _graph_error(
                400,
                "Request_UnsupportedQuery",
                "Unsupported query: $top is not supported with delta.",
            )
        if "$deltatoken" in q:
            known = self._delta_tokens.get(q["$deltatoken"])
            if known is None:
                return _graph_error(
                    400,
                    "syncStateNotFound",
                    "The sync state generation is not found. The delta token is expired and data "
                    "must be synchronized again.",
                )
            since, fields = known
        else:
            since = 0
            fields, problem = self._select(request, "user")
            if problem:
                return problem
        items: list[dict[str, Any]] = []
        for user in self.users.values():
            if user.changed <= since:
                continue
            if user.deleted:
                if since == 0:
                    continue  # an initial round lists current objects only
                items.append(
                    {
                        "@odata.type": USER_TYPE,
                        "id": user.id,
                        "@removed": {"reason": "deleted" if user.purged else "changed"},
                    }
                )
            else:
                items.append(self._project(self._user_obj(user), fields, USER_DEFAULT))
        marker = f"{self._now_seq}:{','.join(fields) if fields else ''}"
        return self._delta_page(items, 0, size, marker)

    def _delta_page(
        self, items: list[dict[str, Any]], offset: int, size: int, marker: str
    ) -> Reply:
        size = min(size, self.max_page or size)
        chunk = items[offset : offset + size]
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}/v1.0/$metadata#users"}
        if offset + size < len(items):
            token = secrets.token_urlsafe(24)
            self._pages[token] = (items, offset + size, size, "/v1.0/users/delta", marker)
            body["@odata.nextLink"] = f"{self.base_url}/v1.0/users/delta?$skiptoken={token}"
        else:
            seq, _, select = marker.partition(":")
            token = secrets.token_urlsafe(24)
            self._delta_tokens[token] = (int(seq), select.split(",") if select else None)
            body["@odata.deltaLink"] = f"{self.base_url}/v1.0/users/delta?$deltatoken={token}"
        body["value"] = chunk
        return Reply(200, body)
