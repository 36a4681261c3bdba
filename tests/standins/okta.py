"""A stand-in for Okta's Management API and org authorization server, over HTTPS on loopback.

Written from Okta's published contract, so the real ``OktaSource`` runs against it unmodified:

* ``POST /oauth2/v1/token`` — client credentials with ``private_key_jwt``. The assertion is
  verified against the public key registered for the client (RS256 or ES256): ``iss`` = ``sub`` =
  client id, ``aud`` = this token endpoint, ``exp`` in the future and at most an hour away, a
  ``jti`` never seen before. Scopes must have been granted (``invalid_scope`` otherwise);
  ``dpop_required`` makes it a service app created with Okta's default: a DPoP proof
  (RFC 9449) is required at the token endpoint, with the server's nonce (``use_dpop_nonce``),
  the token is bound to the proof's key, and every API call must prove possession (``ath``).
  Tokens are opaque, carry their scopes and expire (``token_lifetime``).
* ``GET /api/v1/users``, ``/api/v1/groups``, ``/api/v1/groups/{id}/users`` with ``SSWS`` API
  tokens or bearer tokens: 401 ``E0000011`` for an unknown or expired token, 403 ``E0000006``
  with ``WWW-Authenticate: … error="insufficient_scope"`` for a missing scope, or for an API
  token whose admin was not an administrator.
* ``filter`` expressions (``eq``, ``sw``, ``gt``, ``ge``, ``lt``, ``le``, ``and``, ``or``,
  parentheses) on the properties Okta allows; anything else is 400 ``E0000031``. Deprovisioned
  users are left out of a list unless the filter names ``status``.
* Paging with ``limit`` (users 200 max; groups 10,000; group members 1,000) and an ``after``
  cursor, announced in ``Link: <…>; rel="next"`` headers.
* Per-endpoint rate limits: ``X-Rate-Limit-Limit`` / ``-Remaining`` / ``-Reset`` (epoch seconds)
  on every answer, 429 ``E0000047`` once the window's budget is spent.
* The org's concurrency limit (``max_in_flight``): a request beyond it gets 429 ``E0000047``
  with ``X-Rate-Limit-Limit: 0`` and ``-Remaining: 0``, as Okta answers it.
* ``latency``: every answer waits that long (a round trip), for the benchmark.
* Faults: ``fail(path_prefix, status=, times=)`` for 5xx or any error a test needs.

Also home of the HTTPS helpers both cloud stand-ins use (``TlsServer``; certificates from
``tests.standins.tls``) and
of ``okta_directory``, a realistic directory generator (statuses of every kind, the Everyone
group, empty groups, users in many groups).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import math
import random
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from bwsync.standin.http import StandInHandler, StandInServer
from tests.standins.tls import TlsFiles

# --------------------------------------------------------------------------------------------
# HTTPS plumbing shared by the cloud stand-ins


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path: str
    status: int
    authorization: str | None
    arrived: float = 0.0
    """``time.monotonic()`` when the request was read."""


@dataclass(slots=True)
class Fault:
    prefix: str
    status: int
    times: int
    body: bytes
    headers: dict[str, str]


class Reply(Exception):
    """Raised by a route to answer at once (errors, mostly)."""

    def __init__(
        self, status: int, body: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


class RateWindow:
    """A fixed window of ``limit`` requests per ``seconds``, per bucket name."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.windows: dict[str, tuple[float, int]] = {}
        self.lock = threading.Lock()

    def take(self, bucket: str) -> tuple[bool, int, float]:
        """Spend one request: (allowed, remaining, reset epoch)."""
        now = time.time()
        with self.lock:
            start, used = self.windows.get(bucket, (now, 0))
            if now >= start + self.seconds:
                start, used = now, 0
            allowed = used < self.limit
            if allowed:
                used += 1
            self.windows[bucket] = (start, used)
            return allowed, self.limit - used, start + self.seconds


class TlsServer:
    """A threaded HTTPS/1.1 server whose handler calls ``route(handler)`` → (status, body,
    headers); records every request; applies faults by path prefix."""

    def __init__(self, tls: TlsFiles, host: str = "127.0.0.1", port: int = 0) -> None:
        self.tls = tls
        self.host = host
        self.port = port
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self.latency = 0.0
        """Seconds each request waits before it is answered: a cloud API's round trip, for the
        benchmark (each connection has its own thread, so concurrent requests overlap)."""
        self.in_flight = 0
        self.peak_in_flight = 0
        self.max_in_flight: int | None = None
        """Requests served at once beyond which the service refuses more (``too_busy``)."""
        self._server: StandInServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def route(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def fail(
        self,
        prefix: str,
        *,
        status: int = 503,
        times: int = 1,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next ``times`` requests whose path starts with ``prefix`` get ``status``."""
        raw = orjson.dumps(body) if body is not None else b""
        self.faults.append(Fault(prefix, status, times, raw, headers or {}))

    def requests_to(self, prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.startswith(prefix)]

    def too_busy(self) -> tuple[int, Any, dict[str, str]]:
        """The answer to a request beyond ``max_in_flight`` (the service's concurrency limit)."""
        return 429, None, {}

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def _fault(self, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.times > 0 and path.startswith(fault.prefix):
                    fault.times -= 1
                    return fault
        return None

    def start(self) -> TlsServer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.tls.cert_file), str(self.tls.key_file))
        owner = self

        class Handler(StandInHandler):
            def _serve(self) -> None:
                arrived = time.monotonic()
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                with owner._lock:
                    owner.in_flight += 1
                    owner.peak_in_flight = max(owner.peak_in_flight, owner.in_flight)
                    busy = owner.max_in_flight is not None and owner.in_flight > owner.max_in_flight
                try:
                    if owner.latency:
                        time.sleep(owner.latency)
                    self._answer(parts.path, query, body, arrived, busy)
                finally:
                    with owner._lock:
                        owner.in_flight -= 1

            def _answer(
                self, path: str, query: dict[str, str], body: bytes, arrived: float, busy: bool
            ) -> None:
                if busy:
                    status, data, headers = owner.too_busy()
                    payload = b"" if data is None else orjson.dumps(data)
                    if data is not None:
                        headers.setdefault("Content-Type", "application/json")
                elif (fault := owner._fault(path)) is not None:
                    status, payload, headers = fault.status, fault.body, dict(fault.headers)
                    if payload:
                        headers.setdefault("Content-Type", "application/json")
                else:
                    try:
                        status, data, headers = owner.route(
                            self.command, path, query, self.headers, body
                        )
                    except Reply as reply:
                        status, data, headers = reply.status, reply.body, reply.headers
                    payload = b"" if data is None else orjson.dumps(data)
                    if data is not None:
                        headers.setdefault("Content-Type", "application/json")
                with owner._lock:
                    owner.requests.append(
                        Recorded(
                            self.command,
                            path,
                            status,
                            self.headers.get("Authorization"),
                            arrived,
                        )
                    )
                self.send_response(status)
                self.send_header("Date", formatdate(usegmt=True))
                for name, value in headers.items():
                    if name.lower() == "link":
                        for link in value.split("\n"):
                            self.send_header("Link", link)
                    else:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        class Server(StandInServer):  # a client refusing the certificate is a test, not noise
            def get_request(self) -> Any:
                sock, addr = super().get_request()
                return (
                    context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False),
                    addr,
                )

        self._server = Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TlsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Okta's filter expressions

_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[A-Za-z0-9_.:+\-]+)')
USER_FILTER_PROPERTIES = {
    "status",
    "lastUpdated",
    "id",
    "profile.login",
    "profile.email",
    "profile.firstName",
    "profile.lastName",
}
GROUP_FILTER_PROPERTIES = {"id", "type", "lastUpdated", "lastMembershipUpdated"}


class FilterError(Exception):
    pass


def _lookup(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def parse_okta_filter(text: str, allowed: set[str]) -> Callable[[dict[str, Any]], bool]:
    """Compile a filter expression into a predicate; ``FilterError`` when Okta would say 400."""
    tokens: list[str] = _TOKEN.findall(text)
    if "".join(tokens).replace(" ", "") != text.replace(" ", ""):
        raise FilterError(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise FilterError("unexpected end")
        pos += 1
        return str(tokens[pos - 1])

    def term() -> Callable[[dict[str, Any]], bool]:
        if peek() == "(":
            take()
            inner = expr()
            if take() != ")":
                raise FilterError("missing )")
            return inner
        attr, op, raw = take(), take(), take()
        if attr not in allowed or op not in ("eq", "sw", "gt", "ge", "lt", "le"):
            raise FilterError(attr)
        if raw.startswith('"'):
            value: Any = raw[1:-1]
        elif raw in ("true", "false"):
            value = raw == "true"
        else:
            raise FilterError(raw)

        def test(obj: dict[str, Any]) -> bool:
            have = _lookup(obj, attr)
            if have is None:
                return False
            if op == "eq":
                return bool(have == value)
            if op == "sw":
                return isinstance(have, str) and have.startswith(str(value))
            have, want = str(have), str(value)
            return {"gt": have > want, "ge": have >= want, "lt": have < want, "le": have <= want}[
                op
            ]

        return test

    def conjunction() -> Callable[[dict[str, Any]], bool]:
        parts = [term()]
        while peek() == "and":
            take()
            parts.append(term())
        return parts[0] if len(parts) == 1 else (lambda o: all(p(o) for p in parts))

    def expr() -> Callable[[dict[str, Any]], bool]:
        parts = [conjunction()]
        while peek() == "or":
            take()
            parts.append(conjunction())
        return parts[0] if len(parts) == 1 else (lambda o: any(p(o) for p in parts))

    predicate = expr()
    if pos != len(tokens):
        raise FilterError("trailing tokens")
    return predicate


# --------------------------------------------------------------------------------------------
# Directory data


STATUSES = ("ACTIVE", "SUSPENDED", "LOCKED_OUT", "DEPROVISIONED", "PASSWORD_EXPIRED",
            "PROVISIONED", "STAGED", "RECOVERY")  # fmt: skip


def _stamp(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def okta_user(
    uid: str, email: str, status: str = "ACTIVE", *, login: str | None = None, updated: float = 0
) -> dict[str, Any]:
    """A user object shaped as the Users API returns it (profile, credentials, links)."""
    first, _, last = email.partition("@")[0].partition(".")
    stamp = _stamp(updated or 1_700_000_000)
    return {
        "id": uid,
        "status": status,
        "created": stamp,
        "activated": None if status in ("STAGED", "PROVISIONED") else stamp,
        "statusChanged": stamp,
        "lastLogin": stamp if status == "ACTIVE" else None,
        "lastUpdated": stamp,
        "passwordChanged": stamp,
        "type": {"id": "oty1234567890abcdefg"},
        "profile": {
            "firstName": first.title(),
            "lastName": (last or "User").title(),
            "mobilePhone": None,
            "secondEmail": None,
            "login": login or email.strip(),
            "email": email,
        },
        "credentials": {"password": {}, "provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": {"self": {"href": f"https://example.okta.com/api/v1/users/{uid}"}},
    }


def okta_group(gid: str, name: str, gtype: str = "OKTA_GROUP") -> dict[str, Any]:
    stamp = _stamp(1_700_000_000)
    return {
        "id": gid,
        "created": stamp,
        "lastUpdated": stamp,
        "lastMembershipUpdated": stamp,
        "objectClass": ["okta:user_group"],
        "type": gtype,
        "profile": {"name": name, "description": f"{name} team"},
        "_links": {"users": {"href": f"https://example.okta.com/api/v1/groups/{gid}/users"}},
    }


@dataclass(slots=True)
class OktaDirectory:
    """Users and groups as Okta serves them; ``members`` maps a group id to user ids."""

    users: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)

    def add_user(self, uid: str, email: str, status: str = "ACTIVE", **kw: Any) -> None:
        self.users.append(okta_user(uid, email, status, **kw))

    def add_group(
        self,
        gid: str,
        name: str,
        members: Sequence[str] = (),
        gtype: str = "OKTA_GROUP",
    ) -> None:
        self.groups.append(okta_group(gid, name, gtype))
        self.members[gid] = list(members)


def okta_directory(users: int, groups: int, seed: int = 7) -> OktaDirectory:
    """A directory of realistic shape: most users active, some suspended, locked, expired,
    staged and deprovisioned; the built-in Everyone group; app groups; every 25th group empty;
    ten users in every group; the others in three or four groups each. Deterministic."""
    rng = random.Random(seed)  # noqa: S311 - test data, reproducible on purpose
    d = OktaDirectory()
    weights = (90, 2, 2, 2, 1, 1, 1, 1)
    ids = [f"00u{n:017d}" for n in range(users)]
    for n, uid in enumerate(ids):
        status = rng.choices(STATUSES, weights)[0]
        email = f"user{n:06d}.test@Example.com"
        if n % 97 == 0:
            email = f" {email.upper()} "  # mixed case and padding, as typed by a person
        d.add_user(uid, email, status)
    if groups:
        d.add_group("00g_everyone0000000", "Everyone", ids, "BUILT_IN")
    member_sets: list[list[str]] = [[] for _ in range(max(groups - 1, 0))]
    for n, uid in enumerate(ids):
        if not member_sets:
            break
        chosen = (
            range(len(member_sets))
            if n < 10
            else rng.sample(range(len(member_sets)), min(len(member_sets), rng.choice((3, 4))))
        )
        for g in chosen:
            if g % 25 != 24:  # every 25th group stays empty
                member_sets[g].append(uid)
    for g, members in enumerate(member_sets):
        gtype = "APP_GROUP" if g % 10 == 9 else "OKTA_GROUP"
        d.add_group(f"00g{g:017d}", f"Team {g:04d}", members, gtype)
    return d


# --------------------------------------------------------------------------------------------
# The stand-in


@dataclass(slots=True)
class _Token:
    client_id: str
    scopes: frozenset[str]
    expires: float
    jkt: str | None = None
    """Thumbprint (RFC 7638) of the DPoP key the token is bound to; ``None`` for bearer."""


class FakeOkta(TlsServer):
    """Okta org stand-in. Seed with ``directory`` (an ``OktaDirectory``); credentials:
    ``api_tokens`` (token → is admin), ``register_client(client_id, public_key_pem, scopes)``.
    """

    USER_PAGE = (200, 200)  # default, max
    GROUP_PAGE = (10_000, 10_000)
    MEMBER_PAGE = (1_000, 1_000)

    def __init__(
        self,
        tls: TlsFiles,
        directory: OktaDirectory | None = None,
        *,
        api_token: str | None = "00TestApiToken-for-the-stand-in",  # noqa: S107 - fake
        rate_limit: int | None = None,
        rate_window: float = 60.0,
        token_lifetime: float = 3600.0,
        port: int = 0,
    ) -> None:
        super().__init__(tls, port=port)
        self.directory = directory or OktaDirectory()
        self.api_tokens: dict[str, bool] = {api_token: True} if api_token else {}
        self.clients: dict[str, tuple[Any, frozenset[str], str | None]] = {}
        self.tokens: dict[str, _Token] = {}
        self.seen_jti: set[str] = set()
        self.dpop_required = False
        """The service app requires DPoP (Okta's default for new apps): proofs verified at the
        token endpoint (with a server nonce, as Okta asks) and on every API call."""
        self.dpop_resource_nonce = False
        """Also require the nonce in the API calls' proofs (RFC 9449 §9)."""
        self.dpop_nonce = secrets.token_urlsafe(16)
        self.resource_nonce = secrets.token_urlsafe(16)  # the resource server's own nonce
        self.seen_dpop_jti: set[str] = set()
        self.token_lifetime = token_lifetime
        self.rate = RateWindow(rate_limit, rate_window) if rate_limit else None
        self.page_sizes: dict[str, tuple[int, int]] = {
            "users": self.USER_PAGE,
            "groups": self.GROUP_PAGE,
            "members": self.MEMBER_PAGE,
        }
        self._filtered: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._index: dict[str, dict[str, int]] = {}

    # -- set-up ------------------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        public_key_pem: bytes,
        scopes: tuple[str, ...] = ("okta.users.read", "okta.groups.read"),
        kid: str | None = None,
    ) -> None:
        """A service app using ``private_key_jwt`` with this public key, granted ``scopes``."""
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_public_key(public_key_pem)
        self.clients[client_id] = (key, frozenset(scopes), kid)

    def expire_tokens(self) -> None:
        for token in self.tokens.values():
            token.expires = 0.0

    def changed(self) -> None:
        """Call after changing ``directory`` in place: drops cached filter results."""
        self._filtered.clear()
        self._index.clear()

    # -- routing -----------------------------------------------------------------------------

    def route(
        self, method: str, path: str, query: dict[str, str], headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and path == "/oauth2/v1/token":
            return self._token(headers, body)
        if method != "GET" or not path.startswith("/api/v1/"):
            raise Reply(
                404, _error("E0000022", "The endpoint does not support the provided HTTP method")
            )
        parts = path.split("/")[3:]
        if parts == ["users"]:
            kind, scope = "users", "okta.users.read"
        elif parts == ["groups"]:
            kind, scope = "groups", "okta.groups.read"
        elif len(parts) == 3 and parts[0] == "groups" and parts[2] == "users":
            kind, scope = "members", "okta.groups.read"
        else:
            raise Reply(404, _error("E0000007", f"Not found: Resource not found: {path} (Path)"))
        rate_headers = self._rate(kind)
        try:
            self._authorize(headers, scope, path)
        except Reply as reply:
            reply.headers.update(rate_headers)
            raise
        status, data, extra = self._list(kind, parts, path, query)
        extra.update(rate_headers)
        return status, data, extra

    def too_busy(self) -> tuple[int, Any, dict[str, str]]:
        """Okta's concurrency limit (``max_in_flight``: 15, 35 or 75 by plan): 429 E0000047 with
        ``X-Rate-Limit-Limit`` and ``-Remaining`` 0 and an estimated reset (rl2-concurrency)."""
        headers = {
            "X-Rate-Limit-Limit": "0",
            "X-Rate-Limit-Remaining": "0",
            "X-Rate-Limit-Reset": str(math.ceil(time.time()) + 1),
        }
        return (
            429,
            _error("E0000047", "API call exceeded rate limit due to too many requests."),
            headers,
        )

    def _rate(self, bucket: str) -> dict[str, str]:
        if self.rate is None:
            return {}
        allowed, remaining, reset = self.rate.take(bucket)
        headers = {
            "X-Rate-Limit-Limit": str(self.rate.limit),
            "X-Rate-Limit-Remaining": str(max(remaining, 0)),
            "X-Rate-Limit-Reset": str(math.ceil(reset)),
        }
        if not allowed:
            raise Reply(
                429,
                _error("E0000047", "API call exceeded rate limit due to too many requests."),
                headers,
            )
        return headers

    def _authorize(self, headers: Any, scope: str, path: str) -> None:
        scheme, _, credential = (headers.get("Authorization") or "").partition(" ")
        if scheme == "SSWS" and credential in self.api_tokens:
            if not self.api_tokens[credential]:
                raise Reply(
                    403,
                    _error(
                        "E0000006", "You do not have permission to perform the requested action"
                    ),
                )
            return
        token = self.tokens.get(credential) if scheme in ("Bearer", "DPoP") else None
        if token is not None and (token.jkt is None) != (scheme == "Bearer"):
            token = None  # a DPoP-bound token used as a bearer one, or the other way round
        if token is None or token.expires <= time.time():
            raise Reply(
                401,
                _error("E0000011", "Invalid token provided"),
                {"WWW-Authenticate": f'{scheme} error="invalid_token"'} if scheme else {},
            )
        if token.jkt is not None:
            self._resource_proof(headers, path, credential, token.jkt)
        if scope not in token.scopes:
            challenge = (
                f'Bearer authorization_uri="{self.url}/oauth2/v1/authorize", '
                f'realm="IdpMyAccountAPI", scope="{scope}", error="insufficient_scope", '
                'error_description="The access token provided does not contain the required '
                f'scopes.", resource="{path}"'
            )
            raise Reply(
                403,
                _error("E0000006", _NO_PERMISSION),
                {"WWW-Authenticate": challenge},
            )

    # -- token endpoint ----------------------------------------------------------------------

    def _token(self, headers: Any, body: bytes) -> tuple[int, Any, dict[str, str]]:
        def oauth(status: int, error: str, description: str) -> Reply:
            return Reply(status, {"error": error, "error_description": description})

        if "application/x-www-form-urlencoded" not in (headers.get("Content-Type") or ""):
            raise oauth(400, "invalid_request", "The request must be form-encoded.")
        form = dict(parse_qsl(body.decode()))
        if form.get("grant_type") != "client_credentials":
            raise oauth(400, "unsupported_grant_type", "The grant_type is not supported.")
        if form.get("client_assertion_type") != (
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        ) or not form.get("client_assertion"):
            raise oauth(401, "invalid_client", "Client authentication failed.")
        claims = self._verify_assertion(form["client_assertion"])
        client_id = str(claims["iss"])
        jkt: str | None = None
        if self.dpop_required:
            proof = headers.get("DPoP")
            if not proof:
                raise oauth(400, "invalid_dpop_proof", "The DPoP proof JWT header is missing.")
            try:
                jkt, proof_claims = self._verify_dpop(proof, "POST", f"{self.url}/oauth2/v1/token")
            except FilterError as exc:
                raise oauth(400, "invalid_dpop_proof", str(exc)) from None
            if proof_claims.get("nonce") != self.dpop_nonce:
                reply = oauth(
                    400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof."
                )
                reply.headers["DPoP-Nonce"] = self.dpop_nonce
                raise reply
        requested = frozenset((form.get("scope") or "").split())
        granted = self.clients[client_id][1]
        if not requested:
            raise oauth(400, "invalid_scope", "The authorization server requires a scope.")
        if not requested <= granted:
            missing = " ".join(sorted(requested - granted))
            raise oauth(
                400,
                "invalid_scope",
                f"The following scopes were requested, but not granted: {missing}",
            )
        access = "eyJ" + secrets.token_urlsafe(32)
        self.tokens[access] = _Token(client_id, requested, time.time() + self.token_lifetime, jkt)
        return (
            200,
            {
                "token_type": "DPoP" if jkt else "Bearer",
                "expires_in": int(self.token_lifetime),
                "access_token": access,
                "scope": " ".join(sorted(requested)),
            },
            {"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _resource_proof(self, headers: Any, path: str, token: str, jkt: str) -> None:
        def refuse(description: str, error: str = "invalid_dpop_proof") -> Reply:
            challenge = (
                f'DPoP algs="ES256 RS256", error="{error}", error_description="{description}"'
            )
            reply = Reply(401, _error("E0000011", "Invalid token provided"))
            reply.headers["WWW-Authenticate"] = challenge
            if error == "use_dpop_nonce":
                reply.headers["DPoP-Nonce"] = self.resource_nonce
            return reply

        proof = headers.get("DPoP")
        if not proof:
            raise refuse("The DPoP proof JWT header is missing.")
        try:
            proof_jkt, claims = self._verify_dpop(proof, "GET", self.url + path)
        except FilterError as exc:
            raise refuse(str(exc)) from None
        ath = base64.urlsafe_b64encode(hashlib.sha256(token.encode()).digest()).rstrip(b"=")
        if claims.get("ath") != ath.decode():
            raise refuse("'ath' claim in the DPoP proof JWT is invalid.")
        if proof_jkt != jkt:
            raise refuse("The DPoP proof JWT key does not match the access token's binding.")
        if self.dpop_resource_nonce and claims.get("nonce") != self.resource_nonce:
            raise refuse("Resource server requires nonce in DPoP proof.", "use_dpop_nonce")

    def _verify_dpop(self, proof: str, method: str, url: str) -> tuple[str, dict[str, Any]]:
        """Check a DPoP proof (RFC 9449 §4.3); returns its key's thumbprint and its claims.
        Problems raise ``FilterError`` with Okta's wording."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        try:
            h64, c64, s64 = proof.split(".")
            header = orjson.loads(_unb64(h64))
            claims = orjson.loads(_unb64(c64))
            signature = _unb64(s64)
        except (ValueError, orjson.JSONDecodeError):
            raise FilterError("The DPoP proof JWT is malformed.") from None
        jwk = header.get("jwk") or {}
        if header.get("typ") != "dpop+jwt":
            raise FilterError("The DPoP proof JWT 'typ' header is invalid.")
        if header.get("alg") != "ES256" or jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise FilterError("The DPoP proof JWT uses an algorithm this stand-in does not take.")
        try:
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(_unb64(jwk["x"]), "big"),
                int.from_bytes(_unb64(jwk["y"]), "big"),
                ec.SECP256R1(),
            ).public_key()
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(
                encode_dss_signature(r, s), f"{h64}.{c64}".encode(), ec.ECDSA(hashes.SHA256())
            )
        except (KeyError, ValueError, InvalidSignature):
            raise FilterError("The DPoP proof JWT signature is invalid.") from None
        if claims.get("htm") != method:
            raise FilterError("'htm' claim in the DPoP proof JWT is invalid.")
        if claims.get("htu") != url:
            raise FilterError("'htu' claim in the DPoP proof JWT is invalid.")
        iat = claims.get("iat")
        if not isinstance(iat, int) or abs(time.time() - iat) > 60:
            raise FilterError("'iat' claim in the DPoP proof JWT is invalid.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or jti in self.seen_dpop_jti:
            raise FilterError("'jti' claim in the DPoP proof JWT is invalid or replayed.")
        self.seen_dpop_jti.add(jti)
        canonical = orjson.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")})
        jkt = base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=")
        return jkt.decode(), dict(claims)

    def _verify_assertion(self, assertion: str) -> dict[str, Any]:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        def fail(description: str) -> Reply:
            return Reply(401, {"error": "invalid_client", "error_description": description})

        try:
            h64, c64, s64 = assertion.split(".")
            header = orjson.loads(_unb64(h64))
            claims = orjson.loads(_unb64(c64))
            signature = _unb64(s64)
        except (ValueError, orjson.JSONDecodeError):
            raise fail("The client_assertion token is malformed.") from None
        client_id = claims.get("iss")
        if client_id not in self.clients or claims.get("sub") != client_id:
            raise fail("The client_assertion token has an invalid issuer or subject.")
        key, _scopes, kid = self.clients[client_id]
        if kid is not None and header.get("kid") not in (None, kid):
            raise fail("The client_assertion token has an unknown kid.")
        signed = f"{h64}.{c64}".encode()
        try:
            if header.get("alg") == "RS256" and isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            elif header.get("alg") == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
                if len(signature) != 64:
                    raise InvalidSignature
                r = int.from_bytes(signature[:32], "big")
                s = int.from_bytes(signature[32:], "big")
                key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
            else:
                raise fail("The client_assertion token uses an unsupported algorithm.")
        except InvalidSignature:
            raise fail("The client_assertion signature is invalid.") from None
        if claims.get("aud") != f"{self.url}/oauth2/v1/token":
            raise fail("The audience claim for client_assertion must be the endpoint invoked.")
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= now:
            raise fail("The client_assertion token is expired.")
        if exp - now > 3600 + 5:
            raise fail("The client_assertion token has an expiration too far in the future.")
        jti = claims.get("jti")
        if jti is not None:
            if jti in self.seen_jti:
                raise fail("The client_assertion token has already been used.")
            self.seen_jti.add(str(jti))
        return dict(claims)

    # -- lists -------------------------------------------------------------------------------

    def _source(self, kind: str, parts: list[str], query: dict[str, str]) -> list[dict[str, Any]]:
        d = self.directory
        if kind == "members":
            gid = parts[1]
            if gid not in d.members:
                raise Reply(
                    404, _error("E0000007", f"Not found: Resource not found: {gid} (UserGroup)")
                )
            by_id = self._users_by_id()
            return [d.users[by_id[u]] for u in d.members[gid] if u in by_id]
        flt = query.get("filter", "")
        key = (kind, flt)
        if key not in self._filtered:
            items = d.users if kind == "users" else d.groups
            if flt:
                allowed = USER_FILTER_PROPERTIES if kind == "users" else GROUP_FILTER_PROPERTIES
                try:
                    predicate = parse_okta_filter(flt, allowed)
                except FilterError:
                    raise Reply(400, _error("E0000031", "Invalid search criteria.")) from None
                items = [i for i in items if predicate(i)]
            if kind == "users" and "status" not in flt:
                items = [i for i in items if i["status"] != "DEPROVISIONED"]
            self._filtered[key] = items
        return self._filtered[key]

    def _users_by_id(self) -> dict[str, int]:
        if "users" not in self._index:
            self._index["users"] = {u["id"]: n for n, u in enumerate(self.directory.users)}
        return self._index["users"]

    def _list(
        self, kind: str, parts: list[str], path: str, query: dict[str, str]
    ) -> tuple[int, Any, dict[str, str]]:
        items = self._source(kind, parts, query)
        default, maximum = self.page_sizes[kind]
        try:
            limit = min(int(query.get("limit", default)), maximum)
        except ValueError:
            raise Reply(400, _error("E0000001", "Api validation failed: limit")) from None
        start = 0
        after = query.get("after")
        if after:
            try:
                start = int(_unb64(after).decode())
            except ValueError:
                raise Reply(400, _error("E0000001", "Api validation failed: after")) from None
        page = items[start : start + max(limit, 1)]
        base_query = {k: v for k, v in query.items() if k != "after"}
        links = [f'<{self.url}{path}?{urlencode(base_query)}>; rel="self"']
        if start + len(page) < len(items):
            cursor = base64.urlsafe_b64encode(str(start + len(page)).encode()).decode()
            nxt = urlencode({**base_query, "after": cursor, "limit": str(limit)})
            links.append(f'<{self.url}{path}?{nxt}>; rel="next"')
        return 200, page, {"Link": "\n".join(links)}


_NO_PERMISSION = "You do not have permission to perform the requested action"


def _error(code: str, summary: str) -> dict[str, Any]:
    return {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae" + secrets.token_hex(8),
        "errorCauses": [],
    }


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
