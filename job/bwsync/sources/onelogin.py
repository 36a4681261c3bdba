"""OneLogin through its v1 API (reference §7.5): users, and roles as groups.

* Token: ``POST <base>/auth/oauth2/v2/token`` with HTTP Basic client id/secret and
  ``{"grant_type":"client_credentials"}``; the API is called with ``Authorization:
  bearer:<token>`` (OneLogin's v1 style), as bwdc does.
* ``<base>`` is ``BWSYNC_ONELOGIN__API_URL`` if set, else ``https://<subdomain>.onelogin.com``
  if a subdomain is set, else ``https://api.<region>.onelogin.com``.
* ``GET /api/1/users[?<query>]`` and ``GET /api/1/roles[?<query>]``, 50 per page, following
  ``pagination.next_link``; the query is the filter's native part, appended raw as bwdc does.
* Ids are JSON numbers; they are sent as JSON strings (``"101"``), as every externalId is,
  because Vaultwarden refuses numbers with HTTP 422. bwdc sends them as numbers, so the body
  and the hash differ from bwdc's for OneLogin (README, deliberate differences).
* Status 2 (suspended) is disabled; OneLogin has no deleted users. A user's email is ``email``
  if valid, else ``username`` if it is an email, else ``username + email_suffix`` when
  ``use_email_prefix_suffix`` is on; users without a valid email are dropped.
* A role's members are the users whose ``role_id`` lists it — every user the users query
  returned, including those dropped for their email, as bwdc (and none when user sync is off).

Deliberate difference: bwdc stops paging silently on an HTTP error and syncs the users read so
far — a shortened directory that, with removals on, removes people. Here any failed request,
after the retries, fails the run (exit 3) and names the request.

OneLogin's v1 limit is 5,000 calls an hour per account; ``X-RateLimit-Reset`` is the number of
seconds to the next window, read by the cloud sources' HTTP layer (``cloud_http.ONELOGIN``).
The users and the roles are read at the same time; each is one chain of v1 cursor pages,
which cannot be asked for out of order: v1 returns at most 50 a page and documents no page
numbers, so N users cost ⌈N/50⌉ round trips one after another at any concurrency. v2's numbered
pages are not used on purpose: v2 users carry no ``role_id``, its search parameters are not
bwdc's v1 queries, and its pages are offsets that can drop a user next to one deleted mid-read
(docs/sources/onelogin.md, "How long a read takes").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Generator, Iterator
from typing import Any

import httpx

from bwsync.config import OneLoginSettings, SyncSettings, env_name
from bwsync.errors import ConfigError, DirectoryError, OneLoginError, shorten
from bwsync.http.auth import TokenAuth
from bwsync.model import Directory, Group, User
from bwsync.sources.base import CheckResult, FetchRequest
from bwsync.sources.cloud_http import (
    ONELOGIN,
    CloudHttp,
    CloudSource,
    json_or_none,
    same_origin_next,
    seconds_reset_in,
)
from bwsync.sources.filters import parse_filter, scope_users_to_groups

VALID_EMAIL = re.compile(r"^\S+@\S+\.\S+$")
STATUS_SUSPENDED = 2


def onelogin_reset_in(response: httpx.Response, now: float) -> float | None:
    """OneLogin's ``X-RateLimit-Reset`` counts seconds to the next window (not an epoch);
    ``ONELOGIN_RATE`` reads it so for the HTTP layer."""
    return seconds_reset_in(response, "x-ratelimit-reset")


__all__ = ["OneLoginError", "OneLoginSource", "onelogin_email"]


def onelogin_email(
    raw: dict[str, Any], *, use_prefix_suffix: bool, suffix: str | None
) -> str | None:
    """bwdc's email rule (§7.5), returning ``None`` when no valid email can be made."""
    email = raw.get("email")
    candidate: str | None = None
    if isinstance(email, str) and VALID_EMAIL.match(email):
        candidate = email
    else:
        username = raw.get("username")
        if isinstance(username, str) and username:
            if VALID_EMAIL.match(username):
                candidate = username
            elif use_prefix_suffix and suffix:
                candidate = username + suffix
    if candidate is None:
        return None
    candidate = candidate.strip().lower()
    return candidate if VALID_EMAIL.match(candidate) else None


def _numeric_id(value: Any, what: str) -> int:
    """OneLogin's id of a user or role; an entry without one is a OneLogin fault."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise OneLoginError(what, f"an entry has no numeric id ({type(value).__name__})")


class OneLoginAuth(TokenAuth):
    """OneLogin's OAuth token on every API call, v1 style (``Authorization: bearer:<token>``);
    a token revoked or expired mid-run gets one fresh one, then the 401 stands."""

    slot = "onelogin"

    def __init__(self, source: OneLoginSource) -> None:
        self.source = source
        self._lock = threading.Lock()

    def cached(self) -> str | None:
        source = self.source
        with self._lock:
            if source._access_token is not None and source.clock() < source._token_expires:
                return source._access_token
        return None

    def fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        with self._lock:
            return self.source._renew_token()
        yield  # pragma: no cover - makes this a generator

    def renew(
        self, response: httpx.Response, refused: str
    ) -> Generator[httpx.Request, httpx.Response, str | None]:
        with self._lock:
            current = self.source._access_token
            fresh = current if current not in (None, refused) else self.source._renew_token()
        return None if fresh == refused else fresh
        yield  # pragma: no cover - makes this a generator

    def apply(self, request: httpx.Request, token: str) -> None:
        request.headers["Authorization"] = "bearer:" + token


class OneLoginSource(CloudSource[OneLoginSettings]):
    """OneLogin users and roles; see the module docstring. ``transport``, ``policy`` and
    ``clock`` are for tests (``CloudSource``)."""

    name = "onelogin"

    signals = ONELOGIN
    ca_setting = env_name("onelogin", "ca_file")

    def __init__(self, settings: OneLoginSettings, sync: SyncSettings, **seams: Any) -> None:
        super().__init__(settings, sync, **seams)
        self._access_token: str | None = None
        self._token_expires = 0.0
        self._api: CloudHttp | None = None
        self._tokens: CloudHttp | None = None

    @property
    def base_url(self) -> str:
        s = self.settings
        if s.api_url:
            return s.api_url
        if s.subdomain:
            return f"https://{s.subdomain}.onelogin.com"
        return f"https://api.{s.region}.onelogin.com"

    @property
    def server(self) -> str:
        return self.base_url

    def _require(self) -> None:
        problems = self.settings.required()  # the settings pass's own rule (config.py)
        if problems:
            raise ConfigError(problems)

    def translate(
        self, name: str, response: httpx.Response | None, exc: BaseException | None, note: str
    ) -> DirectoryError:
        """``OneLoginError`` naming the request: OneLogin's error body, or the transport
        failure."""
        suffix = f" ({note})" if note and (response is not None or exc is not None) else ""
        if response is not None:
            return _error(name, response, json_or_none(response), suffix)
        if exc is not None:
            return OneLoginError(name, f"{type(exc).__name__}: {shorten(str(exc), 160)}{suffix}")
        return OneLoginError(name, note or "no response")

    def _client(self) -> CloudHttp:
        if self._api is None:
            self._require()
            self._api = self._cloud_http("OneLogin", auth=OneLoginAuth(self), headers=_HEADERS)
        return self._api

    def _token_client(self) -> CloudHttp:
        if self._tokens is None:
            self._tokens = self._cloud_http("OneLogin", headers=_HEADERS, limited=False)
        return self._tokens

    def close(self) -> None:
        super().close()
        self._api = self._tokens = None

    def _renew_token(self) -> str:
        assert self.settings.client_id is not None
        assert self.settings.client_secret is not None
        what = "POST /auth/oauth2/v2/token"
        response = self._token_client().send(
            "POST",
            self.base_url + "/auth/oauth2/v2/token",
            what=what,
            auth=(self.settings.client_id, self.settings.client_secret.get_secret_value()),
            json={"grant_type": "client_credentials"},
        )
        body = json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict):
            raise _error(what, response, body)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise OneLoginError(what, "the response has no access_token", status=200)
        lifetime = body.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, int | float) else 36000.0
        self._access_token = token
        self._token_expires = self.clock() + max(seconds - 60.0, 0.0)
        return token

    def _authorize(self) -> None:
        if self._access_token is None or self.clock() >= self._token_expires:
            self._renew_token()

    def _get(self, url: str, what: str) -> dict[str, Any]:
        response = self._client().send("GET", url, what=what)
        body = json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict):
            raise _error(what, response, body)
        status = body.get("status")
        if not isinstance(status, dict) or status.get("code") != 200:
            raise _error(what, response, body)
        if not isinstance(body.get("data"), list):
            raise OneLoginError(what, "the response has no `data` list", status=200)
        return body

    def _pages(self, resource: str, query: str | None) -> Iterator[list[dict[str, Any]]]:
        base = self.base_url
        path = f"/api/1/{resource}"
        url: str | None = base + path + (f"?{query}" if query else "")
        what = f"GET {path}"
        seen: set[str] = set()
        while url is not None:
            seen.add(url)
            body = self._get(url, what)
            yield [d for d in body["data"] if isinstance(d, dict)]
            pagination = body.get("pagination")
            link = pagination.get("next_link") if isinstance(pagination, dict) else None
            url = same_origin_next(base, link) if isinstance(link, str) and link else None
            if url is not None and url in seen:
                raise OneLoginError(what, "pagination loops back to a page already read")

    # -- fetch -----------------------------------------------------------------------------

    def fetch(self, request: FetchRequest) -> Directory:
        """The users and the roles are read at the same time (two cursor chains: v1 pages
        cannot be asked for out of order); memberships come from the users' ``role_id``.
        OneLogin has no incremental mode: every run is a full fetch (``request.force``
        unused)."""
        self._require()
        with self.reading() as fan:
            self._client()
            self._authorize()
            none: Any = lambda: None  # noqa: E731 - a read that is switched off
            raw_users, raw_roles = fan.together(
                (lambda: [u for page in self._pages("users", self._query("user")) for u in page])
                if self.sync.users
                else none,
                (lambda: [r for page in self._pages("roles", self._query("group")) for r in page])
                if self.sync.groups
                else none,
            )
            return self._directory(raw_users, raw_roles)

    def _query(self, kind: str) -> str | None:
        return parse_filter(getattr(self.sync, f"{kind}_filter")).query

    def _directory(
        self, raw_users: list[dict[str, Any]] | None, raw_roles: list[dict[str, Any]] | None
    ) -> Directory:
        user_filter = parse_filter(self.sync.user_filter)
        group_filter = parse_filter(self.sync.group_filter)
        directory = Directory(users=None, groups=None)
        memberships: list[tuple[int, frozenset[int]]] = []
        if raw_users is not None:
            users: list[User] = []
            for raw in raw_users:
                uid = _numeric_id(raw.get("id"), "GET /api/1/users")
                roles = raw.get("role_id") or []
                if not isinstance(roles, list):
                    raise OneLoginError("GET /api/1/users", f"user {uid}'s role_id is not a list")
                memberships.append((uid, frozenset(r for r in roles if isinstance(r, int))))
                email = onelogin_email(
                    raw,
                    use_prefix_suffix=self.settings.use_email_prefix_suffix,
                    suffix=self.settings.email_suffix,
                )
                if email is None:
                    directory.skipped["no_email"] += 1
                    continue
                if not user_filter.keeps(email):
                    continue
                users.append(
                    User(
                        reference_id=str(uid),
                        external_id=str(uid),
                        email=email,
                        disabled=raw.get("status") == STATUS_SUSPENDED,
                    )
                )
            directory.users = users
        if raw_roles is not None:
            groups: list[Group] = []
            for raw in raw_roles:
                rid = _numeric_id(raw.get("id"), "GET /api/1/roles")
                name = raw.get("name")
                if not group_filter.keeps(name if isinstance(name, str) else None):
                    continue
                group = Group(reference_id=str(rid), external_id=str(rid), name=name)
                for uid, roles in memberships:
                    if rid in roles:
                        group.add_user(str(uid))
                groups.append(group)
            directory.groups = groups
            if directory.users is not None and group_filter.set is not None:
                directory.users = scope_users_to_groups(
                    directory.users, groups, remove_disabled=self.sync.remove_disabled
                )
        return directory

    # -- check -----------------------------------------------------------------------------

    def check(self) -> list[CheckResult]:
        try:
            self._require()
        except ConfigError as exc:
            return [CheckResult("settings", False, "; ".join(exc.problems))]
        results: list[CheckResult] = []
        try:
            try:
                self._authorize()
            except OneLoginError as exc:
                detail = str(exc)
                if exc.status in (400, 401):
                    detail += (
                        f"; check {env_name('onelogin', 'client_id')}/__CLIENT_SECRET and the "
                        "region or "
                        "subdomain (an EU account is not known to api.us.onelogin.com)"
                    )
                return [CheckResult("token", False, detail)]
            results.append(CheckResult("token", True, f"{self.base_url}/auth/oauth2/v2/token"))
            for label, resource in (("read users", "users"), ("read roles", "roles")):
                try:
                    self._get(f"{self.base_url}/api/1/{resource}", f"GET /api/1/{resource}")
                    results.append(CheckResult(label, True, f"{self.base_url}/api/1/{resource}"))
                except OneLoginError as exc:
                    detail = str(exc)
                    if exc.status in (401, 403):
                        detail += (
                            "; the API credential needs the 'Read users' scope (or Manage "
                            "users / Read all); 'Authentication only' cannot list users"
                        )
                    results.append(CheckResult(label, False, detail))
        finally:
            self.close()
        return results


_HEADERS = {"Accept": "application/json", "User-Agent": "bwsync"}


def _error(what: str, response: httpx.Response, body: Any, suffix: str = "") -> OneLoginError:
    """OneLogin's v1 errors are ``{"status": {error, code, type, message}}``; the token
    endpoint and v2 may answer ``{error, error_description}`` or ``{message, statusCode}``."""
    http = response.status_code
    message: str | None = None
    code: Any = None
    if isinstance(body, dict):
        status = body.get("status")
        if isinstance(status, dict):
            code = status.get("code")
            message = " ".join(
                str(status[k]) for k in ("type", "message") if status.get(k) not in (None, "")
            )
        elif "error" in body:
            message = f"{body.get('error')}: {body.get('error_description') or ''}".rstrip(": ")
        elif "message" in body:
            message = str(body.get("message"))
    detail = f"HTTP {http}"
    if code is not None and code != http:
        detail += f", status {code}"
    if message:
        detail += f" {shorten(message, 200)}"
    elif body is None and response.content:
        detail += f" {shorten(response.text, 120)}"
    status_code = code if isinstance(code, int) and http == 200 else http
    return OneLoginError(what, detail + suffix, status=status_code)
