"""A directory server that answers 200 with the wrong shapes is the directory's fault: exit 3
naming the request, never a Python exception (exit 1, "a bug") nor a loop without end.

Each row is one answer that reached an unexpected exception or a loop before (issue 15,
"exit code 1 means a bug"), played to the real source over ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bwsync.config import (
    EntraSettings,
    GoogleSettings,
    OktaSettings,
    OneLoginSettings,
    SyncSettings,
)
from bwsync.errors import BwsyncError
from bwsync.http.retry import RetryPolicy
from bwsync.sources.base import FetchRequest, Source
from bwsync.sources.entra import EntraSource
from bwsync.sources.google import GoogleSource
from bwsync.sources.okta import OktaSource
from bwsync.sources.onelogin import OneLoginSource
from tests.fixtures.setting_files import google_key

TOKEN = {"access_token": "t", "expires_in": 3600, "token_type": "Bearer"}
DISCOVERY = {
    "token_endpoint": "https://login.test/t/oauth2/v2.0/token",
    "issuer": "https://login.test/t/v2.0",
    "authorization_endpoint": "https://login.test/t/oauth2/v2.0/authorize",
}


def _answers(token: Any, body: Any, link: str | None = None) -> httpx.MockTransport:
    """The token endpoint answers ``token``, every other request ``body`` (and a ``Link``
    header ``link`` when given); msal's discovery document is well formed."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("openid-configuration"):
            return httpx.Response(200, json=DISCOVERY)
        if "token" in path:
            return httpx.Response(200, content=json.dumps(token).encode())
        headers = {"Link": f'<{link}>; rel="next"'} if link else {}
        return httpx.Response(200, content=json.dumps(body).encode(), headers=headers)

    return httpx.MockTransport(handler)


Build = Callable[[httpx.MockTransport, Path], Source]
NO_WAIT = RetryPolicy(max_retries=0, sleep=lambda _s: None)


def okta(t: httpx.MockTransport, _: Path) -> Source:
    settings = OktaSettings(org_url="https://o.test", token="t")  # type: ignore[arg-type]
    return OktaSource(settings, SyncSettings(), transport=t, policy=NO_WAIT)


def onelogin(t: httpx.MockTransport, _: Path) -> Source:
    settings = OneLoginSettings(
        client_id="c",
        client_secret="s",  # type: ignore[arg-type]
        api_url="https://ol.test",
    )
    return OneLoginSource(settings, SyncSettings(), transport=t, policy=NO_WAIT)


def google(t: httpx.MockTransport, tmp: Path) -> Source:
    key = tmp / "key.json"
    key.write_text(json.dumps(google_key("https://oauth2.test/token")))
    settings = GoogleSettings(
        credentials_file=key, admin_email="a@x.test", api_url="https://g.test"
    )
    return GoogleSource(settings, SyncSettings(), transport=t, policy=NO_WAIT)


def entra(t: httpx.MockTransport, _: Path) -> Source:
    settings = EntraSettings(
        tenant_id="t",
        client_id="c",
        client_secret="s",  # type: ignore[arg-type]
        authority_url="https://login.test",
        graph_url="https://graph.test",
    )
    return EntraSource(settings, SyncSettings(), transport=t, policy=NO_WAIT)


USERS_ONELOGIN = {
    "status": {"code": 200},
    "data": [{"id": 1, "email": "a@x.test", "role_id": 5}],
}
CASES: list[tuple[str, Build, Any, Any, str | None, str]] = [
    # (id, source, token answer, list answer, Link header, words of the error)
    ("okta user not an object", okta, TOKEN, [5], None, "without an id"),
    ("okta Link loops", okta, TOKEN, [{"id": "a"}], "https://o.test/api/v1/users", "loops"),
    ("onelogin role_id not a list", onelogin, TOKEN, USERS_ONELOGIN, None, "role_id"),
    ("google token answer null", google, None, {}, None, "unexpected answer"),
    ("google token answer a list", google, [], {}, None, ""),
    (
        "google page token repeats",
        google,
        TOKEN,
        {"users": [], "nextPageToken": "p"},
        None,
        "repeats",
    ),
    ("entra token answer null", entra, None, {}, None, "unexpected answer"),
    ("entra token answer a string", entra, "x", {}, None, ""),
    ("entra token answer a list", entra, [], {}, None, ""),
    (
        "entra nextLink loops",
        entra,
        TOKEN,
        {"value": [], "@odata.nextLink": "https://graph.test/v1.0/users?$top=999"},
        None,
        "loops",
    ),
]


@pytest.mark.parametrize(
    ("build", "token", "body", "link", "words"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_a_malformed_answer_is_a_directory_error(
    build: Build, token: Any, body: Any, link: str | None, words: str, tmp_path: Path
) -> None:
    source = build(_answers(token, body, link), tmp_path)
    with pytest.raises(BwsyncError) as caught:
        source.fetch(FetchRequest())
    assert caught.value.exit_code == 3, caught.value
    assert words in str(caught.value)


def test_an_okta_profile_that_is_not_an_object_gives_no_address(tmp_path: Path) -> None:
    """A user whose `profile` is not an object has no email (normalize drops it); it used to
    be an AttributeError."""
    directory = okta(_answers(TOKEN, [{"id": "a", "profile": 5}]), tmp_path).fetch(FetchRequest())
    assert directory.users is not None
    # (the answer serves both of Okta's user queries: regular, then deprovisioned)
    assert {(u.external_id, u.email) for u in directory.users} == {("a", None)}


def test_an_entra_mail_that_is_not_text_is_no_address(tmp_path: Path) -> None:
    """Graph's `mail` as a number: the entry has no usable email (skipped and counted), and
    the run goes on; it used to be a TypeError."""
    users = {"value": [{"id": "u1", "mail": 5, "userPrincipalName": 7, "accountEnabled": True}]}

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("openid-configuration"):
            return httpx.Response(200, json=DISCOVERY)
        if "token" in path:
            return httpx.Response(200, json=TOKEN)
        if path.endswith("/users") or path.endswith("/delta"):
            return httpx.Response(200, json=users)
        return httpx.Response(200, json={"value": []})

    directory = entra(httpx.MockTransport(handler), tmp_path).fetch(FetchRequest())
    assert directory.users == []
    assert directory.skipped["no_email"] >= 1
