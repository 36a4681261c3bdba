"""bwsync.http.auth: attach a token; on a 401, a fresh one, once — over httpx.MockTransport."""

from __future__ import annotations

import threading
from collections.abc import Generator

import httpx

from bwsync.http.auth import FunctionTokenAuth, TokenAuth


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
