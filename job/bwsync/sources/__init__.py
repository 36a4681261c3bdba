"""Directory sources: one module per directory type, each knowing nothing of Bitwarden."""

from __future__ import annotations

from bwsync.config import Settings
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
    raise ConfigError(f"BWSYNC_SOURCE: the {name!r} source is not available in this version yet")
