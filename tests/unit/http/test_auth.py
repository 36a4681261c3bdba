"""bwsync.http.auth: attach a token; on a 401, a fresh one, once — over httpx.MockTransport."""

from __future__ import annotations

import base64
import gc
import os
import threading
import tracemalloc
from collections.abc import Generator

import httpx

from bwsync.http.auth import FunctionTokenAuth, TokenAuth
from bwsync.redact import MASK, redact


class Tokens:
    """A token holder: ``token(fresh)`` answers from its cache unless ``fresh``."""

    def __init__(self) -> None:
        self.issued = 0
        self.current: str | None = None
        self.lock = threading.Lock()

    def __call__(self, fresh: bool) -> str:
        with self.lock:
            if fresh or self.current is None:
                self.issued += 1
                self.current = f"t{self.issued}"
            return self.current


def _server(valid: set[str]) -> tuple[list[str | None], httpx.MockTransport]:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        token = (request.headers.get("Authorization") or "").removeprefix("Bearer ")
        return httpx.Response(200 if token in valid else 401)

    return seen, httpx.MockTransport(handler)


def test_the_cached_token_is_used_and_a_401_fetches_a_fresh_one_once() -> None:
    tokens = Tokens()
    seen, transport = _server({"t2"})
    with httpx.Client(transport=transport, auth=FunctionTokenAuth(tokens)) as client:
        assert client.get("https://api.test/x").status_code == 200
        assert client.get("https://api.test/x").status_code == 200
    assert seen == ["Bearer t1", "Bearer t2", "Bearer t2"]
    assert tokens.issued == 2


def test_a_second_401_stands() -> None:
    tokens = Tokens()
    seen, transport = _server(set())
    with httpx.Client(transport=transport, auth=FunctionTokenAuth(tokens)) as client:
        assert client.get("https://api.test/x").status_code == 401
    assert seen == ["Bearer t1", "Bearer t2"]


def test_the_same_token_again_is_not_worth_repeating_the_request() -> None:
    """A token file the kubelet has not rotated yet: the fresh read is the refused token."""
    seen, transport = _server(set())
    with httpx.Client(transport=transport, auth=FunctionTokenAuth(lambda fresh: "same")) as c:
        assert c.get("https://api.test/x").status_code == 401
    assert seen == ["Bearer same"]


def test_threads_refused_together_fetch_one_fresh_token() -> None:
    tokens = Tokens()
    tokens(False)  # t1, which the server no longer accepts
    seen, transport = _server({"t2"})
    auth = FunctionTokenAuth(tokens)
    with httpx.Client(transport=transport, auth=auth) as client:
        threads = [
            threading.Thread(target=client.get, args=("https://api.test/x",)) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert tokens.issued == 2  # not one fresh token per refused thread
    assert seen.count("Bearer t2") == 8


class FormAuth(TokenAuth):
    """A flow whose token comes from a request sent through the client (Bitwarden's)."""

    scheme = "Token"

    def __init__(self) -> None:
        self.fetched = 0
        self.token: str | None = None

    def cached(self) -> str | None:
        return self.token

    def forget(self) -> None:
        self.token = None

    def fetch(self) -> Generator[httpx.Request, httpx.Response, str]:
        response = yield httpx.Request("POST", "https://id.test/token")
        self.fetched += 1
        self.token = response.text
        return self.token


def test_a_token_fetched_through_the_client_and_fetched_again_on_a_401() -> None:
    issued = iter(["old", "new"])
    sent: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, request.headers.get("Authorization")))
        if request.url.path == "/token":
            return httpx.Response(200, text=next(issued))
        ok = request.headers.get("Authorization") == "Token new"
        return httpx.Response(200 if ok else 401)

    auth = FormAuth()
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        assert client.get("https://api.test/x").status_code == 200
    assert sent == [
        ("/token", None),
        ("/x", "Token old"),
        ("/token", None),
        ("/x", "Token new"),
    ]
    assert auth.fetched == 2


def _opaque(n: int) -> str:
    """An opaque 1.5 kB access token (a JWT is masked by its shape, never remembered)."""
    return f"opaque{n:04d}-" + base64.urlsafe_b64encode(os.urandom(1120)).decode()


class Rotating:
    """A holder issuing a new token on every fresh request, as a new client per pass does;
    it keeps the first and the last two only (the test measures the process's memory)."""

    def __init__(self) -> None:
        self.count = 0
        self.first = ""
        self.last: list[str] = []

    def __call__(self, fresh: bool) -> str:
        if fresh or not self.last:
            token = _opaque(self.count)
            self.count += 1
            self.first = self.first or token
            self.last = [*self.last[-1:], token]
        return self.last[-1]


def test_each_token_the_flow_attaches_is_masked_and_500_of_them_stay_bounded() -> None:
    """The flow remembers the token it attaches (``bwsync.redact.remember_token``) in its
    slot, each replacing the slot's oldest: loop mode's new token per client and pass (96 a
    day) neither grows the process nor slows masking. Every token obtained reaches the flow,
    so no client remembers tokens of its own."""
    holder = Rotating()
    refuse = httpx.MockTransport(lambda request: httpx.Response(401))  # a fresh token each time
    tracemalloc.start()
    try:
        with httpx.Client(transport=refuse, auth=FunctionTokenAuth(holder, slot="t")) as c:
            for n in range(500):
                c.get("https://api.test/x")
                if n == 249:
                    gc.collect()
                    halfway = tracemalloc.get_traced_memory()[0]
                if n % 50 == 0:
                    assert redact(f"echo {holder.last[-1]}") == f"echo {MASK}"
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - halfway
    finally:
        tracemalloc.stop()
    assert holder.count == 501
    assert redact(f"{holder.last[-1]} {holder.last[-2]}") == f"{MASK} {MASK}"
    assert redact(holder.first) == holder.first  # long replaced
    assert grown < 64 * 1024, grown
