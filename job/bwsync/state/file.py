"""State in a local file, for ``docker run`` with a volume and for development.

Writes go to a temporary file in the same directory, then ``os.replace``: a crash leaves the
old document or the new one, never half of one. The version is the SHA-256 of the content, and
the compare-and-swap holds an exclusive ``flock`` on a sibling lock file while it re-reads and
renames, so two processes on one host (or one NFS export with working locks) cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bwsync.errors import StateConflictError, StateError
from bwsync.state.base import StateStore


class FileStateStore(StateStore):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.description = f"file {path}"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateError(f"cannot open {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def check(self) -> str:
        """Readable, and writable as a sync writes it: the lock file opened and locked, and a
        temporary file created and removed beside the state (what ``os.replace`` needs); the
        document itself is left alone."""
        self.load()
        with self._locked():
            try:
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".tmp")
            except OSError as exc:
                raise StateError(
                    f"cannot write in {self.path.parent} ({self.description}): {exc.strerror}"
                ) from None
            os.close(fd)
            os.unlink(tmp)
        return "readable and writable (lock included)"

    def _read_unlocked(self) -> tuple[bytes | None, str | None]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise StateError(f"cannot read {self.description}: {exc.strerror}") from None
        return data, hashlib.sha256(data).hexdigest()

    def _read(self) -> tuple[bytes | None, str | None]:
        return self._read_unlocked()

    def _write(self, data: bytes, expected_version: str | None) -> str:
        with self._locked():
            _, current = self._read_unlocked()
            if current != expected_version:
                raise StateConflictError(self.description)
            try:
                fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".tmp")
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except OSError as exc:
                with contextlib.suppress(OSError, UnboundLocalError):
                    os.unlink(tmp)
                raise StateError(f"cannot write {self.description}: {exc.strerror}") from None
        return hashlib.sha256(data).hexdigest()

    def _delete(self) -> None:
        with self._locked():
            try:
                self.path.unlink()
            except FileNotFoundError:
                return
            except OSError as exc:
                raise StateError(f"cannot remove {self.description}: {exc.strerror}") from None
