"""The Bitwarden client: organization API key → token → import, list, revoke, restore, and
empty or delete a group (§5: `PUT /public/groups/{id}/member-ids`, `DELETE /public/groups/{id}`).

Written against ``reference/bitwarden-public-api.md`` (§n below) and bwdc's behaviour
(``directory-connector-behaviour.md`` §5); works with the US and EU clouds, the official
self-hosted server and Vaultwarden, which differ in URLs (``BitwardenSettings.resolved_*``),
token errors and the endpoints they have.

Three pieces, each with one job:

* ``OrgTokenAuth`` (``bwsync.http.auth``'s flow): fetch a token with the organization API key,
  cache it until shortly before it expires, and on a 401 from the API fetch a new one once and
  repeat the request. Pure request/response logic.
* retries: ``bwsync.http.retry``'s engine and predicate (429, 5xx, timeouts and connection
  failures are temporary; every other 4xx is permanent), ``Retry-After`` or exponential
  backoff with jitter, bounded by ``settings.max_retries`` retries and ``MAX_RETRY_SECONDS``
  since the first attempt. One case of its own: a 429 without ``Retry-After`` at the token
  endpoint is Vaultwarden's login rate limit, waited out for up to
  ``settings.login_rate_limit_wait`` seconds whatever ``max_retries`` says.
* error translation: after the retries, the response or the httpx exception becomes a
  ``BitwardenError`` subclass naming the step, status, URL and the server's own ``message`` and
  field errors. No httpx exception leaves this module, and the client secret appears in no
  message or ``repr`` (it is only ever written into the token request's form body).
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, overload
from urllib.parse import quote

import httpx
import msgspec
import orjson

from bwsync import __version__, stop
from bwsync.config import BitwardenSettings, env_name
from bwsync.errors import (
    BitwardenAuthError,
    BitwardenClientError,
    BitwardenError,
    BitwardenServerError,
    ConfigError,
    shorten,
)
from bwsync.http.auth import TokenAuth
from bwsync.http.client import build_client, ca_context
from bwsync.http.retry import (
    Attempt,
    Decision,
    Retrier,
    RetriesExhausted,
    RetryPolicy,
    classify,
    retry_after_seconds,
)
from bwsync.http.retry import temporary as should_retry
from bwsync.logs import event
from bwsync.model import (
    BITWARDEN_ENDPOINTS,
    CollectionGrant,
    MemberState,
    OrgGroup,
    OrgMember,
)
from bwsync.redact import redact, remember, strip_userinfo

__all__ = [
    "DEVICE_NAME",
    "DEVICE_TYPE",
    "ENDPOINTS",
    "MAX_RETRY_SECONDS",
    "BitwardenClient",
    "OrgTokenAuth",
    "TokenCache",
    "backoff_delay",
    "should_retry",
]

#: Endpoint names reported to ``on_request``/``on_retry`` (metric labels), shared with the
#: stand-in through ``bwsync.model``.
ENDPOINTS: Final = BITWARDEN_ENDPOINTS
#: bwdc sends 8 (Linux desktop) and ``linux`` from a Linux host; Vaultwarden requires both.
DEVICE_TYPE: Final = 8
DEVICE_NAME: Final = "linux"
#: Total seconds the retries of one call may wait before giving up (a CronJob has a deadline).
MAX_RETRY_SECONDS: Final = 300.0
#: Backoff: 1 s, 2 s, 4 s … capped at 60 s, each scaled by a jitter factor in [0.5, 1).
BACKOFF_BASE: Final = 1.0
BACKOFF_CAP: Final = 60.0
#: A token is renewed this long before it expires (bwdc: 5 minutes), or 10 % of its lifetime
#: when that is shorter, so a short-lived token is still used for most of its life.
TOKEN_MARGIN: Final = 300.0

_ENDPOINT_KEY: Final = "bwsync_endpoint"


# --------------------------------------------------------------------------------------------
# Retry predicate and backoff


def backoff_delay(attempt: int, jitter: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): exponential, capped, with
    ``jitter`` in [0, 1) spreading clients that failed together (the policy's backoff)."""
    policy = RetryPolicy(backoff_base=BACKOFF_BASE, backoff_cap=BACKOFF_CAP, jitter=lambda: jitter)
    return policy.backoff(attempt)


# --------------------------------------------------------------------------------------------
# Token


class _TokenRefused(Exception):
    """The token endpoint answered something other than a token; carries the response."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(slots=True)
class _Token:
    value: str
    renew_at: float

    def __repr__(self) -> str:
        return f"_Token(renew_at={self.renew_at!r})"


class TokenCache:
    """Access tokens kept beyond one client, for ``sync --every``: each pass builds a new
    client, and without this each would ask for a new token. Vaultwarden counts every token
    request against its login rate limit (10 at once, then one a minute), so a loop every few
    minutes, or a few profiles, would run into it. A token is reused until shortly before it
    expires (``TOKEN_MARGIN``); keyed by token URL and client id. In memory only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, str], _Token] = {}

    def __repr__(self) -> str:
        return f"TokenCache({len(self._tokens)} tokens)"

    def get(self, key: tuple[str, str]) -> _Token | None:
        with self._lock:
            return self._tokens.get(key)

    def put(self, key: tuple[str, str], token: _Token | None) -> None:
        with self._lock:
            if token is None:
                self._tokens.pop(key, None)
            else:
                self._tokens[key] = token


class OrgTokenAuth(TokenAuth):
    """Bearer tokens from the organization API key (``client_credentials``, §2; bwdc §5.2).

    The flow (``bwsync.http.auth``) fetches a token when none is cached or the cached one is
    due for renewal — the token request goes through the client like any request, so it
    shares its TLS, proxy and timeouts — attaches it, and on a 401 from the API fetches a new
    one once and repeats the request. A token endpoint answer other than 200 is raised as
    ``_TokenRefused`` for the client's retry loop to classify (a 429 there is retried like any
    other; a 4xx is an authentication failure).
    """

    requires_response_body = True
    slot = "bitwarden"

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        device_identifier: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        cache: TokenCache | None = None,
    ) -> None:
        self._timeout = httpx.Timeout(timeout).as_dict()
        self.token_url = token_url
        self._headers = dict(headers or {})
        self._client_id = client_id
        self._secret = client_secret
        self._device_identifier = device_identifier
        self._clock = clock
        self._cache = cache
        self._key = (token_url, client_id)
        self._token: _Token | None = cache.get(self._key) if cache is not None else None
        self.fetched = 0
        """Tokens obtained so far (tests and debugging)."""

    def __repr__(self) -> str:
        return f"OrgTokenAuth(token_url={self.token_url!r}, client_id={self._client_id!r})"

    def token_request(self) -> httpx.Request:
        """The token request, fields in bwdc's order (§5.2), device fields included because
        Vaultwarden requires them (§6.1)."""
        form = {
            "scope": "api.organization",
            "client_id": self._client_id,
            "deviceType": str(DEVICE_TYPE),
            "deviceIdentifier": self._device_identifier,
            "deviceName": DEVICE_NAME,
            "grant_type": "client_credentials",
            "client_secret": self._secret,
        }
        return httpx.Request(
            "POST",
            self.token_url,
            data=form,
            headers={**self._headers, "Accept": "application/json"},
            # built outside the client, so it carries its own timeout (httpx would wait forever)
            extensions={_ENDPOINT_KEY: "token", "timeout": self._timeout},
        )

    def store(self, response: httpx.Response) -> str:
        """Keep the token of a token-endpoint response, or raise ``_TokenRefused``."""
        if response.status_code != 200:
            raise _TokenRefused(response)
        try:
            data = orjson.loads(response.content)
            value = data["access_token"]
            lifetime = float(data.get("expires_in") or 3600)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            raise _TokenRefused(response) from None
        if not isinstance(value, str) or not value:
            raise _TokenRefused(response)
        margin = min(TOKEN_MARGIN, lifetime * 0.1)
        self._token = _Token(value, self._clock() + lifetime - margin)
        if self._cache is not None:
            self._cache.put(self._key, self._token)
        self.fetched += 1
        return value

    def current(self) -> str | None:
        """The cached token if it is not yet due for renewal."""
        if self._token is not None and self._clock() < self._token.renew_at:
            return self._token.value
        return None

    def forget(self) -> None:
        self._token = None
        if self._cache is not None:
            self._cache.put(self._key, None)

    def cached(self) -> str | None:
        return self.current()

    def fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        return self.store((yield self.token_request()))


# --------------------------------------------------------------------------------------------
# Error translation


#: Longest server message or field error kept from a structured (JSON) error body. Longer than
#: ``MAX_BODY``: Vaultwarden's "User email <email> is not a valid email address" must keep the
#: whole email to name the entry; the client secret is masked in these (``_scrub``).
MAX_SERVER_MESSAGE: Final = 1000


def _server_error_parts(body: bytes) -> tuple[str | None, dict[str, list[str]]]:
    """The server's message and field errors from any of the shapes it uses.

    Public API ``{message, errors}``, internal ``{message, validationErrors}`` (any casing),
    OAuth ``{error, error_description}``, Vaultwarden ``{message, errorModel, validationErrors}``
    and Rocket's catcher ``{error: {code, reason, description}}``. Unstructured bodies are cut
    short: a server may echo what it was sent. A field error that only repeats the message
    (Vaultwarden puts it under the key "") is dropped, so each text is shown once.
    """
    if not body.strip():
        return None, {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return shorten(body.decode("utf-8", "replace")), {}
    if not isinstance(data, dict):
        return shorten(body.decode("utf-8", "replace")), {}
    lower = {str(k).lower(): v for k, v in data.items()}
    message: str | None = None
    for key in ("message", "error_description"):
        value = lower.get(key)
        if isinstance(value, str) and value.strip():
            message = value
            break
    if message is None and isinstance(lower.get("errormodel"), dict):
        nested = {str(k).lower(): v for k, v in lower["errormodel"].items()}
        if isinstance(nested.get("message"), str):
            message = nested["message"]
    error = lower.get("error")
    if isinstance(error, str) and error.strip():
        message = error if message is None else f"{error}: {message}"
    elif isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("reason", "description") if error.get(k)]
        message = message or ": ".join(parts) or None
    errors: dict[str, list[str]] = {}
    for key in ("errors", "validationerrors"):
        value = lower.get(key)
        if isinstance(value, dict):
            for field_name, texts in value.items():
                items = texts if isinstance(texts, list) else [texts]
                kept = [shorten(str(t), MAX_SERVER_MESSAGE) for t in items if str(t) != message]
                if kept:
                    errors[str(field_name)] = kept
    return (shorten(message, MAX_SERVER_MESSAGE) if message else None), errors


def _endpoint_lacking(response: httpx.Response) -> bool:
    """Whether a 404 says the server has no such endpoint at all: Vaultwarden's answer for the
    list endpoints it lacks is its API catcher's JSON, ``{"error": {"code": 404, "reason":
    "Not Found", ...}}`` (``src/api/core/mod.rs``). Any other 404 (an empty one, a proxy's
    page) is an error naming the URL: taking it for Vaultwarden would make bwsync plan against
    its memory instead of the organization it cannot see."""
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return False
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and error.get("code") == 404


def _error_from_response(
    step: str, response: httpx.Response, *, token: bool, url_setting: str = ""
) -> BitwardenError:
    """The error for a final non-2xx answer. ``url_setting`` names the setting the token URL
    comes from, for a token endpoint that is not there."""
    status = response.status_code
    url = _url(response.request)
    message, errors = _server_error_parts(response.content)
    detail = f"HTTP {status} from {url}"
    if 300 <= status < 400:
        location = response.headers.get("Location")
        detail += f" redirected to {shorten(location, 200)}" if location else " (a redirect)"
        detail += "; configure the final URL (https?)"
    if message:
        detail += f": {message}"
    elif status == 429:
        detail += ": Rate limit exceeded. Try again later."
    cls: type[BitwardenError]
    if token and status in (404, 405):
        # A base URL with a path the server does not have (Vaultwarden: HTTP 404), or a
        # web page answering instead of the identity server: no key was even looked at.
        setting = url_setting or env_name("bitwarden", "server")
        return BitwardenClientError(
            step,
            f"there is no identity endpoint at {url} (HTTP {status}): check {setting}; it "
            "must be the server's base URL, under which /identity and /api are (for a "
            "self-hosted server or Vaultwarden, the address of its web vault)",
            status=status,
            url=url,
            message=message,
        )
    if token and 400 <= status < 500 and status != 429:
        cls = BitwardenAuthError
        detail = (
            f"the identity server {url} refused the organization API key (HTTP {status}"
            + (f": {message}" if message else "")
            + f"); check {env_name('bitwarden', 'client_id')}, the secret, and that the "
            "server/region matches the organization"
        )
    elif status in (401, 403):
        cls = BitwardenAuthError
        detail += " (the token was not accepted even after renewing it)" if status == 401 else ""
    elif status == 429 or status >= 500:
        cls = BitwardenServerError
    else:
        cls = BitwardenClientError
    return cls(step, detail, status=status, url=url, message=message, errors=errors)


def _error_from_exception(step: str, exc: Exception, url: str) -> BitwardenError:
    kind = type(exc).__name__
    text = shorten(str(exc), 200) or kind
    if isinstance(exc, httpx.TimeoutException):
        return BitwardenServerError(step, f"{kind} waiting for {url}: {text}", url=url)
    if isinstance(exc, httpx.TransportError):
        return BitwardenServerError(step, f"could not reach {url}: {kind}: {text}", url=url)
    return BitwardenError(step, f"request to {url} failed: {kind}: {text}", url=url)


def _grants(raw: Any) -> tuple[CollectionGrant, ...]:
    """A group's ``collections`` as listed (null where a server gives none); entries without
    an id are skipped, flags that are not ``true`` are false."""
    if not isinstance(raw, list):
        return ()
    return tuple(
        CollectionGrant(
            str(c["id"]),
            read_only=c.get("readOnly") is True,
            hide_passwords=c.get("hidePasswords") is True,
            manage=c.get("manage") is True,
        )
        for c in raw
        if isinstance(c, dict) and c.get("id")
    )


def _url(request: httpx.Request) -> str:
    """The URL without query or credentials, for messages."""
    u = request.url
    return str(u.copy_with(query=None, fragment=None, username=None, password=None))


def _request_of(exc: Exception) -> httpx.Request | None:
    try:
        return exc.request if isinstance(exc, httpx.HTTPError) else None
    except RuntimeError:  # raised before a request was attached
        return None


def _is_token(response: httpx.Response) -> bool:
    """Whether ``response`` is the token endpoint's (a token request of the auth flow or of
    ``check_token``)."""
    return _endpoint_of(response.request) == "token"


def _endpoint_of(request: httpx.Request | None) -> str:
    if request is None:
        return "unknown"
    return str(request.extensions.get(_ENDPOINT_KEY, "unknown"))


# --------------------------------------------------------------------------------------------
# The client


class _MemberList(msgspec.Struct):
    """``GET /public/members``: ``{"object": "list", "data": [...], "continuationToken": …}``;
    only ``data`` is read, and of each member only ``OrgMember``'s fields."""

    data: list[OrgMember]


class _MemberStates(msgspec.Struct):
    """The same response, read for ``MemberState``'s two fields only."""

    data: list[MemberState]


_ListT = TypeVar("_ListT", _MemberList, _MemberStates)
_MEMBER_LIST: Final = msgspec.json.Decoder(_MemberList)
_MEMBER_STATES: Final = msgspec.json.Decoder(_MemberStates)


def _wait(seconds: float) -> None:
    stop.sleep(seconds)


def tls_verify(settings: BitwardenSettings) -> ssl.SSLContext | bool:
    """The client's ``verify``: an explicit ``ca_file`` wins over SSL_CERT_FILE and friends,
    as the only trust anchor of an SSL context built here (httpx would otherwise read the
    environment). An unloadable one is a ``ConfigError`` naming the setting; the run calls
    this first, so that it is reported before any connection (the client itself may be built
    later, beside the fetch)."""
    return ca_context(settings.ca_file, env_name("bitwarden", "ca_file"))


class _TokenUnusable(Exception):
    """The token endpoint answered 200 without a usable token: not retried, reported as an
    unexpected answer."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class BitwardenClient:
    """Synchronous client for one organization; see the module docstring.

    ``transport`` replaces the network (``httpx.MockTransport`` in unit tests); ``sleep`` is
    what waits between retries (tests pass a recorder; by default a stop request cuts it
    short, and no attempt starts after one: ``bwsync.stop``); ``tokens`` keeps the access token
    for the next client (``sync --every``); ``on_request(endpoint, status)`` is
    called for every HTTP exchange, token requests and 401s included (status 0 for a transport
    failure) and ``on_retry(endpoint)`` before every retry, for metrics. ``clock`` and
    ``jitter`` are injectable for deterministic tests.
    """

    def __init__(
        self,
        settings: BitwardenSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        on_request: Callable[[str, int], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        max_retry_seconds: float = MAX_RETRY_SECONDS,
        tokens: TokenCache | None = None,
    ) -> None:
        if not settings.client_id or settings.client_secret is None:
            raise ConfigError(settings.api_key_problems())
        self.settings = settings
        remember(settings.client_secret.get_secret_value())  # whoever built these settings
        self.api_url = settings.resolved_api_url.rstrip("/")
        self.identity_url = settings.resolved_identity_url.rstrip("/")
        self._url_setting = (
            f"{env_name('bitwarden', 'identity_url')}={settings.identity_url}"
            if settings.identity_url
            else f"{env_name('bitwarden', 'server')}={settings.server}"
        )
        # Looked up when waiting, not bound here: a stop request cuts the wait short
        # (bwsync.stop.sleep), and an end-to-end test replaces bwsync.stop.sleep to wait out
        # a rate limit on the stand-in's clock instead of the wall clock.
        self._sleep = sleep if sleep is not None else _wait
        self._on_request = on_request
        self._on_retry = on_retry
        self._callbacks = threading.Lock()
        """Held while a callback runs and while ``detach`` clears them (see ``detach``)."""
        self._clock = clock
        version = __version__
        headers = {
            "Accept": "application/json",
            "User-Agent": f"bwsync/{version}",
            "Device-Type": str(DEVICE_TYPE),
            "Bitwarden-Client-Name": "bwsync",
            "Bitwarden-Client-Version": version,
        }
        self.auth = OrgTokenAuth(
            self.identity_url + "/connect/token",
            settings.client_id,
            settings.client_secret.get_secret_value(),
            settings.device_identifier,
            headers=headers,
            timeout=settings.timeout,
            clock=clock,
            cache=tokens,
        )
        self._policy = RetryPolicy(
            max_retries=settings.max_retries,
            budget=max_retry_seconds,
            backoff_base=BACKOFF_BASE,
            backoff_cap=BACKOFF_CAP,
            sleep=self._sleep,
            clock=clock,
            jitter=jitter,
        )
        # HTTPS_PROXY / NO_PROXY are honoured, as bwdc honours https_proxy (bwsync.http.client).
        self._http = build_client(
            verify=tls_verify(settings),
            timeout=settings.timeout,
            headers=headers,
            transport=transport,
            event_hooks={"response": [self._record]},
        )

    def __repr__(self) -> str:
        return (
            f"BitwardenClient(api_url={self.api_url!r}, identity_url={self.identity_url!r}, "
            f"client_id={self.settings.client_id!r})"
        )

    def close(self) -> None:
        self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    def detach(self) -> None:
        """Stop reporting requests and retries: the run they belonged to has ended (its summary
        and metrics are out), and a read still running must not change them afterwards. A
        callback already running on the read's thread is waited for, so none runs after this
        returns."""
        with self._callbacks:
            self._on_request = None
            self._on_retry = None

    def _report_request(self, endpoint: str, status: int) -> None:
        with self._callbacks:
            if self._on_request is not None:
                self._on_request(endpoint, status)

    def _report_retry(self, endpoint: str) -> None:
        with self._callbacks:
            if self._on_retry is not None:
                self._on_retry(endpoint)

    def __enter__(self) -> BitwardenClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- public operations -----------------------------------------------------------------

    def check_token(self) -> None:
        """Fetch a token now (and keep it): a wrong key fails here, before anything else."""
        self._send("token", "token", self.auth.token_request, authenticated=False)

    def import_organization(self, body: bytes, step: str = "import") -> None:
        """POST one import request (§3), exactly these bytes; 200 with an empty body is success."""
        self._send(
            step,
            "import",
            lambda: self._http.build_request(
                "POST",
                self.api_url + "/public/organization/import",
                content=body,
                headers={"Content-Type": "application/json; charset=utf-8"},
            ),
        )

    def list_members(self) -> list[OrgMember] | None:
        """Every member in every status (§5); ``None`` where the server has no list endpoint
        (Vaultwarden answers 404)."""
        members = self._member_list(_MEMBER_LIST)
        return None if members is None else members.data

    def member_states(self) -> list[MemberState] | None:
        """``list_members`` read for the check after an import: externalId and status only."""
        states = self._member_list(_MEMBER_STATES)
        return None if states is None else states.data

    def _member_list(self, decoder: msgspec.json.Decoder[_ListT]) -> _ListT | None:
        step = "list members"
        response = self._exchange(
            step, "list_members", self._get("/public/members"), missing_if=_endpoint_lacking
        )
        if response is None:
            return None
        try:
            return decoder.decode(response.content)
        except msgspec.DecodeError:
            raise self._unexpected(step, response) from None

    def list_groups(self) -> list[OrgGroup] | None:
        """Every group (§5); ``None`` where the server has no list endpoint."""
        data = self._list("list groups", "list_groups", "/public/groups")
        if data is None:
            return None
        return [
            OrgGroup(
                id=str(g["id"]),
                name=str(g.get("name") or ""),
                external_id=g.get("externalId"),
                collections=_grants(g.get("collections")),
            )
            for g in data
        ]

    @overload
    def group_member_ids(self, group_id: str) -> list[str]: ...
    @overload
    def group_member_ids(self, group_id: str, *, missing_ok: Literal[True]) -> list[str] | None: ...
    def group_member_ids(self, group_id: str, *, missing_ok: bool = False) -> list[str] | None:
        """Membership ids (not user ids) of one group's members. ``missing_ok``: ``None`` when
        the group is gone (404), e.g. deleted by hand since the group list was read."""
        step = "group member ids"
        response = self._exchange(
            step,
            "group_member_ids",
            self._get(f"/public/groups/{quote(group_id, safe='')}/member-ids"),
            missing_ok=missing_ok,
        )
        if response is None:
            return None
        data = self._json(step, response)
        if not isinstance(data, list):
            raise self._unexpected(step, response)
        return [str(x) for x in data]

    def set_group_member_ids(self, group_id: str, member_ids: list[str]) -> bool:
        """Replace one group's membership (``PUT /public/groups/{id}/member-ids``, body
        ``{"memberIds": [...]}``, 200 with an empty body): ``[]`` empties it, which is how a
        stale group stops granting access. False when the group is gone (a 404, confirmed by
        ``_write_group``): it grants nothing either. Retried like any call: the same PUT twice
        is the same membership."""
        return self._write_group(
            group_id,
            "empty group" if not member_ids else "set group members",
            "set_group_member_ids",
            lambda: self._http.build_request(
                "PUT",
                f"{self.api_url}/public/groups/{quote(group_id, safe='')}/member-ids",
                content=orjson.dumps({"memberIds": member_ids}),
                headers={"Content-Type": "application/json; charset=utf-8"},
            ),
        )

    def update_group(self, group_id: str, name: str, external_id: str) -> bool:
        """Give one group this name and externalId (``PUT /public/groups/{id}``, body
        ``{"name", "externalId"}``, 200 with the group): how a group the directory now
        identifies otherwise keeps its members and grants. No ``collections`` on purpose: the
        server then leaves the grants as they are (stand-in docstring: UpdateGroupCommand
        keeps them when the list is null). False when the group is gone (a 404, confirmed by
        ``_write_group``)."""
        return self._write_group(
            group_id,
            "relink group",
            "update_group",
            lambda: self._http.build_request(
                "PUT",
                f"{self.api_url}/public/groups/{quote(group_id, safe='')}",
                content=orjson.dumps({"name": name, "externalId": external_id}),
                headers={"Content-Type": "application/json; charset=utf-8"},
            ),
        )

    def delete_group(self, group_id: str) -> bool:
        """Delete one group with its memberships and collection grants (``DELETE
        /public/groups/{id}``, 200 with an empty body); False when it was gone already (a
        404, confirmed by ``_write_group``)."""
        return self._write_group(
            group_id,
            "delete group",
            "delete_group",
            lambda: self._http.build_request(
                "DELETE", f"{self.api_url}/public/groups/{quote(group_id, safe='')}"
            ),
        )

    def _write_group(
        self, group_id: str, step: str, endpoint: str, build: Callable[[], httpx.Request]
    ) -> bool:
        """One group write; False when the group is gone. A 404 is taken for "gone" only once
        ``GET /public/groups/{id}`` answers 404 too: the server's own 404 for an unknown group
        is an empty body that anything in between (a proxy, a WAF refusing PUT or DELETE)
        can send as well, and a write taken for done when it was not leaves the access it was
        to end. A group still there is an error (exit 4): the run keeps its old hash, and the
        next run tries again."""
        if self._exchange(step, endpoint, build, missing_ok=True) is not None:
            return True
        path = f"/public/groups/{quote(group_id, safe='')}"
        if self._exchange(step, "get_group", self._get(path), missing_ok=True) is None:
            return False
        url = self.api_url + path
        raise self._scrub(
            BitwardenClientError(
                step,
                f"{url}{'/member-ids' if endpoint == 'set_group_member_ids' else ''} answered 404, "
                f"but the group is still there (GET {url} answered 200): something between bwsync "
                "and the server (a proxy, a firewall) refuses the request, or the server is not "
                "the one that was read",
                status=404,
                url=url,
            )
        )

    def revoke_member(self, member_id: str) -> bool:
        """Revoke one membership (reversible; the import cannot do this, §5). False when it was
        revoked already (``_member_action``)."""
        return self._member_action(member_id, "revoke", "Already revoked.")

    def restore_member(self, member_id: str) -> bool:
        """Restore a revoked membership to its previous status. False when it was active
        already (``_member_action``)."""
        return self._member_action(member_id, "restore", "Already active.")

    def _member_action(self, member_id: str, action: str, done_already: str) -> bool:
        """POST ``/public/members/{id}/<action>``; whether it changed the member.

        The server refuses to revoke a revoked member ("Already revoked.") and to restore an
        active one ("Already active."), with HTTP 400 (Bitwarden's ``UserAlreadyRevoked``; the
        stand-in the same). Either answer means the member is as wanted: the retry of a
        request that took effect while its answer was lost (a timeout, a cut connection), or
        a change made by hand since the plan. Taken for a failure, it failed a run that had
        done its job (exit 4) and kept the old hash, so the next run sent it all again.
        Nothing is assumed: the run's verify re-reads the member's status. Any other 400
        (the last owner, a member of another organization) is the failure it says."""
        try:
            self._send(
                f"{action} member",
                f"{action}_member",
                self._post_empty(f"/public/members/{quote(member_id, safe='')}/{action}"),
            )
        except BitwardenClientError as exc:
            if exc.status == 400 and exc.message == done_already:
                return False
            raise
        return True

    # ---- plumbing --------------------------------------------------------------------------

    def _get(self, path: str) -> Callable[[], httpx.Request]:
        return lambda: self._http.build_request("GET", self.api_url + path)

    def _post_empty(self, path: str) -> Callable[[], httpx.Request]:
        return lambda: self._http.build_request("POST", self.api_url + path, content=b"")

    def _list(self, step: str, endpoint: str, path: str) -> list[Mapping[str, Any]] | None:
        response = self._exchange(step, endpoint, self._get(path), missing_if=_endpoint_lacking)
        if response is None:
            return None
        data = self._json(step, response)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i for i in items):
            raise self._unexpected(step, response)
        return items

    def _json(self, step: str, response: httpx.Response) -> Any:
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise self._unexpected(step, response) from None

    def _unexpected(self, step: str, response: httpx.Response) -> BitwardenError:
        url = _url(response.request)
        text = shorten(response.content.decode("utf-8", "replace"), 120)
        return self._scrub(
            BitwardenServerError(
                step,
                f"unexpected answer from {url} (HTTP {response.status_code}): {text!r}",
                status=response.status_code,
                url=url,
            )
        )

    def _record(self, response: httpx.Response) -> None:
        self._report_request(_endpoint_of(response.request), response.status_code)

    def _send(
        self,
        step: str,
        endpoint: str,
        build: Callable[[], httpx.Request],
        *,
        authenticated: bool = True,
    ) -> httpx.Response:
        response = self._exchange(step, endpoint, build, authenticated=authenticated)
        assert response is not None  # only missing_ok exchanges answer None
        return response

    def _exchange(
        self,
        step: str,
        endpoint: str,
        build: Callable[[], httpx.Request],
        *,
        authenticated: bool = True,
        missing_ok: bool = False,
        missing_if: Callable[[httpx.Response], bool] | None = None,
    ) -> httpx.Response | None:
        """Send with retries (``bwsync.http.retry``); return the 2xx response (``None`` for a
        404 when ``missing_ok``, or when ``missing_if`` accepts it) or raise the translated
        error."""
        sent: list[httpx.Request] = []
        note = ""
        exc: Exception | None = None
        response: httpx.Response | None = None
        retrier = Retrier(
            self._policy, self._decide, on_retry=lambda a: self._retrying(a, endpoint)
        )
        try:
            response = retrier.call(
                step, lambda: self._attempt(step, endpoint, build, authenticated, sent)
            )
        except _TokenUnusable as unusable:
            raise self._unexpected("token", unusable.response) from None
        except RetriesExhausted as gave_up:
            response = gave_up.response
            exc = gave_up.exc if isinstance(gave_up.exc, Exception) else None
            note = "" if gave_up.count_ran_out else f" ({gave_up.note})"
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
            exc = error
        if response is not None:
            is_token = _is_token(response)
            if response.is_success:
                return response
            if (
                response.status_code == 404
                and not is_token
                and (missing_ok or (missing_if is not None and missing_if(response)))
            ):
                return None
        else:
            failed = _request_of(exc) if exc is not None else None
            is_token = _endpoint_of(failed) == "token" if failed else not authenticated
        url = strip_userinfo(self.auth.token_url) if is_token else (_url(sent[-1]) if sent else "")
        failure = self._failure(
            step,
            response=response,
            exc=exc,
            url=url,
            is_token=is_token,
            attempt=len(sent),
        )
        if missing_if is not None and response is not None and response.status_code == 404:
            note += (
                "; this is not the JSON 404 Vaultwarden answers for the endpoints it lacks: "
                "is a proxy or a path in front of the server? Check "
                + env_name("bitwarden", "api_url" if self.settings.api_url else "server")
            )
        if note:
            failure.args = (failure.args[0] + note,)
        raise failure from exc

    def _attempt(
        self,
        step: str,
        endpoint: str,
        build: Callable[[], httpx.Request],
        authenticated: bool,
        sent: list[httpx.Request],
    ) -> httpx.Response:
        """One exchange: the request built anew (a fresh body stream), sent with the token
        flow; a token endpoint's refusal comes back as its response, for the predicate."""
        try:
            request = build()
        except (httpx.HTTPError, httpx.InvalidURL) as error:  # a malformed URL: not retried
            raise BitwardenError(
                step, f"cannot build the request: {shorten(str(error))}"
            ) from error
        request.extensions[_ENDPOINT_KEY] = endpoint
        sent.append(request)
        try:
            response = self._http.send(request, auth=self.auth if authenticated else None)
            if not authenticated:
                self.auth.store(response)
            return response
        except _TokenRefused as refused:
            if refused.response.is_success:  # 200 without a usable token
                raise _TokenUnusable(refused.response) from None
            return refused.response  # classified like any answer: a 429 is retried
        except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as error:
            failed = _request_of(error)
            self._report_request(_endpoint_of(failed) if failed else endpoint, 0)
            raise

    def _decide(self, response: httpx.Response | None, exc: BaseException | None) -> Decision:
        """The retry predicate: ``bwsync.http.retry.classify``, but a 429 without
        ``Retry-After`` at the token endpoint is Vaultwarden's login rate limit (a burst of
        10 token requests, then one every 60 s per client address, and no hint of when,
        reference/vaultwarden.md): the usual retries would give up after about 20 s; this
        backs off for up to ``login_rate_limit_wait`` seconds in all (default 120: more than
        one refill), whatever ``max_retries`` says, the last wait cut to what is left."""
        if (
            response is not None
            and response.status_code == 429
            and _is_token(response)
            and retry_after_seconds(response) is None
        ):
            limit = self.settings.login_rate_limit_wait
            return Decision(
                "now",
                budget=limit,
                why=(
                    "the server's login rate limit, "
                    f"{env_name('bitwarden', 'login_rate_limit_wait')}={limit:g}"
                ),
            )
        return classify(response, exc)

    def _retrying(self, attempt: Attempt, endpoint: str) -> None:
        """Count the retry for the metrics (by endpoint: the token request of an API call
        counts as ``token``); say so in the log when it is the login limit."""
        if attempt.response is not None:
            failed: httpx.Request | None = attempt.response.request
        else:
            failed = _request_of(attempt.exc) if isinstance(attempt.exc, Exception) else None
        self._report_retry(
            "token" if failed is not None and _endpoint_of(failed) == "token" else endpoint
        )
        if attempt.decision.budget is not None:
            event(
                "login_rate_limited",
                logging.WARNING,
                url=strip_userinfo(self.auth.token_url),
                wait_seconds=round(attempt.delay, 1),
                waited_seconds=round(attempt.waited, 1),
                limit_seconds=attempt.decision.budget,
                note="waiting for the server's login rate limit (HTTP 429 without Retry-After "
                "at the token endpoint; Vaultwarden allows one more login a minute)",
            )

    def _failure(
        self,
        step: str,
        *,
        response: httpx.Response | None,
        exc: Exception | None,
        url: str,
        is_token: bool,
        attempt: int,
    ) -> BitwardenError:
        if response is not None:
            error = _error_from_response(
                "token" if is_token else step,
                response,
                token=is_token,
                url_setting=self._url_setting,
            )
        else:
            assert exc is not None
            error = _error_from_exception("token" if is_token else step, exc, url)
        if attempt > 1:
            error.args = (f"{error.args[0]} (after {attempt} attempts)",)
        return self._scrub(error)

    def _scrub(self, error: BitwardenError) -> BitwardenError:
        """Mask every known secret (``bwsync.redact``: the client secret in each of its forms,
        the bearer token, URL credentials) wherever a server echoed it back into a structured
        message, and keep credentials out of the URL attribute."""
        error.args = tuple(redact(a) if isinstance(a, str) else a for a in error.args)
        error.message = redact(error.message) if error.message else error.message
        error.errors = {redact(k): [redact(t) for t in v] for k, v in error.errors.items()}
        error.url = strip_userinfo(error.url) if error.url else error.url
        return error
