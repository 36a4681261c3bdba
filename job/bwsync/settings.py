"""The settings a run uses: read from the environment and the secrets directory, and checked as
a whole before anything is contacted — the one validation pass every command runs first.

``load_settings`` is that pass, for ``sync``, ``plan``, ``check``, ``check --offline`` and
``state`` alike, so ``check --offline`` refuses exactly what ``sync`` would:

1. the models (``bwsync.config``) read the values: types, choices, durations, URL shapes, and
   what each source and sign-in method requires (``SourceSection.required``);
2. this module then checks what a run needs of its surroundings, all local and quick:

   * **settings of another source** in the environment (``BWSYNC_LDAP__URL`` with
     ``BWSYNC_SOURCE=okta``, or no ``BWSYNC_SOURCE`` at all, which means the built-in demo
     directory): a forgotten or wrong ``BWSYNC_SOURCE`` must not sync the wrong directory;
     likewise a user or group filter with the file source, which has none;
   * **the organization API key**, for the commands that talk to Bitwarden: ``sync``, ``plan``
     and ``check`` (``plan --directory-only`` reads the directory alone and needs none). They
     also need ``BWSYNC_FILE__PATH`` with the file source: the built-in demo directory it
     reads otherwise is never synced to an organization by omission;
   * **files the settings point to**, for the parts this configuration uses: the Bitwarden
     and Pushgateway CA bundles, the active source's CA bundle and credential files (Entra
     certificate, Google service-account key, Okta private key), the file source's export,
     and a ``file`` state path that is a directory. Each must exist, be readable and parse
     (``bwsync.setting_files``, the functions the clients use themselves);
   * **optional modules**: ``BWSYNC_LDAP__ENGINE=python-ldap`` without python-ldap installed
     (``auto`` falls back to ldap3, as documented), and any module a chosen source or backend
     needs that a broken installation lacks.

Every problem is one line starting with the ``BWSYNC_*`` variable to fix (``ConfigError``:
exit 2, all of them at once). Whether a server answers, a bind is accepted or the state store
is writable is ``bwsync check``'s job, not this pass's.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError

from bwsync import setting_files
from bwsync.config import (
    DEFAULT_SECRETS_DIR,
    ENV_PREFIX,
    MetricsOnly,
    MetricsSettings,
    Settings,
    SourceName,
    env_name,
)
from bwsync.errors import ConfigError, shorten
from bwsync.redact import remember, shown_url, url_passwords

#: Modules each source and state backend imports; all are dependencies of the package, so a
#: missing one means a broken installation, named here instead of failing mid-run.
SOURCE_MODULES: dict[str, tuple[str, ...]] = {
    "ldap": ("ldap3",),
    "entra": ("msal",),
    "google": ("google.oauth2",),
    "okta": ("cryptography",),
}
BACKEND_MODULES: dict[str, tuple[str, ...]] = {"objectstore": ("obstore",), "configmap": ("yaml",)}

FAST_LDAP_INSTALL = (
    "pip install 'bwsync[fast-ldap]' (builds against libldap: apt-get install gcc "
    "libldap2-dev libsasl2-dev first; the container image has it)"
)


def _env_of(loc: tuple[int | str, ...]) -> str:
    """The environment variable a pydantic error location points to: a setting's
    (``config.env_name``), or, for a name that is none (a misspelt one), as written."""
    try:
        return env_name(*loc)
    except KeyError:
        return ENV_PREFIX + "__".join(str(p).upper() for p in loc if not isinstance(p, int))


def secrets_dir(environ: Mapping[str, str]) -> str:
    """The secrets directory, read before the settings themselves, which it holds files of."""
    return environ.get(env_name("secrets_dir"), DEFAULT_SECRETS_DIR)


_SECRET_WORDS = ("secret", "password", "token", "key")


def _problems(err: Any) -> list[str]:
    """One pydantic error as the lines an admin reads: each starts with the variable to fix."""
    loc = tuple(err.get("loc", ()))
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err.get("type") == "extra_forbidden":
        return [f"{_env_of(loc)}: not a bwsync setting (misspelt?)"]
    if not loc or msg.startswith(ENV_PREFIX):
        return msg.splitlines()
    value = err.get("input")
    shown = ""
    # Echo the offending value only for plain, short, non-secret scalars, and of a URL with a
    # user (and maybe a password, which may hide where it ends) only its scheme and host.
    if isinstance(value, str | int | float | bool) and not any(
        s in _env_of(loc).lower() for s in _SECRET_WORDS
    ):
        shown = f" (got {shorten(shown_url(str(value)), 80)!r})"
    return [f"{_env_of(loc)}: {msg}{shown}"]


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """A line for each ``BWSYNC_`` variable whose section is no setting (a typo in the first
    part; pydantic names typos further down itself)."""
    return [
        f"{name}: not a bwsync setting (misspelt?)"
        for name in sorted(environ)
        if name.upper().startswith(ENV_PREFIX)
        and name.upper()[len(ENV_PREFIX) :].split("__")[0].lower() not in Settings.model_fields
    ]


def load_settings(*, api_key: bool = False, **overrides: Any) -> Settings:
    """The settings from the environment and the secrets directory, checked as a whole: the
    values' shapes (the models), then what the run needs of its surroundings
    (``environment_problems``: files, optional modules and, with ``api_key``, the organization
    API key). Raise ``ConfigError`` listing every problem, one line each, before anything is
    contacted. ``overrides`` win over the environment and the files."""
    where = secrets_dir(os.environ)
    remember_raw_secrets(os.environ, Path(where))
    unknown = unknown_variables(os.environ)
    try:
        settings = Settings(_secrets_dir=where, **overrides)
    except ValidationError as exc:
        raise ConfigError(unknown + [p for e in exc.errors() for p in _problems(e)]) from None
    except (SettingsError, OSError, UnicodeDecodeError) as exc:  # reading, not validating
        raise ConfigError([*unknown, read_failure(exc, where)]) from None
    problems = unknown + environment_problems(settings, api_key=api_key)
    if problems:
        raise ConfigError(problems)
    return settings


def remember_raw_secrets(environ: Mapping[str, str], where: Path) -> None:
    """Remember for masking (``bwsync.redact``), before the settings are even read, every value
    a secret setting (``SecretStr``) is given as written, in a variable or a file of the
    secrets directory, and anything that may be the password of a URL given to any setting:
    an error about a value the models refuse is formatted before the models have read the
    secrets, and must not show them."""
    secret_names = _secret_variables()
    values = {n: v for n, v in environ.items() if n.upper().startswith(ENV_PREFIX)}
    try:
        files = [f for f in where.iterdir() if f.name.upper().startswith(ENV_PREFIX)]
    except OSError:
        files = []
    for file in files:
        try:
            values[file.name] = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
    for name, value in values.items():
        if name.upper() in secret_names:
            remember(value, value.strip())
        remember(*url_passwords(value))


@functools.cache
def _secret_variables() -> frozenset[str]:
    """The variables of every ``SecretStr`` setting."""
    found = set()
    for name, field in Settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            for inner, spec in section.model_fields.items():
                if SecretStr in get_args(spec.annotation) or spec.annotation is SecretStr:
                    found.add(env_name(name, inner))
    return frozenset(found)


def metrics_settings_only() -> tuple[MetricsSettings, str, str] | None:
    """(metrics settings, profile, source label) from the environment, or None if even those
    are invalid. The source label is kept only if it is a known source (bounded labels).

    Called after the settings failed, so any failure is expected here, reading ones included
    (a secret file that is not UTF-8, a section that is not JSON, a secrets directory that is
    a file). When the secrets directory is what cannot be read, the metrics settings are read
    from the environment alone: the ``config_error`` result must still reach the textfile or
    the Pushgateway (a Pushgateway password kept in that directory is then missing, and the
    push fails with a warning of its own)."""
    where = secrets_dir(os.environ)
    try:
        found = MetricsOnly(_secrets_dir=where)
    except ValidationError:
        return None
    except (SettingsError, OSError, UnicodeDecodeError):
        try:
            found = MetricsOnly(_secrets_dir=None)
        except (ValidationError, SettingsError, OSError, UnicodeDecodeError):
            return None
    known = found.source in get_args(SourceName)
    return found.metrics, found.profile, found.source if known else "unknown"


def environment_problems(settings: Settings, *, api_key: bool) -> list[str]:
    """Every problem of ``settings``'s surroundings, one line each (empty: ready to run)."""
    problems = other_sources(settings, os.environ) + unusable_filters(settings)
    if api_key:
        problems += _api_key(settings)
    for setting, path, check in _files(settings):
        try:
            check(path, setting)
        except ConfigError as exc:
            problems += exc.problems
    problems += _modules(settings)
    return problems


def other_sources(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """A line for each variable of a source other than ``BWSYNC_SOURCE``'s: most often a
    forgotten ``BWSYNC_SOURCE``, which would read the built-in demo directory (the default)
    instead of the directory configured. Secret files are not counted: one Kubernetes Secret
    may serve several profiles, and neither are variables left empty (an env file's unset)."""
    others = {n for n in get_args(SourceName) if n != settings.source}
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        section = upper[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if upper.startswith(ENV_PREFIX) and section in others and environ[name].strip():
            problems.append(
                f"{upper}: set, but {env_name('source')} is {settings.source}; set "
                f"{env_name('source')}={section}, or remove the {section} settings"
            )
    return problems


def unusable_filters(settings: Settings) -> list[str]:
    """A line for each sync filter the source cannot apply (the file source has none): ignoring
    it would sync, and invite, the very people it was meant to leave out."""
    if settings.source != "file":
        return []
    return [
        f"{ENV_PREFIX}SYNC__{name.upper()}: set, but {ENV_PREFIX}SOURCE is file, which cannot "
        f"filter; set {ENV_PREFIX}SOURCE, or leave those entries out of the file instead"
        for name in ("user_filter", "group_filter")
        if getattr(settings.sync, name)
    ]


def _api_key(settings: Settings) -> list[str]:
    bw = settings.bitwarden
    problems = []
    if settings.source == "file" and settings.file.path is None:
        problems.append(
            f"{env_name('file', 'path')}: required to talk to Bitwarden; without it the file "
            "source reads the built-in demo directory, which is for `bwsync demo` and "
            "`bwsync plan --directory-only` only"
        )
    return problems + bw.api_key_problems(settings.secrets_dir)


FileCheck = Callable[[Path, str], object]


def _files(settings: Settings) -> list[tuple[str, Path, FileCheck]]:
    """(variable, path, check) for every file the active configuration reads."""
    found: list[tuple[str, Path | None, FileCheck]] = [
        (env_name("bitwarden", "ca_file"), settings.bitwarden.ca_file, setting_files.ca_context),
    ]
    if settings.metrics.pushgateway_url:
        found.append(
            (
                env_name("metrics", "pushgateway_ca_file"),
                settings.metrics.pushgateway_ca_file,
                setting_files.ca_context,
            )
        )
    source = settings.source
    section = settings.source_settings
    ca_file = getattr(section, "ca_file", None)
    if isinstance(ca_file, Path):
        found.append((env_name(source, "ca_file"), ca_file, setting_files.ca_context))
    if source == "entra":
        found.append(
            (
                env_name(source, "certificate_file"),
                settings.entra.certificate_file,
                setting_files.certificate_and_key,
            )
        )
    elif source == "google":
        found.append(
            (
                env_name(source, "credentials_file"),
                settings.google.credentials_file,
                setting_files.service_account_key,
            )
        )
    elif source == "okta":
        found.append(
            (
                env_name(source, "private_key_file"),
                settings.okta.private_key_file,
                setting_files.private_key,
            )
        )
    elif source == "file":
        found.append((env_name(source, "path"), settings.file.path, setting_files.readable_file))
    if settings.state.backend == "file":
        found.append((env_name("state", "path"), settings.state.path, _not_a_directory))
    return [(setting, path, check) for setting, path, check in found if path is not None]


def _not_a_directory(path: Path, setting: str) -> None:
    if path.is_dir():
        raise ConfigError(f"{setting}: {path} is a directory; name the state file in it")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False


def _modules(settings: Settings) -> list[str]:
    problems = []
    if settings.source == "ldap" and settings.ldap.engine == "python-ldap":
        try:
            import _ldap  # noqa: F401 - python-ldap's C extension, what the engine drives
        except ImportError:
            problems.append(
                f"{env_name('ldap', 'engine')}: python-ldap is not installed: {FAST_LDAP_INSTALL}; "
                "or leave the engine on auto (ldap3 when python-ldap is missing)"
            )
    for module in SOURCE_MODULES.get(settings.source, ()):
        if not _installed(module):
            problems.append(
                f"{env_name('source')}: the {settings.source} source needs the Python module "
                f"{module}, which is not installed (reinstall bwsync with its dependencies)"
            )
    for module in BACKEND_MODULES.get(settings.state.backend, ()):
        if not _installed(module):
            problems.append(
                f"{env_name('state', 'backend')}: the {settings.state.backend} backend needs the "
                f"Python module {module}, which is not installed (reinstall bwsync with its "
                "dependencies)"
            )
    return problems


def read_failure(exc: Exception, where: str) -> str:
    """The line for a failure to *read* the settings (not to validate them): a section given
    as one variable that is not JSON, an unreadable secrets directory or secret file, a secret
    file that is not text. Re-raises anything else: that would be a bug."""
    if isinstance(exc, SettingsError):
        text = str(exc)
        if "secrets_dir" in text:
            return f"{env_name('secrets_dir')}: {where} is not a directory"
        field = text.split('field "', 1)[1].split('"', 1)[0] if 'field "' in text else None
        if field:
            return (
                f"{env_name(field)}: not valid JSON; set each setting as its own "
                f"variable ({env_name(field)}__<SETTING>)"
            )
        return f"{env_name('secrets_dir')}: {text}"
    if isinstance(exc, OSError | UnicodeDecodeError):
        return _unreadable_secret(Path(where), exc)
    raise exc


def _unreadable_secret(secrets_dir: Path, exc: Exception) -> str:
    """Name the secret file that cannot be read as text (the library does not say which)."""
    try:
        entries = sorted(secrets_dir.iterdir())
    except OSError as err:
        return f"{env_name('secrets_dir')}: cannot list {secrets_dir}: {err.strerror or err}"
    for entry in entries:
        if not entry.name.lower().startswith(ENV_PREFIX.lower()) or entry.is_dir():
            continue
        try:
            entry.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            return f"{entry.name.upper()}: the secret file {entry} is not UTF-8 text"
        except OSError as err:
            return f"{entry.name.upper()}: cannot read the secret file {entry}: {err.strerror}"
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return f"{env_name('secrets_dir')}: cannot read the secret files in {secrets_dir}: {reason}"
