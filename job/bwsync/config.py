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
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bwsync.errors import ConfigError
from bwsync.redact import strip_userinfo

ENV_PREFIX = "BWSYNC_"
DEFAULT_SECRETS_DIR = "/run/secrets/bwsync"

SourceName = Literal["ldap", "file", "entra", "google", "okta", "onelogin"]


def is_loopback(host: str | None) -> bool:
    """A host whose traffic never leaves this machine (or pod): 127.0.0.0/8, ::1, localhost.
    Plain http to it crosses no network (a TLS-terminating sidecar, the demo's stand-in)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
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


class Section(BaseModel):
    """Base of every nested settings group: unknown keys are errors, docstrings are docs
    (``bwsync.reference.field_docs``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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
    timeout: float = Field(default=60.0, gt=0)
    """Seconds to wait for one HTTP response; an import of thousands of members takes a while."""
    max_retries: int = Field(default=5, ge=0, le=20)
    """Retries after a 429, a 5xx, a timeout or a connection error; a full import is idempotent."""
    login_rate_limit_wait: float = Field(default=120.0, ge=0, le=3600)
    """Seconds a token request answered HTTP 429 without `Retry-After` is retried for, with
    backoff, before the run fails: Vaultwarden's login rate limit allows 10 logins at once, then
    one a minute per client address (`LOGIN_RATELIMIT_MAX_BURST`, `LOGIN_RATELIMIT_SECONDS`).
    120 outlasts one refill."""
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
                    f"{ENV_PREFIX}BITWARDEN__{name.upper()}: http:// would send the client "
                    "secret and the bearer token in clear; use https://, or set "
                    f"{ENV_PREFIX}BITWARDEN__ALLOW_HTTP=true where the path is encrypted "
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
    """…or more than this percentage of the synced members (those with an externalId)."""
    protected_members: str | None = None
    """Comma-separated emails that bwsync never sends as deleted and never removes or revokes,
    on every server (break-glass and admin accounts). On a server that cannot list members
    (Vaultwarden) bwsync cannot see who is an owner or admin: there this list is their only
    protection. A run in which the server itself would remove one (`overwrite_existing`)
    applies nothing and exits 6."""
    full_reconcile_every: int = Field(default=0, ge=0)
    """Seconds; apply even when the hash is unchanged once this long has passed since the
    last full apply, to repair changes made by hand in Bitwarden. 0 = only when it changed."""
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


class LdapSettings(Section):
    """Any LDAP server, or Active Directory (auto-detected from the root DSE)."""

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
    so that a renamed or moved group stays the same Bitwarden group. Default unset: the DN (AD:
    `objectGUID`), as bwdc, which keeps its import bodies and hash; see the LDAP guide."""
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
    timeout: float = Field(default=300.0, gt=0)
    """Seconds: the server time limit per search (bwdc's 300) and the network timeout."""
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
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError as exc:
            raise ValueError(f"has an invalid port: {exc}") from None
        return v

    @model_validator(mode="after")
    def _tls_combination(self) -> LdapSettings:
        if self.url and self.start_tls and self.url.lower().startswith("ldaps://"):
            raise ValueError(
                f"{ENV_PREFIX}LDAP__START_TLS cannot be combined with an ldaps:// "
                f"{ENV_PREFIX}LDAP__URL"
            )
        if self.bind_dn and self.bind_password is None:
            raise ValueError(
                f"{ENV_PREFIX}LDAP__BIND_PASSWORD is required when {ENV_PREFIX}LDAP__BIND_DN is set"
            )
        return self


class HttpSourceSection(Section):
    """Settings every HTTP-based directory source shares."""

    ca_file: Path | None = None
    """PEM bundle trusted for every call of this source, token requests included."""
    timeout: float = Field(default=60.0, gt=0)
    """Seconds per HTTP request."""


class EntraSettings(HttpSourceSection):
    """Microsoft Entra ID (Azure AD) through Microsoft Graph."""

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


class GoogleSettings(HttpSourceSection):
    """Google Workspace through the Admin SDK Directory API."""

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


class OktaSettings(HttpSourceSection):
    """Okta through its Management API."""

    org_url: str | None = None
    """`https://<org>.okta.com` (normalized: no trailing slash, https only)."""
    token: SecretStr | None = None
    """API token (`SSWS`); or use `client_id` + `private_key_file` (OAuth 2.0, recommended)."""
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
                f"{ENV_PREFIX}OKTA__TOKEN and {ENV_PREFIX}OKTA__CLIENT_ID/__PRIVATE_KEY_FILE are "
                "two different credentials: set one of them"
            )
        if oauth and (self.client_id is None or self.private_key_file is None):
            raise ValueError(
                f"{ENV_PREFIX}OKTA__CLIENT_ID and {ENV_PREFIX}OKTA__PRIVATE_KEY_FILE go together "
                "(OAuth 2.0 service app with private_key_jwt)"
            )
        return self


class OneLoginSettings(HttpSourceSection):
    """OneLogin through its API (v1 users and roles)."""

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
                f"{ENV_PREFIX}ONELOGIN__USE_EMAIL_PREFIX_SUFFIX needs "
                f"{ENV_PREFIX}ONELOGIN__EMAIL_SUFFIX (for example @example.com)"
            )
        return self


class FileSettings(Section):
    """A JSON or CSV export of users and groups (the demo's source; HR exports)."""

    path: Path | None = None
    """The file; `.json` or `.csv` (format in the README). Default: the built-in demo directory."""


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
    lease_seconds: int = Field(default=900, ge=30)
    """How long a run's lease lasts before another run may take it over. Must exceed the
    longest run. A run stopped by SIGTERM gives its lease back; one killed outright keeps it
    until then, unless the next run is on the same host and sees its process gone."""
    service_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    """Where the pod's service-account `token`, `ca.crt` and `namespace` files are (`configmap`
    backend, in a cluster). The default is where Kubernetes mounts them; change it only for a
    token projected elsewhere."""
    timeout: float = Field(default=30.0, gt=0)
    """Seconds to wait for one response from the Kubernetes API or the object store; the state
    document is a few KiB, so anything slower is an outage."""


class LogSettings(Section):
    """Log output."""

    format: Literal["json", "console"] | None = None
    """`json` (one object per line) or `console`. Default: console on a terminal, JSON otherwise."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written to stderr."""


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
    default, so nothing is exposed unless asked: set `0.0.0.0:9464` (or the address Prometheus
    reaches, e.g. in a container with a published port) to be scraped from elsewhere."""

    @property
    def delivered(self) -> bool:
        """Whether a run pushes or writes its metrics (else prometheus-client is not loaded)."""
        return bool(self.pushgateway_url) or self.textfile_path is not None


class _FromEnvironment(BaseSettings):
    """Where settings are read from (see the module docstring); ``Settings`` and the lenient
    ``_MetricsOnly`` read the same places the same way."""

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
    stop_grace_seconds: float = Field(default=20.0, gt=0, le=600)
    """After SIGTERM or SIGINT, how long the request in flight may take before the run gives it
    up; it then gives its lease back and exits 7. Keep it at least 30 s below the pod's
    `terminationGracePeriodSeconds` (the chart checks), which must also cover the last state
    write and the metrics push."""
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

    @model_validator(mode="after")
    def _source_settings_present(self) -> Settings:
        if self.source == "ldap":
            self._require("ldap", "url", "base_dn")
        if self.source == "entra":
            self._entra_settings_present()
        if self.source == "google":
            self._require("google", "credentials_file", "admin_email")
        return self

    def _require(self, section: str, *names: str) -> None:
        """Refuse the settings when any of ``names`` is unset in ``section``, naming them all."""
        missing = [n for n in names if getattr(getattr(self, section), n) is None]
        if missing:
            raise ValueError(
                f"source is {section} but "
                + ", ".join(f"{ENV_PREFIX}{section.upper()}__{n.upper()}" for n in missing)
                + " not set"
            )

    def _entra_settings_present(self) -> None:
        e = self.entra
        self._require("entra", "tenant_id", "client_id")
        if e.client_secret is not None and e.certificate_file is not None:
            raise ValueError(
                f"{ENV_PREFIX}ENTRA__CLIENT_SECRET and {ENV_PREFIX}ENTRA__CERTIFICATE_FILE are "
                "both set: keep one credential"
            )
        # AKS workload identity projects the federated token and names it in this variable.
        if (
            e.client_secret is None
            and e.certificate_file is None
            and not os.environ.get("AZURE_FEDERATED_TOKEN_FILE")
        ):
            raise ValueError(
                f"source is entra but no credential: set {ENV_PREFIX}ENTRA__CLIENT_SECRET or "
                f"{ENV_PREFIX}ENTRA__CERTIFICATE_FILE, or run with workload identity "
                "(AZURE_FEDERATED_TOKEN_FILE)"
            )


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable a pydantic error location points to."""
    return ENV_PREFIX + "__".join(str(p).upper() for p in loc if not isinstance(p, int))


def _problem(err: Any) -> str:
    loc = tuple(err.get("loc", ()))
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err.get("type") == "extra_forbidden":
        return f"{env_name(loc)}: not a bwsync setting (misspelt?)"
    if not loc or msg.startswith(ENV_PREFIX):
        return msg
    value = err.get("input")
    shown = ""
    # Echo the offending value only for plain, short, non-secret scalars.
    if isinstance(value, str | int | float | bool) and not any(
        s in env_name(loc).lower() for s in ("secret", "password", "token", "key")
    ):
        shown = f" (got {strip_userinfo(str(value))[:80]!r})"
    return f"{env_name(loc)}: {msg}{shown}"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment and the secrets directory, or raise
    ``ConfigError`` listing every problem, one line each. ``overrides`` win over both."""
    secrets_dir = os.environ.get(ENV_PREFIX + "SECRETS_DIR", DEFAULT_SECRETS_DIR)
    unknown = [
        f"{name}: not a bwsync setting (misspelt?)"
        for name in sorted(os.environ)
        if name.upper().startswith(ENV_PREFIX)
        and name.upper()[len(ENV_PREFIX) :].split("__")[0].lower() not in Settings.model_fields
    ]
    try:
        settings = Settings(_secrets_dir=secrets_dir, **overrides)
    except ValidationError as exc:
        raise ConfigError(unknown + [_problem(e) for e in exc.errors()]) from None
    if unknown:
        raise ConfigError(unknown)
    return settings


class _MetricsOnly(_FromEnvironment):
    """The metrics settings alone, read leniently when the full settings are invalid."""

    model_config = SettingsConfigDict(extra="ignore")

    profile: str = Field(default="default", pattern=r"^[A-Za-z0-9_.-]{1,63}$")
    source: str = "file"
    metrics: MetricsSettings = MetricsSettings()


def metrics_settings_only() -> tuple[MetricsSettings, str, str] | None:
    """(metrics settings, profile, source label) from the environment, or None if even those
    are invalid. The source label is kept only if it is a known source (bounded labels)."""
    secrets_dir = os.environ.get(ENV_PREFIX + "SECRETS_DIR", DEFAULT_SECRETS_DIR)
    try:
        found = _MetricsOnly(_secrets_dir=secrets_dir)
    except ValidationError:
        return None
    known = found.source in get_args(SourceName)
    return found.metrics, found.profile, found.source if known else "unknown"
