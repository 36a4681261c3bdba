"""HTTP with retries, rate-limit pacing and 429 waits, for the sources whose service announces
its rate-limit state in response headers (Okta, OneLogin).

A helper layer of ``bwsync.sources``, not a source: sources import it, it imports no source
(``tests/unit/test_import_rules.py``). ``PacedHttp`` keeps one source inside its service's
rate limit; ``PacedSource`` is that client's life in a source run; ``RateHeaders`` names the
headers a service uses and how to read its reset.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from bwsync import stop
from bwsync.config import SyncSettings
from bwsync.errors import DirectoryError, shorten
from bwsync.http_retry import retry_after, should_retry
from bwsync.sources.cloud_http import SettingsT, ssl_verify

__all__ = [
    "PacedHttp",
    "PacedSource",
    "RateHeaders",
    "ResetReader",
    "json_or_none",
    "same_origin_next",
]


ResetReader = Callable[[httpx.Response, float], float | None]
"""Seconds until the rate-limit window resets, from a response (and the local clock)."""


def _int_header(response: httpx.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RateHeaders:
    """Which headers carry a service's rate-limit state, and how to read the reset."""

    limit: str
    remaining: str
    reset_in: ResetReader


class PacedHttp:
    """An ``httpx.Client`` wrapper that keeps one source inside its rate limit.

    * pacing: when a response says fewer than ``reserve`` of the window's requests remain,
      the next request waits ``reset_in / remaining`` (the rest spread evenly over the window);
      at zero it waits for the reset. Nothing waits while the budget is comfortable;
    * 429: wait until the reset (or ``Retry-After``), at most ``max_wait`` seconds, and retry,
      at most ``max_retries`` times in a row;
    * 5xx, timeouts and connection errors: exponential backoff, ``max_retries`` times. Every
      other status goes back to the caller, which knows the service's error shape. What is
      temporary, and how to read ``Retry-After``, is ``bwsync.http_retry``'s decision, as for
      every HTTP client of bwsync: a refused certificate is not retried.

    ``sleep`` and the clocks are injectable so tests run without waiting: ``clock`` is the wall
    clock, which the service's reset times (epoch seconds) are read against; ``monotonic``
    times the waits, so a wall clock stepped back (NTP, a VM resumed) cannot lengthen them.
    ``on_request`` is called with (method, path, status or 0) for every attempt, which the
    benchmark counts.
    """

    @classmethod
    def open(
        cls,
        rate: RateHeaders,
        error: Callable[[str], DirectoryError],
        *,
        ca_file: Path | None,
        ca_setting: str,
        timeout: float,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = stop.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_request: Callable[[str, str, int], None] | None = None,
    ) -> PacedHttp:
        """A paced client for one source: its own CA file (named by ``ca_setting`` when it
        cannot be loaded) wins over the environment's bundles; proxy variables are honoured,
        as by every other HTTP client of bwsync; no redirects."""
        client = httpx.Client(
            verify=ssl_verify(ca_file, ca_setting),
            timeout=timeout,
            transport=transport,
            trust_env=True,
            headers={"Accept": "application/json", "User-Agent": "bwsync"},
            follow_redirects=False,
        )
        return cls(
            client,
            rate,
            error,
            sleep=sleep,
            clock=clock,
            monotonic=monotonic,
            on_request=on_request,
        )

    def __init__(
        self,
        client: httpx.Client,
        rate: RateHeaders,
        error: Callable[[str], DirectoryError],
        *,
        sleep: Callable[[float], None] = stop.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        max_retries: int = 5,
        max_wait: float = 900.0,
        reserve: float = 0.1,
        on_request: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.client = client
        self.rate = rate
        self.error = error
        self.sleep = sleep
        self.clock = clock
        self.monotonic = monotonic
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.reserve = reserve
        self.on_request = on_request
        self.not_before = 0.0
        self.waited = 0.0
        self.requests = 0

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.waited += seconds
            self.sleep(seconds)

    def _pace(self, response: httpx.Response) -> None:
        remaining = _int_header(response, self.rate.remaining)
        if remaining is None:
            return
        limit = _int_header(response, self.rate.limit)
        reset_in = self.rate.reset_in(response, self.clock())
        if reset_in is None:
            return
        now = self.monotonic()
        if remaining <= 0:
            self.not_before = now + min(reset_in, self.max_wait)
        elif limit and remaining < limit * self.reserve:
            self.not_before = now + min(reset_in / remaining, self.max_wait)

    def request(
        self,
        method: str,
        url: str,
        what: str,
        fresh: Callable[[], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; ``what`` ("GET /api/v1/users") names the request in errors.
        ``fresh`` is called before every attempt for the arguments that must not be replayed
        (a client assertion's or a DPoP proof's ``jti``, their ``iat`` after a long wait)."""
        attempt = 0
        while True:
            self._wait(self.not_before - self.monotonic())
            stop.check(what)
            self.requests += 1
            try:
                extra = fresh() if fresh is not None else {}
                response = self.client.request(method, url, **kwargs, **extra)
            except httpx.TransportError as exc:
                if self.on_request:
                    self.on_request(method, what, 0)
                if attempt >= self.max_retries or not should_retry(None, exc):
                    reason = type(exc).__name__
                    raise self.error(f"{what}: {reason}: {shorten(str(exc), 160)}") from None
                self._wait(min(2.0**attempt, 30.0))
                attempt += 1
                continue
            if self.on_request:
                self.on_request(method, what, response.status_code)
            self._pace(response)
            status = response.status_code
            if status == 429:
                wait = self.rate.reset_in(response, self.clock())
                if wait is None:
                    hint = retry_after(response)
                    wait = hint if hint is not None else 2.0**attempt
                if attempt >= self.max_retries or wait > self.max_wait:
                    raise self.error(
                        f"{what}: rate limit still exceeded after {attempt} waits "
                        f"(next reset in {wait:.0f} s)"
                    )
                self.not_before = 0.0
                # A reset given in whole seconds can be reached a hair early: add a margin.
                self._wait(wait + 0.25)
                attempt += 1
                continue
            if should_retry(status) and attempt < self.max_retries:  # a 5xx (429 is above)
                self._wait(min(2.0**attempt, 30.0))
                attempt += 1
                continue
            return response


def json_or_none(response: httpx.Response) -> Any:
    """The decoded body, or ``None`` when it is not JSON (the caller names the request)."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


class PacedSource(Generic[SettingsT]):
    """What the Okta and OneLogin sources share around ``PacedHttp``: the seams tests and the
    benchmark inject, one client per run (opened after the settings check, closed by ``close``)
    and the cached access token. Each source names its ``rate`` headers, its ``error_class`` and
    its CA file ``ca_setting``, and defines ``_require`` (the settings check)."""

    rate: ClassVar[RateHeaders]
    error_class: ClassVar[type[DirectoryError]]
    ca_setting: ClassVar[str]

    def __init__(
        self,
        settings: SettingsT,
        sync: SyncSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = stop.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        on_request: Callable[[str, str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.sync = sync
        self._transport = transport
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic
        self._on_request = on_request
        self._http: PacedHttp | None = None
        self._access_token: str | None = None
        self._token_expires = 0.0

    def _require(self) -> object:
        raise NotImplementedError

    def _client(self) -> PacedHttp:
        if self._http is None:
            self._require()
            self._http = PacedHttp.open(
                self.rate,
                self.error_class,
                ca_file=self.settings.ca_file,
                ca_setting=self.ca_setting,
                timeout=self.settings.timeout,
                transport=self._transport,
                sleep=self._sleep,
                clock=self._clock,
                monotonic=self._monotonic,
                on_request=self._on_request,
            )
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.client.close()
            self._http = None


def same_origin_next(base: str, link: str) -> str:
    """The next-page URL, re-rooted on our configured base so a bearer token never follows a
    link to another host, and a proxy configured as the base stays in the path."""
    b, n = urlsplit(base), urlsplit(link)
    if (n.scheme, n.netloc) == (b.scheme, b.netloc):
        return link
    return urlunsplit((b.scheme, b.netloc, n.path, n.query, ""))
