"""A call made in a daemon thread, its outcome waited for in Python.

Why a thread at all: obstore's calls block in Rust, where no signal reaches. A main thread
that waits on an ``Event`` instead stays where the grace period's SIGALRM handler can raise,
and a wait with a limit can give up on a call that never returns. The thread is a daemon: a
call given up on never holds the process back. Used by the object-storage state store and by
the wrap-up after a stop (``stop.StopRequest.wrap_up``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class InThread(Generic[T]):
    """``call()`` started in a thread of its own at once; ``wait`` for it, then ``outcome``."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._call = call
        self._result: list[T] = []
        self._failure: list[BaseException] = []
        self._done = threading.Event()
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        try:
            self._result.append(self._call())
        except BaseException as exc:  # handed to the waiting thread by outcome()
            self._failure.append(exc)
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether the call ended within ``timeout`` seconds (``None``: wait for it)."""
        return self._done.wait(timeout)

    def outcome(self) -> T:
        """What the ended call returned, or what it raised, raised here."""
        if self._failure:
            raise self._failure[0]
        return self._result[0]
