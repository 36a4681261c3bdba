"""Okta through its Management API (reference §7.4), with bwdc's semantics and its fixes.

What is read, in this order (the order reaches the import body and so the hash):

1. ``GET /api/v1/users?filter=<f>`` — every user Okta lists by default (all but deprovisioned);
2. unless the query filters on ``lastUpdated``, ``GET /api/v1/users?filter=<status eq
   "DEPROVISIONED">`` (ANDed to ``<f>``), because Okta hides deprovisioned users from plain
   lists. bwdc runs both queries at once and appends whichever finishes first; we always put
   regular users first;
3. ``GET /api/v1/groups?filter=<g>`` and, per group, ``GET /api/v1/groups/{id}/users``.

All of it, every run: bwdc's incremental runs (``lastUpdated gt "<last sync>"`` ANDed to both
queries) are not reproduced (README, "Deliberate differences"), and must not come back as they
were: a group list holding only the groups changed since the last run would make every other
synced group look gone from the directory, to be emptied (``plan.stale_groups``).

Every list follows the ``Link: <…>; rel="next"`` header. ``SUSPENDED`` users are disabled,
``DEPROVISIONED`` users deleted, every other status (``LOCKED_OUT``, ``PASSWORD_EXPIRED``,
``STAGED`` …) active — as bwdc. Filters are bwdc's mini-syntax (§6): the set part on the email or
group name, the query part as Okta's native ``filter`` expression.

Credentials: an API token (``Authorization: SSWS …``), or — Okta's recommendation — an OAuth 2.0
service app authenticating with ``private_key_jwt`` (a JWT signed with the app's private key,
exchanged at ``/oauth2/v1/token`` for a token carrying ``okta.users.read`` and
``okta.groups.read``). When the app requires DPoP (Okta's default for new service apps), the
token endpoint says ``invalid_dpop_proof``; the source then binds the token to a key made for the
run and proves possession on every call (``DpopKey``, RFC 9449), with Okta's nonce.

Rate limits are per org and shared with every other client, so the client reads
``X-Rate-Limit-Remaining`` / ``X-Rate-Limit-Reset`` on each response and, once fewer than a tenth
of the window's requests are left, spreads the rest over the time to the reset instead of
running into the wall. A 429 waits until the reset. bwdc's fixed 500 ms pause between member
fetches is gone: it wasted four minutes on 500 groups and still hit the limit on large orgs.

Retries, pacing and 429s are the cloud sources' HTTP layer's (``bwsync.sources.cloud_http``,
Okta's signals ``OKTA``): a concurrency 429 (``X-Rate-Limit-Limit: 0``) sends fewer requests at
once rather than waiting for the reset, and no more than 15 are ever in flight (the smallest
plan's documented limit). The two users queries and the groups are read at the same time,
the members of several groups at once, and assembled in the sequential read's order.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import orjson

from bwsync.config import OktaSettings, SyncSettings, env_name
from bwsync.errors import ConfigError, DirectoryError, OktaError, shorten
from bwsync.http.auth import TokenAuth
from bwsync.model import Directory, Group, User
from bwsync.setting_files import private_key
from bwsync.sources.base import CheckResult, FetchRequest
from bwsync.sources.cloud_http import (
    OKTA,
    CloudHttp,
    CloudSource,
    epoch_reset_in,
    json_or_none,
    same_origin_next,
)
from bwsync.sources.filters import Filter, parse_filter, scope_users_to_groups

SCOPES = ("okta.users.read", "okta.groups.read")
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEPROVISIONED_FILTER = 'status eq "DEPROVISIONED"'


def okta_reset_in(response: httpx.Response, now: float) -> float | None:
    """Okta's ``X-Rate-Limit-Reset`` is an epoch second, measured against the server's own
    ``Date`` (``cloud_http.epoch_reset_in``); ``OKTA_RATE`` reads it so for the HTTP layer."""
    return epoch_reset_in(response, "x-rate-limit-reset", now)


_NEXT = re.compile(r"<([^>]*)>\s*;[^,]*rel=\"?next\"?")


def next_link(response: httpx.Response) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header, which Okta may send as one
    header with comma-separated entries or as several headers."""
    for value in response.headers.get_list("link"):
        match = _NEXT.search(value)
        if match:
            return match.group(1)
    return None


# --------------------------------------------------------------------------------------------
# private_key_jwt


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_private_key(path: Path) -> Any:
    """Read the service app's PEM private key (RSA or EC P-256); a problem is a ``ConfigError``
    naming the setting, never echoing the file (``bwsync.setting_files``, as the settings pass
    reads it)."""
    return private_key(path, env_name("okta", "private_key_file"))


def sign_jwt(
    claims: dict[str, Any],
    key: Any,
    kid: str | None = None,
    header_fields: dict[str, Any] | None = None,
) -> str:
    """A compact JWS: RS256 for an RSA key, ES256 for an EC P-256 key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    if kid:
        header["kid"] = kid
    header.update(header_fields or {})
    signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(claims))}".encode()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode()}.{_b64url(signature)}"


def client_assertion(client_id: str, token_url: str, key: Any, kid: str | None, now: float) -> str:
    """The assertion Okta's guide asks for: iss = sub = client id, aud = the token endpoint,
    a unique jti, and a short life (Okta refuses more than an hour)."""
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": int(now),
        "exp": int(now) + 300,
        "jti": str(uuid.uuid4()),
    }
    return sign_jwt(claims, key, kid)


class DpopKey:
    """RFC 9449 proofs from a key made for this run (EC P-256, ES256).

    Okta turns "Require DPoP" on for new service apps; the token is then bound to this key, and
    every API call carries a fresh proof of possession: ``htm``/``htu`` (the URL without its
    query), ``iat``, a unique ``jti``, ``ath`` (the token's SHA-256) and the server's latest
    ``nonce`` when it asked for one (``use_dpop_nonce`` + ``DPoP-Nonce``).
    """

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
        }
        self.nonce: str | None = None

    def proof(self, method: str, url: str, now: float, access_token: str | None = None) -> str:
        parts = urlsplit(url)
        claims: dict[str, Any] = {
            "htm": method,
            "htu": urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")),
            "iat": int(now),
            "jti": str(uuid.uuid4()),
        }
        if access_token is not None:
            digest = hashlib.sha256(access_token.encode("ascii")).digest()
            claims["ath"] = _b64url(digest)
        if self.nonce:
            claims["nonce"] = self.nonce
        return sign_jwt(claims, self.key, header_fields={"typ": "dpop+jwt", "jwk": self.jwk})

    def remember_nonce(self, response: httpx.Response) -> bool:
        """Keep a ``DPoP-Nonce`` the server sent; true when it is a new one."""
        nonce = response.headers.get("dpop-nonce")
        if nonce and nonce != self.nonce:
            self.nonce = nonce
            return True
        return False


# --------------------------------------------------------------------------------------------
# Filters (§7.4)


def deprovisioned_filter(base: str | None) -> str | None:
    """The second users query, or ``None`` when the native query already filters on
    ``lastUpdated`` (bwdc's ``buildOktaFilter`` test, which bwdc meant for its incremental
    runs; bwsync has none, see the module docstring, but keeps bwdc's reading of a query)."""
    if base is None:
        return DEPROVISIONED_FILTER
    if "lastUpdated " in base:
        return None
    return f"({base}) and {DEPROVISIONED_FILTER}"


def user_from_okta(raw: Any) -> User:
    """One Okta user object → ``User`` (id as both ids, email trimmed and lower-cased)."""
    uid = raw.get("id") if isinstance(raw, dict) else None
    if not isinstance(uid, str) or not uid:
        raise OktaError(
            "GET /api/v1/users", f"returned a user without an id: {shorten(repr(raw), 80)}"
        )
    profile = raw.get("profile")
    if not isinstance(profile, dict):
        profile = {}
    email = profile.get("email")
    status = raw.get("status")
    return User(
        reference_id=uid,
        external_id=uid,
        email=email.strip().lower() if isinstance(email, str) and email.strip() else None,
        disabled=status == "SUSPENDED",
        deleted=status == "DEPROVISIONED",
    )


# --------------------------------------------------------------------------------------------
# The source


class OktaAuth(TokenAuth):
    """The Okta credential on every API call (``bwsync.http.auth``'s flow): the API token
    (``SSWS``, never renewed), or the service app's OAuth token — ``Bearer``, or ``DPoP`` with
    a fresh proof per request. A 401 gets one more try: with the nonce a DPoP resource server
    asked for, or with a renewed token (Okta answers 401 E0000011 when a token outlives its
    hour mid-run)."""

    slot = "okta"

    def __init__(self, source: OktaSource) -> None:
        self.source = source
        self._lock = threading.Lock()

    def cached(self) -> str | None:
        source = self.source
        if not source.uses_oauth:
            assert source.settings.token is not None
            return source.settings.token.get_secret_value()
        with self._lock:
            if source._access_token is not None and source.clock() < source._token_expires:
                return source._access_token
        return None

    def fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        with self._lock:
            return self.source._renew_token()
        yield  # pragma: no cover - makes this a generator

    def apply(self, request: httpx.Request, token: str) -> None:
        source = self.source
        if not source.uses_oauth:
            request.headers["Authorization"] = f"SSWS {token}"
            return
        dpop = source._dpop
        request.headers["Authorization"] = ("DPoP " if dpop else "Bearer ") + token
        if dpop is not None:
            request.headers["DPoP"] = dpop.proof(
                request.method, str(request.url), source.clock(), token
            )

    def renew(
        self, response: httpx.Response, refused: str
    ) -> Generator[httpx.Request, httpx.Response, str | None]:
        source = self.source
        if not source.uses_oauth:
            return None
        with self._lock:
            challenge = response.headers.get("www-authenticate", "")
            if source._dpop is not None and 'error="use_dpop_nonce"' in challenge:
                # The same token, proved with the nonce the server asked for (several threads
                # may be told at once; the first one keeps the nonce).
                source._dpop.remember_nonce(response)
                return refused
            if source._access_token not in (None, refused):
                return source._access_token  # another thread renewed it already
            return source._renew_token()
        yield  # pragma: no cover - makes this a generator


class OktaSource(CloudSource[OktaSettings]):
    """Okta users and groups; see the module docstring for what is read and why.
    ``transport``, ``policy`` and ``clock`` are for tests (``CloudSource``)."""

    name = "okta"

    signals = OKTA
    ca_setting = env_name("okta", "ca_file")

    def __init__(self, settings: OktaSettings, sync: SyncSettings, **seams: Any) -> None:
        super().__init__(settings, sync, **seams)
        # Per-run OAuth state, set on first use.
        self._key: Any = None
        self._granted: str | None = None
        self._dpop: DpopKey | None = None
        self._access_token: str | None = None
        self._token_expires = 0.0
        self._api: CloudHttp | None = None
        self._tokens: CloudHttp | None = None

    # -- plumbing --------------------------------------------------------------------------

    @property
    def server(self) -> str:
        return self.settings.org_url or f"({env_name('okta', 'org_url')} not set)"

    @property
    def uses_oauth(self) -> bool:
        return self.settings.client_id is not None

    def _require(self) -> str:
        problems = self.settings.required()  # the settings pass's own rule (config.py)
        if problems:
            raise ConfigError(problems)
        assert self.settings.org_url is not None
        return self.settings.org_url

    def translate(
        self, name: str, response: httpx.Response | None, exc: BaseException | None, note: str
    ) -> DirectoryError:
        """``OktaError`` naming the request: Okta's error body, or the transport failure."""
        suffix = f" ({note})" if note and (response is not None or exc is not None) else ""
        if response is not None:
            return _api_error(name, response, suffix)
        if exc is not None:
            return OktaError(name, f"{type(exc).__name__}: {shorten(str(exc), 160)}{suffix}")
        return OktaError(name, note or "no response")

    def _client(self) -> CloudHttp:
        """The API client: the credential as an auth flow, the bound on requests in flight."""
        if self._api is None:
            self._require()
            self._api = self._cloud_http("Okta", auth=OktaAuth(self), headers=_HEADERS)
        return self._api

    def _token_client(self) -> CloudHttp:
        """The token endpoint's client, outside the bound (a token may be fetched inside an
        API request's auth flow, which holds a slot already)."""
        if self._tokens is None:
            self._tokens = self._cloud_http("Okta", headers=_HEADERS, limited=False)
        return self._tokens

    def close(self) -> None:
        super().close()
        self._api = self._tokens = None

    def _token_url(self) -> str:
        return self._require() + "/oauth2/v1/token"

    def _fetch_token(self, scopes: tuple[str, ...] = SCOPES) -> dict[str, Any]:
        assert self.settings.client_id is not None
        assert self.settings.private_key_file is not None
        if self._key is None:
            self._key = load_private_key(self.settings.private_key_file)
        url = self._token_url()
        client_id, key, kid = self.settings.client_id, self._key, self.settings.key_id
        what = "POST /oauth2/v1/token"

        def fresh() -> dict[str, Any]:
            # A new assertion (and DPoP proof) per attempt: Okta refuses a replayed jti.
            now = self.clock()
            extra: dict[str, Any] = {
                "data": {
                    "grant_type": "client_credentials",
                    "scope": " ".join(scopes),
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": client_assertion(client_id, url, key, kid, now),
                }
            }
            if self._dpop is not None:
                extra["headers"] = {"DPoP": self._dpop.proof("POST", url, now)}
            return extra

        for _ in range(3):
            response = self._token_client().send("POST", url, what=what, fresh=fresh)
            body = json_or_none(response)
            error = body.get("error") if isinstance(body, dict) else None
            if response.status_code == 400 and error == "invalid_dpop_proof" and not self._dpop:
                self._dpop = DpopKey()  # the app requires DPoP: bind the token to a run key
                continue
            if (
                response.status_code == 400
                and error == "use_dpop_nonce"
                and self._dpop is not None
                and self._dpop.remember_nonce(response)
            ):
                continue  # Okta asks for its nonce in the proof, once
            break
        if response.status_code != 200 or not isinstance(body, dict):
            raise _oauth_error(what, response, body)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OktaError(what, "the response has no access_token", status=200)
        token_type = str(body.get("token_type", "Bearer"))
        expected = "dpop" if self._dpop is not None else "bearer"
        if token_type.lower() != expected:
            raise OktaError(what, f"Okta issued a {token_type} token, expected {expected}")
        return body

    def _renew_token(self) -> str:
        """A fresh OAuth token, kept until a minute before it expires."""
        body = self._fetch_token()
        token = str(body["access_token"])
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 3600.0
        self._access_token = token
        self._token_expires = self.clock() + max(seconds - 60.0, 0.0)
        self._granted = str(body.get("scope", " ".join(SCOPES)))
        return token

    def _authorize(self) -> None:
        """Make sure a token is at hand (``check`` reports the token endpoint on its own)."""
        if self.uses_oauth and (self._access_token is None or self.clock() >= self._token_expires):
            self._renew_token()

    def _get(self, url: str, what: str) -> httpx.Response:
        """GET with the credential (``OktaAuth``); anything but a 200 is an ``OktaError``."""
        response = self._client().send("GET", url, what=what)
        if response.status_code != 200:
            raise _api_error(what, response)
        return response

    def _pages(self, path: str, params: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
        """Yield each page (a JSON array) of a list endpoint, following ``Link`` headers."""
        base = self._require()
        url: str | None = base + path + (("?" + urlencode(params)) if params else "")
        what = f"GET {path}"
        seen: set[str] = set()
        while url is not None:
            if url in seen:  # a server bug; following it would never end
                raise OktaError(what, "the Link header loops back to a page already read")
            seen.add(url)
            response = self._get(url, what)
            page = json_or_none(response)
            if not isinstance(page, list):
                raise OktaError(what, f"expected a JSON array, got {type(page).__name__}")
            if not page:
                return
            yield page
            link = next_link(response)
            url = same_origin_next(base, link) if link else None

    # -- fetch -----------------------------------------------------------------------------

    def fetch(self, request: FetchRequest) -> Directory:
        """The two users queries and the groups (then every group's members, several at once)
        are read at the same time and assembled in the order a sequential read gives."""
        self._require()
        with self.reading() as fan:
            self._client()
            self._authorize()
            user_filter = parse_filter(self.sync.user_filter)
            group_filter = parse_filter(self.sync.group_filter)
            queries = self._user_queries(user_filter) if self.sync.users else []
            reads: list[Callable[[], Any]] = [
                functools.partial(self._users, user_filter, q) for q in queries
            ]
            if self.sync.groups:
                reads.append(functools.partial(self._groups, group_filter))
            results = fan.together(*reads)
            users: list[User] | None = None
            if self.sync.users:
                users = [u for part in results[: len(queries)] for u in part]
            groups: list[Group] | None = None
            if self.sync.groups:
                groups = results[-1]
                if users is not None and group_filter.set is not None:
                    users = scope_users_to_groups(
                        users, groups, remove_disabled=self.sync.remove_disabled
                    )
        return Directory(users=users, groups=groups)

    def _user_queries(self, flt: Filter) -> list[str | None]:
        base = flt.query
        deprovisioned = deprovisioned_filter(base)
        return [base] if deprovisioned is None else [base, deprovisioned]

    def _users(self, flt: Filter, query: str | None) -> list[User]:
        users: list[User] = []
        params = {"filter": query} if query else {}
        for page in self._pages("/api/v1/users", params):
            for raw in page:
                user = user_from_okta(raw)
                if flt.keeps(user.email):
                    users.append(user)
        return users

    def _groups(self, flt: Filter) -> list[Group]:
        """Every group the filter keeps, every run: the plan takes a synced group missing from
        this list for gone from the directory (``plan.stale_groups``), so it must be whole."""
        params = {"filter": flt.query} if flt.query else {}
        groups: list[Group] = []
        for page in self._pages("/api/v1/groups", params):
            for raw in page:
                gid = raw.get("id") if isinstance(raw, dict) else None
                if not isinstance(gid, str) or not gid:
                    raise OktaError("GET /api/v1/groups", "returned a group without an id")
                profile = raw.get("profile")
                name = profile.get("name") if isinstance(profile, dict) else None
                if not flt.keeps(name):
                    continue
                groups.append(Group(reference_id=gid, external_id=gid, name=name))
        for group, members in zip(groups, self.fanout.map(self._members, groups), strict=True):
            for mid in members:
                group.add_user(mid)
        return groups

    def _members(self, group: Group) -> list[str]:
        """One group's member ids, in Okta's order."""
        ids: list[str] = []
        for page in self._pages(f"/api/v1/groups/{group.reference_id}/users", {}):
            for member in page:
                mid = member.get("id") if isinstance(member, dict) else None
                if isinstance(mid, str) and mid:
                    ids.append(mid)
        return ids

    # -- check -----------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        try:
            return self._check()
        finally:
            self.close()

    def _check(self) -> list[CheckResult]:
        results: list[CheckResult] = []
        try:
            self._require()
        except ConfigError as exc:
            return [CheckResult("settings", False, "; ".join(exc.problems))]
        if self.uses_oauth:
            try:
                self._authorize()
                results.append(
                    CheckResult(
                        "token",
                        True,
                        f"service app {self.settings.client_id}: granted {self._granted}",
                    )
                )
            except OktaError as exc:
                detail = str(exc)
                if exc.code == "invalid_scope":
                    detail += "; " + self._missing_scopes()
                return [CheckResult("token", False, detail)]
            except ConfigError as exc:
                return [CheckResult("token", False, "; ".join(exc.problems))]
        for label, path, scope in (
            ("read users", "/api/v1/users", "okta.users.read"),
            ("read groups", "/api/v1/groups", "okta.groups.read"),
        ):
            try:
                self._get(self._require() + path + "?limit=1", f"GET {path}")
                results.append(CheckResult(label, True, f"{self.server}{path}"))
            except OktaError as exc:
                results.append(CheckResult(label, False, self._explain(exc, scope)))
        return results

    def _missing_scopes(self) -> str:
        """Ask for each scope alone to name the one the app was not granted."""
        missing = []
        for scope in SCOPES:
            try:
                self._fetch_token((scope,))
            except OktaError as exc:
                if exc.code == "invalid_scope":
                    missing.append(scope)
        if not missing:
            return "grant the app okta.users.read and okta.groups.read (Okta API Scopes tab)"
        return "grant " + ", ".join(missing) + " to the service app (its Okta API Scopes tab)"

    def _explain(self, exc: OktaError, scope: str) -> str:
        detail = str(exc)
        if exc.status == 403:
            if self.uses_oauth:
                detail += (
                    f"; the token needs the {scope} scope and the service app an admin role "
                    "(Read-only Administrator) in its Admin roles tab"
                )
            else:
                detail += (
                    "; the API token inherits its creator's permissions: create it as an admin "
                    "(Read-only Administrator is enough)"
                )
        elif exc.status == 401 and not self.uses_oauth:
            detail += "; the API token is wrong, revoked, or expired after 30 days unused"
        return detail


_HEADERS = {"Accept": "application/json", "User-Agent": "bwsync"}


# --------------------------------------------------------------------------------------------
# Error translation


_SCOPE_IN_CHALLENGE = re.compile(r'scope="([^"]*)"')


def _api_error(what: str, response: httpx.Response, suffix: str = "") -> OktaError:
    """Okta's error body is ``{errorCode, errorSummary, errorLink, errorId, errorCauses}``; a
    missing scope shows in ``WWW-Authenticate`` as ``error="insufficient_scope", scope="…"``."""
    body = json_or_none(response)
    status = response.status_code
    code = summary = None
    if isinstance(body, dict):
        code = body.get("errorCode")
        summary = body.get("errorSummary")
        causes = [
            c.get("errorSummary")
            for c in body.get("errorCauses") or []
            if isinstance(c, dict) and c.get("errorSummary")
        ]
        if causes and summary:
            summary = f"{summary} ({'; '.join(map(str, causes))})"
    detail = f"HTTP {status}"
    if code or summary:
        detail += f" {code or ''} {shorten(str(summary or ''), 200)}".rstrip()
    elif response.content:
        detail += f" {shorten(response.text, 120)}"
    challenge = response.headers.get("www-authenticate", "")
    if "insufficient_scope" in challenge:
        scope = _SCOPE_IN_CHALLENGE.search(challenge)
        if scope:
            detail += f" (the token lacks scope {scope.group(1)})"
    return OktaError(what, detail + suffix, status=status, code=str(code) if code else None)


def _oauth_error(what: str, response: httpx.Response, body: Any) -> OktaError:
    """The token endpoint answers RFC 6749 ``{error, error_description}``."""
    if isinstance(body, dict) and "error" in body:
        code = str(body.get("error"))
        description = shorten(str(body.get("error_description") or ""), 200)
        hint = ""
        if code in ("invalid_dpop_proof", "use_dpop_nonce"):
            hint = "; the DPoP proof was refused (is this machine's clock right?)"
        elif code == "invalid_client":
            hint = (
                f"; check {env_name('okta', 'client_id')}, that the app uses 'Public key / "
                "Private key' "
                "client authentication, and that the key matches the registered public key"
            )
        return OktaError(
            what,
            f"HTTP {response.status_code} {code}: {description}{hint}",
            status=response.status_code,
            code=code,
        )
    return _api_error(what, response)
