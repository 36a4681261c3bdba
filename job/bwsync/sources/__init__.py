"""Directory sources: one module per directory type, each knowing nothing of Bitwarden."""

from __future__ import annotations

from bwsync.config import Settings, env_name
from bwsync.errors import ConfigError
from bwsync.sources.base import Source


def build_source(settings: Settings) -> Source:
    """The source ``BWSYNC_SOURCE`` names, built from its settings section (no I/O yet)."""
    name = settings.source
    if name == "ldap":
        from bwsync.sources.ldap import LdapSource

        return LdapSource(settings.ldap, settings.sync)
    if name == "file":
        from bwsync.sources.file import FileSource

        return FileSource(settings.file, settings.sync)
    if name == "entra":
        from bwsync.sources.entra import EntraSource

        return EntraSource(settings.entra, settings.sync)
    if name == "google":
        from bwsync.sources.google import GoogleSource

        return GoogleSource(settings.google, settings.sync)
    if name == "okta":
        from bwsync.sources.okta import OktaSource

        return OktaSource(settings.okta, settings.sync)
    if name == "onelogin":
        from bwsync.sources.onelogin import OneLoginSource

        return OneLoginSource(settings.onelogin, settings.sync)
    raise ConfigError(f"{env_name('source')}: unknown source {name!r}")
