"""The one HTTP layer of the cloud directory sources (Entra, Google, Okta, OneLogin).

Every cloud source reaches its service through ``CloudHttp``, built on ``bwsync.http``, for:

* TLS and its CA file (``BWSYNC_<SOURCE>__CA_FILE`` is the only trust anchor when set), the
  source's timeout, ``HTTPS_PROXY``/``NO_PROXY`` (CIDR blocks included; ``bwsync.http.client``),
  no redirects;
* retries: the predicate of ``bwsync.http.retry`` (429 honouring ``Retry-After``, 5xx,
  connection failures), bounded by one policy (``source_policy``: 6 retries, 600 s, backoff
  1 s doubling to 60 s with jitter);
* each provider's rate-limit signals (``Signals``: ``GRAPH``, ``GOOGLE``, ``OKTA``,
  ``ONELOGIN``): how it says "wait", how long, and whether it is a rate or a concurrency limit;
* a pause shared by every worker of the source (a 429's window is waited out once) and the
  bound on requests in flight (``BWSYNC_SYNC__MAX_CONCURRENT_REQUESTS``, never above a
  provider's documented concurrency limit, halved when the provider signals pressure);
* error translation: a failure becomes the source's own error naming ``"GET /v1.0/users"`` —
  method and path, never the query string (continuation tokens) nor headers (tokens);
* request counting (``HttpStats``), for the run's metrics and the benchmark.

Provider specifics — auth flows, paging shapes, error bodies — stay in each source's module;
``CloudSource`` is what the four share around this layer: the test seams (``transport``,
``policy``, ``clock``), the clients of one run, the ``Fanout`` that runs independent reads at
the same time, and ``close``.

The layer imports no source; sources import it (``tests/unit/test_import_rules.py``).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from bwsync.config import HttpSourceSection, SyncSettings
from bwsync.errors import DirectoryApiError, DirectoryError, shorten
from bwsync.http.client import build_client, ca_context
from bwsync.http.fanout import Fanout
from bwsync.http.pressure import Gate, Limiter
from bwsync.http.retry import (
    GIVE_UP,
    Attempt,
    Decision,
    Predicate,
    Retrier,
    RetriesExhausted,
    RetryPolicy,
    classify,
    retry_after,
)

__all__ = [
    "GOOGLE",
    "GRAPH",
    "OKTA",
    "ONELOGIN",
    "CloudHttp",
    "CloudSource",
    "HttpStats",
    "Signals",
    "json_error_detail",
    "json_or_none",
    "request_name",
    "same_origin_next",
    "source_policy",
]


def source_policy() -> RetryPolicy:
    """How long a cloud source keeps trying one request: 6 retries, at most 600 s since its
    first attempt (a provider's reset within a minute or two is waited for; an hour-long
    window fails the run, which the next run repeats), backoff 1 s doubling to 60 s (Google
    recommends 32-64 s as the cap) with jitter."""
    return RetryPolicy(max_retries=6, budget=600.0, backoff_base=1.0, backoff_cap=60.0)


def request_name(method: str, url: str | httpx.URL) -> str:
    """``"GET /v1.0/users"``: what an error may say about a request. The query string is left
    out on purpose: continuation and delta tokens live there and say nothing useful."""
    path = url.path if isinstance(url, httpx.URL) else urlsplit(url).path
    return f"{method.upper()} {path or '/'}"


def json_error_detail(response: httpx.Response) -> tuple[str | None, str]:
    """A generic ``(code, message)`` for services without a better parser: the OAuth shape
    ``{"error": "...", "error_description": "..."}``, the ``{"error": {"code", "message"}}``
    shape (Graph, Google), or the first ``MAX_BODY`` characters of the body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code = err.get("code")
            message = err.get("message") or ""
            return (str(code) if code is not None else None), shorten(str(message))
        if isinstance(err, str):
            desc = str(body.get("error_description") or "").splitlines()
            return err, shorten(desc[0] if desc else "")
        for key in ("errorSummary", "message", "Message"):
            if isinstance(body.get(key), str):
                code = body.get("errorCode") or body.get("code")
                return (str(code) if code is not None else None), shorten(body[key])
    text = response.text if response.content else ""
    return None, shorten(text) if text else response.reason_phrase


def json_or_none(response: httpx.Response) -> Any:
    """The decoded body, or ``None`` when it is not JSON (the caller names the request)."""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None


def same_origin_next(base: str, link: str) -> str:
    """The next-page URL, re-rooted on our configured base so a bearer token never follows a
    link to another host, and a proxy configured as the base stays in the path."""
    b, n = urlsplit(base), urlsplit(link)
    if (n.scheme, n.netloc) == (b.scheme, b.netloc):
        return link
    return urlunsplit((b.scheme, b.netloc, n.path, n.query, ""))


# --------------------------------------------------------------------------------------------
# Provider signals


def _int_header(response: httpx.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def epoch_reset_in(response: httpx.Response, header: str, now: float) -> float | None:
    """A reset given as an epoch second (Okta's ``X-Rate-Limit-Reset``), measured against the
    server's own ``Date`` (second resolution, so never early) rather than a possibly skewed
    local clock; ``now`` when the server sent no date."""
    raw = response.headers.get(header)
    if raw is None:
        return None
    try:
        reset = float(raw)
    except ValueError:
        return None
    server_now = now
    date = response.headers.get("date")
    if date:
        try:
            server_now = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            server_now = now
    return max(0.0, reset - server_now)


def seconds_reset_in(response: httpx.Response, header: str) -> float | None:
    """A reset given as seconds to wait (OneLogin's ``X-RateLimit-Reset``)."""
    raw = response.headers.get(header)
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


#: A reset given in whole seconds can be reached a hair early: added to every reset wait.
RESET_MARGIN = 0.25
#: Below this share of its window's budget left, a paced service's requests are spread over
#: the time to the reset instead of running into the wall.
RESERVE = 0.1


@dataclass(frozen=True, slots=True)
class Signals:
    """How one provider says "slow down", read by ``CloudHttp``.

    ``decide`` is the retry predicate (``bwsync.http.retry``'s, or one that knows the
    provider's own throttling answers); ``pace(response)`` the pause every request should
    take after a response that says the budget runs low (``None``: no pacing); ``ceiling`` the
    provider's documented concurrency limit (``None``: none documented).
    """

    name: str
    decide: Predicate = classify
    pace: Callable[[httpx.Response], float | None] | None = None
    ceiling: int | None = None


def _google_decide(response: httpx.Response | None, exc: BaseException | None) -> Decision:
    """Google's quota answers: 403 ``userRateLimitExceeded``/``rateLimitExceeded``/
    ``quotaExceeded`` are temporary, unlike every other 403, and like its 429
    ``rateLimitExceeded`` (a per-account concurrency limit) they carry no ``Retry-After``:
    every request waits a backoff, and fewer are sent at once."""
    if response is not None and response.status_code == 403:
        if google_reason(response) in GOOGLE_QUOTA_REASONS:
            return Decision("now", pause_all=True, shrink=True)
        return GIVE_UP
    return classify(response, exc)


GOOGLE_QUOTA_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})


def google_reason(response: httpx.Response) -> str | None:
    """The ``reason`` of Google's ``{"error": {"errors": [{"reason"}], "status"}}``."""
    body = json_or_none(response)
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None
    reasons = [e.get("reason") for e in err.get("errors") or [] if isinstance(e, dict)]
    reason = next((r for r in reasons if r), None) or err.get("status")
    return str(reason) if reason else None


@dataclass(frozen=True, slots=True)
class RateHeaders:
    """A service announcing its rate budget in headers on every answer (Okta, OneLogin):
    ``limit``, ``remaining``, and the reset read by ``reset_in(response, now)``."""

    limit: str
    remaining: str
    reset_in: Callable[[httpx.Response, float], float | None]
    clock: Callable[[], float] = time.time

    def decide(self, response: httpx.Response | None, exc: BaseException | None) -> Decision:
        """A 429 waits for the reset (plus ``RESET_MARGIN``), every request with it. Okta's
        concurrency 429 (``limit`` and ``remaining`` both 0: too many requests in flight, not
        too many in the window) backs off this request and sends fewer at once instead."""
        if response is None or response.status_code != 429:
            return classify(response, exc)
        if _int_header(response, self.limit) == 0 and _int_header(response, self.remaining) == 0:
            return Decision("now", shrink=True)
        reset = self.reset_in(response, self.clock())
        if reset is None:
            return classify(response, exc)
        return retry_after(reset + RESET_MARGIN, pause_all=True, shrink=True)

    def pace(self, response: httpx.Response) -> float | None:
        """When fewer than ``RESERVE`` of the window's requests remain, the next request waits
        ``reset / remaining`` (the rest spread evenly over the window); at zero, the reset."""
        remaining = _int_header(response, self.remaining)
        limit = _int_header(response, self.limit)
        if remaining is None or not limit or response.status_code == 429:
            return None
        reset = self.reset_in(response, self.clock())
        if reset is None:
            return None
        if remaining <= 0:
            return reset + RESET_MARGIN
        if remaining < limit * RESERVE:
            return reset / remaining
        return None


def rate_signals(name: str, rate: RateHeaders, ceiling: int | None = None) -> Signals:
    return Signals(name, decide=rate.decide, pace=rate.pace, ceiling=ceiling)


GRAPH = Signals("Graph")
"""Graph: 429 (and 503) with ``Retry-After`` in seconds, decimals included; no documented
concurrency limit for users and groups."""
GOOGLE = Signals("Google", decide=_google_decide)
"""Google: 403/429 quota reasons without ``Retry-After``; its concurrency limit is per
Workspace account and undocumented, so only the pressure signals bound it."""
OKTA_RATE = RateHeaders(
    "x-rate-limit-limit",
    "x-rate-limit-remaining",
    lambda r, now: epoch_reset_in(r, "x-rate-limit-reset", now),
)
OKTA = rate_signals("Okta", OKTA_RATE, ceiling=15)
"""Okta: ``X-Rate-Limit-*`` on every answer, a reset in epoch seconds; its concurrency limit
is 15 requests per org on the smallest plan (35 or 75 on others, shared with every other
client of the org), so bwsync never has more than 15 in flight."""
ONELOGIN_RATE = RateHeaders(
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    lambda r, now: seconds_reset_in(r, "x-ratelimit-reset"),
)
ONELOGIN = rate_signals("OneLogin", ONELOGIN_RATE)
"""OneLogin: ``X-RateLimit-*``, the reset in seconds to wait; no documented concurrency limit."""


# --------------------------------------------------------------------------------------------
# The client


@dataclass(slots=True)
class HttpStats:
    """Requests one source made (every HTTP exchange, token requests and retries included),
    by HTTP status (0: no response), and how many were retries; safe across threads."""

    by_status: Counter[int] = field(default_factory=Counter)
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> int:
        with self._lock:
            return sum(self.by_status.values())

    def record(self, status: int) -> None:
        with self._lock:
            self.by_status[status] += 1

    def retried(self) -> None:
        with self._lock:
            self.retries += 1


Translate = Callable[[str, httpx.Response | None, BaseException | None, str], DirectoryError]
"""(request name, the failed response or ``None``, the exception that replaced it, the
"gave up" note or ``""``) → the source's error. Without a response and an exception, the note
is the whole detail (a 200 whose body is unusable)."""


def describing(error_class: type[DirectoryApiError], describe: Callable[..., Any]) -> Translate:
    """The translation of a source whose errors are ``DirectoryApiError``s, with ``describe(
    response) -> (code, message)`` reading the service's error body."""

    def translate(
        name: str, response: httpx.Response | None, exc: BaseException | None, note: str
    ) -> DirectoryError:
        if response is None and exc is None:
            return error_class(name, note or "no response")
        if response is None:
            detail = type(exc).__name__
            if exc is not None and str(exc):
                detail += f": {shorten(str(exc))}"
            status = code = None
        else:
            code, message = describe(response)
            status = response.status_code
            detail = f"{status}"
            if code:
                detail += f" {code}"
            if message:
                detail += f": {message}"
        if note:
            detail += f" ({note})"
        return error_class(name, detail, status=status, code=code)

    return translate


class CloudHttp:
    """One client of a source: see the module docstring. ``fanout`` (the source's reads of
    this run) stops new requests once one read failed; ``limiter`` bounds the requests in
    flight (shared by the API clients of a source; token clients go without, so that a token
    fetched inside a request's auth flow never waits for a slot that request holds)."""

    def __init__(
        self,
        service: str,
        *,
        translate: Translate,
        signals: Signals = GRAPH,
        ca_file: Path | None = None,
        ca_setting: str = "the CA file",
        timeout: float = 60.0,
        base_url: str = "",
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        limiter: Limiter | None = None,
        fanout: Fanout | None = None,
        stats: HttpStats | None = None,
    ) -> None:
        self.service = service
        self.translate = translate
        self.policy = policy or source_policy()
        self.stats = stats or HttpStats()
        self.fanout = fanout
        self.gate = Gate(self.policy.clock, self.policy.sleep)
        self.retrier = Retrier(
            self.policy,
            signals.decide,
            gate=self.gate,
            limiter=limiter,
            pacer=signals.pace,
            on_retry=self._retrying,
        )
        self.client = build_client(
            verify=ca_context(ca_file, ca_setting),
            timeout=timeout,
            base_url=base_url,
            headers=headers,
            auth=auth,
            transport=transport,
            event_hooks={"response": [self._record]},
        )

    def __enter__(self) -> CloudHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included (the benchmark's count)."""
        return self.stats.requests

    def _record(self, response: httpx.Response) -> None:
        self.stats.record(response.status_code)

    def _retrying(self, attempt: Attempt) -> None:
        self.stats.retried()

    def send(
        self,
        method: str,
        url: str,
        *,
        what: str | None = None,
        fresh: Callable[[], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; the final response whatever its status (a 2xx, or one the
        predicate gives up on: the caller reads the service's error). A failure without a
        response, or retries that ran out, raise the translated error. ``what`` names the
        request in errors (default: method and path); ``fresh()`` gives, for every attempt,
        the arguments that must not be replayed (a client assertion's ``jti``)."""
        name = what or request_name(method, self.client.build_request(method, url).url)

        def attempt() -> httpx.Response:
            if self.fanout is not None:
                self.fanout.check()
            extra = fresh() if fresh is not None else {}
            try:
                return self.client.request(method, url, **kwargs, **extra)
            except httpx.HTTPError:
                self.stats.record(0)
                raise

        try:
            return self.retrier.call(name, attempt)
        except RetriesExhausted as exc:
            raise self.translate(name, exc.response, exc.exc, exc.note) from exc.exc
        except httpx.HTTPError as exc:
            raise self.translate(name, None, exc, "") from exc

    def request(
        self,
        method: str,
        url: str,
        *,
        ok: Callable[[httpx.Response], bool] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """``send``, and the translated error unless ``ok(response)`` (default: a 2xx)."""
        response = self.send(method, url, **kwargs)
        if not (ok(response) if ok is not None else response.is_success):
            raise self.translate(
                kwargs.get("what") or request_name(method, response.request.url),
                response,
                None,
                "",
            )
        return response

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """GET and decode a JSON object; a non-object body is an error naming the request."""
        response = self.request("GET", url, params=params, headers=headers)
        name = request_name("GET", response.request.url)
        body = json_or_none(response)
        if body is None:
            raise self.translate(name, None, None, "response is not JSON")
        if not isinstance(body, dict):
            raise self.translate(name, None, None, "response is not a JSON object")
        return body


# --------------------------------------------------------------------------------------------
# What the four sources share


SettingsT = TypeVar("SettingsT", bound=HttpSourceSection)
"""A source's settings section: the type parameter of ``CloudSource``."""


class CloudSource(Generic[SettingsT]):
    """The life of a cloud source's HTTP clients in one run.

    Each source names its ``signals``, its ``ca_setting`` and how its errors are made
    (``translate``). ``transport`` (an ``httpx.MockTransport`` in unit tests), ``policy``
    (fake sleep and clock) and ``clock`` (the wall clock, for token lifetimes and resets) are
    the test seams. ``reading()`` opens a fetch: a ``Fanout`` and a fresh bound on requests in
    flight, both sized by ``BWSYNC_SYNC__MAX_CONCURRENT_REQUESTS`` within the provider's
    ``ceiling``; its end closes every client.
    """

    signals: ClassVar[Signals] = GRAPH
    ca_setting: ClassVar[str]

    def __init__(
        self,
        settings: SettingsT,
        sync: SyncSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.sync = sync
        self._transport = transport
        self.policy = policy or source_policy()
        self.clock = clock
        self.stats = HttpStats()
        self.fanout = Fanout(1)
        self.limiter = Limiter(self.concurrency)
        self._clients: list[CloudHttp] = []
        self.skipped: Counter[str] = Counter()

    @property
    def concurrency(self) -> int:
        """Requests in flight at most: the setting, within the provider's documented limit."""
        wanted = self.sync.max_concurrent_requests
        ceiling = self.signals.ceiling
        return min(wanted, ceiling) if ceiling is not None else wanted

    @property
    def requests(self) -> int:
        """HTTP requests made so far, token requests and retries included."""
        return self.stats.requests

    def translate(
        self, name: str, response: httpx.Response | None, exc: BaseException | None, note: str
    ) -> DirectoryError:
        raise NotImplementedError

    def _cloud_http(
        self,
        service: str,
        *,
        base_url: str = "",
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        limited: bool = True,
    ) -> CloudHttp:
        """A client with this source's CA file, timeout, signals, errors and test seams;
        ``limited`` ones share the bound on requests in flight."""
        http = CloudHttp(
            service,
            translate=self.translate,
            signals=self.signals,
            ca_file=self.settings.ca_file,
            ca_setting=self.ca_setting,
            timeout=self.settings.timeout,
            base_url=base_url,
            auth=auth,
            headers=headers,
            policy=self.policy,
            transport=self._transport,
            limiter=self.limiter if limited else None,
            fanout=self.fanout,
            stats=self.stats,
        )
        self._clients.append(http)
        return http

    @contextmanager
    def reading(self) -> Iterator[Fanout]:
        """One fetch's reads: see the class docstring."""
        self.skipped = Counter()
        self.fanout = Fanout(self.concurrency)
        self.limiter = Limiter(self.concurrency)
        try:
            yield self.fanout
        finally:
            self.fanout.close()
            self.close()

    def close(self) -> None:
        for http in self._clients:
            http.close()
        self._clients = []
