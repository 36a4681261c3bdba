"""Settings: every knob of a run, validated before anything is contacted.

Where settings come from, highest precedence first (``settings_customise_sources``):

1. keyword arguments (tests, ``bwsync demo``);
2. environment variables ``BWSYNC_…``, nested with ``__`` (``BWSYNC_LDAP__URL``);
3. files in the secrets directory (``BWSYNC_SECRETS_DIR``, default ``/run/secrets/bwsync``),
   one file per setting named as the variable in lower case (``bwsync_ldap__bind_password``):
   that is how the Helm chart mounts a Kubernetes Secret. Any setting may come from a file;
   secrets usually do. A trailing newline in such a file is dropped;
4. the defaults below.

Unknown ``BWSYNC_`` variables are errors, so a typo never silently falls back to a default.
Each field's docstring is its reference text (unit, and why the default is what it is); the
README's settings table and the chart's schema are generated from them (``bwsync.reference``).
They are not loaded as pydantic field descriptions: ``use_attribute_docstrings`` reads and parses
this module's source at every start (30 ms of each run) for text only the generators need.

Values are read as an admin writes them, by type, in every section (``Section``): a choice
(a ``Literal``) in any letter case, a boolean as `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`,
spaces around either ignored; a duration (``Duration``, the one type for every wait and
interval) as seconds (`900`) or with a unit (`90s`, `15m`, `1h`, `1d`, `1h30m`). A new setting
gets this by its type alone: declare a choice as a ``Literal``, a wait as ``Duration``.

This module holds the schemas: types, defaults, the rules about values (what each source
section requires, mutually exclusive options, URL shapes). Reading them from the environment,
the messages, and what a run needs beyond the values (the API key for the commands that use
it, files that must exist and parse, optional modules) are ``bwsync.settings``'s: its
``load_settings`` is the one validation pass every command runs first, so ``check --offline``
refuses exactly what ``sync`` would, before any contact.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import SplitResult, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

ENV_PREFIX = "BWSYNC_"
DEFAULT_SECRETS_DIR = "/run/secrets/bwsync"

SourceName = Literal["ldap", "file", "entra", "google", "okta", "onelogin"]


@functools.cache
def env_name(*path: str | int) -> str:
    """The environment variable of a setting, from its place in ``Settings``:
    ``env_name("sync", "max_removals")`` is ``BWSYNC_SYNC__MAX_REMOVALS``. Every message that
    names a setting takes the name from here, so a renamed field cannot leave a message naming
    a variable that no longer exists: a path that is no setting raises ``KeyError`` (its
    tests catch it). Integers (list indexes in a pydantic error location) are left out."""
    parts = [p for p in path if isinstance(p, str)]
    model: type[BaseModel] | None = Settings
    for part in parts:
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            raise KeyError(f"no setting {'.'.join(parts)!r}")
        nested = field.annotation
        model = nested if isinstance(nested, type) and issubclass(nested, BaseModel) else None
    return ENV_PREFIX + "__".join(p.upper() for p in parts)


def is_loopback(host: str | None) -> bool:
    """A host whose traffic never leaves this machine (or pod): 127.0.0.0/8, ::1, localhost.
    Plain http to it crosses no network (a TLS-terminating sidecar, the demo's stand-in) —
    bwsync's HTTP clients never send it through a proxy (``bwsync.http.client``,
    ``bwsync.state.objectstore``). Only the exact name ``localhost`` and IP literals count: a
    name under ``.localhost`` is looked up like any other, and in a pod the DNS search domains
    can resolve it to a Service elsewhere."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_only(v: str | None) -> str | None:
    """An https:// URL, normalized without a trailing slash; plain http is refused because
    these URLs carry a bearer token or a client secret (``bwsync.cleartext``)."""
    if v is None:
        return v
    v = v.strip().rstrip("/")
    parts = urlsplit(v)
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ValueError(
            "must be an https:// URL: it receives a bearer token or a client secret, "
            "which must not cross the network in clear"
        )
    return v


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HELP = "a duration such as 900 (seconds), 90s, 15m, 1h or 1h30m"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number of seconds (`900`, `2.5`) or amounts with units `s`, `m`,
    `h`, `d`, in any case, written together (`90s`, `15m`, `1h30m`). ``ValueError`` otherwise.
    Shared by the settings and the command line (``sync --every``)."""
    compact = "".join(text.split()).lower()
    if _SECONDS.fullmatch(compact):  # not float(): no "inf", "nan", "1e3" or "-5"
        return float(compact)
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"must be {DURATION_HELP}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _duration_input(value: Any) -> Any:
    return parse_duration(value) if isinstance(value, str) else value


#: ``parse_duration``'s language as a JSON-schema pattern (the chart's values schema).
DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*|(\d+(\.\d+)?\s*[smhdSMHD]\s*)+)$"


class _DurationJsonSchema:
    """A duration in JSON schema: the number of seconds with its bounds, or a string with a
    unit (the chart's values schema accepts what the environment accepts)."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"anyOf": [handler(schema), {"type": "string", "pattern": DURATION_PATTERN}]}


Duration = Annotated[float, BeforeValidator(_duration_input), _DurationJsonSchema]
"""Seconds, written as `900`, `90s`, `15m`, `1h` … (``parse_duration``). Every setting that is
a wait, a timeout or an interval has this type; bounds go in its ``Field``."""


def _port_of(parts: SplitResult) -> int | None:
    """The URL's port; ``ValueError`` naming the problem when it is not a port (`:99999`)."""
    try:
        return parts.port
    except ValueError:
        raise ValueError("has an invalid port") from None


def _spelling(annotation: Any) -> str | None:
    """How an admin may spell a value of this type: ``"choice"`` (a ``Literal`` of strings: any
    case), ``"bool"``, ``"optional path"`` (empty means unset), or ``None`` (as given).
    ``X | None`` is read as ``X``."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = get_args(annotation)
        if set(args) == {Path, type(None)}:
            return "optional path"
        kinds = {_spelling(a) for a in args if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if get_origin(annotation) is Literal and all(isinstance(a, str) for a in get_args(annotation)):
        return "choice"
    if annotation is bool:
        return "bool"
    return None


@functools.cache
def _spellings(model: type[BaseModel]) -> dict[str, str]:
    found = {name: _spelling(f.annotation) for name, f in model.model_fields.items()}
    return {name: kind for name, kind in found.items() if kind is not None}


def as_written(model: type[BaseModel], data: Any) -> Any:
    """``data`` with choices lower-cased, booleans trimmed and empty optional paths unset,
    before pydantic reads them: `BWSYNC_LOG__LEVEL=DEBUG`, `BWSYNC_SOURCE=LDAP`,
    `BWSYNC_SYNC__USERS= True` and `BWSYNC_LDAP__CA_FILE=` (an env file's way to leave a file
    out) mean what the admin meant. Decided by each field's type, so a new setting follows
    without a rule of its own."""
    if not isinstance(data, dict):
        return data
    spellings = _spellings(model)
    out = dict(data)
    for name, value in data.items():
        kind = spellings.get(name)
        if kind is None or not isinstance(value, str):
            continue
        if kind == "choice":
            out[name] = value.strip().lower()
        elif kind == "bool":
            out[name] = value.strip()
        elif not value.strip():  # an optional path left empty
            out[name] = None
    return out


class Section(BaseModel):
    """Base of every nested settings group: unknown keys are errors, docstrings are docs
    (``bwsync.reference.field_docs``), values are read as written (``as_written``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, data: Any) -> Any:
        return as_written(cls, data)


class SourceSection(Section):
    """A directory source's settings group: it knows which of its settings the source cannot
    run without (``required``), checked only when ``BWSYNC_SOURCE`` names it."""

    #: the ``BWSYNC_SOURCE`` value and the section's name in ``Settings``
    source_name: typing.ClassVar[str]

    def required(self) -> list[str]:
        """One line per missing setting (``BWSYNC_…: required for the … source``); empty when
        the source has what it needs to start."""
        return []

    def _unset(self, *names: str) -> list[str]:
        return [
            f"{self._env(n)}: required for the {self.source_name} source"
            for n in names
            if getattr(self, n) is None
        ]

    def _env(self, name: str) -> str:
        return env_name(self.source_name, name)


class BitwardenSettings(Section):
    """Where the organization lives and how bwsync signs in to it."""

    server: str = "us"
    """`us`, `eu`, or the base URL of a self-hosted server or Vaultwarden (`/api` and `/identity`
    are derived from it, as bwdc does)."""
    api_url: str | None = None
    """Explicit API URL; overrides the one derived from `server`."""
    identity_url: str | None = None
    """Explicit identity (token) URL; overrides the one derived from `server`."""
    client_id: str | None = None
    """Organization API key client id, `organization.<uuid>` (Admin Console → Settings →
    Organization info → API key)."""
    client_secret: SecretStr | None = None
    """Organization API key client secret."""
    ca_file: Path | None = None
    """PEM bundle trusted for the Bitwarden server instead of the system store."""
    timeout: Duration = Field(default=60.0, gt=0)
    """How long to wait for one HTTP response (`60`, `2m`); an import of thousands of members
    takes a while."""
    max_retries: int = Field(default=5, ge=0, le=20)
    """Retries after a 429, a 5xx, a timeout or a connection error; a full import is idempotent."""
    login_rate_limit_wait: Duration = Field(default=120.0, ge=0, le=3600)
    """How long (`120`, `2m`) a token request answered HTTP 429 without `Retry-After` is retried
    for, with backoff, before the run fails: Vaultwarden's login rate limit allows 10 logins at
    once, then one a minute per client address (`LOGIN_RATELIMIT_MAX_BURST`,
    `LOGIN_RATELIMIT_SECONDS`). 120 seconds outlasts one refill."""
    device_identifier: str = "5f0bd4a6-7a4e-4f2b-9d2e-6b77c3b0b5a1"
    """Sent with the token request (Vaultwarden requires it); a fixed value keeps the server's
    device list from growing by one entry per run."""
    allow_http: bool = False
    """Accept an `http://` `server`, `api_url` or `identity_url` on another host. Off, such a
    URL is refused: the client secret, the bearer token and every member's email would cross
    the network in clear. On, every run logs a warning; use it only where the path is encrypted
    otherwise (a service mesh with mTLS). Loopback addresses (a sidecar) never need it."""

    @field_validator("client_id")
    @classmethod
    def _org_client_id(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        prefix, _, rest = v.partition(".")
        if prefix != "organization" or not rest:
            raise ValueError("must look like organization.<uuid> (an organization API key)")
        return v

    @field_validator("server", "api_url", "identity_url")
    @classmethod
    def _url_shape(cls, v: str | None) -> str | None:
        if v is None or v in ("us", "eu"):
            return v
        v = v.strip().rstrip("/")
        if "://" not in v:
            v = "https://" + v
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be `us`, `eu` or an http(s) URL")
        _port_of(parts)
        return v

    @model_validator(mode="after")
    def _http_needs_consent(self) -> BitwardenSettings:
        if self.allow_http:
            return self
        for name in ("server", "api_url", "identity_url"):
            value = getattr(self, name)
            parts = urlsplit(value or "")
            if parts.scheme == "http" and not is_loopback(parts.hostname):
                raise ValueError(
                    f"{env_name('bitwarden', name)}: http:// would send the client "
                    "secret and the bearer token in clear; use https://, or set "
                    f"{env_name('bitwarden', 'allow_http')}=true where the path is encrypted "
                    "otherwise"
                )
        return self

    @property
    def organization_id(self) -> str | None:
        """The organization's id, the part of the client id after `organization.`."""
        return self.client_id.partition(".")[2] if self.client_id else None

    @property
    def has_api_key(self) -> bool:
        """Both halves of the organization API key are set: Bitwarden can be asked anything."""
        return bool(self.client_id and self.client_secret)

    def api_key_problems(self, secrets_dir: Path | None = None) -> list[str]:
        """One line per missing half of the organization API key, worded once for every
        command and the client alike; ``secrets_dir`` (where the secret's file would be) is
        named when known."""
        problems = []
        if not self.client_id:
            problems.append(
                f"{env_name('bitwarden', 'client_id')}: required (the organization API key: "
                "Admin Console → Settings → Organization info → API key)"
            )
        if self.client_secret is None:
            where = ""
            if secrets_dir is not None:
                file = secrets_dir / env_name("bitwarden", "client_secret").lower()
                also = (
                    ""
                    if secrets_dir.is_dir()
                    else f"; the secrets directory {secrets_dir} does not exist"
                )
                where = f": set it, or write it to the file {file}{also}"
            problems.append(f"{env_name('bitwarden', 'client_secret')}: required{where}")
        return problems

    @property
    def resolved_api_url(self) -> str:
        """API base URL, by bwdc's derivation rule (reference §5.1)."""
        if self.api_url:
            return self.api_url
        if self.server == "us":
            return "https://api.bitwarden.com"
        if self.server == "eu":
            return "https://api.bitwarden.eu"
        return self.server + "/api"

    @property
    def resolved_identity_url(self) -> str:
        """Identity base URL; the token endpoint is `<this>/connect/token`."""
        if self.identity_url:
            return self.identity_url
        if self.server == "us":
            return "https://identity.bitwarden.com"
        if self.server == "eu":
            return "https://identity.bitwarden.eu"
        return self.server + "/identity"


class SyncSettings(Section):
    """What to sync and how; names and meaning as in bwdc's sync options."""

    users: bool = True
    """Sync users. (bwdc: "Sync users")"""
    groups: bool = True
    """Sync groups and their memberships. (bwdc: "Sync groups")"""
    remove_disabled: bool = False
    """Send disabled directory users as deleted, so Bitwarden removes them. (bwdc: "Remove
    disabled users during sync")"""
    overwrite_existing: bool = False
    """Ask the server to remove every synced member absent from this import. Dangerous; bwdc
    calls it "for debugging purposes". Incompatible with batched large imports."""
    large_import: bool = False
    """Allow more than 2,000 users plus groups, sent in batches of 2,000 as bwdc does."""
    invite_users: bool = True
    """Sent as `inviteUsersAfterProvisioning`: new members get an invitation email. False makes
    them Staged on servers that support it. True is the server's own default."""
    remove_missing: bool = False
    """Members bwsync synced before (they carry an externalId) that are gone from the directory
    are revoked or removed (`removal_mode`). Off by default, as bwdc cannot do it at all."""
    removal_mode: Literal["revoke", "remove"] = "revoke"
    """`revoke` keeps the member's data and is undone by restoring when they come back;
    `remove` deletes the membership (import `deleted: true`, as bwdc does)."""
    stale_groups: Literal["empty", "delete"] = "empty"
    """With `remove_missing`: what happens to a group bwsync synced before (it carries an
    externalId) that the directory no longer has. `empty` takes its members out and keeps the
    group and its collection grants for review; `delete` deletes it, grants included. Groups
    made by hand are never touched."""
    max_removals: int = Field(default=25, ge=0)
    """A plan that takes access from more members than this (removed, revoked, or members of
    a group that left the directory; each member once) applies nothing and exits 6."""
    max_removal_percent: float = Field(default=10.0, ge=0, le=100)
    """…or more than this percentage of the synced members (those with an externalId), once
    it takes access from more than `max_removal_percent_above` members."""
    max_removal_percent_above: int = Field(default=5, ge=0)
    """Plans taking access from this many members or fewer are not stopped by the percentage,
    unless that is more than half of the synced members: in a 30-member organization, 3
    leavers are 10 % and routine, while a filter mistake takes far more. `max_removals` still
    applies; 0 applies the percentage to every plan."""
    max_emptied_groups: int = Field(default=5, ge=0)
    """A plan that empties or deletes more synced groups than this (groups that left the
    directory, deleted ones with nobody in them included, and groups the import empties)
    applies nothing and exits 6. Counted by group, whatever its size: a group of three may
    grant 500 collections. `--allow-emptied-groups N` lifts it for one run."""
    protected_members: str | None = None
    """Comma-separated emails that bwsync never sends as deleted and never removes or revokes,
    on every server (break-glass and admin accounts). On a server that cannot list members
    (Vaultwarden) bwsync cannot see who is an owner or admin: there this list is their only
    protection. A run in which the server itself would remove one (`overwrite_existing`)
    applies nothing and exits 6."""
    full_reconcile_every: Duration = Field(default=0.0, ge=0)
    """A duration (`86400`, `24h`, `7d`): apply even when the hash is unchanged once this long
    has passed since the last full apply, to repair changes made by hand in Bitwarden. 0 =
    only when it changed."""
    max_concurrent_requests: int = Field(default=8, ge=1, le=64)
    """Requests a cloud source (Entra, Google, Okta, OneLogin) keeps in flight at once: its
    independent reads (users, groups, each group's members) overlap instead of waiting for
    each other. Halved while the service signals pressure (a 429, a rate budget running low);
    never above a documented limit of the service (Okta: 15). 1 = one request at a time. The
    directory read is the same at any value."""
    user_filter: str | None = None
    """Source-specific user filter: a raw LDAP filter such as `(department=IT)` for LDAP."""
    group_filter: str | None = None
    """Source-specific group filter: a raw LDAP filter for LDAP."""

    @field_validator("protected_members")
    @classmethod
    def _emails(cls, v: str | None) -> str | None:
        if v is None:
            return v
        items = [e.strip().lower() for e in v.split(",") if e.strip()]
        bad = [e for e in items if "@" not in e]
        if bad:
            raise ValueError(f"not an email: {', '.join(bad)} (a comma-separated list of emails)")
        return ",".join(items)

    @property
    def protected(self) -> frozenset[str]:
        """``protected_members`` as a set of lower-case emails."""
        if not self.protected_members:
            return frozenset()
        return frozenset(self.protected_members.split(","))


class LdapSettings(SourceSection):
    """Any LDAP server, or Active Directory (auto-detected from the root DSE)."""

    source_name = "ldap"

    url: str | None = None
    """`ldap://host:port` or `ldaps://host:port`."""
    start_tls: bool = False
    """Upgrade an `ldap://` connection with StartTLS before binding."""
    ca_file: Path | None = None
    """PEM file of the CA that signed the server certificate (LDAPS and StartTLS)."""
    tls_verify: bool = True
    """Verify the server certificate and host name. Turn off only to diagnose."""
    bind_dn: str | None = None
    """Who bwsync binds as: a DN, or for AD also `DOMAIN\\user` or a UPN. Empty = anonymous."""
    bind_password: SecretStr | None = None
    """Password of `bind_dn`."""
    base_dn: str | None = None
    """Search root, e.g. `dc=example,dc=com`; user and group paths are relative to it."""
    user_path: str | None = None
    """Users are searched under `<user_path>,<base_dn>`. Unset: the whole base (AD: `CN=Users`);
    set but empty: the whole base, on AD too."""
    group_path: str | None = None
    """Groups are searched under `<group_path>,<base_dn>`. Unset: the whole base (AD:
    `CN=Users`); set but empty: the whole base, on AD too."""
    user_object_class: str | None = None
    """Default `person` (inetOrgPerson entries are persons too)."""
    group_object_class: str | None = None
    """Default `groupOfNames` (AD: `group`). Use `posixGroup` with `member_attribute=memberUid`."""
    user_filter: str | None = None
    """Extra LDAP filter ANDed to the user search, with its parentheses. Overrides
    `BWSYNC_SYNC__USER_FILTER`."""
    group_filter: str | None = None
    """Extra LDAP filter ANDed to the group search. Overrides `BWSYNC_SYNC__GROUP_FILTER`."""
    email_attribute: str | None = None
    """Attribute holding the user's email. Default `mail`."""
    group_name_attribute: str | None = None
    """Attribute holding the group's name; `cn` is the fallback. Default `cn` (AD: `name`)."""
    group_id_attribute: str | None = None
    """Attribute whose value becomes a group's externalId instead of its DN, e.g. `entryUUID`,
    so that a renamed or moved group stays the same Bitwarden group. Every group must have it
    as text, or the run stops (exit 3). Default unset: the DN (AD: `objectGUID`), as bwdc,
    which keeps its import bodies and hash; see the LDAP guide."""
    member_attribute: str | None = None
    """Attribute listing a group's members, as DNs or uids. Default `member`."""
    email_prefix_attribute: str | None = None
    """With `email_suffix`: users without an email get `<this attribute><suffix>`. Default
    unset (AD: `sAMAccountName`)."""
    email_suffix: str | None = None
    """Suffix, with its `@`, appended to `email_prefix_attribute` (e.g. `@example.com`)."""
    active_directory: Literal["auto", "true", "false"] = "auto"
    """`auto` asks the root DSE; `true`/`false` skip the question."""
    page_size: int = Field(default=1000, ge=1, le=100_000)
    """Entries per page of the paged-results control. 1000 is AD's MaxPageSize."""
    timeout: Duration = Field(default=300.0, gt=0)
    """The server time limit per search (bwdc's 300 seconds, `5m`) and the network timeout."""
    engine: Literal["auto", "python-ldap", "ldap3"] = "auto"
    """Wire library. `auto` = python-ldap (C libldap, 3–4× faster) when installed, else ldap3."""

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        parts = urlsplit(v)
        if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError("must be ldap://host:port or ldaps://host:port")
        _port_of(parts)  # its own words would quote the text after the last ':' (a password)
        return v

    @model_validator(mode="after")
    def _tls_combination(self) -> LdapSettings:
        if self.url and self.start_tls and self.url.lower().startswith("ldaps://"):
            raise ValueError(
                f"{env_name('ldap', 'start_tls')} cannot be combined with an ldaps:// "
                f"{env_name('ldap', 'url')}"
            )
        if self.bind_dn and self.bind_password is None:
            raise ValueError(
                f"{env_name('ldap', 'bind_password')} is required when "
                f"{env_name('ldap', 'bind_dn')} is set"
            )
        return self

    def required(self) -> list[str]:
        problems = self._unset("url", "base_dn")
        if self.bind_password is not None and not self.bind_dn:
            problems.append(
                f"{self._env('bind_dn')}: required when {self._env('bind_password')} is set "
                "(without it the bind is anonymous and the password unused)"
            )
        return problems


class HttpSourceSection(SourceSection):
    """Settings every HTTP-based directory source shares."""

    ca_file: Path | None = None
    """PEM bundle trusted for every call of this source, token requests included."""
    timeout: Duration = Field(default=60.0, gt=0)
    """How long one HTTP request may take (`60`, `2m`)."""


class EntraSettings(HttpSourceSection):
    """Microsoft Entra ID (Azure AD) through Microsoft Graph."""

    source_name = "entra"

    tenant_id: str | None = None
    """Directory (tenant) id of the organization."""
    client_id: str | None = None
    """Application (client) id of the app registration."""
    client_secret: SecretStr | None = None
    """A client secret of the app registration (or use `certificate_file`, or workload
    identity)."""
    certificate_file: Path | None = None
    """PEM file holding the app's certificate and private key (a secret)."""
    cloud: Literal["global", "usgov", "china"] = "global"
    """National cloud: the token authority, the Graph scope and the Graph host all follow it."""
    authority_url: str | None = None
    """Token authority override (default per `cloud`, e.g. https://login.microsoftonline.com);
    https only: it receives the client secret."""
    graph_url: str | None = None
    """Graph host override (default per `cloud`, e.g. https://graph.microsoft.com); https only:
    it receives the bearer token."""

    _entra_https = field_validator("authority_url", "graph_url")(_https_only)

    def required(self) -> list[str]:
        problems = self._unset("tenant_id", "client_id")
        if self.client_secret is not None and self.certificate_file is not None:
            problems.append(
                f"{self._env('certificate_file')}: {self._env('client_secret')} is set too; "
                "keep one credential"
            )
        # AKS workload identity projects the federated token and names it in this variable.
        if (
            self.client_secret is None
            and self.certificate_file is None
            and not os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
        ):
            problems.append(
                f"{self._env('client_secret')}: required for the entra source, or "
                f"{self._env('certificate_file')}, or workload identity "
                "(AZURE_FEDERATED_TOKEN_FILE)"
            )
        return problems


class GoogleSettings(HttpSourceSection):
    """Google Workspace through the Admin SDK Directory API."""

    source_name = "google"

    credentials_file: Path | None = None
    """Service-account JSON key with domain-wide delegation (a secret)."""
    admin_email: str | None = None
    """The Workspace admin the service account impersonates (the JWT's `sub`)."""
    customer: str | None = "my_customer"
    """Customer id; `my_customer` is the admin's own account."""
    domain: str | None = None
    """Limit to one domain; empty = every domain of the customer."""
    api_url: str = "https://admin.googleapis.com"
    """Admin SDK host (proxies, tests); https only: it receives the bearer token."""

    _google_https = field_validator("api_url")(_https_only)

    def required(self) -> list[str]:
        return self._unset("credentials_file", "admin_email")


class OktaSettings(HttpSourceSection):
    """Okta through its Management API."""

    source_name = "okta"

    org_url: str | None = None
    """`https://<org>.okta.com` (normalized: no trailing slash, https only)."""
    token: SecretStr | None = None
    """API token (`SSWS`); or use `client_id` + `private_key_file` (OAuth 2.0, recommended)."""

    @field_validator("token")
    @classmethod
    def _token_is_header_safe(cls, v: SecretStr | None) -> SecretStr | None:
        # It goes into an HTTP header, where only printable ASCII can travel; Okta's tokens
        # are. Anything else is a paste gone wrong (a quote, a non-breaking space).
        if v is not None and not all(33 <= ord(c) < 127 for c in v.get_secret_value()):
            raise ValueError("must be printable ASCII without spaces, as Okta's API tokens are")
        return v

    client_id: str | None = None
    """OAuth 2.0 service app client id (private_key_jwt)."""
    private_key_file: Path | None = None
    """PEM private key of the service app (a secret)."""
    key_id: str | None = None
    """`kid` of the service app's public key, sent in the assertion's header; needed only when
    the app has more than one key registered."""

    @field_validator("org_url")
    @classmethod
    def _okta_org_url(cls, v: str | None) -> str | None:
        # bwdc concatenates the URL as typed (a trailing `/` gives `//`); we normalize, and
        # refuse plain http: the API token or bearer token would cross the network in clear.
        if v is None:
            return v
        v = v.strip().rstrip("/")
        if "://" not in v:
            v = "https://" + v
        parts = urlsplit(v)
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL such as https://example.okta.com")
        if parts.query or parts.fragment:
            raise ValueError("must be the org URL only, without a query or fragment")
        if "-admin." in parts.hostname:
            raise ValueError(
                "is the Admin Console URL; use the org URL without `-admin` "
                "(https://example.okta.com)"
            )
        return v

    @model_validator(mode="after")
    def _okta_one_credential(self) -> OktaSettings:
        oauth = self.client_id is not None or self.private_key_file is not None
        if self.token is not None and oauth:
            raise ValueError(
                f"{env_name('okta', 'token')} and {env_name('okta', 'client_id')}/"
                "__PRIVATE_KEY_FILE are two different credentials: set one of them"
            )
        if oauth and (self.client_id is None or self.private_key_file is None):
            raise ValueError(
                f"{env_name('okta', 'client_id')} and {env_name('okta', 'private_key_file')} go "
                "together (OAuth 2.0 service app with private_key_jwt)"
            )
        return self

    def required(self) -> list[str]:
        problems = self._unset("org_url")
        if self.token is None and self.client_id is None:
            problems.append(
                f"{self._env('token')}: required for the okta source, or "
                f"{self._env('client_id')} with {self._env('private_key_file')} (OAuth 2.0)"
            )
        return problems


class OneLoginSettings(HttpSourceSection):
    """OneLogin through its API (v1 users and roles)."""

    source_name = "onelogin"

    client_id: str | None = None
    """API credential client id."""
    client_secret: SecretStr | None = None
    """API credential client secret."""
    region: Literal["us", "eu"] = "us"
    """`us` or `eu`: the API host `api.<region>.onelogin.com`."""
    subdomain: str | None = None
    """Your `<subdomain>.onelogin.com`; when set, the API host is `<subdomain>.onelogin.com`."""
    api_url: str | None = None
    """API base URL override (proxies, tests); wins over `region` and `subdomain`."""
    use_email_prefix_suffix: bool = False
    """Users whose email and username are not emails get `<username><email_suffix>`."""
    email_suffix: str | None = None
    """Suffix, with its `@`, appended to usernames that are not emails."""

    @field_validator("subdomain")
    @classmethod
    def _onelogin_subdomain(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().lower().removesuffix(".onelogin.com")
        if not v or not all(c.isalnum() or c == "-" for c in v):
            raise ValueError("must be the `<subdomain>` of <subdomain>.onelogin.com")
        return v

    @field_validator("api_url")
    @classmethod
    def _onelogin_api_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().rstrip("/")
        parts = urlsplit(v)
        if parts.scheme.lower() != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL")
        return v

    @model_validator(mode="after")
    def _onelogin_suffix(self) -> OneLoginSettings:
        if self.use_email_prefix_suffix and not self.email_suffix:
            raise ValueError(
                f"{env_name('onelogin', 'use_email_prefix_suffix')} needs "
                f"{env_name('onelogin', 'email_suffix')} (for example @example.com)"
            )
        return self

    def required(self) -> list[str]:
        return self._unset("client_id", "client_secret")


class FileSettings(SourceSection):
    """A JSON or CSV export of users and groups (the demo's source; HR exports)."""

    source_name = "file"

    path: Path | None = None
    """The file; `.json` or `.csv` (format in the README). Default: the built-in demo directory."""


#: Object-storage URL schemes → the platform's name in messages.
STATE_URL_SCHEMES = {"s3": "S3", "s3a": "S3", "gs": "GCS", "az": "Azure", "azure": "Azure"}
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


def split_state_url(url: str) -> tuple[str, str, str]:
    """``(scheme, bucket, key)`` of an object-storage state URL; ``ValueError`` saying what is
    wrong with it otherwise."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in STATE_URL_SCHEMES:
        got = parts.scheme or "no"
        raise ValueError(f"must start with s3://, gs:// or az:// (got {got} scheme)")
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key or key.endswith("/"):
        raise ValueError(
            f"must name a bucket and an object key, like {scheme}://bucket/bwsync/state.json"
        )
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return scheme, bucket, key


class StateSettings(Section):
    """Where bwsync remembers the last run between runs."""

    backend: Literal["file", "none", "configmap", "objectstore"] = "file"
    """`file` (a path on a volume), `configmap` (Kubernetes), `objectstore` (S3, GCS, Azure), or
    `none` (every run sends the full import)."""
    path: Path = Path("/var/lib/bwsync/state.json")
    """State file for the `file` backend; its directory must be writable."""
    configmap: str = "bwsync-state"
    """ConfigMap name for the `configmap` backend."""
    namespace: str | None = None
    """Namespace of the ConfigMap. Default: the pod's own namespace."""
    url: str | None = None
    """`s3://bucket/key`, `gs://bucket/key` or `az://container/key` for the `objectstore`
    backend."""
    endpoint: str | None = None
    """S3-compatible endpoint (MinIO, Ceph …) for the `objectstore` backend."""
    lease_seconds: Duration = Field(default=900.0, ge=30)
    """How long a run's lease lasts (`900`, `15m`) before another run may take it over. Must
    exceed the longest run. A run stopped by SIGTERM gives its lease back; one killed outright
    keeps it until then, unless the next run is on the same host and sees its process gone."""
    service_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    """Where the pod's service-account `token`, `ca.crt` and `namespace` files are (`configmap`
    backend, in a cluster). The default is where Kubernetes mounts them; change it only for a
    token projected elsewhere."""
    timeout: Duration = Field(default=30.0, gt=0)
    """How long to wait for one response from the Kubernetes API or the object store; the state
    document is a few KiB, so anything slower is an outage."""

    @field_validator("configmap")
    @classmethod
    def _configmap_name(cls, v: str) -> str:
        v = v.strip()
        if not _DNS_SUBDOMAIN.fullmatch(v):
            raise ValueError(
                "must be a Kubernetes object name: lower-case letters, digits, '-' and '.'"
            )
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace_name(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip()
        if not _DNS_LABEL.fullmatch(v):
            raise ValueError(
                "must be a Kubernetes namespace: at most 63 lower-case letters, digits and '-'"
            )
        return v

    @field_validator("url")
    @classmethod
    def _state_url(cls, v: str | None) -> str | None:
        if v is not None:
            split_state_url(v)
        return v

    @field_validator("endpoint")
    @classmethod
    def _state_endpoint(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        _port_of(parts)
        return v

    @model_validator(mode="after")
    def _objectstore_settings(self) -> StateSettings:
        if self.backend != "objectstore":
            return self
        problems = []
        if not self.url:
            problems.append(
                f"{env_name('state', 'url')}: required when "
                f"{env_name('state', 'backend')}=objectstore"
            )
        if self.endpoint and self.url and split_state_url(self.url)[0] == "gs":
            problems.append(f"{env_name('state', 'endpoint')}: not supported for gs:// URLs")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class LogSettings(Section):
    """Log output."""

    format: Literal["json", "console"] | None = None
    """`json` (one object per line) or `console`. Default: console on a terminal, JSON otherwise."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written to stderr, in any case (`DEBUG`; `warn` is `warning`)."""

    @field_validator("level", mode="before")
    @classmethod
    def _warn(cls, v: Any) -> Any:
        return "warning" if v == "warn" else v


class MetricsSettings(Section):
    """Prometheus metrics delivery."""

    pushgateway_url: str | None = None
    """Push to this Pushgateway after each run (grouping key: job and profile)."""
    pushgateway_username: str | None = None
    """Basic-auth user for the Pushgateway."""
    pushgateway_password: SecretStr | None = None
    """Basic-auth password for the Pushgateway."""
    pushgateway_ca_file: Path | None = None
    """CA bundle for an https Pushgateway."""
    textfile_path: Path | None = None
    """Write metrics here (node_exporter textfile collector format), atomically."""
    listen: str = "127.0.0.1:9464"
    """`host:port` serving `/metrics` and `/healthz` in `sync --every` loop mode. Loopback by
    default, so nothing is exposed unless asked: set `0.0.0.0:9464` (or `[::]:9464`, or the
    address Prometheus reaches, e.g. in a container with a published port) to be scraped from
    elsewhere."""

    @field_validator("pushgateway_url")
    @classmethod
    def _pushgateway_url(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip()
        parts = urlsplit(v if "://" in v else "http://" + v)
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise ValueError("has an invalid port") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v.strip()

    @property
    def delivered(self) -> bool:
        """Whether a run pushes or writes its metrics (else prometheus-client is not loaded)."""
        return bool(self.pushgateway_url) or self.textfile_path is not None


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (all interfaces) → (host, port); ``ValueError``
    otherwise."""
    host, sep, port_text = listen.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not 0 <= port <= 65535:
        raise ValueError("must be host:port, [v6-address]:port or :port")
    return host, port


class _FromEnvironment(BaseSettings):
    """Where settings are read from (see the module docstring); ``Settings`` and the lenient
    ``MetricsOnly`` read the same places the same way."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        secrets_dir_missing="ok",
        secrets_nested_delimiter="__",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence, first wins: arguments, environment, secret files. No .env file: the
        # container gets its environment from the orchestrator (or `docker run --env-file`).
        secret_files = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, secret_files


class Settings(_FromEnvironment):
    """All settings of one bwsync profile."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    source: SourceName = "file"
    """Which directory to read: `ldap`, `entra`, `google`, `okta`, `onelogin` or `file`."""
    profile: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,63}$")
    """Name of this sync profile: a metrics label and the state lease holder's prefix."""
    secrets_dir: Path = Path(DEFAULT_SECRETS_DIR)
    """Directory of secret files, one per setting (a mounted Kubernetes Secret)."""
    stop_grace_seconds: Duration = Field(default=20.0, gt=0, le=600)
    """After SIGTERM or SIGINT, how long (`20`; `45s` in the environment, seconds in the chart's
    values) the request in flight may take before the run gives it up; it then gives its lease
    back and exits 7. Keep it at least 30 s below the pod's `terminationGracePeriodSeconds` (the
    chart checks), which must also cover the last state write and the metrics push."""
    bitwarden: BitwardenSettings = BitwardenSettings()
    sync: SyncSettings = SyncSettings()
    ldap: LdapSettings = LdapSettings()
    entra: EntraSettings = EntraSettings()
    google: GoogleSettings = GoogleSettings()
    okta: OktaSettings = OktaSettings()
    onelogin: OneLoginSettings = OneLoginSettings()
    file: FileSettings = FileSettings()
    state: StateSettings = StateSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()

    @model_validator(mode="before")
    @classmethod
    def _as_written(cls, data: Any) -> Any:
        return as_written(cls, data)

    @model_validator(mode="after")
    def _source_settings_present(self) -> Settings:
        # One line per missing setting; ``_problems`` splits them back into lines.
        problems = self.source_settings.required()
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def source_settings(self) -> SourceSection:
        """The settings group of the source ``BWSYNC_SOURCE`` names."""
        section = getattr(self, self.source)
        assert isinstance(section, SourceSection)
        return section


class MetricsOnly(_FromEnvironment):
    """The metrics settings alone, read leniently when the full settings are invalid."""

    model_config = SettingsConfigDict(extra="ignore")

    profile: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,63}$")
    source: str = "file"
    metrics: MetricsSettings = MetricsSettings()
