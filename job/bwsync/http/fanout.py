"""Reads that do not depend on each other, run at the same time, results in the order asked.

A source reads its directory as a few independent listings (users, groups, deleted users …)
and, per group, its members. Waiting for each in turn costs one round trip per request; run
together they cost the longest chain. ``Fanout`` runs them on threads (the HTTP clients are
synchronous, as a CronJob wants, and httpx's client is safe to share between threads), while
the client's ``Limiter`` keeps the requests in flight within the bound: threads only carry
the work.

The order of the results is the order of the arguments, never the order of completion, so a
fetch gives the same directory, byte for byte, at any concurrency. With ``threads=1`` nothing
runs on another thread at all: the sequential fetch is the same code, called in turn.

When one read fails, the reads not yet started are not started (``cancelled``, which the
HTTP layer checks before each request), the running ones end, and the failure of the earliest
read in argument order is raised: the error the sequential fetch would have met first among
those that failed. The caller's context (a stop request of the run) is copied into every
thread.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

__all__ = ["Cancelled", "Fanout"]

T = TypeVar("T")
R = TypeVar("R")


class Cancelled(Exception):
    """A read not started because another one of the same fetch failed."""


class Fanout:
    """Runs independent reads on up to ``threads`` threads (see the module docstring)."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)
        self.cancelled = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Fanout:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the threads. After a failure (or a stop) the reads still running are not
        waited for: none starts a request any more, and the run must report now."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=not self.cancelled.is_set(), cancel_futures=True)

    def check(self) -> None:
        """Raise ``Cancelled`` once a read of this fetch has failed."""
        if self.cancelled.is_set():
            raise Cancelled("another read of this fetch failed")

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[fn(x) for x in items]``, run concurrently; ``fn`` must not call ``map`` itself
        (a leaf read: one listing's pages)."""
        todo = list(items)
        if self.threads == 1 or len(todo) < 2:
            return [self._run(fn, x) for x in todo]
        pool = self._executor()
        futures = [pool.submit(contextvars.copy_context().run, self._run, fn, x) for x in todo]
        return self._collect(futures)

    def together(self, *reads: Callable[[], Any]) -> list[Any]:
        """Each of ``reads`` called once, at the same time, on threads of their own (they may
        ``map``); their results in argument order."""
        if self.threads == 1 or len(reads) < 2:
            return [self._run(lambda r: r(), r) for r in reads]
        futures: list[Future[Any]] = []
        for read in reads:
            future: Future[Any] = Future()
            context = contextvars.copy_context()
            thread = threading.Thread(
                target=context.run,
                args=(self._settle, future, read),
                name="bwsync-read",
                daemon=True,
            )
            futures.append(future)
            thread.start()
        return self._collect(futures)

    # -- plumbing ------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="bwsync-fetch")
            return self._pool

    def _run(self, fn: Callable[[T], R], item: T) -> R:
        self.check()
        try:
            return fn(item)
        except BaseException:
            self.cancelled.set()
            raise

    def _settle(self, future: Future[Any], read: Callable[[], Any]) -> None:
        try:
            future.set_result(self._run(lambda r: r(), read))
        except BaseException as exc:  # handed to the caller, never lost in the thread
            future.set_exception(exc)

    def _collect(self, futures: Sequence[Future[R]]) -> list[R]:
        try:
            wait(futures)
        except BaseException:
            # The caller was interrupted (a stop request's grace period): no new read starts.
            self.cancelled.set()
            for f in futures:
                f.cancel()
            raise
        failures = [e for f in futures if not f.cancelled() and (e := f.exception()) is not None]
        if failures:
            first = next((e for e in failures if not isinstance(e, Cancelled)), failures[0])
            raise first
        return [f.result() for f in futures]
