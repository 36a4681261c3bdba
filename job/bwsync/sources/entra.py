"""Microsoft Entra ID (Azure AD) through Microsoft Graph v1.0 — bwdc's type 1 (reference §7.2).

Token with msal (client credentials: a client secret, a certificate, or an AKS workload-identity
federated token), Graph calls with httpx through ``cloud_http`` (bounded retries honouring
``Retry-After`` on 429/503; errors name the request and Graph's error code). msal's own HTTP goes
through the same kind of httpx client (``_MsalHttp``), so ``BWSYNC_ENTRA__CA_FILE`` and the
timeout apply to token requests too, and ``REQUESTS_CA_BUNDLE`` cannot override them.

Every call goes to the national cloud named by ``BWSYNC_ENTRA__CLOUD`` (authority, token scope
and Graph host) — bwdc sends Graph calls to graph.microsoft.com even for the US Government
authority; we deliberately do not.

What is read, as bwdc does (the import body is the one bwdc would send):

* users (``sync.users``): ``GET /users`` — or, for ``includeGroup:``/``excludeGroup:`` user
  filters, the transitive members of those groups — with ``$select`` =
  ``id,mail,userPrincipalName,displayName,accountEnabled``; email = ``mail``, or the UPN when
  ``mail`` is empty or an ``onmicrosoft.com`` address; ``disabled = accountEnabled is false``.
  Active entries whose email is missing or contains ``#`` (guests known only by their
  ``…#EXT#@…`` UPN) are skipped. Then the delta query ``/users/delta``: from the delta link kept
  in the state (``Directory.delta["entra_user_delta"]``), or a full round when there is none,
  when ``FetchRequest.force``, or when Graph refuses the stored link (expired: a full round,
  never an error). Only soft-deleted entries (``@removed.reason == "changed"``) are kept, as
  deleted users. Graph reports them by ``id`` only, so — exactly as in bwdc — they carry no
  email and ``normalize`` drops them; use ``remove_missing`` to act on leavers.
* groups (``sync.groups``): ``GET /groups``, filtered by name (``include:``/``exclude:``, or
  ``includeAdministrativeUnit:``/``excludeAdministrativeUnit:`` — the names of the groups in
  those administrative units); direct members from ``/groups/{id}/members`` (users → members,
  groups → nested groups). Then §6.2 user scoping.

Deliberate differences from bwdc, each invisible in the import body for ordinary tenants:
``$top=999`` pages (fewer requests), ``$select`` on groups and members (smaller responses),
transitive members read through the ``/microsoft.graph.user`` cast so that a mail-enabled group
inside an ``includeGroup`` group is not taken for a user (bwdc quirk), AU ids trimmed.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from bwsync.config import EntraSettings, SyncSettings, env_name
from bwsync.errors import ConfigError, DirectoryApiError, EntraError, shorten
from bwsync.http.auth import FunctionTokenAuth
from bwsync.http.fanout import Fanout
from bwsync.logs import event
from bwsync.model import Directory, Group, User
from bwsync.redact import remember_token
from bwsync.setting_files import certificate_and_key
from bwsync.sources.base import CheckResult, FetchRequest
from bwsync.sources.cloud_http import (
    GRAPH,
    CloudHttp,
    CloudSource,
    describing,
    json_error_detail,
)
from bwsync.sources.filters import Filter, SetFilter, parse_filter, scope_users_to_groups

CLOUDS: dict[str, tuple[str, str]] = {
    "global": ("https://login.microsoftonline.com", "https://graph.microsoft.com"),
    "usgov": ("https://login.microsoftonline.us", "https://graph.microsoft.us"),
    "china": ("https://login.chinacloudapi.cn", "https://microsoftgraph.chinacloudapi.cn"),
}
"""Token authority and Graph host of each national cloud (Microsoft's national cloud list)."""

USER_SELECT = "id,mail,userPrincipalName,displayName,accountEnabled"
DELTA_KEY = "entra_user_delta"
PAGE = "999"
FEDERATED_TOKEN_ENV = "AZURE_FEDERATED_TOKEN_FILE"  # noqa: S105 - a variable name, not a secret

USER_ROLES = {
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
GROUP_ROLES = {
    "Group.Read.All",
    "GroupMember.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
AU_ROLES = {"AdministrativeUnit.Read.All", "Directory.Read.All", "Directory.ReadWrite.All"}


def graph_error(response: httpx.Response) -> tuple[str | None, str]:
    """Graph's ``{"error": {"code", "message"}}``, or the identity platform's
    ``{"error", "error_description"}`` (first line: the AADSTS code and text, not the trace)."""
    return json_error_detail(response)


class _MsalHttp:
    """msal's ``http_client`` over ``CloudHttp``: same CA file, proxy, timeout and retry rules
    as Graph calls.

    msal parses error bodies itself, so every final response is handed back; only what the
    retry predicate calls temporary (429/5xx, connection failures) is retried here, and a
    failure that outlives the retries raises ``EntraError`` naming the token request.
    """

    def __init__(self, http: CloudHttp) -> None:
        self.http = http

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        data = kwargs.get("data")
        if isinstance(data, Mapping):
            # msal hands the signed client assertion over as bytes; a form wants text.
            data = {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}
        return self.http.send(
            method,
            url,
            params=kwargs.get("params"),
            headers=kwargs.get("headers"),
            data=data if isinstance(data, Mapping) else None,
            content=data if isinstance(data, (str, bytes)) else None,
        )

    def post(
        self, url: str, params: Any = None, data: Any = None, headers: Any = None, **kw: Any
    ) -> httpx.Response:
        return self._send("POST", url, params=params, data=data, headers=headers)

    def get(self, url: str, params: Any = None, headers: Any = None, **kw: Any) -> httpx.Response:
        return self._send("GET", url, params=params, headers=headers)

    def close(self) -> None:
        self.http.close()


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (only to read ``roles`` for ``check``)."""
    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def user_entry(item: Mapping[str, Any]) -> User:
    """bwdc's ``buildUser``: email from ``mail`` or the UPN, disabled, deleted (§7.2)."""
    mail = item.get("mail")
    upn = item.get("userPrincipalName")
    mail = mail if isinstance(mail, str) else None  # anything else is no address
    upn = upn if isinstance(upn, str) else None
    email = mail
    if upn and (not mail or "onmicrosoft.com" in mail):
        email = upn
    email = email.strip().lower() if isinstance(email, str) else None
    removed = item.get("@removed")
    return User(
        reference_id=item["id"],
        external_id=item["id"],
        email=email,
        disabled=item.get("accountEnabled") is False,
        deleted=isinstance(removed, Mapping) and removed.get("reason") == "changed",
    )


def _skip_reason(user: User) -> str | None:
    if user.disabled or user.deleted:
        return None
    if user.email is None:
        return "no_email"
    if "#" in user.email:
        return "guest"
    return None


def _clauses(text: str) -> list[tuple[str, list[str]]]:
    """``kw:a,b|kw:c`` → [(kw lower-cased, [a, b]), …]; values trimmed, lower-cased."""
    out: list[tuple[str, list[str]]] = []
    for clause in text.split("|"):
        pieces = clause.split(":")
        if len(pieces) != 2:
            continue
        out.append((pieces[0].strip().lower(), [v.strip().lower() for v in pieces[1].split(",")]))
    return out


class EntraSource(CloudSource[EntraSettings]):
    """See the module docstring. ``transport``, ``policy`` and ``clock`` are for tests
    (``CloudSource``)."""

    name = "entra"

    signals = GRAPH
    ca_setting = env_name("entra", "ca_file")
    translate = staticmethod(describing(EntraError, graph_error))  # type: ignore[assignment]

    def __init__(self, settings: EntraSettings, sync: SyncSettings, **seams: Any) -> None:
        super().__init__(settings, sync, **seams)
        self._http: CloudHttp | None = None
        authority, graph = CLOUDS[settings.cloud]
        self.resource = graph
        self.authority = (settings.authority_url or authority).rstrip("/")
        self.graph = (settings.graph_url or graph).rstrip("/")
        self._app: Any = None

    @property
    def server(self) -> str:
        return self.graph

    # -- credentials --------------------------------------------------------------------------
    def _credential(self) -> str | dict[str, Any]:
        s = self.settings
        if s.client_secret is not None:
            return s.client_secret.get_secret_value()
        if s.certificate_file is not None:
            key, cert = certificate_and_key(
                s.certificate_file, env_name("entra", "certificate_file")
            )
            return {"private_key": key, "public_certificate": cert}
        federated = os.environ.get(FEDERATED_TOKEN_ENV)
        if federated:
            path = Path(federated)

            def assertion() -> str:
                # Re-read every time: the kubelet rotates the projected token.
                try:
                    token = path.read_text().strip()
                except OSError as exc:
                    raise EntraError(
                        "", f"cannot read {FEDERATED_TOKEN_ENV} {path}: {exc.strerror}"
                    ) from None
                remember_token("entra_assertion", token)  # the token endpoint's credential
                return token

            return {"client_assertion": assertion}
        raise ConfigError(self.settings.required())

    def _open(self) -> CloudHttp:
        if self._http is not None:
            return self._http
        import msal

        s = self.settings
        problems = s.required()  # the settings pass's own rule (config.py)
        if problems:
            raise ConfigError(problems)
        credential = self._credential()
        # Token requests go without the bound on requests in flight: one may be needed inside
        # a Graph request's auth flow, which holds a slot already.
        token_http = self._cloud_http("Microsoft identity platform", limited=False)
        custom = s.authority_url is not None
        try:
            self._app = msal.ConfidentialClientApplication(
                s.client_id,
                client_credential=credential,
                authority=f"{self.authority}/{s.tenant_id}",
                http_client=_MsalHttp(token_http),
                validate_authority=not custom,
                instance_discovery=False if custom else None,
                token_cache=msal.TokenCache(),
            )
        except ValueError as exc:  # msal: tenant discovery refused, unreadable key …
            raise EntraError(
                f"GET /{s.tenant_id}/v2.0/.well-known/openid-configuration",
                shorten(str(exc)),
            ) from None
        self._http = self._cloud_http(
            "Graph", base_url=self.graph, auth=FunctionTokenAuth(self.token, slot="graph")
        )
        return self._http

    def token(self, fresh: bool = False) -> str:
        """An access token for Graph (msal's cache reuses it until near expiry)."""
        if self._app is None:
            self._open()
        app = self._app
        name = f"POST /{self.settings.tenant_id}/oauth2/v2.0/token"
        if fresh:
            app.remove_tokens_for_client()
        try:
            result = app.acquire_token_for_client(scopes=[f"{self.resource}/.default"])
        except DirectoryApiError:
            raise
        except httpx.HTTPError as exc:
            raise EntraError(name, f"{type(exc).__name__}: {shorten(str(exc))}") from exc
        except ValueError as exc:  # msal: discovery document or key problems
            raise EntraError(name, shorten(str(exc))) from None
        except (TypeError, AttributeError, KeyError) as exc:
            # msal reads the discovery document and the token response without checking their
            # shape: a body that is not the JSON object it expects is the server's fault.
            raise EntraError(name, f"unexpected answer ({type(exc).__name__})") from None
        if not isinstance(result, dict) or "access_token" not in result:
            result = result if isinstance(result, dict) else {}
            error = str(result.get("error") or "no token")
            description = str(result.get("error_description") or "").splitlines()
            # The first line of error_description only (the AADSTS code and text, not the trace
            # ids); shortened, which masks first: a custom authority or an intercepting proxy
            # may echo the token request, client secret included.
            raise EntraError(
                name,
                f"{shorten(error, 80)}: "
                + (shorten(description[0]) if description else "token request refused"),
                code=error,
            )
        return str(result["access_token"])

    def close(self) -> None:
        super().close()
        self._app = None
        self._http = None

    # -- paging ---------------------------------------------------------------------------------
    def _pages(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Each page's body, following ``@odata.nextLink`` until it is absent. A next link off
        the Graph host is refused: the bearer token must never leave for another host."""
        http = self._open()
        url: str | None = path
        query = params
        seen: set[str] = set()
        while url:
            if url in seen:  # a server bug; following it would never end
                raise EntraError(f"GET {path}", "@odata.nextLink loops back to a page already read")
            seen.add(url)
            body = http.get_json(url, params=query, headers=headers)
            yield body
            nxt = body.get("@odata.nextLink")
            if nxt is not None and not (isinstance(nxt, str) and nxt.startswith(self.graph + "/")):
                raise EntraError(f"GET {path}", "@odata.nextLink points outside the Graph host")
            url, query = nxt, None

    def _items(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        for body in self._pages(path, params):
            value = body.get("value") or []
            if not isinstance(value, list):
                raise EntraError(f"GET {path}", "`value` is not a list")
            yield from (v for v in value if isinstance(v, dict) and isinstance(v.get("id"), str))

    # -- fetch -----------------------------------------------------------------------------------
    def fetch(self, request: FetchRequest) -> Directory:
        """Three independent reads at the same time — the users, the delta round for deleted
        users, the groups (and then every group's members, several at once) — assembled in
        the order a sequential read gives, so the directory is the same at any concurrency."""
        delta: dict[str, str] = {}
        with self.reading() as fan:
            self._open()
            none: Callable[[], None] = lambda: None  # noqa: E731 - a read that is switched off
            listed, deleted, grouped = fan.together(
                self._listed_users if self.sync.users else none,
                (lambda: self._deleted_users(request)) if self.sync.users else none,
                (lambda: self._groups(fan)) if self.sync.groups else none,
            )
            users: list[User] | None = None
            if listed is not None:
                flt, seen, users = listed
                entries, link = deleted
                if link:
                    delta[DELTA_KEY] = link
                for entry in entries:
                    if entry.external_id in seen or not flt.keeps(entry.email):
                        continue
                    seen.add(str(entry.external_id))
                    users.append(entry)
            groups: list[Group] | None = None
            if grouped is not None:
                groups, set_filter = grouped
                if users is not None and set_filter is not None:
                    users = scope_users_to_groups(
                        users, groups, remove_disabled=self.sync.remove_disabled
                    )
        return Directory(users=users, groups=groups, skipped=self.skipped, delta=delta)

    def _listed_users(self) -> tuple[Filter, set[str], list[User]]:
        """The users the filter selects (``/users``, or the transitive members of the
        ``includeGroup:``/``excludeGroup:`` groups), with the ids seen."""
        flt = parse_filter(self.sync.user_filter)
        keyword = flt.raw_keyword
        seen: set[str] = set()
        out: list[User] = []

        def add(entry: User, keep: Callable[[User], bool] = lambda u: True) -> None:
            assert isinstance(entry.external_id, str)
            if entry.external_id in seen:
                return
            reason = _skip_reason(entry)
            if reason is not None:
                self.skipped[reason] += 1
                return
            if keep(entry):
                seen.add(entry.external_id)
                out.append(entry)

        select = {"$select": USER_SELECT, "$top": PAGE}
        if keyword == "includegroup":
            exclude_ids: set[str] = set()
            exclude_emails: set[str] = set()
            for kw, values in _clauses(flt.query or ""):
                if kw == "excludegroup":
                    for gid in values:
                        exclude_ids.update(
                            u["id"]
                            for u in self._transitive_users(gid, {"$select": "id", "$top": PAGE})
                        )
                elif kw == "exclude":
                    exclude_emails.update(values)
            for gid in flt.raw_values:
                for item in self._transitive_users(gid, select):
                    add(
                        user_entry(item),
                        lambda u: (
                            u.external_id not in exclude_ids
                            and (u.email or "--") not in exclude_emails
                        ),
                    )
        elif keyword == "excludegroup":
            excluded: set[str] = set()
            for gid in flt.raw_values:
                excluded.update(
                    u["id"] for u in self._transitive_users(gid, {"$select": "id", "$top": PAGE})
                )
            for item in self._items("/v1.0/users", select):
                add(user_entry(item), lambda u: u.external_id not in excluded)
        else:
            for item in self._items("/v1.0/users", select):
                add(user_entry(item), lambda u: flt.keeps(u.email))
        return flt, seen, out

    def _transitive_users(
        self, group_id: str, params: Mapping[str, str]
    ) -> Iterator[dict[str, Any]]:
        yield from self._items(
            f"/v1.0/groups/{group_id}/transitiveMembers/microsoft.graph.user", params
        )

    def _deleted_users(self, request: FetchRequest) -> tuple[list[User], str | None]:
        """The soft-deleted users of a delta round from the stored link (or a full round), and
        the new link. A stored link Graph refuses (expired) starts a full round, never an
        error."""
        stored = None if request.force else request.delta.get(DELTA_KEY)
        if stored is not None and not stored.startswith(self.graph + "/"):
            stored = None  # written for another Graph host (cloud changed): start over
        try:
            return self._delta_round(stored)
        except EntraError as exc:
            if stored is None or exc.status is None or exc.status >= 500 or exc.status == 429:
                raise
            event("entra_delta_reset", reason=str(exc))
            return self._delta_round(None)

    def _delta_round(self, link: str | None) -> tuple[list[User], str | None]:
        """One delta round from ``link`` (or a full one): the soft-deleted users, and the new
        delta link."""
        deleted: list[User] = []
        final: str | None = None
        headers = {"Prefer": "odata.maxpagesize=999"}
        path = link or "/v1.0/users/delta"
        params = None if link else {"$select": USER_SELECT}
        for body in self._pages(path, params, headers):
            for item in body.get("value") or []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    entry = user_entry(item)
                    if entry.deleted:
                        deleted.append(entry)
            if isinstance(body.get("@odata.deltaLink"), str):
                final = body["@odata.deltaLink"]
        return deleted, final

    def _groups(self, fan: Fanout) -> tuple[list[Group], SetFilter | None]:
        flt = parse_filter(self.sync.group_filter)
        set_filter = flt.set
        if flt.raw_keyword in ("includeadministrativeunit", "excludeadministrativeunit"):
            names: set[str] = set()
            for unit in flt.raw_values:
                for item in self._items(
                    f"/v1.0/directory/administrativeUnits/{unit}/members",
                    {"$select": "id,displayName", "$top": PAGE},
                ):
                    if item.get("@odata.type") == "#microsoft.graph.group":
                        names.add(str(item.get("displayName") or "").lower())
            set_filter = SetFilter(
                "include" if flt.raw_keyword == "includeadministrativeunit" else "exclude",
                frozenset(names),
            )
        groups: list[Group] = []
        seen: set[str] = set()
        for item in self._items("/v1.0/groups", {"$select": "id,displayName", "$top": PAGE}):
            gid = item["id"]
            if gid in seen:
                continue
            seen.add(gid)
            name = item.get("displayName")
            if set_filter is not None and not set_filter.keeps(name):
                continue
            groups.append(Group(reference_id=gid, external_id=gid, name=name))
        for group, members in zip(groups, fan.map(self._members, groups), strict=True):
            for kind, member_id in members:
                if kind == "#microsoft.graph.user":
                    group.add_user(member_id)
                elif kind == "#microsoft.graph.group":
                    group.add_group(member_id)
        return groups, set_filter

    def _members(self, group: Group) -> list[tuple[str, str]]:
        """One group's direct members as (``@odata.type``, id), in Graph's order."""
        return [
            (str(member.get("@odata.type")), member["id"])
            for member in self._items(
                f"/v1.0/groups/{group.reference_id}/members", {"$select": "id", "$top": PAGE}
            )
        ]

    # -- check -----------------------------------------------------------------------------------
    def check(self) -> list[CheckResult]:
        results: list[CheckResult] = []
        try:
            token = self.token()
        except (EntraError, ConfigError) as exc:
            self.close()
            return [CheckResult("token", False, str(exc))]
        results.append(
            CheckResult(
                "token", True, f"app {self.settings.client_id} signed in at {self.authority}"
            )
        )
        roles = set(jwt_claims(token).get("roles") or [])
        needed: list[tuple[str, set[str], bool]] = [
            ("User.Read.All", USER_ROLES, self.sync.users),
            ("Group.Read.All", GROUP_ROLES, self.sync.groups or self._group_user_filter()),
            ("AdministrativeUnit.Read.All", AU_ROLES, self._uses_units()),
        ]
        missing = [name for name, accepted, wanted in needed if wanted and not roles & accepted]
        if missing:
            results.append(
                CheckResult(
                    "permissions",
                    False,
                    "missing Graph application permission(s): "
                    + ", ".join(missing)
                    + " (grant them and give admin consent)",
                )
            )
        else:
            results.append(
                CheckResult("permissions", True, "granted: " + (", ".join(sorted(roles)) or "none"))
            )
        probes = []
        if self.sync.users:
            probes.append(("read users", "/v1.0/users", {"$select": "id", "$top": "1"}))
        if self.sync.groups:
            probes.append(("read groups", "/v1.0/groups", {"$select": "id", "$top": "1"}))
        for label, path, params in probes:
            try:
                self._open().get_json(path, params=params)
                results.append(CheckResult(label, True, f"GET {self.graph}{path}"))
            except EntraError as exc:
                results.append(CheckResult(label, False, str(exc)))
        self.close()
        return results

    def _uses_units(self) -> bool:
        kw = parse_filter(self.sync.group_filter).raw_keyword
        return self.sync.groups and kw in ("includeadministrativeunit", "excludeadministrativeunit")

    def _group_user_filter(self) -> bool:
        kw = parse_filter(self.sync.user_filter).raw_keyword
        return self.sync.users and kw in ("includegroup", "excludegroup")
