"""Google source: error parsing, query parameters and token refresh over
``httpx.MockTransport`` (real google-auth signs the JWT; the handler plays Google). Google's
quota answers are read by the HTTP layer (test_cloud_http.py's signals table)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from bwsync.config import GoogleSettings, SyncSettings
from bwsync.errors import ConfigError
from bwsync.http.retry import RetryPolicy
from bwsync.sources.base import FetchRequest
from bwsync.sources.google import GoogleError, GoogleSource, google_error
from tests.fixtures.cloud import service_account_info

API = "https://admin.test"


def _quota(reason: str, status: int = 403) -> httpx.Response:
    return httpx.Response(
        status,
        json={"error": {"code": status, "message": "m", "errors": [{"reason": reason}]}},
    )


def test_error_shapes() -> None:
    assert google_error(_quota("forbidden")) == ("forbidden", "m")
    oauth = httpx.Response(400, json={"error": "invalid_grant", "error_description": "Bad"})
    assert google_error(oauth) == ("invalid_grant", "Bad")
    status_only = httpx.Response(
        429, json={"error": {"message": "q", "status": "RESOURCE_EXHAUSTED"}}
    )
    assert google_error(status_only) == ("RESOURCE_EXHAUSTED", "q")
    assert google_error(httpx.Response(502, text="<html>bad gateway</html>")) == (
        None,
        "<html>bad gateway</html>",
    )


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(service_account_info("https://oauth2.test/token")))
    return path


class Google:
    def __init__(self) -> None:
        self.tokens = 0
        self.calls: list[httpx.Request] = []
        self.auth: list[str] = []
        self.fail_first_with: int | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "oauth2.test":
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"t{self.tokens}", "expires_in": 3599})
        self.calls.append(request)
        self.auth.append(request.headers["Authorization"])  # the request object is reused
        if self.fail_first_with and len(self.calls) == 1:
            return httpx.Response(self.fail_first_with, json={"error": {"code": 401}})
        return httpx.Response(200, json={"kind": "admin#directory#users"})


def _source(key_file: Path, handler: Google, **settings: object) -> GoogleSource:
    values: dict[str, object] = {
        "credentials_file": key_file,
        "admin_email": "admin@example.com",
        "api_url": API,
    }
    values.update(settings)
    return GoogleSource(
        GoogleSettings(**values),  # type: ignore[arg-type]
        # One request at a time: these tests read the calls in the order they were made.
        SyncSettings(groups=False, max_concurrent_requests=1),
        transport=httpx.MockTransport(handler),
        policy=RetryPolicy(sleep=lambda s: None),
    )


def test_common_parameters(key_file: Path) -> None:
    g = Google()
    d = _source(key_file, g, customer="", domain=" example.org ").fetch(FetchRequest())
    assert d.users == []  # an empty list has no `users` key at all
    assert dict(g.calls[0].url.params) == {"domain": "example.org", "maxResults": "500"}
    g = Google()
    _source(key_file, g, customer="C0123", domain="example.com").fetch(FetchRequest())
    assert dict(g.calls[1].url.params) == {
        "domain": "example.com",
        "customer": "C0123",
        "maxResults": "500",
        "showDeleted": "true",
    }
    assert g.calls[0].headers["Authorization"] == "Bearer t1"


def test_401_refreshes_the_token_once(key_file: Path) -> None:
    g = Google()
    g.fail_first_with = 401
    _source(key_file, g).fetch(FetchRequest())
    assert g.tokens == 2
    assert g.auth[:3] == ["Bearer t1", "Bearer t2", "Bearer t2"]


def test_bad_key_files_are_configuration_errors(tmp_path: Path) -> None:
    g = Google()
    for content, message in [
        ("not json", "is not a JSON key file"),
        (json.dumps({"type": "authorized_user"}), "is not a service-account key"),
        (
            json.dumps({**service_account_info("https://t"), "private_key": "garbage"}),
            "private_key in .* is not a PEM private key",
        ),
    ]:
        path = tmp_path / "k.json"
        path.write_text(content)
        with pytest.raises(ConfigError, match=message) as info:
            _source(path, g).fetch(FetchRequest())
        assert "garbage" not in str(info.value)


def test_non_list_body_is_an_error(key_file: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "oauth2.test":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3599})
        return httpx.Response(200, json={"users": {"not": "a list"}})

    src = GoogleSource(
        GoogleSettings(credentials_file=key_file, admin_email="a@b.c", api_url=API),
        SyncSettings(),
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(GoogleError, match="`users` is not a list"):
        src.fetch(FetchRequest())


def test_a_key_whose_token_uri_is_not_https_is_refused(tmp_path: Path, key_file: Path) -> None:
    info = json.loads(key_file.read_text())
    info["token_uri"] = "http://oauth2.example/token"
    path = tmp_path / "http-key.json"
    path.write_text(json.dumps(info))
    source = GoogleSource(
        GoogleSettings(credentials_file=path, admin_email="a@b.c", api_url=API), SyncSettings()
    )
    with pytest.raises(ConfigError, match="token_uri must be an https:// URL"):
        source.token()
