"""State backends: where a run's memory lives between runs. Knows nothing of sources."""

from __future__ import annotations

from bwsync.config import StateSettings, env_name
from bwsync.errors import ConfigError, LeaseHeldError, StateConflictError
from bwsync.state.base import NoStateStore, StateDocument, StateStore

__all__ = ["LeaseHeldError", "StateConflictError", "StateDocument", "StateStore", "open_store"]


def open_store(settings: StateSettings) -> StateStore:
    """The backend ``BWSYNC_STATE__BACKEND`` names; nothing is contacted yet.

    Backend modules are imported here, on demand, so a file-backed run never loads httpx's TLS
    setup for Kubernetes nor obstore at all.
    """
    if settings.backend == "none":
        return NoStateStore()
    if settings.backend == "file":
        from bwsync.state.file import FileStateStore

        return FileStateStore(settings.path)
    if settings.backend == "configmap":
        from bwsync.state.configmap import ConfigMapStateStore

        return ConfigMapStateStore.from_settings(settings)
    if settings.backend == "objectstore":
        from bwsync.state.objectstore import ObjectStateStore

        return ObjectStateStore.from_settings(settings)
    raise ConfigError(f"{env_name('state', 'backend')}: unknown backend {settings.backend!r}")
