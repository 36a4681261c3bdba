"""State backends: where a run's memory lives between runs. Knows nothing of sources."""

from __future__ import annotations

from bwsync.config import StateSettings
from bwsync.errors import ConfigError
from bwsync.state.base import NoStateStore, StateDocument, StateStore

__all__ = ["StateDocument", "StateStore", "open_store"]


def open_store(settings: StateSettings) -> StateStore:
    """The backend ``BWSYNC_STATE__BACKEND`` names (no I/O yet)."""
    if settings.backend == "none":
        return NoStateStore()
    if settings.backend == "file":
        from bwsync.state.file import FileStateStore

        return FileStateStore(settings.path)
    raise ConfigError(
        f"BWSYNC_STATE__BACKEND: the {settings.backend!r} backend is not available in this "
        "version yet"
    )
