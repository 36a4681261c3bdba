"""``bwsync config from-bwdc data.json``: a bwdc data file → bwsync settings.

bwdc keeps its configuration in ``data.json`` (reference §8.5): flat in state version 5 and
later, nested under an account object in versions 3 and 4 (migrated here the way bwdc migrates
it). This module reads either, finds the directory type, and maps every setting that has a
bwsync equivalent; every one that has none is listed with the reason, so nothing is dropped
silently.

Secrets are never printed: the file may hold them in plain text (bwdc with
``BITWARDENCLI_CONNECTOR_PLAINTEXT_SECRETS``), or the keychain placeholder. Each becomes a
pointer to the secret file the admin must create instead.

A setting that sends a credential in clear or turns a certificate check off is carried over
faithfully but never silently: ``Conversion.warnings`` says so, in the output (as comments)
and on stderr. An ``http://`` Bitwarden server on another host is converted as it is, without
``BWSYNC_BITWARDEN__ALLOW_HTTP``: bwsync then refuses it until the admin chooses https or opts
in, which is a decision this tool must not take for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import yaml

from bwsync.config import DEFAULT_SECRETS_DIR, env_name, is_loopback
from bwsync.errors import ConfigError

#: The Google service account's key file in the secrets directory, as the examples name it.
GOOGLE_KEY_FILE = "google-sa.json"
DIRECTORY_TYPES = {0: "ldap", 1: "entra", 2: "google", 3: "okta", 4: "onelogin"}
_CONFIG_KEYS = {
    "ldap": "directoryLdap",
    "entra": "directoryEntra",
    "google": "directoryGsuite",
    "okta": "directoryOkta",
    "onelogin": "directoryOnelogin",
}


@dataclass(frozen=True, slots=True)
class Setting:
    section: str | None
    """``None`` for top-level settings such as ``source``."""
    name: str
    value: Any
    secret: bool = False

    @property
    def env(self) -> str:
        middle = f"{self.section.upper()}__" if self.section else ""
        return f"BWSYNC_{middle}{self.name.upper()}"

    @property
    def secret_file(self) -> str:
        return self.env.lower()


@dataclass(slots=True)
class Conversion:
    source: str
    settings: list[Setting] = field(default_factory=list)
    unmapped: list[tuple[str, str]] = field(default_factory=list)
    """(bwdc setting, why bwsync has no equivalent or ignores it)."""
    warnings: list[str] = field(default_factory=list)
    """Settings carried over that expose a credential or skip a check (``bwsync.cleartext``)."""
    schedule_minutes: int | None = None

    def set(self, section: str | None, name: str, value: Any, *, secret: bool = False) -> None:
        if value is None or value == "":
            return
        self.settings.append(Setting(section, name, value, secret))

    def skip(self, what: str, why: str) -> None:
        self.unmapped.append((what, why))


def load_data_file(path: Path) -> dict[str, Any]:
    """Read a bwdc data file, flattening the nested layout of state versions 3 and 4."""
    try:
        raw = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} is not a bwdc data file (not a JSON object)")
    version = raw.get("stateVersion")
    if version is None and "activeUserId" not in raw and "directoryType" not in raw:
        raise ConfigError(f"{path} is not a bwdc data file (no stateVersion, no directoryType)")
    if isinstance(version, int) and version < 3:
        raise ConfigError(f"{path} has state version {version}; bwdc itself refuses versions < 3")
    if "activeUserId" in raw:
        return _flatten_nested(raw)
    return raw


def _flatten_nested(raw: dict[str, Any]) -> dict[str, Any]:
    account = raw.get(str(raw.get("activeUserId")), {})
    if not isinstance(account, dict):
        raise ConfigError("nested bwdc data file without the active account's object")
    configs = account.get("directoryConfigurations", {}) or {}
    settings = account.get("directorySettings", {}) or {}
    profile = account.get("profile", {}) or {}
    tokens = account.get("tokens", {}) or {}
    flat: dict[str, Any] = {
        "stateVersion": raw.get("stateVersion"),
        "directoryType": settings.get("directoryType"),
        "organizationId": settings.get("organizationId"),
        "sync": settings.get("sync") or {},
        "lastSyncHash": settings.get("lastSyncHash"),
        "environmentUrls": (raw.get("global") or {}).get("environmentUrls")
        or account.get("settings", {}).get("environmentUrls"),
        "apiKeyClientId": profile.get("apiKeyClientId") or tokens.get("apiKeyClientId"),
        "apiKeyClientSecret": profile.get("apiKeyClientSecret") or tokens.get("apiKeyClientSecret"),
        "appId": (raw.get("global") or {}).get("appId") or raw.get("appId"),
        "directoryLdap": configs.get("ldap"),
        "directoryGsuite": configs.get("gsuite"),
        "directoryEntra": configs.get("entra") or configs.get("azure"),
        "directoryOkta": configs.get("okta"),
        "directoryOnelogin": configs.get("oneLogin") or configs.get("onelogin"),
    }
    return flat


def convert(data: dict[str, Any]) -> Conversion:
    """Map a (flattened) bwdc data file to bwsync settings."""
    kind = data.get("directoryType")
    if kind not in DIRECTORY_TYPES:
        raise ConfigError(
            f"the data file's directoryType is {kind!r}; bwdc uses 0–4 (no directory configured?)"
        )
    source = DIRECTORY_TYPES[kind]
    conv = Conversion(source=source)
    conv.set(None, "source", source)
    _bitwarden(data, conv)
    directory = data.get(_CONFIG_KEYS[source]) or {}
    sync = data.get("sync") or {}
    {"ldap": _ldap, "entra": _entra, "google": _google, "okta": _okta, "onelogin": _onelogin}[
        source
    ](directory, sync, conv)
    _sync(sync, source, conv)
    conv.skip(
        "lastSyncHash / lastUserSync / lastGroupSync / delta tokens",
        "run state, not configuration: the first bwsync run sends the full import once "
        "(idempotent on the server)",
    )
    return conv


def _secret(conv: Conversion, section: str, name: str, value: Any) -> None:
    # Whatever the file holds (plain text or "[STORED SECURELY]"), only its absence matters.
    conv.settings.append(Setting(section, name, "<secret>", secret=True))
    del value


def _bitwarden(data: dict[str, Any], conv: Conversion) -> None:
    urls = data.get("environmentUrls") or {}
    base = (urls.get("base") or "").strip().rstrip("/")
    if base and base not in ("bitwarden.com", "https://bitwarden.com"):
        conv.set("bitwarden", "server", base if "://" in base else "https://" + base)
    conv.set("bitwarden", "api_url", urls.get("api"))
    conv.set("bitwarden", "identity_url", urls.get("identity"))
    for key, name in (("base", "server"), ("api", "api_url"), ("identity", "identity_url")):
        url = (urls.get(key) or "").strip()
        parts = urlsplit(url)
        if parts.scheme.lower() == "http" and not is_loopback(parts.hostname):
            conv.warnings.append(
                f"environmentUrls.{key} is {url}: the client secret would cross the network in "
                f"clear; bwsync refuses {env_name('bitwarden', name)} over http:// unless "
                f"{env_name('bitwarden', 'allow_http')}=true — serve the server over https instead"
            )
    if urls.get("webVault"):
        conv.skip("environmentUrls.webVault", "bwsync never opens the web vault")
    client_id = data.get("apiKeyClientId")
    org = data.get("organizationId")
    if not client_id and org:
        client_id = f"organization.{org}"
    conv.set("bitwarden", "client_id", client_id)
    _secret(conv, "bitwarden", "client_secret", data.get("apiKeyClientSecret"))
    conv.set("bitwarden", "device_identifier", data.get("appId"))


def _ldap(d: dict[str, Any], sync: dict[str, Any], conv: Conversion) -> None:
    host = (d.get("hostname") or "").strip()
    port = d.get("port") or 389
    ssl, start_tls = bool(d.get("ssl")), bool(d.get("startTls"))
    if host:
        scheme = "ldaps" if ssl and not start_tls else "ldap"
        conv.set("ldap", "url", f"{scheme}://{host}:{port}".lower())
    if start_tls and ssl:
        conv.set("ldap", "start_tls", True)
    elif start_tls:
        conv.skip(
            "directoryLdap.startTls",
            "bwdc only uses StartTLS when `ssl` is also on; "
            f"this file never used it (set {env_name('ldap', 'start_tls')}=true to start using it)",
        )
    if d.get("sslAllowUnauthorized"):
        conv.set("ldap", "tls_verify", False)
        conv.warnings.append(
            "directoryLdap.sslAllowUnauthorized is on: carried over as "
            f"{env_name('ldap', 'tls_verify')}=false, so the LDAP server's certificate is not "
            "checked and anyone on the path can pose as it and collect the bind password; give "
            f"its CA in {env_name('ldap', 'ca_file')} and drop the setting"
        )
    if host and not ssl and (d.get("username") or d.get("password")) and not is_loopback(host):
        conv.warnings.append(
            f"directoryLdap connects to ldap://{host}:{port} without TLS: the bind password "
            "crosses the network in clear; set ssl (ldaps://) or StartTLS "
            f"({env_name('ldap', 'url')}=ldaps://… or {env_name('ldap', 'start_tls')}=true)"
        )
    ca = d.get("tlsCaPath") if start_tls else d.get("sslCaPath")
    if ca:
        conv.set("ldap", "ca_file", ca)
        conv.skip("(CA file path)", f"{ca} must be mounted into the container at that path")
    for key in ("sslCertPath", "sslKeyPath"):
        if d.get(key):
            conv.skip(
                f"directoryLdap.{key}",
                "client certificates are not supported; bwsync binds with a password",
            )
    conv.set("ldap", "bind_dn", d.get("username"))
    if d.get("username") or d.get("password"):
        _secret(conv, "ldap", "bind_password", d.get("password"))
    root = (d.get("rootPath") or "").strip()
    low = root.lower()
    if "dc=" in low:
        cut = root[low.index("dc=") :]
        conv.set("ldap", "base_dn", cut)
        if cut != root:
            conv.skip(
                "directoryLdap.rootPath prefix",
                f"bwdc ignores {root[: low.index('dc=')].rstrip(',')!r} before the first "
                "dc=; bwsync does the same (BASE_DN starts at dc=)",
            )
    elif root:
        conv.skip(
            "directoryLdap.rootPath",
            f"{root!r} has no dc= part, which bwdc ignores; set {env_name('ldap', 'base_dn')} "
            "yourself",
        )
    if "ad" in d:
        conv.set("ldap", "active_directory", "true" if d.get("ad") else "false")
    if d.get("pagedSearch") is False:
        conv.skip(
            "directoryLdap.pagedSearch=false",
            "bwsync always pages (every server "
            f"bwsync supports handles it); {env_name('ldap', 'page_size')} sets the page size",
        )
    for key in ("domain", "currentUser"):
        if d.get(key):
            conv.skip(f"directoryLdap.{key}", "stored but unused by bwdc's sync")
    mapping = {
        "userObjectClass": "user_object_class",
        "groupObjectClass": "group_object_class",
        "userPath": "user_path",
        "groupPath": "group_path",
        "userFilter": "user_filter",
        "groupFilter": "group_filter",
        "userEmailAttribute": "email_attribute",
        "groupNameAttribute": "group_name_attribute",
        "memberAttribute": "member_attribute",
    }
    for key, name in mapping.items():
        conv.set("ldap", name, sync.get(key))
    if sync.get("useEmailPrefixSuffix"):
        conv.set("ldap", "email_prefix_attribute", sync.get("emailPrefixAttribute"))
        conv.set("ldap", "email_suffix", sync.get("emailSuffix"))
    for key in ("creationDateAttribute", "revisionDateAttribute"):
        if sync.get(key):
            conv.skip(
                f"sync.{key}",
                "bwsync reads the whole directory every run, so it "
                "needs no change-date attribute (see the README's differences)",
            )


def _entra(d: dict[str, Any], sync: dict[str, Any], conv: Conversion) -> None:
    conv.set("entra", "tenant_id", d.get("tenant"))
    conv.set("entra", "client_id", d.get("applicationId"))
    _secret(conv, "entra", "client_secret", d.get("key"))
    authority = (d.get("identityAuthority") or "").strip().lower()
    if authority == "login.microsoftonline.us":
        conv.set("entra", "cloud", "usgov")
    del sync


def _google(d: dict[str, Any], sync: dict[str, Any], conv: Conversion) -> None:
    conv.set("google", "admin_email", d.get("adminUser"))
    conv.set("google", "domain", d.get("domain"))
    conv.set("google", "customer", d.get("customer"))
    # Not named as the variable (bwsync_google__credentials_file): the secrets directory
    # reads a file of that name as the setting's value, so the key's JSON would become the path.
    conv.set("google", "credentials_file", f"{DEFAULT_SECRETS_DIR}/{GOOGLE_KEY_FILE}")
    conv.skip(
        "directoryGsuite.clientEmail / privateKey",
        f"put the service account's JSON key file ({d.get('clientEmail') or 'client_email'}) "
        f"in the secrets directory as {GOOGLE_KEY_FILE} (Helm: secretFiles.{GOOGLE_KEY_FILE})",
    )
    del sync


def _okta(d: dict[str, Any], sync: dict[str, Any], conv: Conversion) -> None:
    conv.set("okta", "org_url", (d.get("orgUrl") or "").strip().rstrip("/") or None)
    _secret(conv, "okta", "token", d.get("token"))
    del sync


def _onelogin(d: dict[str, Any], sync: dict[str, Any], conv: Conversion) -> None:
    conv.set("onelogin", "client_id", d.get("clientId"))
    _secret(conv, "onelogin", "client_secret", d.get("clientSecret"))
    if d.get("region") and d.get("region") != "us":
        conv.set("onelogin", "region", d.get("region"))
    if sync.get("useEmailPrefixSuffix"):
        conv.set("onelogin", "use_email_prefix_suffix", True)
        conv.set("onelogin", "email_suffix", sync.get("emailSuffix"))


def _sync(sync: dict[str, Any], source: str, conv: Conversion) -> None:
    for key, name in (
        ("users", "users"),
        ("groups", "groups"),
        ("removeDisabled", "remove_disabled"),
        ("overwriteExisting", "overwrite_existing"),
        ("largeImport", "large_import"),
    ):
        if key in sync:
            conv.set("sync", name, bool(sync.get(key)))
    # State migration 7→8 (reference §8.5): an existing config without the flag keeps inviting.
    conv.set("sync", "invite_users", bool(sync.get("inviteUsersAfterProvisioning", True)))
    if source != "ldap":
        conv.set("sync", "user_filter", sync.get("userFilter"))
        conv.set("sync", "group_filter", sync.get("groupFilter"))
    interval = sync.get("interval")
    if isinstance(interval, int) and interval > 0:
        conv.schedule_minutes = max(5, interval)
        conv.skip(
            "sync.interval",
            f"every {conv.schedule_minutes} min: the CronJob's "
            "`schedule` (Helm) or `bwsync sync --every` does the scheduling",
        )


def _quote(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if any(c in text for c in " \t#'\"$\\`"):
        return "'" + text.replace("'", "'\\''") + "'"
    return text


def _warning_comments(conv: Conversion) -> list[str]:
    return [f"# WARNING: {w}" for w in conv.warnings]


def render_env(conv: Conversion, origin: str) -> str:
    lines = [f"# bwsync settings converted from {origin} ({conv.source} directory)"]
    lines += [*_warning_comments(conv), ""]
    secrets = []
    for s in conv.settings:
        if s.secret:
            secrets.append(s)
            continue
        lines.append(f"{s.env}={_quote(s.value)}")
    lines += [
        "",
        "# Secrets: create one file per secret in the secrets directory",
        "# (/run/secrets/bwsync by default), never in this file:",
    ]
    lines += [f"#   {s.secret_file}" for s in secrets]
    if conv.unmapped:
        lines += ["", "# bwdc settings without a bwsync equivalent:"]
        lines += [f"#   {what}: {why}" for what, why in conv.unmapped]
    return "\n".join(lines) + "\n"


def render_helm(conv: Conversion, origin: str) -> str:
    values: dict[str, Any] = {"settings": {}, "secrets": {}}
    if conv.schedule_minutes:
        m = conv.schedule_minutes
        values["schedule"] = f"*/{m} * * * *" if m < 60 else f"0 */{max(1, m // 60)} * * *"
    for s in conv.settings:
        if s.section is None:
            values["settings"][s.name] = s.value
        elif s.secret or (s.section == "bitwarden" and s.name == "client_id"):
            values["secrets"].setdefault(s.section, {})[s.name] = "" if s.secret else s.value
        else:
            values["settings"].setdefault(s.section, {})[s.name] = s.value
    header = [
        f"# bwsync Helm values converted from {origin} ({conv.source} directory).",
        "# Fill in the empty secrets (or use existingSecret) before installing.",
        *_warning_comments(conv),
    ]
    if conv.unmapped:
        header.append("# bwdc settings without a bwsync equivalent:")
        header += [f"#   {what}: {why}" for what, why in conv.unmapped]
    body = yaml.safe_dump(values, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "\n".join(header) + "\n" + body


def from_bwdc(path: Path, fmt: str) -> tuple[str, list[str]]:
    """The converted settings as text, and the warnings to show on stderr besides."""
    try:
        conv = convert(load_data_file(path))
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        # The converter reads bwdc's layout as bwdc writes it; a file edited into another
        # shape (a section that is not an object, a number where text belongs) is the file's
        # fault, said once here rather than checked at every one of its hundred reads.
        raise ConfigError(
            f"{path} is not a bwdc data file bwsync can read: a value has an unexpected type "
            f"({type(exc).__name__}: {exc})"
        ) from None
    text = render_helm(conv, path.name) if fmt == "helm" else render_env(conv, path.name)
    return text, conv.warnings
