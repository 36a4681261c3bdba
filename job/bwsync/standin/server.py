"""The Bitwarden stand-in's HTTP surface: the official server's identity endpoint and public
API (§2, §3, §5), on one base URL, over real HTTP on loopback.

Why it exists: ``bwsync demo`` runs a real sync with nothing to set up, and the tests need a
server (we cannot run the official one, and mocks of our own client would only test our
assumptions). It is written from the contract in ``reference/bitwarden-public-api.md`` (cited
as §n) and enforces its errors, limits and quirks, not only the happy path: the 2,000-entry
cap, the no-master-password guard of ``overwriteExisting``, the 500s the real server throws on
duplicates, non-transactional imports, expiring bearer tokens.

One base URL serves both halves, as a self-hosted server does behind its nginx::

    {base}/identity/connect/token        (also {base}/connect/token)
    {base}/api/public/...                (also {base}/public/...)

so ``BWSYNC_BITWARDEN__SERVER={base}`` works with the derived ``/api`` and ``/identity``.

In-process use::

    with BitwardenStandIn() as bw:               # started on a free loopback port
        bw.add_owner("boss@example.com")
        bw.add_member("ann@example.com", external_id="ann")
        ... run the client against bw.base_url with bw.client_id / bw.client_secret ...
        bw.find_member(email="ann@example.com"); bw.requests; bw.events

From a shell: ``python -m bwsync.standin --port 8087 [--self-hosted]`` (``serve``).

Decisions where the reference is silent (from the server source, see the module's tests):

* ``POST /public/members/{id}/revoke`` and ``/restore``: the API key acts as a *system user*, so
  the "only owners can revoke owners" check does not apply: owners can be revoked, except the
  last confirmed owner (400 "Organization must have at least one confirmed owner."). Revoking a
  revoked member is 400 "Already revoked."; restoring an active one is 400 "Already active.";
  an id outside the organization is 404 with an empty body; success is 200 with an empty body.
  Restore puts the member back in the status it had before (Invited without an account).
* The group writes bwsync uses for groups that leave the directory or change ids, read in
  bitwarden/server ``ac309aa19ed3`` (``src/Api/AdminConsole/Public/Controllers/
  GroupsController.cs``, ``Models/Request/UpdateMemberIdsRequestModel.cs``,
  ``GroupCreateUpdateRequestModel.cs``, ``src/Core/AdminConsole/OrganizationFeatures/Groups/
  UpdateGroupCommand.cs``, ``src/Infrastructure.Dapper/AdminConsole/Repositories/
  GroupRepository.cs``, ``src/Infrastructure.Dapper/Repositories/Repository.cs``
  (``ReplaceAsync`` → ``Group_Update``), ``src/Sql/dbo/Stored Procedures/
  GroupUser_UpdateUsers.sql``, ``Group_Update.sql``, ``Group_DeleteById.sql``,
  ``AdminConsole/Stored Procedures/Group_UpdateWithCollections.sql``,
  ``Tables/GroupUser.sql``, ``src/Infrastructure.Dapper/DapperHelpers.cs``,
  ``src/Api/Utilities/ExceptionHandlerFilterAttribute.cs``):

  - ``PUT /public/groups/{id}/member-ids``, body ``{"memberIds": [<member id>, ...]}``
    (``group_request``): the group's membership becomes exactly those ids (membership ids,
    as ``GET …/member-ids`` lists them), 200 with an empty body. Ids of no member of the
    organization are dropped without a word (the procedure joins on the group's
    organization); a missing or null list empties the group, as ``[]`` does. An id given
    twice that is not in the group yet is inserted twice and breaks the table's primary key
    (500, inferred from the procedure: its insert is not de-duplicated). A body that does not
    bind is 400 with the public model-state error; a body that is not JSON (content type) is
    415. No event is logged (the controller calls the repository directly).
  - ``DELETE /public/groups/{id}``: the group is deleted, and with it (``ON DELETE CASCADE``)
    its memberships and collection grants; 200 with an empty body, no event.
  - ``PUT /public/groups/{id}``, body ``{"name", "externalId", "collections"}``
    (``GroupCreateUpdateRequestModel``, bound by ``group_request.parse_group_update``): the
    group's name and externalId become the request's (a missing externalId clears it: "If a
    property is not provided, the value of the existing property will be reset"). Without
    ``collections`` (missing or null) the group's collection grants are **kept**:
    ``UpdateGroupCommand.SaveGroupWithCollectionsAsync`` calls ``ReplaceAsync(group)``, which
    runs ``Group_Update`` (the ``Group`` row only; the Entity Framework back-ends update the
    entity alone too), and only a non-null list goes to ``Group_UpdateWithCollections``,
    which replaces the grants. bwsync relies on this to give a group a new externalId without
    touching what it grants, and never sends ``collections``. Answers 200 with the
    ``GroupResponseModel`` of the request (``collections`` null when none were given); event
    ``Group_Updated``. Errors, in the server's order: a body that does not bind or validate
    (``name`` required and at most 100 characters, ``externalId`` at most 300, each
    collection's ``id`` and ``readOnly`` required) 400 model state; an unknown group 404
    empty; ``UseGroups`` off 400 "This organization cannot use groups."; a collection of no
    collection of the organization 404 "Resource not found."; ``manage`` with ``readOnly``
    or ``hidePasswords`` 400. Not modelled: the DefaultUserCollection check (the stand-in
    has no collection types) and a collection given twice (a SQL error).
  - All of this is the **MSSQL path** (Dapper and the stored procedures: the cloud and the
    standard self-hosted install). The Entity Framework back-ends (PostgreSQL, MySQL, SQLite;
    ``src/Infrastructure.EntityFramework/AdminConsole/Repositories/GroupRepository.cs``)
    differ where bwsync never goes: a null ``memberIds`` list fails there (500) where MSSQL
    empties the group, and an id given twice is inserted once; bwsync always sends a list
    (``[]``). Only ``PUT /public/groups/{id}`` logs an event.
  - All three: a group of no organization of the key's, or an id that is not a GUID, is 404
    with an empty body (``_find``); no or a bad token, 401, as every endpoint. (A route id
    that is not a GUID fails ASP.NET's model binding, which the public API's model-state
    filter would answer with 400, inferred; every endpoint here answers 404 alike, and bwsync
    only sends ids the server gave it.)
* Unknown paths answer 404 with an empty body; a known path with another method, 405.

The tests extend it (``tests/standins/bitwarden``) with injected faults, the cloud's rate
limits and Vaultwarden's behaviour, through the hooks ``_intercept``, ``_dispatch``,
``_authenticate`` and ``_token_issuer``; none of that ships.
"""

from __future__ import annotations

import base64
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec
import orjson

from bwsync.model import BITWARDEN_ENDPOINTS, STATUS_REVOKED, TYPE_OWNER
from bwsync.standin.group_request import parse_group_update, parse_member_ids
from bwsync.standin.http import (
    BitwardenHttpServer,
    HttpError,
    Response,
    json_response,
    public_error,
    unhandled,
)
from bwsync.standin.import_command import OfficialImport
from bwsync.standin.organization import Group, Member, members_json

if TYPE_CHECKING:
    from bwsync.config import BitwardenSettings

__all__ = ["ENDPOINTS", "GUID", "BitwardenStandIn", "RecordedRequest"]

#: Endpoint names, shared with ``bwsync.bitwarden`` (its ``on_request`` metric labels).
ENDPOINTS = BITWARDEN_ENDPOINTS

GUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
"""The GUID of a ``client_id`` (``organization.<guid>``), dashes optional as .NET parses it."""
_KNOWN_GRANTS = {
    "authorization_code",
    "client_credentials",
    "refresh_token",
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:device_code",
    "webauthn",
}


class _ListedMember(msgspec.Struct, tag_field="object", tag="member", rename="camel", gc=False):
    """``Member.as_json(collections=None)`` as a msgspec struct, for the list endpoint:
    the same keys in the same order (the tag first), and msgspec encodes strings exactly as
    orjson does (checked for every code point). 100,000 of them are built and encoded in
    45 ms, where as many dicts and ``orjson.dumps`` took 95 ms. The values are not checked on
    the way in: ``Organization._plain_members`` says when the struct may be used at all."""

    id: str
    user_id: str | None
    name: str | None
    email: str | None
    two_factor_enabled: bool
    status: int
    type: int
    external_id: str | None
    permissions: None
    collections: None
    reset_password_enrolled: bool
    sso_external_id: None


class _MemberList(msgspec.Struct, tag_field="object", tag="list", rename="camel", gc=False):
    """``GET /public/members`` (§5): ``{"object": "list", "data": [...],
    "continuationToken": null}``."""

    data: list[_ListedMember]
    continuation_token: None


_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the stand-in received it, for assertions.

    ``raw`` keeps the bytes; ``body`` parses them.
    """

    method: str
    path: str
    endpoint: str
    headers: dict[str, str]
    raw: bytes
    status: int
    """Status answered (0 when the connection was dropped on purpose)."""

    @property
    def body(self) -> Any:
        """The parsed JSON for JSON requests, the form as a dict for the token endpoint,
        ``None`` when empty or unparsable. Parsed anew on each access: the log keeps bytes
        only, as parsing (and holding) every import body cost the stand-in a second parse
        of each request that tests seldom read."""
        if self.endpoint == "token":
            return dict(parse_qsl(self.raw.decode("utf-8", "replace"), keep_blank_values=True))
        if not self.raw:
            return None
        try:
            return orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return None


class BitwardenStandIn(OfficialImport):
    """The stand-in: an organization the official import changes (``OfficialImport``), the
    HTTP server, bearer tokens and the request log.

    Parameters (all keyword-only), besides the import's own (``OfficialImport``:
    ``self_hosted``, ``staged_status``, ``use_directory``, ``use_groups``, ``seats``,
    ``require_confirmed_owner``):

    * ``client_id`` / ``client_secret`` / ``org_id``: the organization API key; random by default.
    * ``token_lifetime``: seconds a token is valid and the ``expires_in`` answered (3600).
    * ``jwt_tokens``: issue JWT-shaped tokens (default) or opaque random strings.
    * ``api_enabled``: the plan feature (§2.1); without it the key is an invalid client.
    * ``clock``: monotonic seconds for token expiry (tests may pass a fake).
    * ``host`` / ``port``: where to listen (loopback, a free port by default).
    * ``ssl_context``: serve HTTPS with this server-side context (``base_url`` becomes https),
      to test CA trust end to end.
    """

    def __init__(
        self,
        *,
        self_hosted: bool = False,
        client_id: str | None = None,
        client_secret: str | None = None,
        org_id: str | None = None,
        token_lifetime: int = 3600,
        jwt_tokens: bool = True,
        staged_status: bool = False,
        use_directory: bool = True,
        use_groups: bool = True,
        api_enabled: bool = True,
        seats: int | None = None,
        require_confirmed_owner: bool = False,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if client_id is not None:
            prefix, _, org_id = client_id.partition(".")
            if prefix != "organization":
                raise ValueError(f"client_id must be organization.<guid>, not {client_id!r}")
        super().__init__(
            self_hosted=self_hosted,
            staged_status=staged_status,
            use_directory=use_directory,
            use_groups=use_groups,
            seats=seats,
            require_confirmed_owner=require_confirmed_owner,
        )
        self._ssl_context = ssl_context
        self.org_id = (
            str(uuid.UUID(org_id)) if org_id else str(uuid.uuid4())
        )  # ValueError if not a GUID
        self.client_id = client_id or f"organization.{self.org_id}"
        self.client_secret = client_secret or secrets.token_urlsafe(22)
        self.token_lifetime = token_lifetime
        self.jwt_tokens = jwt_tokens
        self.api_enabled = api_enabled
        self._clock = clock
        self._host = host
        self._port = port
        self._tokens: dict[str, float] = {}
        self._requests: list[RecordedRequest] = []
        self.tokens_issued = 0
        self._server: BitwardenHttpServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Listen and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = BitwardenHttpServer((self._host, self._port), self._handle)
        if self._ssl_context is not None:
            # Handshake lazily, in the handler thread, so a client refusing our certificate
            # cannot stall the accept loop.
            server.socket = self._ssl_context.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            daemon=True,
            name=f"bitwarden-standin-{server.server_address[1]}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"<{type(self).__name__} {self._mode()} {where} org={self.org_id}>"

    def _mode(self) -> str:
        """What kind of server this is, for ``repr``."""
        return "self-hosted" if self.self_hosted else "cloud"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: the ``server`` setting (``/api``, ``/identity`` derived)."""
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api"

    @property
    def identity_url(self) -> str:
        return self.base_url + "/identity"

    def settings(self, **overrides: Any) -> BitwardenSettings:
        """``BitwardenSettings`` pointing at this server (imported lazily: pydantic)."""
        from bwsync.config import BitwardenSettings

        values: dict[str, Any] = {
            "server": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        values.update(overrides)
        return BitwardenSettings(**values)

    def reset(self) -> None:
        """Forget members, groups, tokens, requests and events."""
        with self._lock:
            super().reset()
            self._tokens.clear()
            self._requests.clear()

    # ---- the request log -------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.endpoint == endpoint]

    def writes(self) -> list[RecordedRequest]:
        """Requests that could change the organization: everything but the token and reads.
        What "nothing sent" means after a directory error on a first run, which reads the
        organization beside the directory fetch (``bwsync.snapshot``)."""
        return [r for r in self.requests if r.method != "GET" and r.endpoint != "token"]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _route(self, method: str, path: str) -> tuple[str, list[str], list[str]]:
        """(endpoint name, path parameters, methods the path allows when ``method`` is not one
        of them) for a request path (prefix ``/api`` optional)."""
        p = path.rstrip("/") or "/"
        if p in ("/identity/connect/token", "/connect/token"):
            return "token", [], []
        if p.startswith("/api/"):
            p = p[4:]
        parts = [unquote(x) for x in p.strip("/").split("/")]
        if parts[:1] != ["public"]:
            return "unknown", [], []
        rest = parts[1:]
        table: list[tuple[str, list[str], str]] = [
            ("POST", ["organization", "import"], "import"),
            ("GET", ["members"], "list_members"),
            ("GET", ["members", "*"], "get_member"),
            ("GET", ["members", "*", "group-ids"], "member_group_ids"),
            ("POST", ["members", "*", "revoke"], "revoke_member"),
            ("POST", ["members", "*", "restore"], "restore_member"),
            ("GET", ["groups"], "list_groups"),
            ("GET", ["groups", "*"], "get_group"),
            ("GET", ["groups", "*", "member-ids"], "group_member_ids"),
            ("PUT", ["groups", "*"], "update_group"),
            ("PUT", ["groups", "*", "member-ids"], "set_group_member_ids"),
            ("DELETE", ["groups", "*"], "delete_group"),
        ]
        allowed: list[str] = []
        for m, pattern, name in table:
            if len(pattern) == len(rest) and all(
                a == "*" or a == b.lower() for a, b in zip(pattern, rest, strict=True)
            ):
                if m == method:
                    return name, [b for a, b in zip(pattern, rest, strict=True) if a == "*"], []
                allowed.append(m)
        return "unknown", [], sorted(set(allowed))

    def _handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Response:
        """Answer one request (``BitwardenHttpServer`` calls this from its handler threads) and
        log it."""
        path = urlsplit(target).path
        endpoint, params, allowed = self._route(method, path)
        response = self._intercept(method, endpoint)
        if response is None:
            with self._lock:
                try:
                    response = self._dispatch(
                        endpoint, params, method, headers, raw, allowed=allowed
                    )
                except HttpError as exc:
                    response = exc.response
        with self._lock:
            self._requests.append(
                RecordedRequest(method, path, endpoint, headers, raw, response.status)
            )
        return response

    def _intercept(self, method: str, endpoint: str) -> Response | None:
        """The answer to give instead of the endpoint's, before it runs and outside the lock;
        ``None``: none. Always ``None`` here: the hook of the tests' faults and rate limits."""
        return None

    def _dispatch(
        self,
        endpoint: str,
        params: list[str],
        method: str,
        headers: dict[str, str],
        raw: bytes,
        *,
        allowed: list[str],
    ) -> Response:
        """The endpoint's answer (under the lock); raises ``HttpError`` to answer an error."""
        if endpoint == "token":
            return self._token_official(method, headers, raw)
        if endpoint == "unknown":
            if allowed:  # the route exists for other methods: ASP.NET routing says 405
                return Response(405, headers={"Allow": ", ".join(allowed)})
            return Response(404)
        self._authenticate(headers)
        if endpoint == "import":
            return self._import_official(headers, raw)
        if endpoint == "set_group_member_ids":
            return self._ep_set_group_member_ids(params, headers, raw)
        if endpoint == "update_group":
            return self._ep_update_group(params, headers, raw)
        handler: Callable[[list[str]], Response] = getattr(self, "_ep_" + endpoint)
        return handler(params)

    # ---- identity (§2) ---------------------------------------------------------------------

    def _token_issuer(self) -> str:
        """The ``iss`` claim of the tokens issued."""
        return self.identity_url

    def _issue_token(self) -> Response:
        now = time.time()
        if self.jwt_tokens:

            def b64(obj: Any) -> str:
                return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

            claims = {
                "iss": self._token_issuer(),
                "nbf": int(now),
                "iat": int(now),
                "exp": int(now) + self.token_lifetime,
                "scope": ["api.organization"],
                "client_id": self.client_id,
                "sub": self.org_id,
                "client_sub": self.org_id,
                "client_type": "Organization",
                "jti": secrets.token_hex(16),
            }
            token = ".".join(
                [b64({"alg": "RS256", "typ": "at+jwt"}), b64(claims), secrets.token_urlsafe(32)]
            )
        else:
            token = secrets.token_urlsafe(48)
        self._tokens[token] = self._clock() + self.token_lifetime
        self.tokens_issued += 1
        return json_response(
            200,
            {
                "access_token": token,
                "expires_in": self.token_lifetime,
                "token_type": "Bearer",
                "scope": "api.organization",
            },
            {"Cache-Control": "no-store, no-cache, max-age=0", "Pragma": "no-cache"},
        )

    @staticmethod
    def _form(headers: dict[str, str], raw: bytes) -> dict[str, str] | None:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return None
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))

    def _token_official(self, method: str, headers: dict[str, str], raw: bytes) -> Response:
        """Duende IdentityServer, client_credentials for ``organization.<guid>`` (§2.1-2.3)."""
        form = self._form(headers, raw) if method == "POST" else None
        if form is None:
            return json_response(400, {"error": "invalid_request"})
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = headers.get("authorization", "")
        if not client_id and auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:]).decode()
                client_id, _, client_secret = decoded.partition(":")
                client_id, client_secret = unquote(client_id), unquote(client_secret)
            except ValueError:
                return json_response(400, {"error": "invalid_client"})
        prefix, _, rest = client_id.partition(".")
        if (
            prefix != "organization"
            or not GUID.match(rest)
            or str(uuid.UUID(rest)) != str(uuid.UUID(self.org_id))
            or not self.api_enabled
            or not secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        ):
            return json_response(400, {"error": "invalid_client"})
        grant = form.get("grant_type", "")
        if not grant or grant not in _KNOWN_GRANTS:
            return json_response(400, {"error": "unsupported_grant_type"})
        if grant != "client_credentials":
            return json_response(400, {"error": "unauthorized_client"})
        scopes = form.get("scope", "").split()
        if any(s != "api.organization" for s in scopes):
            return json_response(400, {"error": "invalid_scope"})
        return self._issue_token()

    def _authenticate(self, headers: dict[str, str]) -> None:
        """401 with an empty body for a missing, unknown or expired bearer token (§2.4)."""
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        expiry = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expiry is None or expiry <= self._clock():
            challenge = (
                "Bearer"
                if expiry is None and not token
                else (
                    'Bearer error="invalid_token", error_description="The token expired"'
                    if expiry is not None
                    else 'Bearer error="invalid_token"'
                )
            )
            raise HttpError(Response(401, b"", {"WWW-Authenticate": challenge}))

    # ---- read and member endpoints (§5) -----------------------------------------------------

    def _find(self, table: dict[str, Any], raw_id: str) -> Any:
        """Look up by GUID the way ASP.NET binds ``Guid id`` (case-insensitive, dashes
        optional); anything else is 404 with an empty body."""
        try:
            key = str(uuid.UUID(raw_id))
        except ValueError:
            raise HttpError(Response(404)) from None
        if self._canonical_ids:  # every key is its own canonical form: one lookup does
            found = table.get(key)
            if found is None:
                raise HttpError(Response(404))
            return found
        for k, v in table.items():
            try:
                if str(uuid.UUID(k)) == key:
                    return v
            except ValueError:
                continue
        raise HttpError(Response(404))

    def _ep_list_members(self, params: list[str]) -> Response:
        # The list endpoint passes no collections, so the response carries ``null`` (§5).
        if not self._plain_members:  # what msgspec might encode otherwise than orjson
            data = members_json(self._members.values(), None)
            return json_response(200, {"object": "list", "data": data, "continuationToken": None})
        listed = [
            _ListedMember(
                m.id,
                m.user_id,
                m.name,
                m.email,
                m.two_factor_enabled,
                m.status,
                m.type,
                m.external_id,
                None,
                None,
                m.reset_password_enrolled,
                None,
            )
            for m in self._members.values()
        ]
        body = _ENCODER.encode(_MemberList(listed, None))
        return Response(200, body, {"Content-Type": "application/json; charset=utf-8"})

    def _ep_get_member(self, params: list[str]) -> Response:
        member: Member = self._find(self._members, params[0])
        return json_response(200, member.as_json(collections=[]))

    def _ep_member_group_ids(self, params: list[str]) -> Response:
        member: Member = self._find(self._members, params[0])
        mine = self._member_groups().get(member.id, {})
        return json_response(200, [g for g in self._groups if g in mine] if mine else [])

    def _ep_list_groups(self, params: list[str]) -> Response:
        data = [g.as_json() for g in self._groups.values()]
        return json_response(200, {"object": "list", "data": data, "continuationToken": None})

    def _ep_get_group(self, params: list[str]) -> Response:
        group: Group = self._find(self._groups, params[0])
        return json_response(200, group.as_json())

    def _ep_group_member_ids(self, params: list[str]) -> Response:
        group: Group = self._find(self._groups, params[0])
        return json_response(200, [i for i in group.member_ids if i in self._members])

    def _ep_set_group_member_ids(
        self, params: list[str], headers: dict[str, str], raw: bytes
    ) -> Response:
        """``GroupsController.PutMemberIds`` then ``GroupUser_UpdateUsers`` (module docstring).
        Model binding runs before the action: a body that does not bind is 400 whatever the
        group; only then is an unknown group 404."""
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/json", "text/json") and not ctype.endswith("+json"):
            return Response(415)
        ids = parse_member_ids(raw)
        group: Group = self._find(self._groups, params[0])
        members = self._members_by_canonical_id()
        known = [members[i] for i in ids if i in members]
        held = set(group.member_ids)
        new = [i for i in known if i not in held]
        if len(new) != len(set(new)):
            raise unhandled()  # PK_GroupUser: the same new member inserted twice
        self._replace_group_members(group, known)
        return Response(200)

    def _ep_update_group(self, params: list[str], headers: dict[str, str], raw: bytes) -> Response:
        """``GroupsController.Put`` then ``UpdateGroupCommand.UpdateGroupAsync`` (module
        docstring): binding first (400), then the group (404, empty), then the command's
        checks, then the row (and the grants, when the request gives collections)."""
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/json", "text/json") and not ctype.endswith("+json"):
            return Response(415)
        update = parse_group_update(raw)
        group: Group = self._find(self._groups, params[0])
        if not self.use_groups:
            raise HttpError(public_error(400, "This organization cannot use groups."))
        if update.collections:
            if any(c["id"] not in self._collections for c in update.collections):
                raise HttpError(public_error(404, "Resource not found."))
            if any(
                c["manage"] and (c["readOnly"] or c["hidePasswords"]) for c in update.collections
            ):
                raise HttpError(
                    public_error(
                        400,
                        "The Manage property is mutually exclusive and cannot be true while the "
                        "ReadOnly or HidePasswords properties are also true.",
                    )
                )
        self._update_group(group, update.name, update.external_id, update.collections)
        body = group.as_json()
        if update.collections is None:
            body["collections"] = None  # the response echoes the request's (none)
        return json_response(200, body)

    def _ep_delete_group(self, params: list[str]) -> Response:
        """``GroupsController.Delete`` then ``Group_DeleteById`` (module docstring)."""
        group: Group = self._find(self._groups, params[0])
        self._delete_group(group)
        return Response(200)

    def _members_by_canonical_id(self) -> dict[str, str]:
        """Canonical GUID text → stored member id (they differ only for seeded odd ids)."""
        if self._canonical_ids:
            return {i: i for i in self._members}
        out: dict[str, str] = {}
        for i in self._members:
            try:
                out[str(uuid.UUID(i))] = i
            except ValueError:
                continue
        return out

    def _ep_revoke_member(self, params: list[str]) -> Response:
        member: Member = self._find(self._members, params[0])
        if member.status == STATUS_REVOKED:
            raise HttpError(public_error(400, "Already revoked."))
        if member.type == TYPE_OWNER and self._confirmed_owners_except(member.id) == 0:
            raise HttpError(
                public_error(400, "Organization must have at least one confirmed owner.")
            )
        member.prior_status = member.status
        member.status = STATUS_REVOKED
        self._log("OrganizationUser_Revoked", member.id)
        return Response(200)

    def _ep_restore_member(self, params: list[str]) -> Response:
        member: Member = self._find(self._members, params[0])
        if member.status != STATUS_REVOKED:
            raise HttpError(public_error(400, "Already active."))
        self._restore(member)
        self._log("OrganizationUser_Restored", member.id)
        return Response(200)
