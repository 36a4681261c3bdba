"""``bwsync`` as a real process whose log the test follows line by line.

``BwsyncProcess.start(env, *args)`` runs ``python -m bwsync`` with the given environment (the
test's ``BWSYNC_*`` variables cleared first) and reads its stderr on a thread; ``wait_for(name)``
blocks until the JSON log holds an event of that name, so a test sends a signal at a point the
process itself announced, never after a sleep. ``finish()`` waits for the exit and returns the
code; ``events(name)`` are the decoded lines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from typing import Any

import orjson

#: How long a test waits for a line or an exit before failing (never reached when it works).
PATIENCE = 120.0


class BwsyncProcess:
    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self._reader = threading.Thread(target=self._read, name="bwsync-stderr", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, env: Mapping[str, str], *args: str) -> BwsyncProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BWSYNC_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "bwsync", *(args or ("sync",))],
            env={**clean, "BWSYNC_LOG__FORMAT": "json", **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return cls(proc)

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        with self._changed:
            lines = list(self.lines)
        for line in lines:
            if line.startswith("{"):
                doc = orjson.loads(line)
                if name is None or doc.get("event") == name:
                    out.append(doc)
        return out

    def wait_for(self, name: str) -> dict[str, Any]:
        """The first event ``name`` of the log, once it is there; fails if the process ends
        (or ``PATIENCE`` passes) without it."""
        with self._changed:
            while True:
                found = self.events(name)
                if found:
                    return found[0]
                if self._ended:
                    raise AssertionError(f"bwsync ended without {name!r}:\n{self.log()}")
                if not self._changed.wait(PATIENCE):
                    raise AssertionError(f"no {name!r} within {PATIENCE} s:\n{self.log()}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> int:
        """SIGKILL, then reap (so the PID no longer runs: a lease's holder is provably gone)."""
        self.proc.kill()
        return self.finish()

    def finish(self) -> int:
        code = self.proc.wait(PATIENCE)
        self._reader.join(PATIENCE)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code

    def log(self) -> str:
        with self._changed:
            return "\n".join(self.lines[-60:])

    def summary(self) -> dict[str, Any]:
        (line,) = self.events("summary")
        return line


def run_bwsync(env: Mapping[str, str], *args: str) -> tuple[int, BwsyncProcess]:
    process = BwsyncProcess.start(env, *args)
    return process.finish(), process
