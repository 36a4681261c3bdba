"""The one ``httpx.Auth`` flow of bwsync: attach a token; on a 401, a fresh token, once.

Every API bwsync calls works this way: the Bitwarden organization API key, the Kubernetes
service-account token (re-read as the kubelet rotates it), Graph's and Google's OAuth tokens,
Okta's API token or OAuth token (with DPoP proofs), OneLogin's OAuth token. The flow is pure
request/response logic (STYLE.md): a subclass says how a token is had (``cached``, ``fetch``),
how it goes on a request (``apply``) and what a 401 means (``renew``); the flow does the rest:

1. a token still good (``cached``), else a fresh one (``fetch``, which may itself send
   requests through the flow: the Bitwarden token request does, so that it shares the client's
   TLS, proxy and timeouts);
2. the request with the token (``apply``);
3. on a 401: ``renew`` (by default: forget it and fetch again) and the request once more, unless
   the fresh token is the one just refused (a file not rotated yet: repeating cannot help). A
   second 401 is the caller's to report.

Every token the flow attaches is remembered for masking (``bwsync.redact.remember_token``)
before the request leaves, under the flow's ``slot``: a server echoing the request in an error
must not show it. Each replaces the slot's oldest, so a process that obtains a new token per
client and pass (loop mode) holds a bounded number of them; no client remembers its tokens
itself.

``FunctionTokenAuth`` is the flow for a token from a function ``token(fresh)`` (the library
that holds the credential caches it: msal, google-auth, a source's own cache), safe for the
threads of a source that reads concurrently: of several requests refused at once, one fetches
the fresh token and the others use it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator

import httpx

from bwsync.redact import remember_token

__all__ = ["FunctionTokenAuth", "TokenAuth"]

Flow = Generator[httpx.Request, httpx.Response, None]


class TokenAuth(httpx.Auth):
    """Base of every token flow; see the module docstring."""

    scheme = "Bearer"
    slot = "token"
    """Where this flow's tokens are remembered for masking (``bwsync.redact.remember_token``):
    one per API (``"bitwarden"``, ``"kubernetes"``, ``"graph"`` …)."""

    def cached(self) -> str | None:
        """A token that is still good, or ``None``."""
        return None

    def fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        """A fresh token; may yield requests (sent through the client) to get it."""
        raise NotImplementedError
        yield  # pragma: no cover - makes this a generator

    def forget(self) -> None:
        """Drop the cached token (it was refused)."""

    def apply(self, request: httpx.Request, token: str) -> None:
        request.headers["Authorization"] = f"{self.scheme} {token}"

    def renew(
        self, response: httpx.Response, refused: str
    ) -> Generator[httpx.Request, httpx.Response, str | None]:
        """The token to repeat a 401-refused request with, or ``None`` not to repeat it."""
        self.forget()
        fresh = yield from self.fetch()
        return None if fresh == refused else fresh

    def auth_flow(self, request: httpx.Request) -> Flow:
        token = self.cached()
        if token is None:
            token = yield from self.fetch()
        remember_token(self.slot, token)
        self.apply(request, token)
        response = yield request
        if response.status_code == 401:
            again = yield from self.renew(response, token)
            if again is not None:
                remember_token(self.slot, again)
                self.apply(request, again)
                yield request


class FunctionTokenAuth(TokenAuth):
    """Tokens from ``token(fresh)``: ``fresh=False`` may answer from the holder's cache,
    ``fresh=True`` must not. Of several threads refused with the same token, one asks for a
    fresh one; the others find it already there."""

    def __init__(
        self, token: Callable[[bool], str], scheme: str = "Bearer", *, slot: str = "token"
    ) -> None:
        self._token = token
        self.scheme = scheme
        self.slot = slot
        self._lock = threading.Lock()

    def cached(self) -> str | None:
        with self._lock:
            return self._token(False)

    def fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        with self._lock:
            return self._token(True)
        yield  # pragma: no cover - makes this a generator

    def renew(
        self, response: httpx.Response, refused: str
    ) -> Generator[httpx.Request, httpx.Response, str | None]:
        with self._lock:
            current = self._token(False)
            fresh = current if current != refused else self._token(True)
        return None if fresh == refused else fresh
        yield  # pragma: no cover - makes this a generator
