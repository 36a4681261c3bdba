"""HTTP plumbing shared by the cloud directory sources (Entra, Google, Okta, OneLogin).

Why one module: every cloud source needs the same four things, and getting them subtly
different per source is how one of them ends up retrying a 400 or leaking a token.

* ``ssl_verify(ca_file)`` — what to pass as httpx's ``verify``: an ``SSLContext`` trusting only
  the given PEM bundle, or ``True`` (system/certifi store). An explicit context is immune to
  ``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE``, so ``BWSYNC_<SOURCE>__CA_FILE`` always wins.
* ``CloudHttp`` — one ``httpx.Client`` per source run, with

  - bounded retries (``RetryPolicy``) on the one predicate ``should_retry``: transport errors,
    429 and 5xx, plus a source-supplied ``retry_on(response)`` for service-specific throttling
    (Google's 403 ``rateLimitExceeded``); waits honour ``Retry-After`` (or a source-supplied
    ``wait_hint`` for services that use another header, e.g. Okta's ``X-Rate-Limit-Reset``);
  - error translation: any failure becomes ``error_class(request, detail, status=…, code=…)``
    where ``request`` is ``"GET /v1.0/users"`` — method and path only, never the query string
    (continuation tokens) nor headers (bearer tokens) — and ``detail`` the service's own error
    code and message, extracted by the source's ``describe(response)``, cut to ``MAX_BODY``;
  - an optional ``httpx.Auth`` (token flow) and a request counter (``requests``), for the
    benchmark and for tests.

* ``CloudApiError`` — the ``DirectoryError`` subclass each source derives its own from
  (``EntraError``, ``GoogleError`` …), keeping status, request and the service's error code as
  attributes.
* ``CloudSource`` — the base of the Entra and Google sources: their test seams, their token
  and API clients (built by ``_cloud_http`` with the source's CA file, timeout and error shape),
  the request count and ``close``.

Usage::

    http = CloudHttp("Graph", ca_file=s.ca_file, timeout=s.timeout, error_class=EntraError,
                     describe=graph_error, auth=token_auth, base_url=graph)
    page = http.get_json("/v1.0/users", params={"$top": "999"})

The client is synchronous on purpose: a CronJob does one pass, in order (STYLE.md).
"""

from __future__ import annotations

import random
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

import httpx

from bwsync import stop
from bwsync.config import HttpSourceSection, SyncSettings
from bwsync.errors import DirectoryError, shorten
from bwsync.http_retry import retry_after, should_retry
from bwsync.redact import redact
from bwsync.setting_files import ca_context

__all__ = [
    "CloudApiError",
    "CloudHttp",
    "CloudSource",
    "RetryPolicy",
    "json_error_detail",
    "request_name",
    "retry_after",
    "should_retry",
    "ssl_verify",
]


class CloudApiError(DirectoryError):
    """A cloud directory API call failed for good (after any retries).

    ``request`` is ``"METHOD /path"`` (no query string, no credentials), ``status`` the HTTP
    status or ``None`` for a transport failure, ``code`` the service's machine-readable error
    code when it sent one (``Authorization_RequestDenied``, ``rateLimitExceeded`` …). ``detail``
    is masked as it is stored (``bwsync.redact``): it is often a server's text, and a server may
    echo the request that carried a secret.
    """

    service = "directory"

    def __init__(
        self,
        request: str,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        self.request = request
        self.status = status
        self.code = code
        self.detail = detail = redact(detail)
        where = f"{self.service} {request}" if request else self.service
        super().__init__(f"{where} failed: {detail}")


def ssl_verify(ca_file: Path | None, setting: str = "the CA file") -> ssl.SSLContext | bool:
    """httpx ``verify`` for a source: a context trusting exactly ``ca_file``, else ``True``.

    A file that cannot be loaded is a settings problem (exit 2), named by its ``setting``
    (``BWSYNC_ENTRA__CA_FILE``…) and reported before any request is made; every HTTP source
    (Entra, Google, Okta, OneLogin) words it the same way.
    """
    if ca_file is None:
        return True
    return ca_context(ca_file, setting)


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


@dataclass(slots=True)
class RetryPolicy:
    """How long a source keeps trying. Defaults suit a CronJob: a few minutes at most.

    ``max_retries`` retries after the first attempt; ``max_total`` caps the seconds spent
    waiting in all; a single wait is ``Retry-After`` when the service sent it (in full: an
    earlier retry only earns another 429), else exponential backoff from ``base_delay`` with
    jitter, each wait capped at ``max_wait``. Tests pass
    ``sleep=slept.append`` to record waits instead of waiting.
    """

    max_retries: int = 6
    max_total: float = 300.0
    max_wait: float = 120.0
    base_delay: float = 1.0
    sleep: Callable[[float], None] = stop.sleep
    jitter: Callable[[], float] = random.random

    def backoff(self, attempt: int) -> float:
        base: float = min(self.max_wait, self.base_delay * 2.0 ** (attempt - 1))
        return base * (0.5 + self.jitter() / 2)


Describe = Callable[[httpx.Response], tuple[str | None, str]]


@dataclass(slots=True)
class _Stats:
    requests: Counter[str] = field(default_factory=Counter)
    retries: int = 0


class CloudHttp:
    """One source's HTTP client: CA file, timeout, retries, error translation, counting.

    ``service`` names the API in messages ("Graph", "Admin SDK"). ``describe`` turns an error
    response into ``(code, message)`` (default ``json_error_detail``). ``retry_on`` marks extra
    responses as temporary (checked only for non-2xx); ``wait_hint`` replaces ``Retry-After``
    parsing. ``transport`` replaces the network (``httpx.MockTransport`` in unit tests).
    """

    def __init__(
        self,
        service: str,
        *,
        error_class: type[CloudApiError] = CloudApiError,
        ca_file: Path | None = None,
        ca_setting: str = "the CA file",
        timeout: float = 60.0,
        base_url: str = "",
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        describe: Describe = json_error_detail,
        retry_on: Callable[[httpx.Response], bool] | None = None,
        wait_hint: Callable[[httpx.Response], float | None] = retry_after,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.service = service
        self.error_class = error_class
        self.describe = describe
        self.retry_on = retry_on
        self.wait_hint = wait_hint
        self.policy = policy or RetryPolicy()
        self.stats = _Stats()
        self.client = httpx.Client(
            base_url=base_url,
            auth=auth,
            headers=dict(headers or {}),
            timeout=timeout,
            verify=ssl_verify(ca_file, ca_setting),
            # Proxy variables (HTTPS_PROXY/NO_PROXY) are honoured; certificate variables are
            # not, because ``verify`` is explicit whenever a CA file is configured.
            trust_env=True,
            follow_redirects=False,
            transport=transport,
        )

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> CloudHttp:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    @property
    def requests(self) -> int:
        """HTTP requests sent, retries included (the benchmark's count)."""
        return sum(self.stats.requests.values())

    # -- requests ----------------------------------------------------------------------------
    def error(
        self, name: str, response: httpx.Response | None, exc: Exception | None = None
    ) -> CloudApiError:
        """The translated error for a failed request (used by sources for non-HTTP failures
        too, e.g. a 200 whose body is not JSON)."""
        err = self.error_class
        if response is None:
            detail = type(exc).__name__ if exc is not None else "no response"
            if exc is not None and str(exc):
                detail += f": {shorten(str(exc))}"
            return err(name, detail)
        code, message = self.describe(response)
        detail = f"{response.status_code}"
        if code:
            detail += f" {code}"
        if message:
            detail += f": {message}"
        return err(name, detail, status=response.status_code, code=code)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Mapping[str, str] | None = None,
        content: str | bytes | None = None,
        ok: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response:
        """Send with retries; return the response when ``ok(response)`` (default: 2xx), else
        raise the translated error. ``url`` may be absolute (a Graph ``nextLink``)."""
        accept = ok or (lambda r: r.is_success)
        name = request_name(method, self.client.build_request(method, url).url)
        attempt = 0
        waited = 0.0
        while True:
            attempt += 1
            stop.check(name)
            self.stats.requests[name] += 1
            response: httpx.Response | None = None
            try:
                response = self.client.request(
                    method, url, params=params, headers=headers, data=data, content=content
                )
            except httpx.HTTPError as exc:
                if not should_retry(None, exc):
                    raise self.error(name, None, exc) from exc
                failure: Exception | None = exc
            else:
                if accept(response):
                    return response
                failure = None
                temporary = should_retry(response.status_code) or bool(
                    self.retry_on and self.retry_on(response)
                )
                if not temporary:
                    raise self.error(name, response)
            if attempt > self.policy.max_retries:
                raise self._gave_up(name, response, failure, attempt)
            hint = self.wait_hint(response) if response is not None else None
            # The server's own wait is honoured in full (retrying earlier only earns another
            # 429); ``max_total`` decides whether it is worth waiting at all.
            delay = hint if hint is not None else self.policy.backoff(attempt)
            if waited + delay > self.policy.max_total:
                raise self._gave_up(name, response, failure, attempt)
            waited += delay
            self.stats.retries += 1
            if response is not None:
                response.close()
            self.policy.sleep(delay)

    def _gave_up(
        self, name: str, response: httpx.Response | None, exc: Exception | None, attempts: int
    ) -> CloudApiError:
        base = self.error(name, response, exc)
        out = self.error_class(
            base.request,
            f"{base.detail} (gave up after {attempts} attempts)",
            status=base.status,
            code=base.code,
        )
        out.__cause__ = exc
        return out

    def get_json(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """GET and decode a JSON object; a non-object body is an error naming the request."""
        response = self.request("GET", url, params=params, headers=headers)
        try:
            body = response.json()
        except ValueError as exc:
            raise self.error_class(
                request_name("GET", response.request.url), "response is not JSON"
            ) from exc
        if not isinstance(body, dict):
            raise self.error_class(
                request_name("GET", response.request.url), "response is not a JSON object"
            )
        return body


SettingsT = TypeVar("SettingsT", bound=HttpSourceSection)
"""A source's settings section: the type parameter of ``CloudSource`` and
``paced_http.PacedSource``."""


class CloudSource(Generic[SettingsT]):
    """What the Entra and Google sources share around ``CloudHttp``: the seams tests inject
    (``transport``, ``policy``), a token client and an API client per run (both closed by
    ``close``), their request count, and the ``skipped`` counter. Each source names its
    ``error_class``, its CA file ``ca_setting`` and its error parser ``describe``."""

    error_class: ClassVar[type[CloudApiError]]
    ca_setting: ClassVar[str]

    @staticmethod
    def describe(response: httpx.Response) -> tuple[str | None, str]:
        """``(code, message)`` of an error response (``CloudHttp``'s ``describe``)."""
        return json_error_detail(response)

    def __init__(
        self,
        settings: SettingsT,
        sync: SyncSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        policy: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.sync = sync
        self._transport = transport
        self._policy = policy
        self._token_http: CloudHttp | None = None
        self._http: CloudHttp | None = None
        self.skipped: Counter[str] = Counter()

    @property
    def requests(self) -> int:
        """HTTP requests made so far, token requests included."""
        return sum(h.requests for h in (self._http, self._token_http) if h is not None)

    def _cloud_http(
        self,
        service: str,
        *,
        base_url: str = "",
        auth: httpx.Auth | None = None,
        retry_on: Callable[[httpx.Response], bool] | None = None,
    ) -> CloudHttp:
        """A client with this source's CA file, timeout, errors and test seams."""
        return CloudHttp(
            service,
            error_class=self.error_class,
            ca_file=self.settings.ca_file,
            ca_setting=self.ca_setting,
            timeout=self.settings.timeout,
            base_url=base_url,
            auth=auth,
            describe=self.describe,
            retry_on=retry_on,
            policy=self._policy,
            transport=self._transport,
        )

    def close(self) -> None:
        for http in (self._http, self._token_http):
            if http is not None:
                http.close()
        self._http = self._token_http = None
