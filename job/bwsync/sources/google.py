"""Google Workspace through the Admin SDK Directory API v1 — bwdc's type 2 (reference §7.3).

Authentication is a service account with domain-wide delegation: google-auth signs the JWT
(``sub`` = ``BWSYNC_GOOGLE__ADMIN_EMAIL``, the three read-only scopes) and exchanges it at the
key file's ``token_uri``, exactly as it would on its own, but its HTTP goes through ``_Transport``
(an adapter over httpx), so the CA file, the timeout and the retry rules apply to the token
request too. Admin SDK calls go through ``cloud_http``: 429, 5xx and Google's quota errors
(403 ``rateLimitExceeded``/``userRateLimitExceeded``) back off and retry; any other error names
the request and Google's ``reason``.

What is read, as bwdc does (the import body is the one bwdc would send):

* users (``sync.users``): ``users.list`` and again with ``showDeleted=true``, each with
  ``customer`` and/or ``domain`` (whichever is set; no domain = every domain of the customer)
  and the filter's ``query`` part; the set part is applied to ``primaryEmail``. Active users
  without ``emails`` are skipped. email = ``primaryEmail``; ``disabled = suspended or archived``;
  deleted = came from the deleted list.
* groups (``sync.groups``): ``groups.list`` (+ the group filter's ``query``), filtered by name;
  direct members from ``members.list``: ``USER`` members count only when ``ACTIVE``, ``GROUP``
  members nest, a ``CUSTOMER`` member adds every fetched user. Then §6.2 user scoping.

Google has no incremental mode: every run reads everything (no delta tokens). Deliberate
differences: ``maxResults`` at the API maximum (500 users, 200 groups/members per page) instead
of the default 100, and no ``customer``/``domain`` on ``members.list``, which ignores them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from bwsync.config import GoogleSettings, SyncSettings, env_name
from bwsync.errors import ConfigError, GoogleError, shorten
from bwsync.http.auth import FunctionTokenAuth
from bwsync.http.fanout import Fanout
from bwsync.model import Directory, Group, User
from bwsync.setting_files import service_account_key
from bwsync.sources.base import CheckResult, FetchRequest
from bwsync.sources.cloud_http import (
    GOOGLE,
    CloudHttp,
    CloudSource,
    describing,
)
from bwsync.sources.filters import parse_filter, scope_users_to_groups

SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.readonly",
    "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
)
API = "/admin/directory/v1"


def google_error(response: httpx.Response) -> tuple[str | None, str]:
    """``(reason, message)`` from Google's error shapes: the API's
    ``{"error": {"code", "message", "errors": [{"reason"}]}}`` or OAuth's
    ``{"error", "error_description"}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            reasons = [e.get("reason") for e in err.get("errors") or [] if isinstance(e, dict)]
            reason = next((r for r in reasons if r), None) or err.get("status")
            return (str(reason) if reason else None), shorten(str(err.get("message") or ""))
        if isinstance(err, str):
            return err, shorten(str(body.get("error_description") or ""))
    text = response.text if response.content else response.reason_phrase
    return None, shorten(text)


class _Response:
    """google-auth's ``transport.Response`` over an httpx response."""

    def __init__(self, response: httpx.Response) -> None:
        self._r = response

    @property
    def status(self) -> int:
        return self._r.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._r.headers

    @property
    def data(self) -> bytes:
        return self._r.content


class _Transport:
    """google-auth's ``transport.Request`` over ``CloudHttp``: what the retry predicate calls
    temporary is retried here; every other answer goes back to google-auth, which turns errors
    into ``RefreshError``."""

    def __init__(self, http: CloudHttp) -> None:
        self.http = http

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _Response:
        response = self.http.send(method, url, headers=headers, content=body)
        return _Response(response)


class GoogleSource(CloudSource[GoogleSettings]):
    """See the module docstring. ``transport``, ``policy`` and ``clock`` are for tests
    (``CloudSource``)."""

    name = "google"

    signals = GOOGLE
    ca_setting = env_name("google", "ca_file")
    translate = staticmethod(describing(GoogleError, google_error))  # type: ignore[assignment]

    def __init__(self, settings: GoogleSettings, sync: SyncSettings, **seams: Any) -> None:
        super().__init__(settings, sync, **seams)
        self.api = settings.api_url.rstrip("/")
        self._credentials: Any = None
        self._token_http: CloudHttp | None = None
        self._http: CloudHttp | None = None
        self._token_lock = threading.Lock()

    @property
    def server(self) -> str:
        return self.api

    # -- credentials -----------------------------------------------------------------------------
    def _key_info(self) -> dict[str, Any]:
        """The service-account key, read and checked as the settings pass does
        (``bwsync.setting_files``)."""
        problems = self.settings.required()
        if problems:
            raise ConfigError(problems)
        path = self.settings.credentials_file
        assert path is not None
        return service_account_key(path, env_name("google", "credentials_file"))

    def _make_credentials(self, scopes: tuple[str, ...]) -> Any:
        from google.oauth2 import service_account

        info = self._key_info()
        try:
            return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(scopes), subject=self.settings.admin_email
            )
        except ValueError as exc:  # an unreadable private key
            raise ConfigError(
                f"{env_name('google', 'credentials_file')}: unusable private key "
                f"({type(exc).__name__})"
            ) from None

    def _token_client(self) -> CloudHttp:
        if self._token_http is None:
            # Without the bound on requests in flight: a token may be fetched inside an Admin
            # SDK request's auth flow, which holds a slot already.
            self._token_http = self._cloud_http("Google", limited=False)
        return self._token_http

    def _refresh(self, credentials: Any) -> None:
        from google.auth import exceptions

        name = f"POST {urlsplit(credentials._token_uri).path or '/'}"
        try:
            credentials.refresh(_Transport(self._token_client()))
        except exceptions.RefreshError as exc:
            data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
            error = str(data.get("error") or "refused")
            description = str(data.get("error_description") or "")
            if not data:
                description = shorten(str(exc.args[0]) if exc.args else "")
            raise GoogleError(name, f"{error}: {shorten(description)}", code=error) from None
        except exceptions.GoogleAuthError as exc:
            raise GoogleError(name, shorten(str(exc))) from None
        except (TypeError, AttributeError, KeyError, ValueError) as exc:
            # google-auth reads the token response without checking its shape: a body that
            # is not the JSON object it expects is the server's fault.
            raise GoogleError(name, f"unexpected answer ({type(exc).__name__})") from None

    def token(self, fresh: bool = False) -> str:
        """An access token for the admin user (google-auth refreshes it when near expiry)."""
        with self._token_lock:  # the fetch's threads share one token
            if self._credentials is None:
                self._credentials = self._make_credentials(SCOPES)
            if fresh or not self._credentials.valid:
                self._refresh(self._credentials)
            return str(self._credentials.token)

    def _open(self) -> CloudHttp:
        if self._http is None:
            self._http = self._cloud_http(
                "Google", base_url=self.api, auth=FunctionTokenAuth(self.token, slot="google")
            )
        return self._http

    def close(self) -> None:
        super().close()
        self._credentials = None
        self._token_http = self._http = None

    # -- paging -------------------------------------------------------------------------------
    def _common(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.settings.domain and self.settings.domain.strip():
            params["domain"] = self.settings.domain.strip()
        if self.settings.customer and self.settings.customer.strip():
            params["customer"] = self.settings.customer.strip()
        return params

    def _items(self, path: str, key: str, params: Mapping[str, str]) -> Iterator[dict[str, Any]]:
        """Every ``key`` entry of every page, following ``nextPageToken``. An empty page has no
        ``key`` at all."""
        http = self._open()
        query = dict(params)
        seen: set[str] = set()
        while True:
            body = http.get_json(path, params=query)
            entries = body.get(key) or []
            if not isinstance(entries, list):
                raise GoogleError(f"GET {path}", f"`{key}` is not a list")
            yield from (e for e in entries if isinstance(e, dict))
            token = body.get("nextPageToken")
            if not token:
                return
            if str(token) in seen:  # a server bug; following it would never end
                raise GoogleError(f"GET {path}", "nextPageToken repeats a page already read")
            seen.add(str(token))
            query = {**params, "pageToken": str(token)}

    # -- fetch --------------------------------------------------------------------------------
    def fetch(self, request: FetchRequest) -> Directory:
        """The active users, the deleted users and the groups (then every group's members,
        several at once) are read at the same time and assembled in the order a sequential
        read gives, so the directory is the same at any concurrency."""
        with self.reading() as fan:
            self._open()
            none: Callable[[], None] = lambda: None  # noqa: E731 - a read that is switched off
            active, deleted, listed = fan.together(
                (lambda: self._users(deleted=False)) if self.sync.users else none,
                (lambda: self._users(deleted=True)) if self.sync.users else none,
                (lambda: self._groups(fan)) if self.sync.groups else none,
            )
            users = None if active is None else [*active, *deleted]
            groups: list[Group] | None = None
            if listed is not None:
                groups = [self._group(item, members, users or []) for item, members in listed]
                if users is not None and parse_filter(self.sync.group_filter).set is not None:
                    users = scope_users_to_groups(
                        users, groups, remove_disabled=self.sync.remove_disabled
                    )
        return Directory(users=users, groups=groups, skipped=self.skipped)

    def _users(self, *, deleted: bool) -> list[User]:
        """``users.list``, or with ``showDeleted=true`` the deleted ones."""
        flt = parse_filter(self.sync.user_filter)
        params = {**self._common(), "maxResults": "500"}
        if flt.query:
            params["query"] = flt.query
        if deleted:
            params["showDeleted"] = "true"
        out: list[User] = []
        for item in self._items(f"{API}/users", "users", params):
            email = item.get("primaryEmail")
            if not isinstance(item.get("id"), str) or not flt.keeps(email):
                continue
            if not deleted and not item.get("emails"):
                self.skipped["no_email"] += 1
                continue
            out.append(
                User(
                    reference_id=item["id"],
                    external_id=item["id"],
                    email=email.strip().lower() if isinstance(email, str) else None,
                    disabled=bool(item.get("suspended")) or bool(item.get("archived")),
                    deleted=deleted,
                )
            )
        return out

    def _groups(self, fan: Fanout) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """The groups the filter keeps, each with its raw members (read several at once)."""
        flt = parse_filter(self.sync.group_filter)
        params = {**self._common(), "maxResults": "200"}
        if flt.query:
            params["query"] = flt.query
        kept = [
            item
            for item in self._items(f"{API}/groups", "groups", params)
            if isinstance(item.get("id"), str) and flt.keeps(item.get("name"))
        ]
        return list(zip(kept, fan.map(self._members, kept), strict=True))

    def _members(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        path = f"{API}/groups/{quote(item['id'], safe='')}/members"
        return list(self._items(path, "members", {"maxResults": "200"}))

    @staticmethod
    def _group(item: dict[str, Any], members: list[dict[str, Any]], users: list[User]) -> Group:
        """``USER`` members count only when ``ACTIVE``, ``GROUP`` members nest, a ``CUSTOMER``
        member adds every fetched user."""
        gid = item["id"]
        group = Group(reference_id=gid, external_id=gid, name=item.get("name"))
        for member in members:
            kind = str(member.get("type") or "").lower()
            mid = member.get("id")
            if kind == "user" and member.get("status") == "ACTIVE" and mid:
                group.add_user(str(mid))
            elif kind == "group" and mid:
                group.add_group(str(mid))
            elif kind == "customer":
                for user in users:
                    group.add_user(user.external_id)
        return group

    # -- check --------------------------------------------------------------------------------
    def check(self) -> list[CheckResult]:
        try:
            return self._check()
        except ConfigError as exc:
            return [CheckResult("credentials", False, str(exc))]
        finally:
            self.close()

    def _check(self) -> list[CheckResult]:
        info = self._key_info()
        results = [
            CheckResult(
                "credentials", True, f"service account {info['client_email']} ({info['token_uri']})"
            )
        ]
        try:
            self.token()
        except GoogleError as exc:
            if exc.code != "unauthorized_client":
                hint = ""
                if exc.code == "invalid_grant" and "email" in str(exc).lower():
                    hint = (
                        f" — {env_name('google', 'admin_email')} {self.settings.admin_email} "
                        "is not a "
                        "user of the Workspace"
                    )
                return [*results, CheckResult("token", False, f"{exc}{hint}")]
            missing = []
            for scope in SCOPES:
                try:
                    self._refresh(self._make_credentials((scope,)))
                except GoogleError as single:
                    if single.code != "unauthorized_client":
                        raise
                    missing.append(scope)
            detail = (
                "domain-wide delegation is missing scope(s): "
                + ", ".join(missing or SCOPES)
                + f" for client id {info.get('client_id', '?')} (Admin console → Security → "
                "API controls → Domain-wide delegation)"
            )
            return [*results, CheckResult("scopes", False, detail)]
        results.append(
            CheckResult(
                "token", True, f"impersonating {self.settings.admin_email} with the three scopes"
            )
        )
        probes = [
            ("read users", f"{API}/users", {**self._common(), "maxResults": "1"}),
            ("read groups", f"{API}/groups", {**self._common(), "maxResults": "1"}),
        ]
        for label, path, params in probes:
            try:
                self._open().get_json(path, params=params)
                results.append(CheckResult(label, True, f"GET {self.api}{path}"))
            except GoogleError as exc:
                hint = ""
                if exc.code == "forbidden":
                    hint = (
                        f" — is {self.settings.admin_email} an administrator, and is "
                        f"{env_name('google', 'domain')} a domain of this customer?"
                    )
                results.append(CheckResult(label, False, f"{exc}{hint}"))
        return results
